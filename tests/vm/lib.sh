# Shell helpers for the test scripts that run inside the test VM (busybox sh).
# Each test prints `PASS <set>/<name>` or `FAIL <set>/<name>: <why>`; the host
# runner (scripts/run-tests.sh) counts the lines.
#
# MODSET=ours|upstream picks the module files; both sets must pass the same tests
# unless a test is marked ours-only (a behaviour upstream does not have, such as
# refusing shadow paging).

: "${MODSET:=ours}"
case "$MODSET" in
    ours)
        MOD_PRE=""
        MOD_KVM=$REPO/kvm.ko
        MOD_AMD=$REPO/kvm-amd.ko
        MOD_INTEL=$REPO/kvm-intel.ko ;;
    upstream)
        MOD_PRE=$KBUILD/virt/lib/irqbypass.ko
        MOD_KVM=$KBUILD/arch/x86/kvm/kvm.ko
        MOD_AMD=$KBUILD/arch/x86/kvm/kvm-amd.ko
        MOD_INTEL=$KBUILD/arch/x86/kvm/kvm-intel.ko ;;
esac
TESTBIN=$HOST_REPO/target/release

pass() { echo "PASS $MODSET/$1"; }
fail() { echo "FAIL $MODSET/$1: $2"; }

# expect NAME COMMAND...: the command must succeed.
expect() {
    name=$1; shift
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "'$*' failed: $out"; fi
}
# refuse NAME COMMAND...: the command must fail.
refuse() {
    name=$1; shift
    if out=$("$@" 2>&1); then fail "$name" "'$*' succeeded: $out"; else pass "$name"; fi
}

load_kvm() { [ -z "$MOD_PRE" ] || grep -q '^irqbypass ' /proc/modules || insmod "$MOD_PRE"; insmod "$MOD_KVM"; }
# The vendor module of this CPU (kvm-intel under Bochs, kvm-amd elsewhere).
load_all() {
    if grep -q -w vmx /proc/cpuinfo; then load_kvm && insmod "$MOD_INTEL"; else load_kvm && insmod "$MOD_AMD"; fi
}
unload_all() { rmmod kvm_amd 2>/dev/null; rmmod kvm_intel 2>/dev/null; rmmod kvm 2>/dev/null; true; }
loaded() { grep -q "^$1 " /proc/modules; }

# Runs a host binary (built by cargo on the host) inside the VM.
hostrun() { chroot /host "$@"; }

# Warnings, oopses and leaks the kernel logged since the last dmesg_mark.
dmesg_mark() { dmesg -c >/dev/null; }
# The API suite's tests the SVM test VM cannot run (api.sh, main-job.sh): its
# QEMU (TCG) does not deliver a nested guest's INT3 as a #BP intercept (and
# QEMU 7.2 did not load its DR7 at VMRUN either), so the breakpoint tests run
# under Bochs (tests/vm/vmx.sh) only.
api_skips() {
    local skips=""
    grep -q -w vmx /proc/cpuinfo ||
        skips="debug_bp/sw_:the test VM's QEMU (TCG) does not intercept a nested guest's INT3"
    # A 1G hugetlbfs page exists only if the kernel was booted with one reserved
    # (hugepagesz=1G hugepages=1 and memory to spare: run-tests.sh boots a 6G
    # test VM for that test alone).
    [ "$(cat /sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages 2>/dev/null || echo 0)" -ge 1 ] ||
        skips="${skips:+$skips;}hugetlbfs_1g:no free 1G hugetlbfs page in this boot (run-tests.sh runs it in a 6G test VM with hugepagesz=1G hugepages=1)"
    export KVM_TESTS_SKIP="${KVM_TESTS_SKIP:-$skips}"
}
# Unreclaimable slab (every kmalloc) in kB, read after dropping the caches
# (reclaimable dentries and inodes of the 9p share drift by ~100 kB) and
# shrinking every slab cache: on a KASAN kernel that also empties the quarantine
# of freed objects (kasan_cache_shrink), which otherwise counts as slab use.
slab_kb() {
    sync
    echo 3 > /proc/sys/vm/drop_caches
    for _f in /sys/kernel/slab/*/shrink; do [ -w "$_f" ] && echo 1 > "$_f"; done 2>/dev/null
    awk '/^SUnreclaim:/ {print $2}' /proc/meminfo
}
dmesg_bad() { dmesg | grep -E 'WARNING:|BUG:|Oops|general protection|Call Trace|leak|refcount_t' ; }
