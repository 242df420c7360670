// SPDX-License-Identifier: GPL-2.0
//! The guest's RDMSR and WRMSR (upstream's kvm_emulate_rdmsr/wrmsr): the
//! filter first, then kvm.ko's MSR code; a failed access raises #GP, or
//! exits to user space if the VM asked for failures of that kind
//! (kvm_msr_user_space). User space answers in kvm_run.msr (data for a read,
//! error != 0 for #GP), and the next KVM_RUN completes the instruction.

use crate::arch_state::gpr;
use crate::run::{set_rip, Next};
use crate::uapi;
use crate::vcpu::{Pending, Vcpu, VcpuInner};
use kernel::prelude::*;

/// Why an access failed, as KVM_MSR_EXIT_REASON_*: the filter denied it
/// (FILTER), kvm.ko does not know the MSR (UNKNOWN: the `msrs::UNSUPPORTED`
/// error), or it refused the value or the access (INVAL).
fn reason_of(e: Error) -> u32 {
    if e == crate::msrs::UNSUPPORTED {
        uapi::KVM_MSR_EXIT_REASON_UNKNOWN
    } else {
        uapi::KVM_MSR_EXIT_REASON_INVAL
    }
}

/// The address of the instruction after the RDMSR/WRMSR that exited.
fn next_rip(vcpu: &Vcpu, inner: &VcpuInner) -> u64 {
    match inner.vendor.next_rip() {
        Some(n) => n,
        None => {
            let len = crate::emulate::instruction_length(vcpu, &inner.state).unwrap_or(2);
            inner.state.rip.wrapping_add(len)
        }
    }
}

/// Exits to user space for a failed access if the VM asked for `reason`;
/// returns whether it does.
fn user_space_exit(vcpu: &Vcpu, inner: &mut VcpuInner, read: bool, index: u32, data: u64, reason: u32) -> bool {
    if !vcpu.vm.user_msr.exits_for(reason) {
        return false;
    }
    let exit = if read { uapi::KVM_EXIT_X86_RDMSR } else { uapi::KVM_EXIT_X86_WRMSR };
    vcpu.run.set_msr_exit(exit, reason, index, data);
    inner.pending = Pending::UserMsr { read, next_rip: next_rip(vcpu, inner) };
    true
}

/// A guest RDMSR exited.
pub(crate) fn handle_rdmsr(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let index = inner.state.gprs[gpr::RCX] as u32;
    let r = if vcpu.vm.user_msr.allows(index, uapi::KVM_MSR_FILTER_READ) {
        crate::msrs::get_msr_vcpu(vcpu, inner, index, false).map_err(reason_of)
    } else {
        Err(uapi::KVM_MSR_EXIT_REASON_FILTER)
    };
    crate::trace::kvm_msr(false, index, *r.as_ref().unwrap_or(&0), r.is_err());
    match r {
        Ok(v) => {
            inner.state.gprs[gpr::RAX] = v & 0xffff_ffff;
            inner.state.gprs[gpr::RDX] = v >> 32;
            crate::run::skip_instruction(vcpu, inner, 2);
        }
        Err(reason) => {
            if user_space_exit(vcpu, inner, true, index, 0, reason) {
                return Ok(Next::User);
            }
            inner.state.queue_exception(13, Some(0));
        }
    }
    Ok(Next::Guest)
}

/// A guest WRMSR exited.
pub(crate) fn handle_wrmsr(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let s = &inner.state;
    let index = s.gprs[gpr::RCX] as u32;
    let v = (s.gprs[gpr::RDX] << 32) | (s.gprs[gpr::RAX] & 0xffff_ffff);
    let r = if vcpu.vm.user_msr.allows(index, uapi::KVM_MSR_FILTER_WRITE) {
        crate::msrs::set_msr_vcpu(vcpu, inner, index, v, false).map_err(reason_of)
    } else {
        Err(uapi::KVM_MSR_EXIT_REASON_FILTER)
    };
    crate::trace::kvm_msr(true, index, v, r.is_err());
    match r {
        Ok(()) => crate::run::skip_instruction(vcpu, inner, 2),
        Err(reason) => {
            if user_space_exit(vcpu, inner, false, index, v, reason) {
                return Ok(Next::User);
            }
            inner.state.queue_exception(13, Some(0));
        }
    }
    Ok(Next::Guest)
}

/// KVM_RUN after a KVM_EXIT_X86_RDMSR/WRMSR: a non-zero `error` raises #GP
/// at the instruction; otherwise a read takes `data` into EDX:EAX and the
/// instruction completes (upstream's complete_fast_rdmsr/_msr_access).
pub(crate) fn complete(vcpu: &Vcpu, inner: &mut VcpuInner, read: bool, next_rip: u64) -> Next {
    let (error, data) = vcpu.run.msr_exit_result();
    if error != 0 {
        inner.state.queue_exception(13, Some(0));
        return Next::Guest;
    }
    if read {
        inner.state.gprs[gpr::RAX] = data & 0xffff_ffff;
        inner.state.gprs[gpr::RDX] = data >> 32;
    }
    set_rip(&mut inner.state, next_rip);
    inner.state.interrupt_shadow = false;
    crate::guest_debug::instruction_completed(inner);
    Next::Guest
}
