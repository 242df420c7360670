// SPDX-License-Identifier: GPL-2.0
//! VMX detection, hardware setup and per-CPU VMXON/VMXOFF.

use kernel::c_str;
use kernel::prelude::*;
use kvm::arch::cpuid as feat;
use kvm::arch::msr;
use kvm::{cpu, KvmX86Ops};

/// Whether the CPU this runs on supports VMX and firmware enabled it in
/// IA32_FEATURE_CONTROL (upstream's kvm_is_vmx_supported).
pub(crate) fn kvm_is_vmx_supported() -> bool {
    cpu::with_migration_disabled(|| {
        let id = cpu::smp_processor_id();
        if cpu::cpuid(1, 0)[2] & feat::VMX.mask() == 0 {
            pr_err!("VMX not supported by CPU {}\n", id);
            return false;
        }
        match cpu::rdmsr_safe(msr::IA32_FEATURE_CONTROL) {
            Ok(fc) if fc & msr::FEATURE_CONTROL_LOCKED != 0
                && fc & msr::FEATURE_CONTROL_VMXON_OUTSIDE_SMX != 0 => true,
            _ => {
                pr_err!("VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU {}\n", id);
                false
            }
        }
    })
}

/// VMX's half of the KVM ops.
pub(crate) struct Vmx {}

impl KvmX86Ops for Vmx {
    const NAME: &'static CStr = c_str!("kvm_intel");

    fn hardware_setup() -> Result<Self> {
        if !crate::params::ept() {
            pr_err!("ept=0 requested, but shadow paging is not implemented\n");
            return Err(EINVAL);
        }
        Err(kvm::cpu::eopnotsupp())
    }

    fn enable_virtualization_cpu(&self) -> Result {
        Err(kvm::cpu::eopnotsupp())
    }

    fn disable_virtualization_cpu(&self) {}
}
