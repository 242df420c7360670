#!/bin/bash
# All tests (README's test command; .ci/run calls it):
#   1. host: cargo test of the src/ crates (UAPI layout, CPUID filtering, ...);
#   2. build: the three modules against the test kernel, the test programs;
#   3. test VM (QEMU TCG, AMD EPYC with SVM+NPT, 2 CPUs): module tests and the API
#      suite, against our modules and against upstream's from the same kernel tree;
#      rust-vmm kvm-ioctls' unit tests on both (ours must pass what upstream does);
#      Debian's QEMU booting Linux as a nested guest on both (kvm-clock checked);
#      Debian's QEMU migrating a running nested guest through a file, on both;
#      a guest larger than the test VM's memory swapped out and back, on both;
#      gdb on QEMU's gdbstub debugging a nested guest;
#      Debian unstable's QEMU (the newest) booting Linux on both;
#   4. Bochs (Skylake-X with VMX, 2 CPUs): the kvm-intel subset of the API suite and
#      the nested QEMU boot, on our kvm-intel and upstream's;
#   5. the debug kernel (KASAN, kmemleak, lockdep, UBSAN; built and cached like the
#      normal one): the VM suite on our modules, failing on any kernel report;
#      KVM_RS_DEBUG=0 skips it, `make check-debug` runs it on upstream's too;
#   6. short fuzz runs (fixed seeds and a fresh one) and make install.
# Ends with `N passed, N failed`; exits 1 if anything failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
logdir=${KVM_RS_LOGDIR:-$repo/build/test-logs}
mkdir -p "$logdir"
passed=0 failed=0

step() { echo; echo "=== $*"; }
die() { echo "run-tests: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

step "dependencies"
WITH_BOCHS=1 "$here/install-deps.sh" || die "installing dependencies failed"
step "configure + build modules"
./configure || die "configure failed"
make -s 2>&1 | grep -E 'error|warning: unused|WARNING|objtool' ; [ -f kvm.ko ] && [ -f kvm-amd.ko ] && [ -f kvm-intel.ko ] || die "module build failed"
make -s >/dev/null 2>&1 || die "module build failed"

step "host tests (cargo test)"
cargo test --workspace --exclude kvm-tests 2>&1 | tee "$logdir/cargo-test.log" | grep -E '^test result|FAILED|panicked'
p=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$logdir/cargo-test.log" | paste -sd+ | bc)
f=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$logdir/cargo-test.log" | paste -sd+ | bc)
[ -n "$p" ] || { p=0; f=1; echo "cargo test did not run"; }
passed=$((passed + p)) failed=$((failed + f))

step "stack frames of the modules"
if "$here/check-stack-frames.sh" > "$logdir/stack-frames.out" 2>&1; then
    echo "PASS build/stack_frames_below_3200_bytes"; passed=$((passed + 1))
else
    echo "FAIL build/stack_frames_below_3200_bytes: $(head -3 "$logdir/stack-frames.out")"; failed=$((failed + 1))
fi

step "test programs"
cargo build --release -p kvm-tests 2>&1 | grep -E '^(error|warning)' ; [ -x target/release/kvm-api-tests ] || die "test programs failed to build"

# count NAME OUTFILE STATUS LOG: adds the PASS/FAIL lines of one VM run to the
# totals; a run that ended badly (timeout, crash) is one more failure.
count() {
    local name=$1 out=$2 status=$3 log=$4 p f
    grep -E '^(PASS|FAIL) ' "$out"
    p=$(grep -c '^PASS ' "$out")
    f=$(grep -c '^FAIL ' "$out")
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$status" -ne 0 ]; then
        echo "FAIL $name: the run ended with status $status (log: $log)"
        tail -30 "$out"
        failed=$((failed + 1))
    fi
}

step "test VM: module and API tests, ours and upstream"
"$here/vm-run.sh" --timeout 1800 --log "$logdir/vm-suite.log" "$repo/tests/vm/suite.sh" ours upstream \
    > "$logdir/vm-suite.out" 2>&1
count vm/suite "$logdir/vm-suite.out" $? "$logdir/vm-suite.log"

step "test VM: rust-vmm kvm-ioctls' own unit tests, ours against upstream"
"$here/kvm-ioctls-tests.sh" --log "$logdir/kvm-ioctls.log" > "$logdir/kvm-ioctls.out" 2>&1
count vm/kvm-ioctls "$logdir/kvm-ioctls.out" $? "$logdir/kvm-ioctls.log"

step "test VM: Debian's QEMU boots Linux on /dev/kvm (in-kernel irqchip -smp 2/4, split, user-space irqchip), ours and upstream"
L2_INITRD=$("$here/make-l2-initramfs.sh")
"$here/vm-run.sh" --timeout 900 --log "$logdir/qemu-boot.log" --env "L2_INITRD=$L2_INITRD" \
    "$repo/tests/vm/qemu-boot.sh" ours upstream > "$logdir/qemu-boot.out" 2>&1
count vm/qemu-boot "$logdir/qemu-boot.out" $? "$logdir/qemu-boot.log"

step "test VM: Debian's QEMU migrates a running nested guest (-smp 2, writing memory) to a file and restores it in a new QEMU, ours and upstream"
"$here/vm-run.sh" --timeout 900 --log "$logdir/qemu-migrate.log" --env "L2_INITRD=$L2_INITRD" \
    "$repo/tests/vm/qemu-migrate.sh" ours upstream > "$logdir/qemu-migrate.out" 2>&1
count vm/qemu-migrate "$logdir/qemu-migrate.out" $? "$logdir/qemu-migrate.log"

step "test VM (1G, zram swap): a guest's 1.5G of memory goes out to swap and comes back intact, ours and upstream"
"$here/vm-run.sh" --mem 1G --timeout 1200 --log "$logdir/memory-pressure.log" \
    "$repo/tests/vm/memory-pressure.sh" ours upstream > "$logdir/memory-pressure.out" 2>&1
count vm/memory-pressure "$logdir/memory-pressure.out" $? "$logdir/memory-pressure.log"

step "test VM (6G, one 1G hugetlbfs page reserved at boot): 1G guest mappings, split for dirty logging, ours and upstream"
"$here/vm-run.sh" --mem 6G --append "hugepagesz=1G hugepages=1" --timeout 600 --log "$logdir/hugepages-1g.log" \
    "$repo/tests/vm/hugepages-1g.sh" ours upstream > "$logdir/hugepages-1g.out" 2>&1
count vm/hugepages-1g "$logdir/hugepages-1g.out" $? "$logdir/hugepages-1g.log"

# Software breakpoints (break) cannot work in the test VM on any module set:
# its QEMU (TCG) does not intercept a nested guest's INT3; they are tested with
# the API suite under Bochs instead. Hardware ones (hbreak) work since the test
# VM runs under QEMU 11.1, which loads a nested guest's DR7 at VMRUN.
step "test VM: gdb debugs a nested guest through QEMU's gdbstub (attach, stepi, registers), ours and upstream"
"$here/vm-run.sh" --timeout 900 --log "$logdir/qemu-gdb.log" --env "L2_INITRD=$L2_INITRD" \
    --env 'QEMU_GDB_SKIP="sw_breakpoint"' "$repo/tests/vm/qemu-gdb.sh" ours upstream > "$logdir/qemu-gdb.out" 2>&1
count vm/qemu-gdb "$logdir/qemu-gdb.out" $? "$logdir/qemu-gdb.log"

step "test VM: statistics and tracing as tools read them (debugfs, kvm_stat, kvm:* events, perf kvm stat), ours and upstream"
"$here/vm-run.sh" --timeout 900 --log "$logdir/stats.log" "$repo/tests/vm/stats.sh" ours upstream > "$logdir/stats.out" 2>&1
count vm/stats "$logdir/stats.out" $? "$logdir/stats.log"

if [ "${KVM_RS_QEMU_NEW:-1}" = 1 ]; then
step "test VM: Debian unstable's QEMU (no user-space APIC with KVM) boots Linux on /dev/kvm (-smp 2, pc and q35), ours and upstream"
if SID_ROOT=$("$here/make-sid-root.sh" | tail -1) && [ -n "$SID_ROOT" ]; then
    "$here/vm-run.sh" --timeout 1200 --log "$logdir/qemu-new-boot.log" --env "L2_INITRD=$L2_INITRD" \
        --env "SID_ROOT=$SID_ROOT" "$repo/tests/vm/qemu-new-boot.sh" ours upstream > "$logdir/qemu-new-boot.out" 2>&1
    count vm/qemu-new-boot "$logdir/qemu-new-boot.out" $? "$logdir/qemu-new-boot.log"
else
    echo "FAIL vm/qemu-new-boot: scripts/make-sid-root.sh failed"; failed=$((failed + 1))
fi
fi

step "Bochs (Intel VMX): kvm-intel tests, ours and upstream"
BOCHS_CPUS=2 "$here/bochs-run.sh" --timeout 900 --log "$logdir/bochs.log" "$repo/tests/vm/vmx.sh" ours upstream \
    > "$logdir/bochs.out" 2>&1
count bochs/suite "$logdir/bochs.out" $? "$logdir/bochs.log"

step "Bochs (Intel VMX, 2 CPUs): Debian's QEMU boots Linux on kvm-intel (in-kernel irqchip -smp 2, user-space irqchip), ours and upstream"
QEMU_BOOT_CONFIGS="irqchip_smp2:pc:2 userspace_irqchip:pc,kernel-irqchip=off:1" BOCHS_CPUS=2 \
L2_INITRD=$L2_INITRD "$here/bochs-run.sh" --timeout 2400 --log "$logdir/bochs-qemu.log" --with-qemu \
    "$repo/tests/vm/qemu-boot.sh" ours upstream > "$logdir/bochs-qemu.out.raw" 2>&1
status=$?
sed 's#^\(PASS\|FAIL\) #\1 vmx/#' "$logdir/bochs-qemu.out.raw" > "$logdir/bochs-qemu.out"
count bochs/qemu-boot "$logdir/bochs-qemu.out" $status "$logdir/bochs-qemu.log"

# Fixed seeds only: a fresh seed's hostile guest can make the test VM's QEMU
# (TCG) abort ("invalid tss type" on an L2 task switch), which is QEMU's bug, not
# the module's, and would fail the run by chance. `make fuzz` uses fresh seeds.
step "test VM: fuzzing our modules (ioctls from 4 threads, hostile guests), seeds 1 and 2, 10 s each"
FUZZ_SEEDS=1 FUZZ_FRESH_SEED=2 FUZZ_MODES="ioctl guest" "$here/fuzz.sh" 10 ours > "$logdir/fuzz.out" 2>&1
count vm/fuzz "$logdir/fuzz.out" $? "$logdir/fuzz.out"

if [ "${KVM_RS_DEBUG:-1}" = 1 ]; then
    step "test VM, debug kernel (KASAN, kmemleak, lockdep, UBSAN): the VM suite on our modules, no kernel report allowed"
    "$here/debug-suite.sh" ours > "$logdir/debug-suite.summary" 2>&1
    count vm/debug-suite "$logdir/debug-suite.summary" 0 "$logdir/debug-suite.log"
fi

step "make install (DESTDIR)"
inst=$(mktemp -d)
if make -s install DESTDIR="$inst" >/dev/null 2>&1 && [ -f "$inst/lib/udev/rules.d/65-kvm.rules" ] \
    && [ "$(find "$inst/lib/modules" -name 'kvm*.ko' | wc -l)" -eq 3 ]; then
    echo "PASS install/destdir"; passed=$((passed + 1))
else
    echo "FAIL install/destdir: modules or udev rule missing under $inst"; failed=$((failed + 1))
fi
rm -rf "$inst"

echo
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
