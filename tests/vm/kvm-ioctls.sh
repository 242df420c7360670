# rust-vmm kvm-ioctls' own unit tests against the module set(s) given as arguments
# (default: ours upstream); runs in the test VM (scripts/kvm-ioctls-tests.sh builds
# the test binary and starts this).
# Environment: KVM_IOCTLS_BIN  the test binary (host path, run with chroot /host)
#              KVM_IOCTLS_SRC  the unpacked crate (host path; quotes the failing line)
#              KVM_IOCTLS_TIMEOUT  seconds per test (default 60)
#              KVM_IOCTLS_FILTER   only the tests whose name contains this
# Each test runs on its own (`--exact NAME --test-threads=1`) under a timeout, so a
# hang or a crash of one does not lose the others. With both sets it prints
#   PASS kvm-ioctls/<test>                  passes on upstream and on ours
#   FAIL kvm-ioctls/<test>: passes on upstream, fails on ours: <reason>
#   INFO kvm-ioctls fails on both: <test>: <reason>   (and: fails only on upstream)
# with one set, PASS/FAIL <set>/kvm-ioctls/<test>; for each set
# PASS/FAIL <set>/kvm-ioctls/dmesg_clean and <set>/kvm-ioctls/unload.
sets=${*:-ours upstream}
bin=${KVM_IOCTLS_BIN:-}
src=${KVM_IOCTLS_SRC:-}
tmo=${KVM_IOCTLS_TIMEOUT:-60}
work=/tmp/kvm-ioctls
rm -rf $work && mkdir -p $work

if [ -z "$bin" ] || [ ! -x "/host$bin" ]; then
    echo "FAIL kvm-ioctls/binary: test binary '/host$bin' missing (KVM_IOCTLS_BIN)"
    exit 1
fi
# `--list` names the #[ignore]d tests too (the SEV ones, built without /dev/sev):
# they are left out, as `cargo test` would.
chroot /host "$bin" --list </dev/null 2>/dev/null | sed -n 's/: test$//p' > $work/all
chroot /host "$bin" --list --ignored </dev/null 2>/dev/null | sed -n 's/: test$//p' > $work/ignored
grep -vxF -f $work/ignored $work/all > $work/run
if [ -n "${KVM_IOCTLS_FILTER:-}" ]; then
    grep -F -- "$KVM_IOCTLS_FILTER" $work/run > $work/tests
else
    cp $work/run $work/tests
fi
ntests=$(wc -l < $work/tests)
[ "$ntests" -gt 0 ] || { echo "FAIL kvm-ioctls/list: '$bin --list' lists no tests to run"; exit 1; }
echo "kvm-ioctls ${KVM_IOCTLS_VER:-?}: running $ntests of $(wc -l < $work/all) tests, ${tmo}s each, sets: $sets"
[ ! -s $work/ignored ] || echo "INFO kvm-ioctls ignored by the crate (not run): $(tr '\n' ' ' < $work/ignored)"

# reason OUTFILE: one line from a failed test's output: where it panicked, the
# source line there and the message (errno numbers named).
reason() {
    awk -v src="${src:+/host$src}" '
    function errname(n) {
        split("1 EPERM 2 ENOENT 4 EINTR 5 EIO 6 ENXIO 7 E2BIG 9 EBADF 11 EAGAIN 12 ENOMEM 13 EACCES 14 EFAULT 16 EBUSY 17 EEXIST 19 ENODEV 22 EINVAL 24 EMFILE 25 ENOTTY 28 ENOSPC 34 ERANGE 38 ENOSYS 95 EOPNOTSUPP", a, " ")
        for (i = 1; (i in a); i += 2) if (a[i] == n) return a[i + 1]
        return ""
    }
    /panicked at / && !found {
        found = 1; loc = $0; sub(/.*panicked at /, "", loc); sub(/:[0-9]+:$/, "", loc)
        msg = ""; n = 0
        while ((getline l) > 0 && n < 4) {
            if (l ~ /^note: / || l ~ /^stack backtrace/ || l == "") break
            gsub(/^ +/, "", l); msg = msg (msg == "" ? "" : " ") l; n++
        }
        code = ""
        if (src != "") {
            f = loc; sub(/:[0-9]+$/, "", f); ln = loc; sub(/.*:/, "", ln)
            i = 0
            while ((getline l < (src "/" f)) > 0) if (++i == ln + 0) { code = l; break }
            close(src "/" f)
            gsub(/^[ \t]+/, "", code); if (length(code) > 100) code = substr(code, 1, 97) "..."
        }
        while (match(msg, /Error\([0-9]+\)/)) {
            num = substr(msg, RSTART + 6, RLENGTH - 7); e = errname(num)
            msg = substr(msg, 1, RSTART - 1) "Error#" num (e == "" ? "" : "=" e) ")" substr(msg, RSTART + RLENGTH)
        }
        gsub(/Error#/, "Error(", msg)
        if (length(msg) > 300) msg = substr(msg, 1, 297) "..."
        print loc (code == "" ? "" : " `" code "`") ": " msg
    }
    { if ($0 != "") last = $0 }
    END { if (!found) print "no panic message; last output: " last }' "$1"
}

# run_set SET: runs every test on SET's modules; writes $work/SET.res lines
# `name|ok` or `name|fail|reason`.
run_set() {
    MODSET=$1
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    res=$work/$MODSET.res
    : > $res
    unload_all
    if ! load_all; then
        fail kvm-ioctls/load "cannot load the $MODSET modules"
        sed "s/\$/|fail|the $MODSET modules did not load/" $work/tests > $res
        return
    fi
    [ -c /host/dev/kvm ] || mount -t devtmpfs dev /host/dev 2>/dev/null
    if [ ! -c /host/dev/kvm ]; then
        fail kvm-ioctls/dev_kvm "no /dev/kvm in the chroot (/host/dev)"
        sed "s/\$/|fail|no \/dev\/kvm/" $work/tests > $res
        unload_all
        return
    fi
    dmesg_mark
    t0=$(date +%s)
    np=0 nf=0
    while read -r t; do
        printf '  %s %s ... ' "$MODSET" "$t"
        s=$(date +%s)
        timeout -s KILL "$tmo" chroot /host "$bin" --exact "$t" --test-threads=1 </dev/null > $work/out 2>&1
        st=$?
        el=$(( $(date +%s) - s ))
        if grep -q '^test result: ok\. 1 passed' $work/out; then
            echo "ok (${el}s)"; echo "$t|ok" >> $res; np=$((np + 1)); continue
        fi
        if grep -q '^test result: FAILED' $work/out; then
            why=$(reason $work/out)
        elif [ $st = 137 ] && [ $el -ge "$tmo" ]; then
            why="timed out after ${tmo}s (killed)"
        elif [ $st -gt 128 ]; then
            why="test process killed by signal $((st - 128)); $(reason $work/out)"
        elif grep -q '^test result: ok\. 0 passed' $work/out; then
            why="not run (filtered out?)"
        else
            why="exit status $st; $(reason $work/out)"
        fi
        echo "FAILED (${el}s): $why"
        echo "$t|fail|$why" >> $res
        nf=$((nf + 1))
    done < $work/tests
    echo "INFO kvm-ioctls $MODSET: $np passed, $nf failed of $ntests in $(( $(date +%s) - t0 ))s"
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass kvm-ioctls/dmesg_clean || fail kvm-ioctls/dmesg_clean "$(echo "$bad" | head -5 | tr '\n' ' ')"
    unload_all
    loaded kvm && fail kvm-ioctls/unload "kvm still loaded" || pass kvm-ioctls/unload
}

for set in $sets; do
    case $set in
        ours|upstream) run_set $set ;;
        *) echo "FAIL kvm-ioctls/args: unknown module set '$set'" ;;
    esac
done

# verdict SET TEST: prints `ok` or `fail|reason` (missing: `fail|not run`).
verdict() { awk -F'|' -v t="$2" '$1 == t { sub(/^[^|]*\|/, ""); print; f = 1; exit } END { if (!f) print "fail|not run" }' "$work/$1.res"; }

if [ -f $work/ours.res ] && [ -f $work/upstream.res ]; then
    echo "=== kvm-ioctls: ours against upstream"
    : > $work/both; : > $work/uponly
    while read -r t; do
        o=$(verdict ours "$t"); u=$(verdict upstream "$t")
        case "$u|$o" in
            ok\|ok) echo "PASS kvm-ioctls/$t" ;;
            ok\|*) echo "FAIL kvm-ioctls/$t: passes on upstream, fails on ours: ${o#fail|}" ;;
            *\|ok) echo "$t: ${u#fail|}" >> $work/uponly ;;
            *) if [ "${o#fail|}" = "${u#fail|}" ]; then echo "$t: ${o#fail|}" >> $work/both
               else echo "$t: ours: ${o#fail|}; upstream: ${u#fail|}" >> $work/both; fi ;;
        esac
    done < $work/tests
    while read -r l; do echo "INFO kvm-ioctls fails on both: $l"; done < $work/both
    while read -r l; do echo "INFO kvm-ioctls fails only on upstream: $l"; done < $work/uponly
else
    for set in ours upstream; do
        [ -f $work/$set.res ] || continue
        while IFS='|' read -r t v why; do
            [ "$v" = ok ] && echo "PASS $set/kvm-ioctls/$t" || echo "FAIL $set/kvm-ioctls/$t: $why"
        done < $work/$set.res
    done
fi
exit 0
