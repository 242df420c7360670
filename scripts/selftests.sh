#!/bin/bash
# The conformance runner: Linux 6.12's own KVM selftests (tools/testing/selftests/kvm,
# the x86_64 targets) against upstream's modules and ours, in the test VM.
#
#   scripts/selftests.sh [SET...]        SET: ours, upstream (default: ours upstream),
#                                        ours-params (diagnosis, see below)
#
# 1. Builds the selftests out of tree from the test kernel's source (the UAPI headers
#    with `make headers` in an O= dir of their own, the tests with OUTPUT=; the source
#    tree and the kernel build dir are not written to), cached in
#    ${KVM_RS_CACHE:-~/.cache/kvm-rs}/selftests-<hash>/ (build deps: gcc, make,
#    libc6-dev, which the kernel build needs anyway; the tests' assertion backtraces
#    use addr2line from binutils, a dependency of gcc).
# 2. Runs every test in the test VM (tests/vm/selftests.sh), one VM per set, each test
#    under a watchdog of SELFTESTS_TIMEOUT seconds (default 120). A test that kills the
#    VM is CRASH, one that hangs it TIMEOUT; the VM is then started again after it.
# 3. Prints a table (test, upstream, ours: PASS/SKIP/FAIL/TIMEOUT/CRASH; `*` = the
#    kernel logged warnings during the test), then one line per test:
#      PASS selftests/<test>           passes on upstream and on ours (ours: no warnings)
#      FAIL selftests/<test>: <why>    passes on upstream, not on ours
#      INFO selftests/<test>: <...>    everything else (with each set's first reason)
#    and the VM time per set. Exit status 1 if there is a FAIL line.
#    ours-params is our modules with the module parameters that the selftests read
#    and our modules do not have faked for the tests (kvm's force_emulation_prefix
#    first: without it every x86 test skips; kvm_amd's avic), to see the next reason;
#    it is reported next to ours, never as a PASS.
#
# Environment:
#   SELFTESTS="a b c"     only these tests (x86_64/cpuid_test or cpuid_test)
#   SELFTESTS_TIMEOUT=S   watchdog per test (default 120)
#   SELFTESTS_MEM=M       the test VM's memory (default 4G: max_guest_memory_test
#                         fills a 2 GiB memfd)
#   SELFTESTS_LOGDIR=DIR  logs (default ${KVM_RS_LOGDIR:-build/test-logs}/selftests):
#                         vm-<set>-<n>.log (console), <set>/<test>.out (output),
#                         <set>/<test>.dmesg (kernel log when it had warnings),
#                         results.txt (set test verdict rc secs warn)
#   KBUILD=DIR            the kernel build (default: scripts/build-kernel.sh's)
#   SELFTESTS_BUILD_ONLY=1  build, print the directory, stop
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
per_test=${SELFTESTS_TIMEOUT:-120}
vmmem=${SELFTESTS_MEM:-4G}
logdir=${SELFTESTS_LOGDIR:-${KVM_RS_LOGDIR:-$repo/build/test-logs}/selftests}
die() { echo "selftests: $*" >&2; exit 2; }

sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(ours upstream)
for s in "${sets[@]}"; do
    case "$s" in ours|upstream|ours-params) ;; *) die "unknown module set '$s' (ours, upstream, ours-params)" ;; esac
done

# ---------------------------------------------------------------- build
kbuild=${KBUILD:-$("$here/build-kernel.sh" | tail -1)}
[ -d "$kbuild" ] || die "no kernel build dir ($kbuild)"
ksrc=$(readlink -f "$kbuild/source")
ktests=$ksrc/tools/testing/selftests/kvm
[ -f "$ktests/Makefile" ] || die "no KVM selftests in the kernel source ($ktests)"
for t in gcc make; do
    command -v $t >/dev/null || die "$t missing (apt-get install gcc make libc6-dev)"
done
[ -f /usr/include/stdio.h ] || die "no C library headers (apt-get install libc6-dev)"
recipe=1  # bump when the build commands below change
# Keyed by the sources the build reads (not by the kernel's config: a test kernel
# with another config shares the build).
hash=$( { echo "recipe $recipe"; sed -n 1,6p "$ksrc/Makefile"; gcc --version | head -1
          cd "$ksrc" && find tools/testing/selftests/kvm tools/testing/selftests/rseq \
              tools/testing/selftests/lib.mk tools/testing/selftests/kselftest.h \
              tools/testing/selftests/kselftest_harness.h tools/include tools/arch/x86/include \
              tools/build include/uapi arch/x86/include/uapi scripts/unifdef.c \
              -type f -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-12)
stdir=$cache/selftests-$hash
if [ ! -f "$stdir/.built" ]; then
    echo "selftests: building the KVM selftests of $ksrc in $stdir" >&2
    tmp=$stdir.tmp.$$
    rm -rf "$tmp"; mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    # UAPI headers: `make headers` in an O= dir of their own (no .config needed;
    # headers_install would want rsync, and the tree under usr/include is the same).
    if ! make -C "$ksrc" O="$tmp/headers" ARCH=x86 -j"$(nproc)" headers >"$tmp/build.log" 2>&1; then
        tail -30 "$tmp/build.log" >&2; die "make headers failed (log: $tmp/build.log)"
    fi
    # The tests: lib.mk puts every object and binary under OUTPUT; TMPOUT is where
    # tools/build's try-run probes (by default a .tmp_PID dir in the source).
    if ! (cd "$tmp" && make -C "$ktests" ARCH=x86 OUTPUT="$tmp/out" TMPOUT="$tmp/try-run" -j"$(nproc)" \
            KHDR_INCLUDES="-isystem $tmp/headers/usr/include" >>"$tmp/build.log" 2>&1); then
        tail -30 "$tmp/build.log" >&2; die "building the selftests failed"
    fi
    # The list of x86 tests, in the Makefile's order.
    sed -n 's/^TEST_GEN_PROGS_x86_64 *+\?= *//p' "$ktests/Makefile" > "$tmp/tests.list"
    while read -r t; do
        [ -x "$tmp/out/$t" ] || die "the build did not produce $t"
    done < "$tmp/tests.list"
    touch "$tmp/.built"
    rm -rf "$stdir"
    mv "$tmp" "$stdir"
    trap - EXIT
fi
echo "selftests: $(wc -l < "$stdir/tests.list") x86 tests in $stdir/out" >&2
[ "${SELFTESTS_BUILD_ONLY:-0}" = 1 ] && { echo "$stdir"; exit 0; }

# ---------------------------------------------------------------- which tests
tests=()
if [ -n "${SELFTESTS:-}" ]; then
    for want in $SELFTESTS; do
        found=""
        while read -r t; do
            [ "$t" = "$want" ] || [ "${t##*/}" = "$want" ] && found=$t
        done < "$stdir/tests.list"
        [ -n "$found" ] || die "no test '$want' (see $stdir/tests.list)"
        tests+=("$found")
    done
else
    mapfile -t tests < "$stdir/tests.list"
fi

# ---------------------------------------------------------------- run
mkdir -p "$logdir"
for s in ours upstream ours-params; do rm -rf "${logdir:?}/$s"; done
rm -f "$logdir"/vm-*.log
results=$logdir/results.txt
: > "$results"
: > "$logdir/notes.txt"
declare -A verdict rc_of secs_of warn_of reason vmtime vmboots
fname() { echo "${1//\//_}"; }

# record SET TEST VERDICT RC SECS WARN
record() {
    verdict[$1/$2]=$3 rc_of[$1/$2]=$4 secs_of[$1/$2]=$5 warn_of[$1/$2]=$6
    echo "$1 $2 $3 rc=$4 secs=$5 warn=$6" >> "$results"
}

# split_log SET LOG: the per-test output and dmesg files from a console log.
split_log() {
    tr -d '\r' < "$2" | awk -v dir="$logdir/$1" -v set="$1" '
        /^SELFTEST-BEGIN / { if ($2 == set) { t = $3; gsub("/", "_", t); out = dir "/" t ".out";
                                              dm = dir "/" t ".dmesg"; printf "" > out; cur = 1 } next }
        /^SELFTEST-RESULT / { if (cur) { close(out); close(dm) } cur = 0; next }
        cur && /^SELFTEST-OUT / { sub(/^SELFTEST-OUT /, ""); print > out; next }
        cur && /^SELFTEST-DMESG / { sub(/^SELFTEST-DMESG /, ""); print > dm; next }
        cur { print "[console] " $0 > out }'
}

# first_reason SET TEST VERDICT: one line saying why a test did not pass.
first_reason() {
    local f=$logdir/$1/$(fname "$2").out dm=$logdir/$1/$(fname "$2").dmesg v=$3 rc=${rc_of[$1/$2]} r=""
    [ -f "$f" ] || { echo "no output"; return; }
    case "$v" in
        SKIP)
            r=$(grep -m1 -E 'SKIP|skipping test' "$f" | sed -E 's/^.*# SKIP *-? *//; s/, skipping test$//') ;;
        FAIL|TIMEOUT)
            if grep -q '==== Test Assertion Failure ====' "$f"; then
                # "  file.c:NN: expr", "  pid=.. tid=.. errno=N - text", backtrace
                # (numbered addr2line lines), then the message.
                r=$(awk '/==== Test Assertion Failure ====/ { a = NR }
                         a && NR == a + 1 { sub(/^ +/, ""); expr = $0 }
                         a && NR == a + 2 { sub(/^.*errno=/, "errno="); err = $0 }
                         a && NR > a + 2 && !/^ *[0-9]+\t/ && !/^\[console\]/ && NF && !msg { sub(/^ +/, ""); msg = $0 }
                         END { s = expr " (" err ")"; if (msg != "") s = s ": " msg; print s }' "$f")
            elif [ "$v" = FAIL ] && [ "$rc" -gt 128 ] 2>/dev/null; then
                r="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
                grep -q 'Out of memory: Killed process' "$dm" 2>/dev/null && r="$r: the OOM killer"
            else
                r=$(grep -m1 -E '^not ok|Bail out|error|Error|failed' "$f")
                [ -n "$r" ] || r=$(grep -v '^\[console\]' "$f" | grep -v '^ *$' | tail -1)
            fi
            [ "$v" = TIMEOUT ] && r="watchdog (${per_test}s)${r:+; last: $r}" ;;
        CRASH)
            r=$(grep -m1 -E 'Kernel panic|BUG:|Oops|general protection|WARNING:' "$f" | sed 's/^\[console\] //')
            [ -n "$r" ] || r="the VM died" ;;
    esac
    [ -n "$r" ] || r=$(grep -v '^ *$' "$f" | tail -1)
    echo "${r:0:300}"
}

for s in "${sets[@]}"; do
    mkdir -p "$logdir/$s"
    pending=("${tests[@]}")
    n=0 total=0
    echo "=== selftests on $s: ${#pending[@]} tests, watchdog ${per_test}s each" >&2
    while [ ${#pending[@]} -gt 0 ]; do
        n=$((n + 1))
        log=$logdir/vm-$s-$n.log
        pairs=()
        for t in "${pending[@]}"; do pairs+=("$s:$t"); done
        start=$(date +%s)
        "$here/vm-run.sh" --mem "$vmmem" --timeout $(( ${#pending[@]} * (per_test + 20) + 300 )) --log "$log" \
            --env "ST_DIR=$stdir/out" --env "ST_TIMEOUT=$per_test" \
            "$repo/tests/vm/selftests.sh" "${pairs[@]}" 2>&1 \
            | tr -d '\r' | sed -un 's/^SELFTEST-RESULT /  /p; s/^\(SELFTEST-NOTE .*\)/  \1/p; s/^\(vm-run: .*\)/  \1/p' >&2
        status=${PIPESTATUS[0]}
        total=$((total + $(date +%s) - start))
        split_log "$s" "$log"
        inflight=""
        while read -r tag set_ t v rc secs warn; do
            case "$tag" in
                SELFTEST-BEGIN) inflight=$t ;;
                SELFTEST-RESULT) inflight=""
                    record "$s" "$t" "$v" "${rc#rc=}" "${secs#secs=}" "${warn#warn=}" ;;
            esac
        done < <(tr -d '\r' < "$log" | grep -E "^SELFTEST-(BEGIN|RESULT) $s ")
        grep -h "^SELFTEST-NOTE $s " "$log" | tr -d '\r' >> "$logdir/notes.txt"
        if [ -n "$inflight" ]; then
            # The VM died (125) or hung (124) in this test: record it, go on after it.
            if [ "$status" = 124 ]; then v=TIMEOUT; else v=CRASH; fi
            echo "  $inflight $v (vm-run status $status, log: $log)" >&2
            record "$s" "$inflight" "$v" "$status" "-" 0
        fi
        left=()
        for t in "${pending[@]}"; do [ -n "${verdict[$s/$t]:-}" ] || left+=("$t"); done
        if [ ${#left[@]} -eq ${#pending[@]} ]; then
            echo "selftests: no progress on $s (vm-run status $status, log: $log): giving up on ${#left[@]} tests" >&2
            for t in "${left[@]}"; do record "$s" "$t" NORUN "$status" "-" 0; done
            left=()
        fi
        pending=("${left[@]}")
    done
    vmtime[$s]=$total vmboots[$s]=$n
    for t in "${tests[@]}"; do
        v=${verdict[$s/$t]}
        case "$v" in
            PASS) reason[$s/$t]="" ;;
            NORUN) reason[$s/$t]="not run (the VM did not get to it)" ;;
            # (CRASH: the console after SELFTEST-BEGIN is in the .out file, [console] lines.)
            *) reason[$s/$t]=$(first_reason "$s" "$t" "$v") ;;
        esac
    done
done

# ---------------------------------------------------------------- report
cell() { local v=${verdict[$1/$2]:--}; [ "${warn_of[$1/$2]:-0}" = 1 ] && v="$v*"; echo "$v"; }
echo
printf '%-44s' test; for s in upstream ours ours-params; do
    [[ " ${sets[*]} " == *" $s "* ]] && printf ' %-11s' "$s"; done; echo
for t in "${tests[@]}"; do
    printf '%-44s' "$t"
    for s in upstream ours ours-params; do [[ " ${sets[*]} " == *" $s "* ]] && printf ' %-11s' "$(cell $s "$t")"; done
    echo
done
echo "(* = the kernel logged warnings during the test: $logdir/<set>/<test>.dmesg)"
echo
both=0
[[ " ${sets[*]} " == *" ours "* ]] && [[ " ${sets[*]} " == *" upstream "* ]] && both=1
fails=0
fake=0
[[ " ${sets[*]} " == *" ours-params "* ]] && fake=1
warnline() {  # warnline FILE: the most telling line of a kernel log
    local p
    for p in 'WARNING:' 'BUG:' 'Oops' 'general protection' 'Out of memory' 'leak' 'refcount_t' 'Call Trace'; do
        grep -m1 -F "$p" "$1" 2>/dev/null && return
    done
}
desc() {  # desc SET TEST: "VERDICT[ (warnings)][: reason]"
    local d=${verdict[$1/$2]}
    [ "${warn_of[$1/$2]:-0}" = 1 ] && d="$d (kernel warnings: $(warnline "$logdir/$1/$(fname "$2").dmesg" | sed 's/^\[ *[0-9.]*\] //' | cut -c1-120))"
    [ -n "${reason[$1/$2]}" ] && d="$d: ${reason[$1/$2]}"
    echo "$d"
}
for t in "${tests[@]}"; do
    if [ $both = 1 ]; then
        up=${verdict[upstream/$t]} ours=${verdict[ours/$t]}
        extra=""
        [ $fake = 0 ] || extra="; with the params faked: $(desc ours-params "$t")"
        if [ "$up" = PASS ] && [ "$ours" = PASS ] && [ "${warn_of[ours/$t]}" = 0 ]; then
            echo "PASS selftests/$t"
        elif [ "$up" = PASS ]; then
            echo "FAIL selftests/$t: ours $(desc ours "$t")$extra"
            fails=$((fails + 1))
        else
            echo "INFO selftests/$t: upstream $(desc upstream "$t"); ours $(desc ours "$t")$extra"
        fi
    else
        for s in "${sets[@]}"; do echo "INFO selftests/$t: $s $(desc "$s" "$t")"; done
    fi
done
echo
[ -s "$logdir/notes.txt" ] && sed 's/^SELFTEST-NOTE /INFO note: /' "$logdir/notes.txt" | sort -u
for s in "${sets[@]}"; do
    c=""
    for v in PASS SKIP FAIL TIMEOUT CRASH NORUN; do
        k=0; for t in "${tests[@]}"; do [ "${verdict[$s/$t]}" = $v ] && k=$((k + 1)); done
        [ $k = 0 ] || c="$c $k $v,"
    done
    c=${c%,}
    echo "INFO $s: ${c# }; VM time ${vmtime[$s]}s in ${vmboots[$s]} boot(s)"
done
echo "logs: $logdir"
[ $fails = 0 ]
