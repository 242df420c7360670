// SPDX-License-Identifier: GPL-2.0
//! KVM_PRE_FAULT_MEMORY (upstream's kvm_vcpu_pre_fault_memory and
//! kvm_arch_vcpu_pre_fault_memory): maps a guest-physical range in the nested
//! page tables ahead of the guest's accesses, as its read faults would.
//!
//! The range is processed a page at a time (upstream goes by the mapping's
//! level; all our mappings are 4K), and the leftover range goes back to user
//! space whatever happened, so a caller interrupted by a signal, or stopped at
//! a hole without a memory slot, knows where to resume.

use crate::bindings;
use crate::uapi;
use crate::user;
use crate::vcpu::Vcpu;
use crate::vm::Resolved;
use kernel::prelude::*;

const PAGE_SIZE: u64 = 4096;

pub(crate) fn kvm_vcpu_pre_fault_memory(vcpu: &Vcpu, arg: usize) -> Result<isize> {
    let mut range: uapi::kvm_pre_fault_memory = user::read(arg)?;
    if range.flags != 0 {
        return Err(EINVAL);
    }
    // Page aligned, not empty, not wrapping around.
    if range.gpa % PAGE_SIZE != 0 || range.size % PAGE_SIZE != 0 || range.gpa.wrapping_add(range.size) <= range.gpa {
        return Err(EINVAL);
    }
    let full_size = range.size;
    let mut r = Ok(());
    while range.size != 0 {
        // SAFETY: plain kernel helpers on the current task.
        if unsafe { bindings::kvm_rs_signal_pending() } {
            r = Err(EINTR);
            break;
        }
        // A page without a memory slot would be emulated MMIO: ENOENT, as
        // upstream's RET_PF_EMULATE.
        match vcpu.vm.handle_tdp_fault(crate::smm::as_id(vcpu), range.gpa, Default::default(), vcpu.shared.dirty_ring.as_ref()) {
            Ok(Resolved::Mapped) => {}
            // Raced with an invalidation: the same page again (after the
            // signal check and a reschedule).
            Ok(Resolved::Retry) => {
                // SAFETY: may sleep (no lock is held here).
                unsafe { bindings::kvm_rs_cond_resched() };
                continue;
            }
            Ok(Resolved::Mmio) => {
                r = Err(ENOENT);
                break;
            }
            Err(e) => {
                r = Err(e);
                break;
            }
        }
        range.gpa += PAGE_SIZE;
        range.size -= PAGE_SIZE;
        // SAFETY: as above; may sleep (no lock is held here).
        unsafe { bindings::kvm_rs_cond_resched() };
    }
    user::write(arg, &range)?;
    // Success if at least one page was mapped.
    match r {
        Err(e) if range.size == full_size => Err(e),
        _ => Ok(0),
    }
}
