# Statistics and tracing as tools read them (issue #12), for each module set
# given (runs inside the test VM; the same checks on ours and upstream's):
#   debugfs_files      /sys/kernel/debug/kvm has every upstream VM and vCPU stat
#   debugfs_vm_dir     a running VM has <pid>-<fd>/ with exits, io_exits,
#                      mmio_exits > 0 and pages_4k > 0, and vcpu0/ with pid,
#                      guest_mode, tsc-offset; the top files sum them; the
#                      directory goes with the VM
#   kvm_stat_debugfs   tools/kvm/kvm_stat (kernel source, python3) -1 -d shows
#                      exits, io_exits, mmio_exits moving for a running guest
#   trace_formats      events/kvm/{kvm_entry,kvm_exit,...} exist with upstream's
#                      fields (exit_reason, isa, vcpu_id... as perf reads them)
#   trace_buffer       with kvm_entry/exit/pio/mmio/cpuid/msr enabled, a guest of
#                      20 iterations leaves the expected lines in the buffer
#   kvm_stat_tracepoints  kvm_stat -1 -t counts kvm_exit(IOIO), kvm_pio...
#   perf_kvm_stat      perf kvm stat record -a -- guest; perf kvm stat report
#                      shows the guest's io, npf (MMIO), cpuid and msr exits
#   unload_removes     after rmmod: no /sys/kernel/debug/kvm, no events/kvm
#   dmesg_clean
# The guest is target/release/kvm-stat-guest (tests/kvm-tests/src/bin).
: "${KBUILD:?}"
. "$REPO/tests/vm/lib.sh"    # TESTBIN, hostrun (again per module set below)
KSRC=$(dirname "$HOST_KBUILD")/src/linux-source-6.12
KVM_STAT="python3 $KSRC/tools/kvm/kvm_stat/kvm_stat"

mount_fs() {
    for root in "" /host; do
        # (Already mounted for the second module set: mount then says busy.)
        mount -t debugfs none $root/sys/kernel/debug 2>/dev/null
        mount -t tracefs none $root/sys/kernel/tracing 2>/dev/null
    done
}

VM_STATS="remote_tlb_flush remote_tlb_flush_requests mmu_shadow_zapped mmu_pte_write mmu_pde_zapped
mmu_flooded mmu_recycled mmu_cache_miss mmu_unsync pages_4k pages_2m pages_1g nx_lpage_splits
max_mmu_rmap_size max_mmu_page_hash_collisions"
VCPU_STATS="halt_successful_poll halt_attempted_poll halt_poll_invalid halt_wakeup halt_poll_success_ns
halt_poll_fail_ns halt_wait_ns halt_poll_success_hist halt_poll_fail_hist halt_wait_hist blocking
pf_taken pf_fixed pf_emulate pf_spurious pf_fast pf_mmio_spte_created pf_guest tlb_flush invlpg
exits io_exits mmio_exits signal_exits irq_window_exits nmi_window_exits l1d_flush halt_exits
request_irq_exits irq_exits host_state_reload fpu_reload insn_emulation insn_emulation_fail
hypercalls irq_injections nmi_injections req_event nested_run directed_yield_attempted
directed_yield_successful preemption_reported preemption_other guest_mode notify_window_exits"
D=/sys/kernel/debug/kvm
T=/sys/kernel/tracing
GUEST=$TESTBIN/kvm-stat-guest

# The value of kvm_stat's batch line for KEY (column 2), or empty.
stat_col() { awk -v k="$1" '$1 == k { print $2; exit }' "$2"; }

check_debugfs() {
    missing=""
    for s in $VM_STATS $VCPU_STATS; do [ -f $D/$s ] || missing="$missing $s"; done
    [ -z "$missing" ] && pass stats/debugfs_files || fail stats/debugfs_files "missing:$missing"

    # Read python and kvm_stat over 9p once before a guest is timed.
    hostrun $KVM_STAT --help > /dev/null 2>&1
    # chroot execs the guest, so $! is the guest (a function would be a subshell).
    chroot /host "$GUEST" 0 300 > /tmp/guest.out 2>&1 &
    gpid=$!
    sleep 3
    # The chroot'ed guest's pid as the VM sees it is the same (one pid namespace).
    dir=$(ls -d $D/[0-9]*-* 2>/dev/null | head -1)
    why=""
    if [ -z "$dir" ]; then why="no <pid>-<fd> directory under $D"
    else
        for s in exits io_exits mmio_exits pages_4k; do
            v=$(cat $dir/$s 2>/dev/null)
            [ "${v:-0}" -gt 0 ] || why="$why $s=${v:-missing}"
        done
        vm_exits=$(cat $dir/exits); top_exits=$(cat $D/exits)
        [ "$top_exits" -ge "$vm_exits" ] || why="$why top exits $top_exits < the VM's $vm_exits"
        # vcpu0/: pid (the thread in KVM_RUN: the guest program's only one),
        # guest_mode 0, tsc-offset.
        p=$(cat $dir/vcpu0/pid 2>/dev/null)
        [ "$p" = "$gpid" ] || why="$why vcpu0/pid=${p:-missing} (guest $gpid)"
        [ "$(cat $dir/vcpu0/guest_mode 2>/dev/null)" = 0 ] || why="$why vcpu0/guest_mode not 0"
        [ -f $dir/vcpu0/tsc-offset ] || why="$why no vcpu0/tsc-offset"
    fi
    # kvm_stat in debugfs mode, one sample over one second, while the guest runs.
    hostrun $KVM_STAT -1 -d > /tmp/kvm_stat_d.out 2>&1
    kill $gpid 2>/dev/null; wait $gpid; sleep 1
    [ -z "$why" ] && [ -z "$dir" -o ! -d "$dir" ] && pass stats/debugfs_vm_dir \
        || fail stats/debugfs_vm_dir "${why:-directory $dir left after the VM exited}"
    why=""
    for s in exits io_exits mmio_exits insn_emulation; do
        v=$(stat_col $s /tmp/kvm_stat_d.out)
        [ "${v:-0}" -gt 0 ] || why="$why $s=${v:-missing}"
    done
    [ -z "$why" ] && pass stats/kvm_stat_debugfs || fail stats/kvm_stat_debugfs "$why; output: $(head -c 1500 /tmp/kvm_stat_d.out)"
}

check_trace() {
    why=""
    for e in kvm_entry kvm_exit kvm_pio kvm_mmio kvm_msr kvm_cpuid kvm_cr kvm_inj_virq kvm_page_fault; do
        [ -f $T/events/kvm/$e/format ] || why="$why no $e"
    done
    f() { grep -q "field:$2 $3;" $T/events/kvm/$1/format || why="$why $1.$3"; }
    f kvm_exit "unsigned int" exit_reason; f kvm_exit "u32" isa; f kvm_exit "unsigned long" guest_rip
    f kvm_exit "u64" info1; f kvm_exit "u64" info2; f kvm_exit "u32" intr_info; f kvm_exit "u32" error_code
    f kvm_exit "unsigned int" vcpu_id; f kvm_entry "unsigned int" vcpu_id; f kvm_entry "unsigned long" rip
    f kvm_pio "unsigned int" port; f kvm_pio "unsigned int" val; f kvm_mmio "u64" gpa; f kvm_mmio "u32" type
    f kvm_msr "u32" ecx; f kvm_msr "u64" data; f kvm_cpuid "unsigned int" function; f kvm_cr "unsigned int" cr
    f kvm_inj_virq "unsigned int" vector; f kvm_page_fault "u64" fault_address
    [ -z "$why" ] && pass stats/trace_formats || fail stats/trace_formats "$why"

    echo 0 > $T/tracing_on; echo > $T/trace
    for e in kvm_entry kvm_exit kvm_pio kvm_mmio kvm_cpuid kvm_msr; do echo 1 > $T/events/kvm/$e/enable; done
    echo 1 > $T/tracing_on
    out=$(hostrun "$GUEST" 20 2>&1)
    echo 0 > $T/tracing_on
    for e in kvm_entry kvm_exit kvm_pio kvm_mmio kvm_cpuid kvm_msr; do echo 0 > $T/events/kvm/$e/enable; done
    cat $T/trace > /tmp/trace.out
    why=""
    c() { n=$(grep -c -E "$2" /tmp/trace.out); [ "$n" -ge "$1" ] || why="$why '$2' x$n (want >= $1)"; }
    c 20 'kvm_pio: pio_write at 0x10 size 1 count 1'
    c 19 'kvm_mmio: mmio write len 1 gpa 0xd0000000'
    c 19 'kvm_cpuid: func 0 idx '
    c 19 'kvm_msr: msr_read 2ff = 0x'
    c 19 'kvm_msr: msr_write 2ff = 0x'
    c 20 'kvm_exit: vcpu 0 reason io '
    c 19 'kvm_exit: vcpu 0 reason npf '
    c 19 'kvm_exit: vcpu 0 reason cpuid '
    c 38 'kvm_exit: vcpu 0 reason msr '
    c 55 'kvm_entry: vcpu 0, rip 0x'
    [ -z "$why" ] && pass stats/trace_buffer || fail stats/trace_buffer "guest: $out;$why; trace: $(grep -m 12 kvm_ /tmp/trace.out)"
    echo > $T/trace

    chroot /host "$GUEST" 0 300 > /tmp/guest.out 2>&1 &
    gpid=$!
    sleep 2
    hostrun $KVM_STAT -1 -t > /tmp/kvm_stat_t.out 2>&1
    kill $gpid 2>/dev/null; wait $gpid
    why=""
    for s in kvm_pio kvm_mmio kvm_msr kvm_cpuid kvm_entry kvm_exit; do
        v=$(stat_col "$s" /tmp/kvm_stat_t.out)
        [ "${v:-0}" -gt 0 ] || why="$why $s=${v:-missing}"
    done
    [ -z "$why" ] && pass stats/kvm_stat_tracepoints || fail stats/kvm_stat_tracepoints "$why; output: $(head -c 1500 /tmp/kvm_stat_t.out)"

    # perf kvm stat (Debian's perf 6.1 of the host): record every CPU while the
    # guest does 300 port writes, then the exit-reason table.
    # (perf.data.kvm in the current directory is perf kvm stat's default file.)
    rm -f /host/tmp/perf.data.kvm
    hostrun sh -c "cd /tmp && perf kvm stat record -a -- $GUEST 300" > /tmp/perf-record.out 2>&1
    hostrun sh -c "cd /tmp && perf kvm stat report" > /tmp/perf-report.out 2>&1
    # perf pairs each kvm_exit with the next kvm_entry: the last exit (the
    # 300th OUT, after which the guest is not entered again) has none.
    why=""
    for r in io:299 npf:299 cpuid:299 msr:598; do
        n=$(awk -v k="${r%:*}" '$1 == k { print $2; exit }' /tmp/perf-report.out)
        [ "${n:-0}" -ge "${r#*:}" ] || why="$why ${r%:*}=${n:-none} (want >= ${r#*:})"
    done
    if [ -z "$why" ]; then pass stats/perf_kvm_stat
    else fail stats/perf_kvm_stat "$why; record: $(tail -c 600 /tmp/perf-record.out); report: $(head -c 1500 /tmp/perf-report.out)"; fi
}

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail stats/load "cannot load $MODSET"; continue; }
    mount_fs
    dmesg_mark
    check_debugfs
    check_trace
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass stats/dmesg_clean || fail stats/dmesg_clean "$bad"
    unload_all
    why=""
    [ -e $D ] && why="$D still there"
    [ -e $T/events/kvm ] && why="$why $T/events/kvm still there"
    [ -z "$why" ] && pass stats/unload_removes || fail stats/unload_removes "$why"
done
exit 0
