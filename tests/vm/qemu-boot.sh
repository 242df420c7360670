# Debian's QEMU boots the test kernel as a nested (L2) guest on /dev/kvm with the
# user-space irqchip (-machine pc,kernel-irqchip=off), for each module set given
# (runs inside the test VM). L2_INITRD (a host path) comes from
# scripts/make-l2-initramfs.sh; its /init prints KVM-RS-L2-BOOT-OK.
#   BOOT_RUNS=N   boot N times after a warm-up boot and print the best time
#                 (BOOTTIME <set> <seconds>) for make bench.
l2_boot() {
    timeout ${QEMU_TIMEOUT:-150} chroot /host /usr/bin/qemu-system-x86_64 -accel kvm -machine pc,kernel-irqchip=off \
        -cpu qemu64 -m 256M -nographic -nodefaults -serial stdio -no-reboot \
        -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" -initrd "$L2_INITRD" \
        -append "console=ttyS0 panic=-1 ${L2_APPEND:-quiet}" 2>&1
}
now() { cut -d' ' -f1 /proc/uptime; }

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail qemu/load "cannot load $MODSET"; continue; }
    dmesg_mark
    out=$(l2_boot)
    rc=$?
    if echo "$out" | grep -q KVM-RS-L2-BOOT-OK; then
        pass qemu/boots_linux_userspace_irqchip
    else
        fail qemu/boots_linux_userspace_irqchip "rc $rc; last output: $(echo "$out" | tail -15)"
    fi
    if [ -n "${BOOT_RUNS:-}" ]; then
        best=""
        for i in $(seq 1 "$BOOT_RUNS"); do
            start=$(now)
            l2_boot | grep -q KVM-RS-L2-BOOT-OK || { best=""; break; }
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
