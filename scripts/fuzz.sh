#!/bin/bash
# Robustness fuzzing of the modules in the test VM (tests/vm/fuzz.sh): builds
# kvm-fuzz, boots the VM, runs the ioctl and hostile-guest fuzzers on our modules
# and upstream's, then the differential errno check, and prints the totals.
#
#   scripts/fuzz.sh [DURATION] [SETS...]
# DURATION (or env DURATION): seconds per fuzzer run (default 60); each set gets
# 3 ioctl runs and 3 guest runs (seeds $FUZZ_SEEDS, default "1 2", plus a fresh
# one). SETS: ours and/or upstream (default both). Other knobs, passed into the
# VM when set: FUZZ_SEEDS FUZZ_FRESH_SEED FUZZ_THREADS FUZZ_GUEST_THREADS
# FUZZ_DIFF_SEEDS FUZZ_DIFF_COUNT FUZZ_MODES. The modules must have been built
# (make). KVM_RS_KERNEL=debug (`make fuzz-debug`) runs on the debug kernel
# (scripts/build-kernel.sh --debug: KASAN, kmemleak, lockdep, UBSAN...) with our
# modules built for it (scripts/build-debug-modules.sh) and the kernel arguments
# of scripts/debug-suite.sh; each set then also ends with tests/vm/dmesg-check.sh's
# check (every report in the kernel log, kmemleak): `PASS/FAIL debug/fuzz-<set>`.
# Exit status: 0 if every fuzz test passed.
# The test VM runs under Debian 12's QEMU 7.2 here (KVM_RS_L0=debian12 unless set):
# Debian unstable's QEMU 11.1, the default emulator, aborts on some hostile
# guests ("bql_lock_impl: assertion failed: (!bql_locked())" after the guest's
# debug registers become its watchpoints), which ends the run for QEMU's sake.
# 7.2 has its own abort ("invalid tss type" on some task switches; README).
set -euo pipefail
export KVM_RS_L0=${KVM_RS_L0:-debian12}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
dur=${DURATION:-60}
if [ $# -gt 0 ] && [ -n "$1" ] && [ -z "${1//[0-9]/}" ]; then
    dur=$1
    shift
fi
sets=${*:-ours upstream}
nsets=$(echo $sets | wc -w)

(cd "$repo" && cargo build --release -p kvm-fuzz >&2)

envs=(--env "FUZZ_SECONDS=$dur")
vmopts=()
if [ "${KVM_RS_KERNEL:-normal}" = debug ]; then
    # As scripts/debug-suite.sh: the debug kernel, our modules built for it in
    # their own copy of the sources (REPO in the VM), its kernel arguments.
    kdir=$("$here/build-kernel.sh" --debug | tail -1)
    moddir=$("$here/build-debug-modules.sh" --kerneldir="$kdir" | tail -1)
    [ -f "$moddir/kvm.ko" ] || { echo "fuzz: no debug modules in '$moddir'" >&2; exit 1; }
    export KBUILD=$kdir
    envs+=(--env "REPO='/host$moddir'" --env FUZZ_DEBUG=1)
    vmopts=(--mem 3G --append "${DEBUG_CMDLINE:-acpi=noirq kasan_multi_shot log_buf_len=8M slub_debug=FZP}")
else
    [ -f "$repo/kvm.ko" ] || echo "fuzz: warning: $repo/kvm.ko missing (build the modules first)" >&2
fi
for v in FUZZ_SEEDS FUZZ_FRESH_SEED FUZZ_THREADS FUZZ_GUEST_THREADS FUZZ_DIFF_SEEDS FUZZ_DIFF_COUNT FUZZ_MODES; do
    # (vm-run.sh writes `export NAME=VALUE` into the job: quote the value.)
    [ -z "${!v:-}" ] || envs+=(--env "$v='${!v}'")
done
nseeds=$(( $(echo ${FUZZ_SEEDS:-1 2} | wc -w) + 1 ))
# Per set: 2 fuzzers x seeds x (duration + start/stop), the diff runs, module loads.
timeout=$(( nsets * (2 * nseeds * (dur + 40) + 400) + 300 ))
# The debug kernel boots, loads modules and tears VMs down several times slower.
[ "${KVM_RS_KERNEL:-normal}" != debug ] || timeout=$(( timeout * 2 + 600 ))
log=$(mktemp /tmp/kvm-rs-fuzz.XXXXXX.log)
set +e
"$here/vm-run.sh" --timeout "$timeout" "${vmopts[@]}" "${envs[@]}" "$repo/tests/vm/fuzz.sh" $sets | tee "$log"
status=${PIPESTATUS[0]}
set -e

passed=$(grep -c '^PASS ' "$log" || true)
failed=$(grep -c '^FAIL ' "$log" || true)
sum() { { grep "^FUZZSTAT $1 $2 " "$log" || true; } | sed -n "s/.* $3=\([0-9]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'; }
echo "== fuzz totals (${dur}s per run; log $log)"
for s in $sets; do
    echo "$s: ioctls $(sum "$s" ioctl ioctls), guest runs $(sum "$s" guest runs), guest exits $(sum "$s" guest exits)"
done
splats=$(grep -c -E '^FAIL .*(kernel log:|kmemleak:)' "$log" || true)
hangs=$(grep -c -E '^FAIL .*(hang|HANG)' "$log" || true)
grep '^FUZZSTAT diff' "$log" || true
echo "splats: $splats, hangs: $hangs"
echo "$passed passed, $failed failed"
if [ "$status" != 0 ]; then
    echo "fuzz: the VM run ended with status $status (124: timeout, 125: the VM died, e.g. an oops with oops=panic; see the log)" >&2
    exit 1
fi
[ "$failed" = 0 ]
