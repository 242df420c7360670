#!/bin/bash
# The in-VM suite (tests/vm/suite.sh: module tests + API suite, as run-tests.sh runs
# it) and Debian's QEMU booting Linux as a nested guest (tests/vm/qemu-boot.sh,
# in-kernel and split irqchip, -smp 2; the L2 kernel is the normal test kernel)
# and migrating a running one (tests/vm/qemu-migrate.sh)
# on the debug test kernel (KASAN, kmemleak, lockdep, UBSAN, debug objects,
# SLUB debug, Rust debug assertions), for our modules built against it
# (scripts/build-debug-modules.sh) and upstream's from its tree. After each module
# set, tests/vm/dmesg-check.sh's debug_check prints `PASS debug/<set>` or
# `FAIL debug/<set>: ...` with the kernel's reports (anything in the kernel log
# during that set, including what the tests cleared with `dmesg -c`, and kmemleak).
#
#   scripts/debug-suite.sh [--timeout S] [SET...]      (default sets: ours upstream)
# Prints the PASS/FAIL lines, then `N passed, N failed`; exits 1 if anything
# failed. Logs: ${KVM_RS_LOGDIR:-<repo>/build/test-logs}/debug-suite.{out,log}.
# Extra kernel arguments: DEBUG_CMDLINE (default below). LIFECYCLE_CYCLES=N adds
# tests/vm/lifecycle.sh's N load/unload cycles per set (e.g. 1000). The test programs
# (target/release) come from the repository: built with cargo if missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
timeout=5400
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) echo "debug-suite: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
sets=${*:-ours upstream}
logdir=${KVM_RS_LOGDIR:-$repo/build/test-logs}
mkdir -p "$logdir"
die() { echo "FAIL debug/setup: $*"; echo "0 passed, 1 failed"; exit 1; }

# acpi=noirq: PCI interrupts from the MP table; on this kernel, ACPICA's loop in
# QEMU's \_SB.PCI0._PRT hits AE_AML_LOOP_TIMEOUT (30 s), leaving the virtio
# devices without an interrupt and 9p hung. kasan_multi_shot: every KASAN report, not just the first of the boot;
# log_buf_len: room for the reports; slub_debug: sanity checks, red zones and
# poisoning of every slab cache on top of KASAN (catches writes KASAN cannot see,
# e.g. by the CPU into a freed VMCB).
cmdline=${DEBUG_CMDLINE:-acpi=noirq kasan_multi_shot log_buf_len=8M slub_debug=FZP}

kdir=$("$here/build-kernel.sh" --debug | tail -1) || die "building the debug kernel failed"
[ -f "$kdir/.built" ] || die "no debug kernel"
moddir=$("$here/build-debug-modules.sh" --kerneldir="$kdir" | tail -1) || die "building our modules for the debug kernel failed"
[ -f "$moddir/kvm.ko" ] || die "no modules in '$moddir'"
l2_kdir=$("$here/build-kernel.sh" | tail -1) || die "building the normal test kernel (the nested guest's) failed"
l2_initrd=$("$here/make-l2-initramfs.sh" | tail -1) || die "building the nested guest's initramfs failed"
if [ ! -x "$repo/target/release/kvm-api-tests" ] || [ ! -x "$repo/target/release/kvm-lifecycle" ]; then
    (cd "$repo" && cargo build --release -p kvm-tests) >&2 || die "test programs failed to build"
fi

# The job: REPO points at the copy the modules were built in (lib.sh takes ours from
# $REPO/*.ko; tests/vm there is the copy of the repository's), HOST_REPO stays the
# repository (lib.sh's test binaries: $HOST_REPO/target/release).
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
mkdir -p "$cache/jobs"
wrapper=$(mktemp "$cache/jobs/debug-suite.XXXXXX")
trap 'rm -f "$wrapper"' EXIT
cat > "$wrapper" <<'EOF'
. "$REPO/tests/vm/dmesg-check.sh"
for set in "$@"; do
    debug_begin
    ( set -- "$set"; . "$REPO/tests/vm/suite.sh" )
    # Debian's QEMU boots Linux as a nested guest (the normal test kernel as
    # L2: the debug one would take minutes), in-kernel and split irqchip.
    ( HOST_KBUILD=$L2_KBUILD; QEMU_BOOT_CONFIGS="smp2:pc:2 split:pc,kernel-irqchip=split:2"
      set -- "$set"; . "$REPO/tests/vm/qemu-boot.sh" )
    # A running nested guest migrated through a file and restored.
    # Bitmaps only: QEMU 7.2's dirty-ring reaper races with the debug
    # kernel's slow vCPU creation (see qemu-migrate.sh).
    ( HOST_KBUILD=$L2_KBUILD; MIGRATE_MODES=bitmap; set -- "$set"; . "$REPO/tests/vm/qemu-migrate.sh" )
    debug_check "debug/$set"
done
exit 0
EOF
chmod 644 "$wrapper"

out="$logdir/debug-suite.out" log="$logdir/debug-suite.log"
start=$(date +%s)
# shellcheck disable=SC2086
KBUILD=$kdir "$here/vm-run.sh" --timeout "$timeout" --mem 3G --log "$log" \
    --append "$cmdline" --env "REPO='/host$moddir'" --env "LIFECYCLE_CYCLES=${LIFECYCLE_CYCLES:-0}" \
    --env "L2_KBUILD='$l2_kdir'" --env "L2_INITRD='$l2_initrd'" \
    "$wrapper" $sets > "$out" 2>&1
status=$?
secs=$(( $(date +%s) - start ))
# The PASS/FAIL lines, and the kernel's reports under a FAIL debug/... line.
awk '/^(PASS|FAIL) / { print; rep = /^FAIL debug\// ; next } rep && /^    / { print; next } { rep = 0 }' "$out"
passed=$(grep -c '^PASS ' "$out")
failed=$(grep -c '^FAIL ' "$out")
if [ "$status" -ne 0 ]; then
    echo "FAIL debug/run: the run ended with status $status (log: $log)"
    tail -30 "$out"
    failed=$((failed + 1))
fi
echo "debug-suite: ${secs}s on $kdir" >&2
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
