# The user-space API suite (kvm-api-tests) against one module set (runs in the VM).
. "$REPO/tests/vm/lib.sh"
unload_all
load_all || { fail api/load "cannot load the $MODSET modules"; return 0; }
dmesg_mark
# The test VM's QEMU (TCG) does not deliver a nested guest's INT3 as a #BP
# intercept nor load its DR7 breakpoints at VMRUN (QEMU's SVM emulation), so
# the breakpoint tests run under Bochs (tests/vm/vmx.sh) only.
if ! grep -q -w vmx /proc/cpuinfo; then
    export KVM_TESTS_SKIP="${KVM_TESTS_SKIP:-debug_bp/:QEMU TCG's SVM does not intercept INT3 or load L2 DR7 breakpoints}"
fi
hostrun "$TESTBIN/kvm-api-tests" ${API_FILTER:-} 2>&1 | sed "s#^\(PASS\|FAIL\|SKIP\) #\1 $MODSET/#"
bad=$(dmesg_bad)
[ -z "$bad" ] && pass api/dmesg_clean || fail api/dmesg_clean "$bad"
unload_all
loaded kvm && fail api/unload "kvm still loaded" || pass api/unload
