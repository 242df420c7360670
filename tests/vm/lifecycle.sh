# Module lifecycle under load (runs in the test VM for one module set, $MODSET):
#   - rmmod of the vendor module and of kvm is refused while a VM fd, a vCPU fd
#     or only a vCPU's kvm_run mapping is alive (the process holding it has
#     closed everything else), and works once it is gone;
#   - SIGKILL of a VMM whose threads are in every state (in the guest, HLT and
#     wait-for-SIPI blocked in the kernel, PIO exits in a loop, in user space
#     with an exit pending, KVM_SET_USER_MEMORY_REGION in a loop): the process
#     is gone promptly (tests/kvm-tests/src/bin/kvm_lifecycle.rs), the kernel
#     log stays clean, the modules unload after it, unreclaimable slab does not
#     grow over the rounds;
#   - with LIFECYCLE_CYCLES=N (N > 0): N load/unload cycles of kvm + the vendor
#     module with a clean kernel log and stable unreclaimable slab (modules.sh
#     runs 160 in every suite run; `make lifecycle-long` runs 1000).
# Environment: LIFECYCLE_KILL_ROUNDS (default 5), LIFECYCLE_KILL_LIMIT_MS
# (default 10000), LIFECYCLE_CYCLES (default 0).
. "$REPO/tests/vm/lib.sh"
: "${LIFECYCLE_KILL_ROUNDS:=5}"
: "${LIFECYCLE_KILL_LIMIT_MS:=10000}"
: "${LIFECYCLE_CYCLES:=0}"
LC=$TESTBIN/kvm-lifecycle
if grep -q -w vmx /proc/cpuinfo; then vendor=kvm_intel; else vendor=kvm_amd; fi
lc_out=/tmp/lifecycle-hold.out

# Both modules out, strictly (unload_all ignores failures).
unload_strict() { rmmod "$vendor" && rmmod kvm && ! loaded kvm && ! loaded "$vendor"; }

# lc_hold WHAT: starts `kvm-lifecycle hold WHAT` in the background (lc_pid) and
# waits for its READY line (up to 120 s: under load, starting the program over
# 9p alone has taken longer than 30).
lc_hold() {
    # (Not through hostrun: a function run with & is a subshell, and $! would
    # be its pid rather than the holder's.)
    chroot /host "$LC" hold "$1" > "$lc_out" 2>&1 &
    lc_pid=$!
    _t=0
    while ! grep -q '^READY' "$lc_out" && [ "$_t" -lt 120 ]; do
        kill -0 "$lc_pid" 2>/dev/null || break
        sleep 1
        _t=$((_t + 1))
    done
    grep -q '^READY' "$lc_out"
}

unload_all
for what in vm vcpu mmap; do
    if ! load_all; then
        fail "lifecycle/load_$what" "cannot load the $MODSET modules"
        continue
    fi
    dmesg_mark
    if ! lc_hold "$what"; then
        kill -0 "$lc_pid" 2>/dev/null && _st=running || { wait "$lc_pid"; _st="exit status $?"; }
        fail "lifecycle/hold_$what" "the holder did not get ready ($_st): $(cat "$lc_out")"
        kill -9 "$lc_pid" 2>/dev/null
        wait "$lc_pid" 2>/dev/null
        unload_all
        continue
    fi
    if out=$(rmmod "$vendor" 2>&1); then
        fail "lifecycle/rmmod_vendor_refused_with_${what}_open" "rmmod $vendor succeeded while a $what was held"
    elif loaded "$vendor"; then
        pass "lifecycle/rmmod_vendor_refused_with_${what}_open"
        echo "lifecycle: rmmod $vendor with a $what held: $out"
    else
        fail "lifecycle/rmmod_vendor_refused_with_${what}_open" "rmmod failed ($out) but $vendor is gone"
    fi
    if out=$(rmmod kvm 2>&1); then
        fail "lifecycle/rmmod_kvm_refused_with_${what}_open" "rmmod kvm succeeded while a $what was held"
    else
        loaded kvm && pass "lifecycle/rmmod_kvm_refused_with_${what}_open" || fail "lifecycle/rmmod_kvm_refused_with_${what}_open" "kvm is gone"
    fi
    # The refused rmmods left the holder (and its VM) alone.
    kill -0 "$lc_pid" 2>/dev/null && pass "lifecycle/holder_alive_${what}" || fail "lifecycle/holder_alive_${what}" "$(cat "$lc_out")"
    kill "$lc_pid"
    wait "$lc_pid" 2>/dev/null
    expect "lifecycle/rmmod_vendor_after_${what}_closed" rmmod "$vendor"
    expect "lifecycle/rmmod_kvm_after_${what}_closed" rmmod kvm
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass "lifecycle/hold_${what}_dmesg_clean" || fail "lifecycle/hold_${what}_dmesg_clean" "$bad"
    unload_all
done

# SIGKILL of a VMM with vCPUs in every state, one VMM per round; after each
# kill the kernel log must be clean and both modules must unload (nothing of
# the VM left holding them). One warm-up round first, then the slab baseline
# with the modules out; slab is read again after the last round.
unload_all
if load_all; then
    hostrun "$LC" kill --rounds 1 --limit-ms "$LIFECYCLE_KILL_LIMIT_MS" > /tmp/lifecycle-kill0.out 2>&1
    unload_all
fi
kill_ok=1 log_ok=1 unload_ok=1
# kill_rounds FIRST LAST: one killed VMM per round, checks as above.
kill_rounds() {
    local r
    for r in $(seq "$1" "$2"); do
        dmesg_mark
        if ! load_all; then
            kill_ok=0 kill_why="round $r: cannot load the $MODSET modules"
            break
        fi
        if out=$(hostrun "$LC" kill --rounds 1 --first "$r" --limit-ms "$LIFECYCLE_KILL_LIMIT_MS" 2>&1); then
            echo "$out" | sed -n 's/^ROUND/lifecycle: ROUND/p'
        else
            [ $kill_ok = 0 ] || kill_why=$(echo "$out" | grep -E '^FAIL' | head -1)
            kill_ok=0
        fi
        bad=$(dmesg_bad)
        [ -z "$bad" ] || { [ $log_ok = 0 ] || log_why="round $r: $bad"; log_ok=0; }
        unload_strict >/dev/null 2>&1 || {
            [ $unload_ok = 0 ] || unload_why="round $r: $(grep -E '^kvm' /proc/modules | tr '\n' ' ')"
            unload_ok=0
            unload_all
        }
    done
}
n=$LIFECYCLE_KILL_ROUNDS
before=$(slab_kb)
kill_rounds 1 "$n"
after=$(slab_kb)
echo "lifecycle: unreclaimable slab before $before kB, after $n killed VMMs $after kB"
grew=$((after - before)) slab_why=""
# On the debug kernel unreclaimable slab drifts by a few hundred kB in either
# direction now and then (debug objects, kmemleak's own records). A leak grows
# with every VMM: if these rounds grew 100 kB or more, as many again must not.
if [ $grew -ge 100 ]; then
    kill_rounds $((n + 1)) $((2 * n))
    again=$(slab_kb)
    echo "lifecycle: after $n more killed VMMs $again kB"
    [ $((again - after)) -lt 100 ] || slab_why="unreclaimable slab grew $grew kB over $n killed VMMs and $((again - after)) kB over $n more"
fi
[ $kill_ok = 1 ] && pass lifecycle/kill9_vmm_all_vcpu_states || fail lifecycle/kill9_vmm_all_vcpu_states "$kill_why"
[ $log_ok = 1 ] && pass lifecycle/kill9_dmesg_clean || fail lifecycle/kill9_dmesg_clean "$log_why"
[ $unload_ok = 1 ] && pass lifecycle/kill9_then_modules_unload || fail lifecycle/kill9_then_modules_unload "modules still loaded after the kill: $unload_why"
[ -z "$slab_why" ] && pass lifecycle/kill9_no_slab_growth || fail lifecycle/kill9_no_slab_growth "$slab_why"
unload_all

# Long load/unload runs: 60 warm-up cycles, then the measured ones.
if [ "$LIFECYCLE_CYCLES" -gt 0 ]; then
    dmesg_mark
    ok=1
    t0=$(date +%s)
    cycle() { load_all >/dev/null 2>&1 && [ -c /dev/kvm ] && unload_all && [ ! -e /dev/kvm ]; }
    for i in $(seq 1 60); do cycle || { ok=0; break; }; done
    before=$(slab_kb)
    if [ $ok = 1 ]; then
        for i in $(seq 1 "$LIFECYCLE_CYCLES"); do cycle || { ok=0; break; }; done
    fi
    after=$(slab_kb)
    secs=$(( $(date +%s) - t0 ))
    n=$LIFECYCLE_CYCLES
    [ $ok = 1 ] && pass "lifecycle/${n}_load_unload_cycles" || fail "lifecycle/${n}_load_unload_cycles" "cycle $i failed"
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass "lifecycle/${n}_cycles_dmesg_clean" || fail "lifecycle/${n}_cycles_dmesg_clean" "$bad"
    echo "lifecycle: $n load/unload cycles (+60 warm-up) in ${secs}s; unreclaimable slab before $before kB, after $after kB"
    [ $((after - before)) -lt 100 ] && pass "lifecycle/${n}_cycles_no_slab_growth" ||
        fail "lifecycle/${n}_cycles_no_slab_growth" "unreclaimable slab grew $((after - before)) kB over $n cycles"
fi
true
