# kvm-intel under Bochs (Skylake-X with VMX): load, /dev/kvm, the API suite, unload,
# for each module set given (default: ours upstream). Runs inside Bochs.
for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    dmesg_mark
    expect vmx/kvm_loads load_kvm
    expect vmx/intel_loads insmod "$MOD_INTEL"
    [ -c /dev/kvm ] && pass vmx/dev_kvm || fail vmx/dev_kvm "no /dev/kvm"
    refuse vmx/amd_refuses_on_intel insmod "$MOD_AMD"
    [ "$(cat /sys/module/kvm_intel/parameters/ept 2>/dev/null)" = Y ] && pass vmx/ept_param_Y || fail vmx/ept_param_Y "ept=$(cat /sys/module/kvm_intel/parameters/ept 2>&1)"
    # Bochs' Skylake-X has VPID and virtual NMIs but no APICv: both module sets read so.
    v=""; for p in vpid vnmi enable_apicv; do v="$v $(cat /sys/module/kvm_intel/parameters/$p 2>&1)"; done
    [ "$v" = " Y Y N" ] && pass vmx/params_effective || fail vmx/params_effective "vpid vnmi enable_apicv:$v"
    # The shared suite (Bochs emulates two CPUs here), less the tests that also
    # hang upstream's kvm-intel under Bochs (a guest spinning while user space
    # waits for a signal: run/signal, run/process, smp/signal, smp/slot,
    # smp/vm_closed) or take minutes of emulated time (200 VMs, 64 vCPUs): those
    # run on SVM in the QEMU test VM. The irqchip tests that exercise the
    # vendor's injection paths run here too (the timer ones run on SVM), and
    # the breakpoint tests, which the SVM test VM's TCG cannot run. Single-step
    # is not (Bochs traps at the first instruction after an entry with TF
    # set, on upstream's modules too). The 2M EPT mappings of THP and
    # hugetlbfs slots run here (non-executable: Bochs's Skylake-X has the
    # iTLB multihit bug, so nx_huge_pages is Y), and a fetch from one; the
    # dirty-logging ones do not (upstream's kvm-intel warns at Bochs's PML
    # entries, which are not page-aligned).
    for t in ${API_FILTERS:-system/ guest/ irq/ vm/ vcpu/ run/imm life/close life/vcpu_ smp/four \
        irqchip/pic_edge irqchip/hlt_blocks irqchip/ioapic_ irqchip/msi_ irqchip/ipi_ irqchip/init_sipi \
        irqchip/mp_state irqchip/lapic_state debug_bp/ client/guest_debug_inject client/coalesced_mmio kvmclock/guest_record \
        tsc/guest_writes emulation/ params/ memory/thp_slot memory/hugetlbfs_slot memory/nx_huge}; do
        hostrun "$TESTBIN/kvm-api-tests" "$t"
    done | sed "s#^\(PASS\|FAIL\|SKIP\) #\1 $MODSET/vmx/#"
    # A failed VM entry (the suite's invalid-CS guest): the hint, or the VMCS
    # with dump_invalid_vmcs=1.
    hostrun "$TESTBIN/kvm-api-tests" guest/fail_entry_invalid_cs > /dev/null
    dmesg | grep -q "set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state" && pass vmx/invalid_entry_hint \
        || fail vmx/invalid_entry_hint "no hint in dmesg"
    echo 1 > /sys/module/kvm_intel/parameters/dump_invalid_vmcs
    hostrun "$TESTBIN/kvm-api-tests" guest/fail_entry_invalid_cs > /dev/null
    echo 0 > /sys/module/kvm_intel/parameters/dump_invalid_vmcs
    dmesg | grep -q "Guest State" && pass vmx/invalid_entry_dump || fail vmx/invalid_entry_dump "no VMCS dump in dmesg"
    expect vmx/rmmod_intel rmmod kvm_intel
    ok=1; for i in 1 2 3 4 5; do insmod "$MOD_INTEL" && rmmod kvm_intel || ok=0; done
    [ $ok = 1 ] && pass vmx/reload_cycles || fail vmx/reload_cycles "reload failed"
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass vmx/dmesg_clean || fail vmx/dmesg_clean "$bad"
    dmesg | grep kvm_intel | head -5
    unload_all
done
exit 0
