//! The VMCS configuration of kvm-intel: which VM-execution, VM-exit and VM-entry
//! controls to use, computed from the VMX capability MSRs as upstream's
//! setup_vmcs_config does (Intel SDM vol. 3 appendix A), but with the control set
//! of this implementation: every control upstream requires, and as optional only
//! the features kvm-intel actually uses.
//!
//! Pure logic over a [`CapabilityMsrs`] snapshot, so host tests can feed it the MSRs
//! of real CPUs. As a crate (cargo) this is `no_std`; kvm-intel.ko includes it as a
//! module.
#![cfg_attr(not(kvm_kernel), no_std)]
#![allow(missing_docs)]

// A table of the SDM's control bits: not every one is used by kvm-intel.
#[allow(dead_code)]
pub mod controls;
// Typed VMCS fields: the table is complete for kvm-intel's use, not every one
// is used.
#[allow(dead_code)]
pub mod fields;
use controls::*;

/// The capability MSRs the configuration is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapabilityMsrs {
    pub basic: u64,          // IA32_VMX_BASIC (0x480)
    pub pinbased: u64,       // IA32_VMX_PINBASED_CTLS (0x481)
    pub procbased: u64,      // IA32_VMX_PROCBASED_CTLS (0x482)
    pub exit: u64,           // IA32_VMX_EXIT_CTLS (0x483)
    pub entry: u64,          // IA32_VMX_ENTRY_CTLS (0x484)
    pub misc: u64,           // IA32_VMX_MISC (0x485)
    pub cr0_fixed0: u64,     // IA32_VMX_CR0_FIXED0 (0x486)
    pub cr0_fixed1: u64,     // IA32_VMX_CR0_FIXED1 (0x487)
    pub cr4_fixed0: u64,     // IA32_VMX_CR4_FIXED0 (0x488)
    pub cr4_fixed1: u64,     // IA32_VMX_CR4_FIXED1 (0x489)
    /// IA32_VMX_PROCBASED_CTLS2 (0x48b); 0 if the CPU cannot activate secondary
    /// controls (the MSR does not exist then).
    pub procbased2: u64,
    /// IA32_VMX_EPT_VPID_CAP (0x48c); 0 if absent.
    pub ept_vpid_cap: u64,
}

/// Why a CPU's VMX cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A control upstream requires cannot be set (the named control class).
    MissingRequired(&'static str),
    /// The VMCS region is larger than a page.
    VmcsTooLarge,
    /// The CPU limits VMX structures to 32-bit physical addresses.
    Only32BitAddresses,
    /// VMCS accesses are not write-back.
    VmcsNotWriteBack,
    /// No EPT (shadow paging is not implemented).
    NoEpt,
    /// EPT without 4-level walks, write-back paging structures or INVEPT.
    EptUnusable,
    /// No unrestricted guest: real mode would need emulation, not implemented.
    NoUnrestrictedGuest,
    /// VM entry cannot load, or VM exit cannot save and load, IA32_EFER (the
    /// MSR autoload lists upstream falls back to are not implemented; every CPU
    /// with unrestricted guest has the controls).
    NoEferSwitch,
    /// A VM-entry control without its VM-exit partner (or the reverse), which
    /// upstream also refuses with error_on_inconsistent_vmcs_config.
    InconsistentEntryExit,
}

/// The computed configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmcsConfig {
    pub revision_id: u32,
    pub vmcs_size: u32,
    pub pin_based: u32,
    pub cpu_based: u32,
    pub cpu_based_2nd: u32,
    pub vmexit: u32,
    pub vmentry: u32,
    pub misc: u64,
    pub ept_vpid_cap: u64,
    /// VPID usable (secondary control + INVVPID single-context or all-context).
    pub vpid: bool,
}

/// upstream's adjust_vmx_controls: the optional controls the CPU allows, plus the
/// ones it forces to 1; `Err` if a required control is not allowed.
pub fn adjust_controls(required: u32, optional: u32, cap: u64, class: &'static str) -> Result<u32, ConfigError> {
    let allowed1 = (cap >> 32) as u32;
    let must1 = cap as u32;
    let ctl = ((required | optional) & allowed1) | must1;
    if required & !ctl != 0 {
        return Err(ConfigError::MissingRequired(class));
    }
    Ok(ctl)
}

/// upstream's setup_vmcs_config, for this implementation's control set.
pub fn setup_vmcs_config(m: &CapabilityMsrs) -> Result<VmcsConfig, ConfigError> {
    let cpu_based = adjust_controls(REQUIRED_CPU_BASED, OPTIONAL_CPU_BASED, m.procbased, "primary processor-based")?;
    let mut cpu_based_2nd = 0;
    if cpu_based & CPU_BASED_ACTIVATE_SECONDARY_CONTROLS != 0 {
        cpu_based_2nd = adjust_controls(0, OPTIONAL_SECONDARY, m.procbased2, "secondary processor-based")?;
    }
    // EPT and VPID capabilities only count with their controls (upstream warns
    // and ignores them otherwise).
    let mut ept_vpid_cap = m.ept_vpid_cap;
    if cpu_based_2nd & SECONDARY_EXEC_ENABLE_EPT == 0 {
        ept_vpid_cap &= !EPT_CAP_MASK;
    }
    if cpu_based_2nd & SECONDARY_EXEC_ENABLE_VPID == 0 {
        ept_vpid_cap &= EPT_CAP_MASK;
    }
    if cpu_based_2nd & SECONDARY_EXEC_ENABLE_EPT == 0 {
        return Err(ConfigError::NoEpt);
    }
    let ept_ok = ept_vpid_cap & EPT_CAP_PAGE_WALK_4 != 0
        && ept_vpid_cap & EPT_CAP_WB != 0
        && ept_vpid_cap & EPT_CAP_INVEPT != 0
        && ept_vpid_cap & (EPT_CAP_INVEPT_SINGLE | EPT_CAP_INVEPT_ALL) != 0;
    if !ept_ok {
        return Err(ConfigError::EptUnusable);
    }
    if cpu_based_2nd & SECONDARY_EXEC_UNRESTRICTED_GUEST == 0 {
        return Err(ConfigError::NoUnrestrictedGuest);
    }
    let vpid = cpu_based_2nd & SECONDARY_EXEC_ENABLE_VPID != 0
        && ept_vpid_cap & VPID_CAP_INVVPID != 0
        && ept_vpid_cap & (VPID_CAP_INVVPID_SINGLE | VPID_CAP_INVVPID_ALL) != 0;
    if !vpid {
        cpu_based_2nd &= !SECONDARY_EXEC_ENABLE_VPID;
    }

    let vmexit = adjust_controls(REQUIRED_VMEXIT, OPTIONAL_VMEXIT, m.exit, "VM-exit")?;
    let pin_based = adjust_controls(REQUIRED_PIN_BASED, OPTIONAL_PIN_BASED, m.pinbased, "pin-based")?;
    let vmentry = adjust_controls(REQUIRED_VMENTRY, OPTIONAL_VMENTRY, m.entry, "VM-entry")?;
    for (n, x) in ENTRY_EXIT_PAIRS {
        if (vmentry & n == 0) != (vmexit & x == 0) {
            return Err(ConfigError::InconsistentEntryExit);
        }
    }

    let efer_exit = VM_EXIT_SAVE_IA32_EFER | VM_EXIT_LOAD_IA32_EFER;
    if vmentry & VM_ENTRY_LOAD_IA32_EFER == 0 || vmexit & efer_exit != efer_exit {
        return Err(ConfigError::NoEferSwitch);
    }

    let vmcs_size = ((m.basic >> 32) & 0x1fff) as u32;
    if vmcs_size > 4096 {
        return Err(ConfigError::VmcsTooLarge);
    }
    if m.basic & VMX_BASIC_32BIT_PHYS_ADDR_ONLY != 0 {
        return Err(ConfigError::Only32BitAddresses);
    }
    if (m.basic >> 50) & 0xf != MEMTYPE_WB {
        return Err(ConfigError::VmcsNotWriteBack);
    }
    Ok(VmcsConfig {
        revision_id: (m.basic & 0x7fff_ffff) as u32,
        vmcs_size,
        pin_based,
        cpu_based,
        cpu_based_2nd,
        vmexit,
        vmentry,
        misc: m.misc,
        ept_vpid_cap,
        vpid,
    })
}

/// The primary processor-based controls of one VM entry: the configuration less
/// the exits EPT makes unnecessary (CR3 load/store, INVLPG), as far as the TRUE
/// capability MSR's must-be-1 bits (`true_must1`) let them be 0, and with the
/// interrupt-window and NMI-window exits only when asked for.
pub fn entry_cpu_based(c: &VmcsConfig, true_must1: u32, intr_window: bool, nmi_window: bool) -> u32 {
    let unneeded = CPU_BASED_CR3_LOAD_EXITING | CPU_BASED_CR3_STORE_EXITING | CPU_BASED_INVLPG_EXITING
        | CPU_BASED_NMI_WINDOW_EXITING | CPU_BASED_INTR_WINDOW_EXITING;
    let mut ctl = (c.cpu_based & !unneeded) | true_must1;
    if intr_window {
        ctl |= CPU_BASED_INTR_WINDOW_EXITING;
    }
    if nmi_window && c.pin_based & PIN_BASED_VIRTUAL_NMIS != 0 {
        ctl |= CPU_BASED_NMI_WINDOW_EXITING;
    }
    ctl
}

/// CR0/CR4 values are legal in VMX operation iff every FIXED0 bit is set and no
/// bit outside FIXED1 is (SDM A.7, A.8).
pub fn fixed_bits_ok(value: u64, fixed0: u64, fixed1: u64) -> bool {
    value & fixed0 == fixed0 && value & !fixed1 == 0
}

#[cfg(test)]
mod tests;
