# Linux 6.12's KVM selftests (tools/testing/selftests/kvm, built on the host by
# scripts/selftests.sh) against module sets (runs in the test VM).
#
#   selftests.sh SET:TEST...     e.g. upstream:x86_64/cpuid_test ours:kvm_create_max_vcpus
# SET: ours, upstream, or ours-params: our modules with the kvm module parameters
# the selftests read and kvm.ko lacks faked, for the chroot only (a tmpfs over
# /host/sys/module/kvm: force_emulation_prefix=0, enable_pmu=N, tdp_mmu=Y,
# eager_page_split=N, i.e. what our kvm.ko does), to see what comes after them.
# with ST_DIR (the built tests, host path) and ST_TIMEOUT (seconds per test, default
# 120) in the environment. The pairs run in the order given; the modules of a set are
# loaded when it comes up and unloaded when the next set (or the end) comes.
# Each test is run through `chroot /host` (the host's libraries and addr2line; /dev,
# /proc and /sys are mounted there by the VM's init) under `timeout`, in /tmp.
#
# Console protocol, read by scripts/selftests.sh (which resumes after a test that
# killed or hung the VM, from the last SELFTEST-BEGIN without its SELFTEST-RESULT):
#   SELFTEST-BEGIN <set> <test>
#   SELFTEST-OUT <line>          the test's output (stdout+stderr; long output: head+tail)
#   SELFTEST-DMESG <line>        the kernel log since the test started, if it has
#                                warnings/oopses (lib.sh's dmesg_bad)
#   SELFTEST-RESULT <set> <test> <PASS|SKIP|FAIL|TIMEOUT> rc=<status> secs=<n> warn=<0|1>
#   SELFTEST-NOTE <set> <text>   module load/unload problems
. "$REPO/tests/vm/lib.sh"
: "${ST_DIR:?ST_DIR (the built selftests) not set}"
: "${ST_TIMEOUT:=120}"
out=/tmp/selftest.out
cur=""
loadok=0

# The tmpfs over /host/sys/module/kvm (ours-params).
fake_params() {
    d=/host/sys/module/kvm
    mkdir -p /tmp/kvm-params
    for f in "$d"/parameters/*; do [ -f "$f" ] && cat "$f" > "/tmp/kvm-params/${f##*/}"; done
    mount -t tmpfs kvm-params "$d" || { echo "SELFTEST-NOTE $cur cannot mount a tmpfs on $d"; return 1; }
    mkdir "$d/parameters"
    cp /tmp/kvm-params/* "$d/parameters/" 2>/dev/null
    faked=""
    for kv in force_emulation_prefix=0 enable_pmu=N tdp_mmu=Y eager_page_split=N; do
        k=${kv%%=*}
        [ -e "$d/parameters/$k" ] || { echo "${kv#*=}" > "$d/parameters/$k"; faked="$faked $kv"; }
    done
    echo "SELFTEST-NOTE $cur faked kvm parameters:${faked:- none}"
}

st_unload() {
    [ -n "$cur" ] || return 0
    [ "$cur" != ours-params ] || umount /host/sys/module/kvm 2>/dev/null
    unload_all
    loaded kvm && echo "SELFTEST-NOTE $cur the modules do not unload: $(grep -E '^(kvm|kvm_amd|kvm_intel) ' /proc/modules | tr '\n' ';')"
    bad=$(dmesg_bad)
    [ -z "$bad" ] || echo "SELFTEST-NOTE $cur kernel warnings at unload: $(echo "$bad" | head -3 | tr '\n' ';')"
    cur=""
}

st_load() {
    st_unload
    MODSET=${1%-params}
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    cur=$1
    unload_all
    dmesg_mark
    if msg=$(load_all 2>&1); then
        loadok=1
        [ "$cur" != ours-params ] || fake_params || loadok=0
        bad=$(dmesg_bad)
        [ -z "$bad" ] || echo "SELFTEST-NOTE $cur kernel warnings at load: $(echo "$bad" | head -3 | tr '\n' ';')"
    else
        loadok=0
        echo "SELFTEST-NOTE $cur cannot load the modules: $msg"
    fi
    [ -c /host/dev/kvm ] || { [ $loadok = 0 ] || echo "SELFTEST-NOTE $cur no /dev/kvm in the chroot"; }
}

for pair in "$@"; do
    set_=${pair%%:*}
    t=${pair#*:}
    [ "$set_" = "$cur" ] || st_load "$set_"
    echo "SELFTEST-BEGIN $set_ $t"
    if [ $loadok = 0 ]; then
        echo "SELFTEST-OUT cannot load the $set_ modules"
        echo "SELFTEST-RESULT $set_ $t FAIL rc=-1 secs=0 warn=0"
        continue
    fi
    dmesg_mark
    start=$(date +%s)
    hostrun /bin/sh -c 'cd /tmp && exec timeout -k 5 "$1" "$2"' sh "$ST_TIMEOUT" "$ST_DIR/$t" \
        </dev/null >"$out" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    case $rc in
        0) v=PASS ;;
        4) v=SKIP ;;
        124|137) v=TIMEOUT ;;
        *) v=FAIL ;;
    esac
    n=$(wc -l <"$out")
    if [ "$n" -le 100 ]; then
        cut -c1-400 "$out" | sed 's/^/SELFTEST-OUT /'
    else
        head -n 40 "$out" | cut -c1-400 | sed 's/^/SELFTEST-OUT /'
        echo "SELFTEST-OUT [... $((n - 100)) lines left out ...]"
        tail -n 60 "$out" | cut -c1-400 | sed 's/^/SELFTEST-OUT /'
    fi
    warn=0
    if [ -n "$(dmesg_bad)" ]; then
        warn=1
        dmesg | head -n 80 | cut -c1-300 | sed 's/^/SELFTEST-DMESG /'
    fi
    echo "SELFTEST-RESULT $set_ $t $v rc=$rc secs=$secs warn=$warn"
done
st_unload
exit 0
