# Robustness fuzzing inside the test VM (busybox sh), for the module sets given
# as arguments (default: ours upstream):
#   - per set: load the modules, then `kvm-fuzz ioctl` and `kvm-fuzz guest` with
#     the fixed seeds $FUZZ_SEEDS plus one fresh seed, $FUZZ_SECONDS each; a run
#     fails on a non-zero exit, a hang (past its deadline + 60 s) or kernel splats
#     in dmesg; then the modules must unload (a leaked VM reference would pin them);
#   - the differential check: `kvm-fuzz diff` with the seeds $FUZZ_DIFF_SEEDS on
#     each set; ours must answer every call as upstream does, up to the
#     allowlist tests/kvm-fuzz/diff-allow.txt.
# Prints PASS/FAIL lines like the other in-VM tests, plus `FUZZSTAT` lines that
# scripts/fuzz.sh totals. Environment (all optional):
#   FUZZ_SECONDS (60) FUZZ_SEEDS ("1 2") FUZZ_FRESH_SEED (random) FUZZ_THREADS (4)
#   FUZZ_GUEST_THREADS (2) FUZZ_DIFF_SEEDS ("1 2 3") FUZZ_DIFF_COUNT (3000)
#   FUZZ_MODES ("ioctl guest diff": which parts to run)
#   FUZZ_DEBUG (set by scripts/fuzz.sh on the debug kernel): each set also ends
#   with tests/vm/dmesg-check.sh's debug_check (every report the kernel logged
#   during the set, even if cleared from the ring, and a kmemleak scan).
sets=${*:-ours upstream}
: "${FUZZ_SECONDS:=60}"
: "${FUZZ_SEEDS:=1 2}"
: "${FUZZ_THREADS:=4}"
: "${FUZZ_GUEST_THREADS:=2}"
: "${FUZZ_DIFF_SEEDS:=1 2 3}"
: "${FUZZ_DIFF_COUNT:=3000}"
: "${FUZZ_MODES:=ioctl guest diff}"
[ -n "${FUZZ_FRESH_SEED:-}" ] || FUZZ_FRESH_SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
FUZZBIN=$HOST_REPO/target/release/kvm-fuzz
FUZZ_OUT=/tmp/kvm-fuzz
mkdir -p "$FUZZ_OUT"
# Kernel splats (the debug kernel's reports too).
FUZZ_BAD_RE='BUG:|WARNING:|Oops|general protection|kernel BUG|Call Trace|refcount_t|UBSAN:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|sleeping function called from invalid context|scheduling while atomic|rust_panic|panicked at|list_add corruption|list_del corruption|unreferenced object|hung_task|blocked for more than|soft lockup|hard LOCKUP|rcu_sched self-detected|rcu: INFO'
fuzz_has() { case " $FUZZ_MODES " in *" $1 "*) return 0 ;; esac; return 1; }

# fuzz_run NAME TIMEOUT COMMAND...: runs a kvm-fuzz command in the background with
# its output in $FUZZ_OUT/$MODSET-NAME.log; sets fuzz_rc (124 = hang) and
# fuzz_log. A process that SIGKILL cannot end is stuck in the kernel.
fuzz_run() {
    _name=$1 _limit=$2
    shift 2
    fuzz_log=$FUZZ_OUT/$MODSET-$_name.log
    hostrun "$@" > "$fuzz_log" 2>&1 &
    _pid=$!
    _t=0
    while kill -0 "$_pid" 2>/dev/null && [ "$_t" -lt "$_limit" ]; do
        sleep 1
        _t=$((_t + 1))
    done
    if kill -0 "$_pid" 2>/dev/null; then
        fuzz_rc=124
        echo "HANG: still running after ${_limit}s; blocked tasks:" >> "$fuzz_log"
        for _s in /proc/"$_pid"/task/*/stack; do
            [ -r "$_s" ] && { echo "--- $_s"; cat "$_s"; } >> "$fuzz_log" 2>/dev/null
        done
        [ -w /proc/sysrq-trigger ] && echo w > /proc/sysrq-trigger
        kill -9 "$_pid" 2>/dev/null
        _t=0
        while kill -0 "$_pid" 2>/dev/null && [ "$_t" -lt 10 ]; do sleep 1; _t=$((_t + 1)); done
        kill -0 "$_pid" 2>/dev/null && echo "HANG: the process survives SIGKILL (stuck in the kernel)" >> "$fuzz_log"
    else
        wait "$_pid"
        fuzz_rc=$?
    fi
}

# fuzz_check NAME WHAT: PASS/FAIL for the last fuzz_run, including dmesg since
# the last dmesg_mark.
fuzz_check() {
    _name=$1
    _bad=$(dmesg | grep -E "$FUZZ_BAD_RE")
    _why=""
    if [ "$fuzz_rc" = 124 ]; then
        _why="hang: $(grep -m1 '^HANG' "$fuzz_log")"
    elif [ "$fuzz_rc" != 0 ]; then
        _why="exit status $fuzz_rc: $(grep -E -m3 '^(HANG|BAD|FAILED|thread|kvm-fuzz)' "$fuzz_log" | tr '\n' ' ')$(tail -n 2 "$fuzz_log" | tr '\n' ' ')"
    elif ! grep -q '^OK$' "$fuzz_log"; then
        _why="no OK line: $(tail -n 3 "$fuzz_log" | tr '\n' ' ')"
    fi
    if [ -n "$_bad" ]; then
        _why="${_why:+$_why; }kernel log: $(echo "$_bad" | head -n 1)"
    fi
    if [ -z "$_why" ]; then
        pass "fuzz/$_name"
    else
        fail "fuzz/$_name" "$_why (seed $(sed -n 's/^SEED //p' "$fuzz_log" | head -n 1); log $fuzz_log)"
        if [ -n "$_bad" ]; then
            dmesg | grep -E -B2 -A25 "$FUZZ_BAD_RE" | head -n 80 | sed 's/^/    /'
        fi
        tail -n 5 "$fuzz_log" | sed 's/^/    | /'
    fi
    dmesg_mark
}

fuzz_set() {
    unload_all
    if ! load_all; then
        fail fuzz/load "cannot load the $MODSET modules"
        return 0
    fi
    dmesg_mark
    _limit=$((FUZZ_SECONDS + 60))
    for _seed in $FUZZ_SEEDS fresh; do
        _s=$_seed
        [ "$_seed" = fresh ] && _s=$FUZZ_FRESH_SEED
        if fuzz_has ioctl; then
            fuzz_run "ioctl_$_seed" "$_limit" "$FUZZBIN" ioctl --seed "$_s" --threads "$FUZZ_THREADS" --seconds "$FUZZ_SECONDS"
            echo "FUZZSTAT $MODSET ioctl seed=$_s ioctls=$(sed -n 's/^IOCTLS //p' "$fuzz_log" | tail -n 1) $(grep '^OPS' "$fuzz_log" | tail -n 1)"
            grep -E '^NEVER_SUCCEEDED' "$fuzz_log" | sed "s/^/FUZZINFO $MODSET ioctl seed=$_s /"
            fuzz_check "ioctl_$_seed"
        fi
        if fuzz_has guest; then
            fuzz_run "guest_$_seed" "$_limit" "$FUZZBIN" guest --seed "$_s" --threads "$FUZZ_GUEST_THREADS" --seconds "$FUZZ_SECONDS"
            echo "FUZZSTAT $MODSET guest seed=$_s $(grep '^RUNS' "$fuzz_log" | tail -n 1 | tr 'A-Z ' 'a-z=' | sed 's/runs=\([0-9]*\)=exits=/runs=\1 exits=/') $(grep '^KICKS' "$fuzz_log" | tail -n 1)"
            grep -E '^(EXIT_REASONS|ERRNOS)' "$fuzz_log" | sed "s/^/FUZZINFO $MODSET guest seed=$_s /"
            fuzz_check "guest_$_seed"
        fi
    done
    if fuzz_has diff; then
        for _s in $FUZZ_DIFF_SEEDS; do
            fuzz_run "diff_$_s" 300 "$FUZZBIN" diff --seed "$_s" --count "$FUZZ_DIFF_COUNT"
            fuzz_check "diff_run_$_s"
        done
    fi
    unload_all
    if loaded kvm || loaded kvm_amd || loaded kvm_intel; then
        fail fuzz/unload "modules still loaded after fuzzing: $(grep -E '^kvm' /proc/modules | tr '\n' ' ')"
    else
        pass fuzz/unload
    fi
}

# (An oops that ends the VM under oops=panic still reaches the console:
# oops_begin raises the console log level.)
echo "fuzz: sets '$sets', ${FUZZ_SECONDS}s per run, seeds $FUZZ_SEEDS and fresh seed $FUZZ_FRESH_SEED"
[ -z "${FUZZ_DEBUG:-}" ] || . "$REPO/tests/vm/dmesg-check.sh"
for MODSET in $sets; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    [ -z "${FUZZ_DEBUG:-}" ] || debug_begin
    fuzz_set
    [ -z "${FUZZ_DEBUG:-}" ] || debug_check "debug/fuzz-$MODSET"
done

# The differential check: ours against upstream, call by call.
if fuzz_has diff && [ -n "$(echo " $sets " | grep ' ours ')" ] && [ -n "$(echo " $sets " | grep ' upstream ')" ]; then
    allow=$REPO/tests/kvm-fuzz/diff-allow.txt
    diffs=$FUZZ_OUT/diff-differences.txt
    : > "$diffs"
    for _s in $FUZZ_DIFF_SEEDS; do
        a=$FUZZ_OUT/ours-diff_$_s.log b=$FUZZ_OUT/upstream-diff_$_s.log
        # CALL <i> <name> <result>: pair the lines by index.
        awk -v seed="$_s" 'FNR == NR { if ($1 == "CALL") { n[$2] = $3; u[$2] = $4 } next }
            $1 == "CALL" && ($2 in n) && u[$2] != $4 { print "seed " seed " call " $2 " " $3 " ours=" $4 " upstream=" u[$2] }' "$b" "$a" >> "$diffs"
        ca=$(grep -c '^CALL' "$a") cb=$(grep -c '^CALL' "$b")
        [ "$ca" = "$cb" ] || echo "seed $_s call-count ours=$ca upstream=$cb" >> "$diffs"
    done
    # Allowlist: lines "<name> ours=<r> upstream=<r>  # why"; blank and # lines ignored.
    if [ -f "$allow" ]; then
        sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$allow" > "$FUZZ_OUT/allow.txt"
    else
        : > "$FUZZ_OUT/allow.txt"
    fi
    left=$FUZZ_OUT/diff-left.txt
    : > "$left"
    while read -r _ _ _ _ name o u; do
        grep -q -x -F "$name $o $u" "$FUZZ_OUT/allow.txt" || echo "$name $o $u"
    done < "$diffs" > "$left"
    total=$(grep -c . "$diffs")
    nleft=$(grep -c . "$left")
    echo "FUZZSTAT diff calls=$(cat $FUZZ_OUT/ours-diff_*.log | grep -c '^CALL') differences=$total unallowed=$nleft"
    if [ "$nleft" = 0 ]; then
        echo "PASS fuzz/diff_errnos_vs_upstream"
    else
        echo "FAIL fuzz/diff_errnos_vs_upstream: $nleft of $(cat $FUZZ_OUT/ours-diff_*.log | grep -c '^CALL') calls answered differently from upstream (by kind, count first):"
        sort "$left" | uniq -c | sort -rn | head -n 60 | sed 's/^/    /'
        echo "    first differing calls (seed, index; later calls may differ as a consequence):"
        awk '{print $1" "$2" "$3" "$4" "$5" "$6" "$7}' "$diffs" | head -n 20 | sed 's/^/    /'
    fi
fi
true
