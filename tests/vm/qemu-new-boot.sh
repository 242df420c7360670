# The newest Debian QEMU (Debian unstable's, QEMU 11 and later) boots the test kernel
# as a nested (L2) guest on /dev/kvm, for each module set given (runs inside the test
# VM). That QEMU refuses a user-space APIC with KVM, so this tests the in-kernel
# irqchip with another QEMU than Debian 12's 7.2. Needs (host paths):
#   SID_ROOT   from scripts/make-sid-root.sh (a Debian unstable root with QEMU)
#   L2_INITRD  from scripts/make-l2-initramfs.sh (its /init prints "up, N CPU(s)"
#              and KVM-RS-L2-BOOT-OK)
# Configurations: QEMU's defaults (pc, in-kernel irqchip) and q35, both -smp 2.
#   QEMU_NEW_CONFIGS  overrides the list (words of the form NAME:MACHINE:SMP).
#   QEMU_TIMEOUT      seconds per boot (default 300: the first start reads QEMU and
#                     its libraries over 9p).
# Test names: qemu-new/boots_linux_<config>, qemu-new/dmesg_clean (stable across
# QEMU versions; the version is printed on an INFO line).
sid=/host${SID_ROOT:?SID_ROOT: the sid root from scripts/make-sid-root.sh}
: "${L2_INITRD:?L2_INITRD: the initramfs from scripts/make-l2-initramfs.sh}"
MODSET=${1:-ours}
. "$REPO/tests/vm/lib.sh"

# The root is read-only (the host's, over 9p): mounts on its directories only.
# /mnt gets a tmpfs with the kernel and initramfs, so they are inside the chroot.
setup() {
    [ -x "$sid/usr/bin/qemu-system-x86_64" ] || { echo "no QEMU in $sid"; return 1; }
    mount --bind /dev "$sid/dev" && mount -t proc proc "$sid/proc" &&
    mount -t sysfs sys "$sid/sys" && mount -t tmpfs tmp "$sid/tmp" &&
    mount -t tmpfs boot "$sid/mnt" &&
    cp "$KBUILD/arch/x86/boot/bzImage" "$sid/mnt/bzImage" &&
    cp "/host$L2_INITRD" "$sid/mnt/initrd.gz"
}
teardown() {
    for m in mnt tmp sys proc dev; do umount "$sid/$m" 2>/dev/null; done
}
l2_boot() { # MACHINE SMP
    timeout "${QEMU_TIMEOUT:-300}" chroot "$sid" /usr/bin/qemu-system-x86_64 -accel kvm -machine "$1" \
        -smp "$2" -cpu qemu64 -m 256M -nographic -nodefaults -serial stdio -no-reboot \
        -kernel /mnt/bzImage -initrd /mnt/initrd.gz \
        -append "console=ttyS0 panic=-1 ${L2_APPEND:-quiet}" </dev/null 2>&1
}

if ! out=$(setup 2>&1); then
    for MODSET in ${*:-ours upstream}; do fail qemu-new/setup "cannot prepare the chroot $sid: $out"; done
    teardown
    exit 0
fi
echo "INFO: $(chroot "$sid" /usr/bin/qemu-system-x86_64 --version 2>&1 | head -1) (Debian $(cat "$sid/.kvm-rs-qemu-version" 2>/dev/null))"

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail qemu-new/load "cannot load $MODSET"; continue; }
    dmesg_mark
    for cfg in ${QEMU_NEW_CONFIGS:-smp2:pc:2 q35_smp2:q35:2}; do
        name=${cfg%%:*}; rest=${cfg#*:}; machine=${rest%:*}; smp=${rest##*:}
        start=$(cut -d' ' -f1 /proc/uptime)
        out=$(l2_boot "$machine" "$smp")
        rc=$?
        t=$(awk -v a="$start" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN {print b - a}')
        cpus=$(echo "$out" | sed -n 's/.*up, \([0-9]*\) CPU(s).*/\1/p' | tail -1)
        if ! echo "$out" | grep -q KVM-RS-L2-BOOT-OK; then
            fail "qemu-new/boots_linux_$name" "rc $rc after ${t}s; last output: $(echo "$out" | tail -15)"
        elif [ "$cpus" != "$smp" ]; then
            fail "qemu-new/boots_linux_$name" "the guest saw ${cpus:-?} of $smp CPUs: $(echo "$out" | grep -i -E 'cpu|smp' | tail -5)"
        else
            pass "qemu-new/boots_linux_$name"
            echo "INFO: $MODSET $name booted in ${t}s"
            if echo "$out" | grep -q 'Switched to clocksource kvm-clock'; then
                pass "qemu-new/kvm_clock_$name"
            else
                fail "qemu-new/kvm_clock_$name" "$(echo "$out" | grep -i clocksource | tail -3)"
            fi
        fi
    done
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass qemu-new/dmesg_clean || fail qemu-new/dmesg_clean "$bad"
    if [ -n "${QEMU_NEW_DMESG:-}" ]; then echo "--- dmesg ($MODSET)"; dmesg | tail -60; fi
    unload_all
done
teardown
exit 0
