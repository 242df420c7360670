// SPDX-License-Identifier: GPL-2.0
//! SVM detection, hardware setup and per-CPU enabling (upstream's
//! kvm_is_svm_supported, svm_hardware_setup, svm_enable_virtualization_cpu and
//! svm_disable_virtualization_cpu).

use crate::params;
use kernel::page::Page;
use kernel::c_str;
use kernel::prelude::*;
use kvm::arch::cpuid::{self as feat, Vendor};
use kvm::arch::{msr, regs::efer};
use kvm::{cpu, KvmX86Ops};

/// Whether the CPU this runs on supports SVM and firmware left it enabled.
pub(crate) fn kvm_is_svm_supported() -> bool {
    cpu::with_migration_disabled(|| {
        let id = cpu::smp_processor_id();
        let [_, b, c, d] = cpu::cpuid(0, 0);
        if !matches!(Vendor::from_leaf0(b, d, c), Vendor::Amd | Vendor::Hygon) {
            pr_err!("CPU {} isn't AMD or Hygon\n", id);
            return false;
        }
        if cpu::cpuid(0x8000_0001, 0)[2] & feat::SVM.mask() == 0 {
            pr_err!("SVM not supported by CPU {}\n", id);
            return false;
        }
        match cpu::rdmsr_safe(msr::AMD64_VM_CR) {
            Ok(vm_cr) if vm_cr & msr::VM_CR_SVMDIS == 0 => true,
            _ => {
                pr_err!("SVM disabled (by BIOS) in MSR_VM_CR on CPU {}\n", id);
                false
            }
        }
    })
}

/// SVM's half of the KVM ops.
pub(crate) struct Svm {
    /// The host save area of each CPU (VM_HSAVE_PA), indexed by CPU number.
    host_save_areas: KVec<Page>,
}

impl KvmX86Ops for Svm {
    const NAME: &'static CStr = c_str!("kvm_amd");

    fn hardware_setup() -> Result<Self> {
        let svm_features = cpu::cpuid(0x8000_000a, 0)[3];
        if !params::npt() {
            pr_err!("npt=0 requested, but shadow paging is not implemented\n");
            return Err(EINVAL);
        }
        if svm_features & feat::NPT.mask() == 0 {
            pr_err!("Nested Paging not supported by this CPU; shadow paging is not implemented\n");
            return Err(kvm::cpu::eopnotsupp());
        }
        pr_info!("Nested Paging enabled\n");
        let ncpus = cpu::nr_cpu_ids() as usize;
        let mut host_save_areas = KVec::with_capacity(ncpus, GFP_KERNEL)?;
        for _ in 0..ncpus {
            host_save_areas.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
        }
        Ok(Svm { host_save_areas })
    }

    fn enable_virtualization_cpu(&self) -> Result {
        let efer_now = cpu::rdmsr_safe(msr::EFER)?;
        if efer_now & efer::SVME != 0 {
            // Someone else (another hypervisor) owns SVM on this CPU.
            return Err(EBUSY);
        }
        let id = cpu::smp_processor_id() as usize;
        let hsave = self.host_save_areas.get(id).ok_or(EINVAL)?;
        // SAFETY: SVME was off, so this module now owns SVM on this CPU; the host
        // save area is a zeroed page owned by `self`, which outlives the enabling
        // (disabled on every CPU before `self` is dropped).
        unsafe {
            cpu::wrmsr(msr::EFER, efer_now | efer::SVME);
            cpu::wrmsr(msr::AMD64_VM_HSAVE_PA, cpu::page_phys(hsave));
        }
        Ok(())
    }

    fn disable_virtualization_cpu(&self) {
        // SAFETY: clearing the save area and EFER.SVME only turns SVM off; STGI first
        // so an emergency that interrupted a VMRUN section leaves GIF set (STGI is
        // legal only while SVME is set, hence inside the check).
        unsafe {
            let _ = cpu::wrmsr_safe(msr::AMD64_VM_HSAVE_PA, 0);
            if let Ok(e) = cpu::rdmsr_safe(msr::EFER) {
                if e & efer::SVME != 0 {
                    core::arch::asm!("stgi", options(nomem, nostack));
                    cpu::wrmsr(msr::EFER, e & !efer::SVME);
                }
            }
        }
    }
}
