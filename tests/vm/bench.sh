# Exit-path benchmarks in the test VM, for each module set (runs inside the VM).
# Under Bochs (VMX) the 256M touch scenarios would take too long (and memory).
grep -q -w vmx /proc/cpuinfo && export KVM_BENCH_SKIP=touch_
for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { echo "bench: cannot load $MODSET"; continue; }
    hostrun "$TESTBIN/kvm-bench" | sed "s/^BENCH /BENCH $MODSET /"
    unload_all
done
exit 0
