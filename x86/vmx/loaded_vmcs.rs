// SPDX-License-Identifier: GPL-2.0
//! Where each VMCS is active (upstream's loaded_vmcs and loaded_vmcss_on_cpu).
//!
//! A VMCS stays active and current on the CPU its vCPU last ran on, so the next
//! entry there is a VMRESUME without VMPTRLD. Each CPU has one owner slot: the
//! VMCS current on it. Loading another vCPU's VMCS on that CPU VMCLEARs the
//! owner first; a vCPU that moved asks its old CPU (IPI) to VMCLEAR its VMCS
//! before loading it on the new one, since a VMCS must never be active on two
//! CPUs; a CPU going offline (or the module unloading) VMCLEARs its owner before
//! VMXOFF, so the region in memory is complete and can be loaded anywhere.
//!
//! The owner slot of a CPU is only read and written on that CPU with interrupts
//! off (the entry path, the IPI handler, the teardown); a VMCS's `cpu` field is
//! written only there too, and read by its vCPU's thread as a hint of which CPU
//! to ask. A wrong hint is harmless: the slot decides.

use crate::vmcs::CurrentVmcs;
use crate::vmx_insn;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use kernel::page::Page;
use kernel::prelude::*;
use kvm::cpu;

/// A vCPU's VMCS and its activity state.
pub(crate) struct LoadedVmcs {
    /// The VMCS region (owned; the hardware uses it through `pa`).
    _region: Page,
    pa: u64,
    /// The CPU whose owner slot holds this VMCS, or -1.
    cpu: AtomicI32,
    /// VMLAUNCHed since it was last VMCLEARed: the next entry is VMRESUME.
    launched: AtomicBool,
}

impl LoadedVmcs {
    /// A VMCS region with the revision ID, not active anywhere.
    pub(crate) fn new(revision_id: u32) -> Result<KBox<Self>> {
        let region = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        let rev = revision_id.to_le_bytes();
        // SAFETY: 4 bytes at offset 0 of our page.
        unsafe { region.write_raw(rev.as_ptr(), 0, rev.len())? };
        let pa = cpu::page_phys(&region);
        Ok(KBox::new(LoadedVmcs { _region: region, pa, cpu: AtomicI32::new(-1), launched: AtomicBool::new(false) }, GFP_KERNEL)?)
    }

    pub(crate) fn launched(&self) -> bool {
        self.launched.load(Ordering::Relaxed)
    }

    pub(crate) fn set_launched(&self) {
        self.launched.store(true, Ordering::Relaxed);
    }

    /// VMCLEAR on the CPU this runs on, where it is active; forgets the CPU.
    fn clear_here(&self) {
        // SAFETY: the VMCS is active on this CPU (the caller found it in this
        // CPU's owner slot), VMX operation is on.
        let _ = unsafe { vmx_insn::vmclear(self.pa) };
        self.launched.store(false, Ordering::Relaxed);
        self.cpu.store(-1, Ordering::Release);
    }
}

/// The owner slot of every CPU.
pub(crate) struct OwnerSlots {
    slots: KVec<AtomicPtr<LoadedVmcs>>,
}

impl OwnerSlots {
    pub(crate) fn new(ncpus: usize) -> Result<Self> {
        let mut slots = KVec::with_capacity(ncpus, GFP_KERNEL)?;
        for _ in 0..ncpus {
            slots.push(AtomicPtr::new(ptr::null_mut()), GFP_KERNEL)?;
        }
        Ok(OwnerSlots { slots })
    }

    fn slot(&self, cpu_id: u32) -> Option<&AtomicPtr<LoadedVmcs>> {
        self.slots.get(cpu_id as usize)
    }

    /// On CPU `cpu_id`, interrupts off: VMCLEARs `vmcs` if it is this CPU's owner.
    fn clear_if_owner(&self, cpu_id: u32, vmcs: &LoadedVmcs) {
        let Some(slot) = self.slot(cpu_id) else { return };
        if ptr::eq(slot.load(Ordering::Relaxed), vmcs) {
            vmcs.clear_here();
            slot.store(ptr::null_mut(), Ordering::Relaxed);
        }
    }

    /// On CPU `cpu_id`, interrupts off (teardown before VMXOFF): VMCLEARs the
    /// owner, whoever it is.
    pub(crate) fn clear_cpu(&self, cpu_id: u32) {
        let Some(slot) = self.slot(cpu_id) else { return };
        let owner = slot.swap(ptr::null_mut(), Ordering::Relaxed);
        if !owner.is_null() {
            // SAFETY: a VMCS stays alive while a slot names it: its vCPU removes
            // it from the slot (`release`) before freeing it.
            unsafe { (*owner).clear_here() };
        }
    }

    /// Before an entry on CPU `cpu_id`, preemption off, interrupts on: if `vmcs`
    /// is still active on another CPU, has that CPU VMCLEAR it.
    pub(crate) fn migrate(&self, cpu_id: u32, vmcs: &LoadedVmcs) {
        let old = vmcs.cpu.load(Ordering::Acquire);
        if old >= 0 && old as u32 != cpu_id {
            // An offline CPU VMCLEARed its owner in its teardown already.
            let _ = cpu::call_on_cpu(old as u32, &|| self.clear_if_owner(old as u32, vmcs));
        }
    }

    /// On CPU `cpu_id`, interrupts off: makes `vmcs` current here (VMCLEARing the
    /// previous owner), without VMPTRLD if it already is.
    ///
    /// # Safety
    /// VMX operation is on; [`Self::migrate`] ran for this CPU since the vCPU
    /// last ran elsewhere (so `vmcs` is not active on another CPU); interrupts
    /// stay off while the result lives.
    pub(crate) unsafe fn load<'a>(&self, cpu_id: u32, vmcs: &'a LoadedVmcs) -> Result<CurrentVmcs<'a>> {
        let slot = self.slot(cpu_id).ok_or(EINVAL)?;
        let owner = slot.load(Ordering::Relaxed);
        if ptr::eq(owner, vmcs) {
            // SAFETY: the owner of this CPU is its current VMCS.
            return Ok(unsafe { CurrentVmcs::assume_current() });
        }
        if !owner.is_null() {
            // SAFETY: as in `clear_cpu`.
            unsafe { (*owner).clear_here() };
            slot.store(ptr::null_mut(), Ordering::Relaxed);
        }
        // SAFETY: per the caller's guarantee `vmcs` is not active elsewhere.
        let current = unsafe { CurrentVmcs::load(vmcs.pa)? };
        vmcs.launched.store(false, Ordering::Relaxed);
        vmcs.cpu.store(cpu_id as i32, Ordering::Release);
        slot.store(vmcs as *const LoadedVmcs as *mut LoadedVmcs, Ordering::Relaxed);
        Ok(current)
    }

    /// Before `vmcs` is freed (process context): has the CPU it is active on
    /// VMCLEAR it and drop it from its slot.
    pub(crate) fn release(&self, vmcs: &LoadedVmcs) {
        let old = vmcs.cpu.load(Ordering::Acquire);
        if old >= 0 {
            let _ = cpu::call_on_cpu(old as u32, &|| self.clear_if_owner(old as u32, vmcs));
        }
    }
}
