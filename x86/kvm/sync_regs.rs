// SPDX-License-Identifier: GPL-2.0
//! Registers synced through kvm_run (KVM_CAP_SYNC_REGS; upstream's sync_regs and
//! store_regs): user space names in `kvm_valid_regs` what KVM_RUN copies out to
//! `run->s.regs` on return, and in `kvm_dirty_regs` what it copies in before
//! entering, saving KVM_GET/SET_REGS, SREGS and VCPU_EVENTS ioctls per exit.
//!
//! The run page is shared with user space, which may change it during KVM_RUN
//! (the selftest sync_regs_test races a thread flipping CR4.PAE and exception
//! vectors): the registers are read once into a copy, and only the copy is
//! checked and applied.

use crate::uapi;
use crate::vcpu::{self, Vcpu, VcpuInner};
use kernel::prelude::*;

/// KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS: the answer to
/// KVM_CHECK_EXTENSION(KVM_CAP_SYNC_REGS).
pub(crate) const VALID_FIELDS: u64 =
    (uapi::KVM_SYNC_X86_REGS | uapi::KVM_SYNC_X86_SREGS | uapi::KVM_SYNC_X86_EVENTS) as u64;

/// Before entering: EINVAL for unknown bits in either mask, then the dirty
/// registers are applied (each bit cleared once applied, as upstream).
pub(crate) fn load(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result {
    let run = &vcpu.run;
    let (valid, dirty) = (run.kvm_valid_regs(), run.kvm_dirty_regs());
    if valid & !VALID_FIELDS != 0 || dirty & !VALID_FIELDS != 0 {
        return Err(EINVAL);
    }
    if dirty == 0 {
        return Ok(());
    }
    let regs = run.sync_regs();
    if dirty & uapi::KVM_SYNC_X86_REGS as u64 != 0 {
        vcpu::set_regs(&mut inner.state, &regs.regs);
        run.set_kvm_dirty_regs(run.kvm_dirty_regs() & !(uapi::KVM_SYNC_X86_REGS as u64));
    }
    if dirty & uapi::KVM_SYNC_X86_SREGS as u64 != 0 {
        vcpu::set_sregs(vcpu, inner, &regs.sregs)?;
        run.set_kvm_dirty_regs(run.kvm_dirty_regs() & !(uapi::KVM_SYNC_X86_SREGS as u64));
    }
    if dirty & uapi::KVM_SYNC_X86_EVENTS as u64 != 0 {
        vcpu::set_vcpu_events(vcpu, inner, &regs.events)?;
        run.set_kvm_dirty_regs(run.kvm_dirty_regs() & !(uapi::KVM_SYNC_X86_EVENTS as u64));
    }
    Ok(())
}

/// On every return from KVM_RUN (also with an error): the registers user space
/// asked for in `kvm_valid_regs`.
pub(crate) fn store(vcpu: &Vcpu, inner: &VcpuInner) {
    let run = &vcpu.run;
    let valid = run.kvm_valid_regs();
    if valid & uapi::KVM_SYNC_X86_REGS as u64 != 0 {
        run.set_sync_regs_regs(&vcpu::get_regs(&inner.state));
    }
    if valid & uapi::KVM_SYNC_X86_SREGS as u64 != 0 {
        run.set_sync_regs_sregs(&vcpu::get_sregs(vcpu, inner));
    }
    if valid & uapi::KVM_SYNC_X86_EVENTS as u64 != 0 {
        run.set_sync_regs_events(&vcpu::get_vcpu_events(vcpu, inner));
    }
}
