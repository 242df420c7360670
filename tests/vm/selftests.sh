# Linux 6.12's KVM selftests (tools/testing/selftests/kvm, built on the host by
# scripts/selftests.sh) against module sets (runs in the test VM).
#
#   selftests.sh SET:TEST...     e.g. upstream:x86_64/cpuid_test ours:kvm_create_max_vcpus
# with ST_DIR (the built tests, host path) and ST_TIMEOUT (seconds per test, default
# 120) in the environment. The pairs run in the order given; the modules of a set are
# loaded when it comes up and unloaded when the next set (or the end) comes.
# SET: ours, upstream, or ours-params: our modules with the kvm module parameters
# the selftests read and our modules lack faked, for the chroot only (tmpfs mounts
# over /host/sys/module/{kvm,kvm_amd}/parameters: kvm force_emulation_prefix=0,
# enable_pmu=N, tdp_mmu=Y, eager_page_split=N, kvm_amd avic=N, i.e. what our
# modules do), to see what comes after them.
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

# ours-params: a tmpfs over /host/sys/module/<module>/parameters holding copies of
# the module's parameters plus the missing ones given (name=value...).
fake_params() {
    m=$1; shift
    d=/host/sys/module/$m/parameters
    mkdir -p "/tmp/params-$m"
    for f in "$d"/*; do [ -f "$f" ] && cat "$f" > "/tmp/params-$m/${f##*/}"; done
    # kvm.ko without parameters has no directory to mount on: then over the module's.
    [ -d "$d" ] || d=${d%/parameters}
    mount -t tmpfs "params-$m" "$d" || { echo "SELFTEST-NOTE $cur cannot mount a tmpfs on $d"; return 1; }
    mounted="$mounted $d"
    [ "${d##*/}" = parameters ] || { mkdir "$d/parameters"; d=$d/parameters; }
    cp "/tmp/params-$m"/* "$d/" 2>/dev/null
    faked=""
    for kv in "$@"; do
        k=${kv%%=*}
        [ -e "$d/$k" ] || { echo "${kv#*=}" > "$d/$k"; faked="$faked $kv"; }
    done
    echo "SELFTEST-NOTE $cur faked $m parameters:${faked:- none}"
}
fake_all_params() {
    mounted=""
    fake_params kvm force_emulation_prefix=0 enable_pmu=N tdp_mmu=Y eager_page_split=N || return 1
    if loaded kvm_amd; then fake_params kvm_amd avic=N || return 1; fi
}

st_unload() {
    [ -n "$cur" ] || return 0
    if [ "$cur" = ours-params ]; then
        for mp in $mounted; do umount "$mp"; done
    fi
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
        [ "$cur" != ours-params ] || fake_all_params || loadok=0
        bad=$(dmesg_bad)
        [ -z "$bad" ] || echo "SELFTEST-NOTE $cur kernel warnings at load: $(echo "$bad" | head -3 | tr '\n' ';')"
    else
        loadok=0
        echo "SELFTEST-NOTE $cur cannot load the modules: $msg"
    fi
    [ -c /host/dev/kvm ] || { [ $loadok = 0 ] || echo "SELFTEST-NOTE $cur no /dev/kvm in the chroot"; }
}

# POSIX semaphores (hardware_disable_test's sem_open) need a tmpfs at /dev/shm.
[ -d /host/dev/shm ] || mkdir /host/dev/shm
grep -q ' /host/dev/shm ' /proc/mounts || mount -t tmpfs shm /host/dev/shm

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
        124) v=TIMEOUT ;;
        137) if [ $secs -ge "$ST_TIMEOUT" ]; then v=TIMEOUT; else v=FAIL; fi ;;  # else OOM killer?
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
