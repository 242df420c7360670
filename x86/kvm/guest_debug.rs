// SPDX-License-Identifier: GPL-2.0
//! KVM_SET_GUEST_DEBUG (upstream kvm_arch_vcpu_ioctl_set_guest_debug): a VMM's
//! debugger single-steps the guest, each step reported as KVM_EXIT_DEBUG.
//! Single-stepping sets RFLAGS.TF around each entry and intercepts #DB; an
//! instruction the kernel completes itself (CPUID, MSRs, port I/O...) cannot
//! raise the trap, so the step is reported after it instead
//! (KVM_CAP_X86_ROBUST_SINGLESTEP). Software and hardware breakpoints and the
//! INJECT flags are not offered yet (KVM_CAP_SET_GUEST_DEBUG2 lists what is):
//! QEMU's TCG, our test machine, does not intercept INT3 as #BP, so software
//! breakpoints could not be tested here.

use crate::arch_state::rflags;
use crate::uapi;
use crate::user;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// The KVM_SET_GUEST_DEBUG control bits implemented (KVM_CAP_SET_GUEST_DEBUG2).
pub(crate) const SUPPORTED: u32 = uapi::KVM_GUESTDBG_ENABLE | uapi::KVM_GUESTDBG_SINGLESTEP;
/// DR6 as a single-step trap leaves it: BS, with the always-one bits.
const DR6_SINGLE_STEP: u64 = 0xffff_0ff0 | (1 << 14);
const DB_VECTOR: u8 = 1;

/// KVM_SET_GUEST_DEBUG.
pub(crate) fn set_guest_debug(inner: &mut VcpuInner, arg: usize) -> Result {
    let dbg: uapi::kvm_guest_debug = user::read(arg)?;
    // Without ENABLE debugging is off, whatever else is set (upstream).
    if dbg.control & uapi::KVM_GUESTDBG_ENABLE == 0 {
        inner.guest_debug = 0;
        inner.singlestep_done = false;
        return Ok(());
    }
    if dbg.control & !SUPPORTED != 0 {
        return Err(EINVAL);
    }
    inner.guest_debug = dbg.control;
    inner.singlestep_done = false;
    Ok(())
}

fn single_stepping(inner: &VcpuInner) -> bool {
    inner.guest_debug & uapi::KVM_GUESTDBG_SINGLESTEP != 0
}

/// The exceptions to intercept for this entry (bit n: vector n).
pub(crate) fn intercepts(inner: &VcpuInner) -> u32 {
    let mut bits = 0;
    if single_stepping(inner) {
        bits |= 1 << DB_VECTOR;
    }
    bits
}

/// Before entry: arm the single-step trap. Returns whether TF was set here
/// (so that it is taken away again after the exit).
pub(crate) fn before_entry(inner: &mut VcpuInner) -> bool {
    if single_stepping(inner) && inner.state.rflags & rflags::TF == 0 {
        inner.state.rflags |= rflags::TF;
        return true;
    }
    false
}

/// After the exit: the guest never sees the TF the debugger set.
pub(crate) fn after_exit(inner: &mut VcpuInner, tf_set: bool) {
    if tf_set {
        inner.state.rflags &= !rflags::TF;
    }
}

/// The kernel completed an instruction of the guest (skipped it after an
/// exit, or finished it with user space's data).
pub(crate) fn instruction_completed(inner: &mut VcpuInner) {
    if single_stepping(inner) {
        inner.singlestep_done = true;
    }
}

/// Reports a completed single step if one is owed (before the next entry).
pub(crate) fn take_pending_step(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    if !core::mem::take(&mut inner.singlestep_done) || !single_stepping(inner) {
        return false;
    }
    report(vcpu, inner, DB_VECTOR, DR6_SINGLE_STEP);
    true
}

/// An intercepted #DB: user space's debugger gets it while it single-steps.
/// Returns false if the exception is not the debugger's.
pub(crate) fn exception(vcpu: &Vcpu, inner: &mut VcpuInner, vector: u8) -> bool {
    if vector != DB_VECTOR || !single_stepping(inner) {
        return false;
    }
    inner.singlestep_done = false;
    report(vcpu, inner, DB_VECTOR, DR6_SINGLE_STEP);
    true
}

/// KVM_EXIT_DEBUG with the exception, the linear RIP, DR6 and DR7.
fn report(vcpu: &Vcpu, inner: &VcpuInner, vector: u8, dr6: u64) {
    let s = &inner.state;
    let pc = s.cs.base.wrapping_add(s.rip);
    vcpu.run.set_debug(vector as u32, pc, dr6, s.dr7);
}
