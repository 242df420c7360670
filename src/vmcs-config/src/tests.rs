use super::*;

/// Intel Core i7-6700 (Skylake client), as `rdmsr` reports it on bare metal.
fn skylake() -> CapabilityMsrs {
    CapabilityMsrs {
        basic: 0x00da_0400_0000_0004,
        pinbased: 0x0000_007f_0000_0016,
        procbased: 0xfff9_fffe_0401_e172,
        exit: 0x01ff_ffff_0003_6dff,
        entry: 0x0003_ffff_0000_11ff,
        misc: 0x0000_0000_7004_c1e7,
        cr0_fixed0: 0x8000_0021,
        cr0_fixed1: 0xffff_ffff,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x0037_27ff,
        procbased2: 0x001f_fcff_0000_0000,
        ept_vpid_cap: 0x0000_0f01_0673_4141,
    }
}

/// Intel Core i7-8700 (Coffee Lake, CPUID 0x906ea), as VirtualBox logged it on
/// bare metal: the Skylake values but for the secondary controls (EPT-violation
/// #VE, mode-based EPT, PT/EPT bits); TRUE_PROCBASED_CTLS 0xfff9fffe04006172.
fn coffee_lake() -> CapabilityMsrs {
    CapabilityMsrs { procbased2: 0x005f_bcff_0000_0000, ..skylake() }
}

/// Intel Core i7-3770 class (Ivy Bridge, CPUID 0x306a9), as VirtualBox logged
/// it on bare metal: VMCS revision 0x10, no PML/VMCS shadowing, EPT without A/D
/// bits or 1G pages; TRUE_PROCBASED_CTLS 0xfff9fffe04006172.
fn ivy_bridge() -> CapabilityMsrs {
    CapabilityMsrs {
        basic: 0x00da_0400_0000_0010,
        pinbased: 0x0000_007f_0000_0016,
        procbased: 0xfff9_fffe_0401_e172,
        exit: 0x007f_ffff_0003_6dff,
        entry: 0x0000_ffff_0000_11ff,
        misc: 0x0000_0000_1004_01e5,
        cr0_fixed0: 0x8000_0021,
        cr0_fixed1: 0xffff_ffff,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x0017_67ff,
        procbased2: 0x0000_08ff_0000_0000,
        ept_vpid_cap: 0x0000_0f01_0611_4141,
    }
}

/// TRUE_PROCBASED_CTLS of all three parts above.
const TRUE_PROCBASED: u64 = 0xfff9_fffe_0400_6172;

#[test]
fn real_cpus_get_ept_vpid_unrestricted_guest() {
    for (name, m, rev) in [("skylake", skylake(), 4), ("coffee lake", coffee_lake(), 4), ("ivy bridge", ivy_bridge(), 0x10)] {
        let c = setup_vmcs_config(&m).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!((c.revision_id, c.vmcs_size), (rev, 0x400), "{name}");
        assert_eq!(c.cpu_based & REQUIRED_CPU_BASED, REQUIRED_CPU_BASED, "{name}");
        assert_eq!(c.pin_based, 0x16 | REQUIRED_PIN_BASED | PIN_BASED_VIRTUAL_NMIS, "{name}");
        for bit in [SECONDARY_EXEC_ENABLE_EPT, SECONDARY_EXEC_ENABLE_VPID, SECONDARY_EXEC_UNRESTRICTED_GUEST] {
            assert_ne!(c.cpu_based_2nd & bit, 0, "{name}: {bit:#x}");
        }
        assert!(c.vpid, "{name}");
        assert_eq!(c.ept_vpid_cap & VPID_CAP_INVVPID_SINGLE, VPID_CAP_INVVPID_SINGLE, "{name}");
        let efer = VM_EXIT_SAVE_IA32_EFER | VM_EXIT_LOAD_IA32_EFER;
        assert_eq!(c.vmexit & efer, efer, "{name}");
        assert_ne!(c.vmentry & VM_ENTRY_LOAD_IA32_EFER, 0, "{name}");
        // The CR0/CR4 a guest runs with: its own plus NE (CR0) and VMXE (CR4).
        assert!(fixed_bits_ok(0x8000_0031, m.cr0_fixed0, m.cr0_fixed1), "{name}");
        assert!(fixed_bits_ok(0x2020, m.cr4_fixed0, m.cr4_fixed1), "{name}");
    }
}

#[test]
fn entry_controls_drop_the_exits_ept_makes_unneeded() {
    for m in [skylake(), coffee_lake(), ivy_bridge()] {
        let c = setup_vmcs_config(&m).unwrap();
        let true_must1 = TRUE_PROCBASED as u32;
        let ctl = entry_cpu_based(&c, true_must1, false, false);
        // The TRUE MSR lets CR3 load/store exiting be 0 (bits 15, 16): EPT guests
        // load CR3 without an exit; INVLPG too.
        let gone = CPU_BASED_CR3_LOAD_EXITING | CPU_BASED_CR3_STORE_EXITING | CPU_BASED_INVLPG_EXITING;
        assert_eq!(ctl & gone, 0);
        assert_eq!(ctl & true_must1, true_must1);
        // Still exits on HLT, I/O, MOV DR, CR8, and uses the MSR bitmap.
        for bit in [CPU_BASED_HLT_EXITING, CPU_BASED_UNCOND_IO_EXITING, CPU_BASED_MOV_DR_EXITING,
                    CPU_BASED_CR8_LOAD_EXITING, CPU_BASED_USE_MSR_BITMAPS] {
            assert_ne!(ctl & bit, 0, "{bit:#x}");
        }
        assert_eq!(ctl & (CPU_BASED_INTR_WINDOW_EXITING | CPU_BASED_NMI_WINDOW_EXITING), 0);
        let windows = entry_cpu_based(&c, true_must1, true, true);
        assert_eq!(windows & CPU_BASED_INTR_WINDOW_EXITING, CPU_BASED_INTR_WINDOW_EXITING);
        assert_eq!(windows & CPU_BASED_NMI_WINDOW_EXITING, CPU_BASED_NMI_WINDOW_EXITING);
        // Without the TRUE MSR the default-1 bits (CR3 exiting) stay set.
        let legacy = entry_cpu_based(&c, m.procbased as u32, false, false);
        assert_eq!(legacy & gone & !CPU_BASED_INVLPG_EXITING, CPU_BASED_CR3_LOAD_EXITING | CPU_BASED_CR3_STORE_EXITING);
    }
}

#[test]
fn no_efer_switch_refused() {
    let mut m = ivy_bridge();
    m.entry &= !((VM_ENTRY_LOAD_IA32_EFER as u64) << 32);
    m.exit &= !((VM_EXIT_LOAD_IA32_EFER as u64) << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::NoEferSwitch));
}

#[test]
fn skylake_gets_everything_it_needs() {
    let c = setup_vmcs_config(&skylake()).expect("usable");
    assert_eq!(c.revision_id, 4);
    assert_eq!(c.vmcs_size, 0x400);
    assert_eq!(c.cpu_based & REQUIRED_CPU_BASED, REQUIRED_CPU_BASED);
    assert_ne!(c.cpu_based & CPU_BASED_USE_MSR_BITMAPS, 0);
    assert_ne!(c.cpu_based & CPU_BASED_ACTIVATE_SECONDARY_CONTROLS, 0);
    // Must-be-one bits of the MSR are set even though not requested (bit 1, 4-6...).
    assert_eq!(c.cpu_based & 0x0401_e172, 0x0401_e172);
    for bit in [SECONDARY_EXEC_ENABLE_EPT, SECONDARY_EXEC_ENABLE_VPID, SECONDARY_EXEC_UNRESTRICTED_GUEST] {
        assert_ne!(c.cpu_based_2nd & bit, 0, "{bit:#x}");
    }
    // Not requested, so not set although allowed.
    assert_eq!(c.cpu_based_2nd & SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES, 0);
    assert_eq!(c.cpu_based & CPU_BASED_TPR_SHADOW, 0);
    assert!(c.vpid);
    assert_eq!(c.pin_based, 0x16 | REQUIRED_PIN_BASED | PIN_BASED_VIRTUAL_NMIS);
    assert_ne!(c.vmexit & VM_EXIT_LOAD_IA32_EFER, 0);
    assert_ne!(c.vmentry & VM_ENTRY_LOAD_IA32_EFER, 0);
}

#[test]
fn adjust_controls_follows_the_sdm() {
    // allowed-1 = 0xf0, must-be-1 = 0x01.
    let cap = 0x0000_00f0_0000_0001u64;
    assert_eq!(adjust_controls(0x10, 0x0f, cap, "t"), Ok(0x11));
    assert_eq!(adjust_controls(0x02, 0, cap, "t"), Err(ConfigError::MissingRequired("t")));
}

#[test]
fn no_secondary_controls_means_no_ept() {
    let mut m = skylake();
    m.procbased &= !((CPU_BASED_ACTIVATE_SECONDARY_CONTROLS as u64) << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::NoEpt));
}

#[test]
fn no_unrestricted_guest_refused() {
    // A Nehalem-like part: EPT and VPID but no unrestricted guest.
    let mut m = skylake();
    m.procbased2 &= !((SECONDARY_EXEC_UNRESTRICTED_GUEST as u64) << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::NoUnrestrictedGuest));
}

#[test]
fn missing_required_hlt_exiting() {
    let mut m = skylake();
    m.procbased &= !((CPU_BASED_HLT_EXITING as u64) << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::MissingRequired("primary processor-based")));
}

#[test]
fn vpid_without_invvpid_is_dropped() {
    let mut m = skylake();
    m.ept_vpid_cap &= !VPID_CAP_INVVPID;
    let c = setup_vmcs_config(&m).unwrap();
    assert!(!c.vpid);
    assert_eq!(c.cpu_based_2nd & SECONDARY_EXEC_ENABLE_VPID, 0);
}

#[test]
fn ept_without_wb_is_unusable() {
    let mut m = skylake();
    m.ept_vpid_cap &= !EPT_CAP_WB;
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::EptUnusable));
}

#[test]
fn basic_msr_checks() {
    let mut m = skylake();
    m.basic |= VMX_BASIC_32BIT_PHYS_ADDR_ONLY;
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::Only32BitAddresses));
    let mut m = skylake();
    m.basic = (m.basic & !(0x1fff << 32)) | (0x1001 << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::VmcsTooLarge));
    let mut m = skylake();
    m.basic &= !(0xf << 50);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::VmcsNotWriteBack));
}

#[test]
fn entry_exit_pairs_must_match() {
    let mut m = skylake();
    m.exit &= !((VM_EXIT_LOAD_IA32_EFER as u64) << 32);
    assert_eq!(setup_vmcs_config(&m), Err(ConfigError::InconsistentEntryExit));
}

#[test]
fn cr_fixed_bits() {
    let m = skylake();
    // PE|NE|PG is the least CR0 VMX allows without unrestricted guest.
    assert!(fixed_bits_ok(0x8000_0031, m.cr0_fixed0, m.cr0_fixed1));
    assert!(!fixed_bits_ok(0x31, m.cr0_fixed0, m.cr0_fixed1));
    assert!(fixed_bits_ok(0x2020, m.cr4_fixed0, m.cr4_fixed1));
    assert!(!fixed_bits_ok(0x20, m.cr4_fixed0, m.cr4_fixed1));
}
