# Debian's QEMU boots the test kernel as a nested (L2) guest on /dev/kvm, for each
# module set given (runs inside the test VM). L2_INITRD (a host path) comes from
# scripts/make-l2-initramfs.sh; its /init prints "up, N CPU(s)" and
# KVM-RS-L2-BOOT-OK, and the clocksource it switched to (kvm-clock expected).
# Configurations:
#   QEMU's defaults (in-kernel irqchip) with -smp 2 (and -smp 4 unless
#   QEMU_BOOT_QUICK is set), kernel-irqchip=split with -smp 2, and
#   kernel-irqchip=off with -smp 1 (the user-space irqchip).
#   BOOT_RUNS=N   boot N times (defaults, -smp 2) after a warm-up boot and print
#                 the best time (BOOTTIME <set> <seconds>) for make bench.
#   QEMU_BOOT_CONFIGS  overrides the list (words of the form NAME:MACHINE:SMP).
l2_boot() { # MACHINE SMP
    timeout ${QEMU_TIMEOUT:-150} chroot /host /usr/bin/qemu-system-x86_64 -accel kvm -machine "$1" \
        -smp "$2" -cpu qemu64 -m 256M -nographic -nodefaults -serial stdio -no-reboot \
        -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" -initrd "$L2_INITRD" \
        -append "console=ttyS0 panic=-1 ${L2_APPEND:-quiet}" 2>&1
}
now() { cut -d' ' -f1 /proc/uptime; }

default_configs="irqchip_smp2:pc:2 split_smp2:pc,kernel-irqchip=split:2 userspace_irqchip:pc,kernel-irqchip=off:1"
[ -n "${QEMU_BOOT_QUICK:-}" ] || default_configs="$default_configs irqchip_smp4:pc:4"

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail qemu/load "cannot load $MODSET"; continue; }
    dmesg_mark
    for cfg in ${QEMU_BOOT_CONFIGS:-$default_configs}; do
        name=${cfg%%:*}; rest=${cfg#*:}; machine=${rest%:*}; smp=${rest##*:}
        out=$(l2_boot "$machine" "$smp")
        rc=$?
        cpus=$(echo "$out" | sed -n 's/.*up, \([0-9]*\) CPU(s).*/\1/p' | tail -1)
        if ! echo "$out" | grep -q KVM-RS-L2-BOOT-OK; then
            fail "qemu/boots_linux_$name" "rc $rc; last output: $(echo "$out" | tail -15)"
        elif [ "$cpus" != "$smp" ]; then
            fail "qemu/boots_linux_$name" "the guest saw ${cpus:-?} of $smp CPUs: $(echo "$out" | grep -i -E 'cpu|smp' | tail -5)"
        else
            pass "qemu/boots_linux_$name"
            # The guest keeps time with kvmclock (the kernel's own log line).
            if echo "$out" | grep -q 'Switched to clocksource kvm-clock'; then
                pass "qemu/kvm_clock_$name"
            else
                fail "qemu/kvm_clock_$name" "$(echo "$out" | grep -i clocksource | tail -3)"
            fi
        fi
    done
    if [ -n "${BOOT_RUNS:-}" ]; then
        best=""
        l2_boot pc 2 >/dev/null
        for i in $(seq 1 "$BOOT_RUNS"); do
            start=$(now)
            l2_boot pc 2 | grep -q KVM-RS-L2-BOOT-OK || { best=""; break; }
            t=$(awk -v a="$start" -v b="$(now)" 'BEGIN {print b - a}')
            best=$(awk -v a="$best" -v b="$t" 'BEGIN {print (a == "" || b < a) ? b : a}')
        done
        [ -n "$best" ] && echo "BOOTTIME $MODSET $best"
    fi
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass qemu/dmesg_clean || fail qemu/dmesg_clean "$bad"
    unload_all
done
exit 0
