# Debian's QEMU boots the test kernel as a nested (L2) guest on /dev/kvm with the
# user-space irqchip, for each module set given (runs inside the test VM).
# L2_INITRD (host path) comes from scripts/make-l2-initramfs.sh.
for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail qemu/load "cannot load $MODSET"; continue; }
    dmesg_mark
    start=$(cat /proc/uptime | cut -d' ' -f1)
    out=$(timeout ${QEMU_TIMEOUT:-150} chroot /host qemu-system-x86_64 -accel kvm -machine pc,kernel-irqchip=off \
        -cpu qemu64 -m 256M -nographic -nodefaults -serial stdio -no-reboot \
        -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" -initrd "$L2_INITRD" \
        -append "console=ttyS0 panic=-1 ${L2_APPEND:-quiet}" 2>&1)
    rc=$?
    end=$(cat /proc/uptime | cut -d' ' -f1)
    if echo "$out" | grep -q KVM-RS-L2-BOOT-OK; then
        pass qemu/boots_linux_userspace_irqchip; [ -n "$L2_GREP" ] && echo "$out" | grep -iE "$L2_GREP"
        echo "BOOTTIME $MODSET $(awk -v a=$start -v b=$end 'BEGIN {print b - a}')"
    else
        fail qemu/boots_linux_userspace_irqchip "rc $rc; last output: $(echo "$out" | tail -15)"; echo "$out" > /tmp/l2.log; [ -n "$L2_GREP" ] && echo "$out" | grep -iE "$L2_GREP"
    fi
    [ -n "$L2_GREP" ] && dmesg | grep -iE "unhandled|kvm" | tail -20
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass qemu/dmesg_clean || fail qemu/dmesg_clean "$bad"
    unload_all
done
exit 0
