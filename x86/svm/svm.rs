// SPDX-License-Identifier: GPL-2.0
//! SVM detection, hardware setup and per-CPU enabling (upstream's
//! kvm_is_svm_supported, svm_hardware_setup, svm_enable_virtualization_cpu and
//! svm_disable_virtualization_cpu).

use crate::params;
use core::cell::UnsafeCell;
use kvm::mm::ContigPages;
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

/// What each physical CPU keeps for SVM: ASID allocation and the page where
/// VMSAVE puts the host state around VMRUN.
pub(crate) struct PerCpu {
    pub asid_generation: u64,
    pub next_asid: u32,
    pub max_asid: u32,
    pub host_save_pa: u64,
    _host_save: Page,
}

/// SVM's half of the KVM ops.
pub(crate) struct Svm {
    /// The host save area of each CPU (VM_HSAVE_PA), indexed by CPU number.
    host_save_areas: KVec<Page>,
    per_cpu: KVec<UnsafeCell<PerCpu>>,
    _iopm: ContigPages,
    _msrpm: ContigPages,
    pub iopm_pa: u64,
    pub msrpm_pa: u64,
    /// Next-RIP save (NRIPS): the VMCB reports the next instruction's address.
    pub nrips: bool,
    pub flush_by_asid: bool,
}

// SAFETY: a CPU's `PerCpu` is only used on that CPU with interrupts off (see
// `per_cpu`); everything else is read-only after hardware_setup.
unsafe impl Sync for Svm {}
// SAFETY: as above.
unsafe impl Send for Svm {}

impl Svm {
    /// The data of `cpu`.
    ///
    /// # Safety
    /// The caller runs on `cpu` with interrupts disabled, so nothing else can use
    /// the same entry until it is done.
    pub(crate) unsafe fn per_cpu(&self, cpu: u32) -> Option<&mut PerCpu> {
        // SAFETY: exclusive per the contract.
        self.per_cpu.get(cpu as usize).map(|c| unsafe { &mut *c.get() })
    }
}

impl KvmX86Ops for Svm {
    const NAME: &'static CStr = c_str!("kvm_amd");
    const NESTED_STATE_FORMAT: u16 = kvm::uapi::KVM_STATE_NESTED_FORMAT_SVM as u16;

    /// DE_CFG is kvm-amd's feature MSR: bit 1 (LFENCE serializing) if the
    /// host runs with it (upstream's svm_get_feature_msr).
    fn get_feature_msr(&self, index: u32) -> Option<u64> {
        (index == 0xc001_1029).then(|| if kvm::feature_msrs::lfence_serializing() { 1 << 1 } else { 0 })
    }

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
        let mut per_cpu = KVec::with_capacity(ncpus, GFP_KERNEL)?;
        // ASIDs 1..EBX-1 of CPUID 0x8000000A (0 is the host's).
        let max_asid = cpu::cpuid(0x8000_000a, 0)[1].saturating_sub(1).max(1);
        for _ in 0..ncpus {
            host_save_areas.push(Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?, GFP_KERNEL)?;
            let host_save = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            let host_save_pa = cpu::page_phys(&host_save);
            per_cpu.push(
                UnsafeCell::new(PerCpu { asid_generation: 1, next_asid: 1, max_asid, host_save_pa, _host_save: host_save }),
                GFP_KERNEL,
            )?;
        }
        // Every I/O port and every MSR access exits: 12K I/O permission map
        // (order 2) and 8K MSR permission map (order 1), all ones.
        let mut iopm = ContigPages::alloc(2)?;
        iopm.fill(0xff);
        let mut msrpm = ContigPages::alloc(1)?;
        msrpm.fill(0xff);
        let (iopm_pa, msrpm_pa) = (iopm.phys(), msrpm.phys());
        Ok(Svm {
            host_save_areas,
            per_cpu,
            _iopm: iopm,
            _msrpm: msrpm,
            iopm_pa,
            msrpm_pa,
            nrips: params::resolve_nrips(svm_features & feat::NRIPS.mask() != 0),
            flush_by_asid: svm_features & feat::FLUSH_BY_ASID.mask() != 0,
        })
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

    fn vcpu_create(&self) -> Result<KBox<dyn kvm::VendorVcpu>> {
        // SAFETY: every vCPU file pins this module, so the registration that owns
        // `self` outlives every vCPU: the reference is valid as long as it is used.
        let svm: &'static Svm = unsafe { &*(self as *const Svm) };
        let boxed: KBox<crate::vcpu::SvmVcpu> = KBox::new(crate::vcpu::SvmVcpu::new(svm)?, GFP_KERNEL)?;
        let raw_concrete: *mut crate::vcpu::SvmVcpu = KBox::into_raw(boxed);
        let raw: *mut dyn kvm::VendorVcpu = raw_concrete;
        // SAFETY: `raw` comes from KBox::into_raw just above (6.12's KBox cannot
        // coerce to a trait object by itself; the raw pointer can).
        Ok(unsafe { KBox::from_raw(raw) })
    }

    fn tdp(&self) -> &'static dyn kvm::TdpFormat {
        &crate::npt::NPT
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
