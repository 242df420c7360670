# The main job inside the test VM: load our modules, show what /dev/kvm offers,
# run the API suite on it, and boot Linux under Debian's QEMU with its default
# (in-kernel) irqchip on two vCPUs.
MODSET=ours
. "$REPO/tests/vm/lib.sh"
load_all || { echo "main-job: loading kvm.ko + kvm-amd.ko failed"; exit 1; }
ls -l /dev/kvm
api_skips
hostrun "$TESTBIN/kvm-api-tests" || exit 1
echo "main-job: QEMU boots an SMP Linux guest on our /dev/kvm (qemu-system-x86_64 -accel kvm -smp 2)"
out=$(timeout 300 chroot /host /usr/bin/qemu-system-x86_64 -accel kvm -smp 2 -cpu qemu64 -m 256M \
    -nographic -nodefaults -serial stdio -no-reboot -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" \
    -initrd "$L2_INITRD" -append "console=ttyS0 panic=-1 quiet" 2>&1)
echo "$out" | grep -E "L2 guest|KVM-RS-L2-BOOT-OK"
echo "$out" | grep -q "up, 2 CPU(s)" || { echo "main-job: the SMP guest did not boot"; exit 1; }
unload_all
exit 0
