// SPDX-License-Identifier: GPL-2.0
//! KVM_SET_GUEST_DEBUG (upstream kvm_arch_vcpu_ioctl_set_guest_debug): a VMM's
//! debugger (QEMU's gdbstub) single-steps the guest and sets breakpoints; each
//! hit is a KVM_EXIT_DEBUG.
//! - Single-step: RFLAGS.TF around each entry and #DB intercepted; an
//!   instruction the kernel completes itself (CPUID, MSRs, port I/O...) cannot
//!   raise the trap, so the step is reported after it instead
//!   (KVM_CAP_X86_ROBUST_SINGLESTEP). BLOCKIRQ keeps interrupts and NMIs out
//!   while the debugger steps.
//! - Software breakpoints (USE_SW_BP): #BP intercepted, reported with the
//!   address of the INT3; a VMM that does not own the breakpoint re-injects
//!   #BP with KVM_SET_VCPU_EVENTS, which then resumes after the INT3.
//! - Hardware breakpoints (USE_HW_BP): the debugger's DR0-3 and DR7 are the
//!   ones in the CPU while the guest runs (the guest's own stay in ArchState
//!   and are what it reads), #DB intercepted; every #DB is reported.
//! - INJECT_DB / INJECT_BP queue the exception (EBUSY if one is pending).
//! The test machine's QEMU (TCG) cannot deliver INT3 intercepts or a nested
//! guest's DR7 breakpoints; these are tested under Bochs (VMX).

use crate::arch_state::{rflags, PendingEvent};
use crate::uapi;
use crate::user;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// The KVM_SET_GUEST_DEBUG control bits implemented (KVM_CAP_SET_GUEST_DEBUG2;
/// upstream's KVM_GUESTDBG_VALID_MASK).
pub(crate) const SUPPORTED: u32 = uapi::KVM_GUESTDBG_ENABLE
    | uapi::KVM_GUESTDBG_SINGLESTEP
    | uapi::KVM_GUESTDBG_USE_SW_BP
    | uapi::KVM_GUESTDBG_USE_HW_BP
    | uapi::KVM_GUESTDBG_INJECT_DB
    | uapi::KVM_GUESTDBG_INJECT_BP
    | uapi::KVM_GUESTDBG_BLOCKIRQ;
/// DR6 as a single-step trap leaves it: BS, with the always-one bits.
const DR6_SINGLE_STEP: u64 = DR6_ACTIVE_LOW | (1 << 14);
const DB_VECTOR: u8 = 1;
const BP_VECTOR: u8 = 3;

/// DR6 with no condition recorded (its always-one bits).
const DR6_ACTIVE_LOW: u64 = 0xffff_0ff0;

/// The debugger's breakpoint registers (USE_HW_BP): DR0-3 and DR7.
#[derive(Clone, Copy, Default)]
pub(crate) struct DebugRegs {
    db: [u64; 4],
    dr7: u64,
    /// DR6 as the last exit left it while the debugger was armed: the
    /// conditions of that entry alone (what a #DB exit reports).
    exit_dr6: u64,
}

/// What `before_entry` changed in the vCPU's state, undone by `after_exit`.
pub(crate) struct EntryDebug {
    tf_set: bool,
    /// The guest's own DR0-3 and DR7 while the debugger's are loaded.
    guest_drs: Option<([u64; 4], u64)>,
    /// The guest's own DR6 while the debugger is armed.
    guest_dr6: Option<u64>,
}

/// KVM_SET_GUEST_DEBUG.
pub(crate) fn set_guest_debug(inner: &mut VcpuInner, arg: usize) -> Result {
    let dbg: uapi::kvm_guest_debug = user::read(arg)?;
    // Bits without a meaning are kept and ignored: upstream does not check.
    if dbg.control & (uapi::KVM_GUESTDBG_INJECT_DB | uapi::KVM_GUESTDBG_INJECT_BP) != 0 {
        if inner.state.pending_event.map_or(false, |e| !e.external) {
            return Err(EBUSY);
        }
        let vector = if dbg.control & uapi::KVM_GUESTDBG_INJECT_DB != 0 { DB_VECTOR } else { BP_VECTOR };
        inner.state.pending_event = Some(PendingEvent { vector, error_code: None, soft: false, external: false });
    }
    inner.singlestep_done = false;
    // Without ENABLE debugging is off, whatever else is set (upstream).
    if dbg.control & uapi::KVM_GUESTDBG_ENABLE == 0 {
        inner.guest_debug = 0;
        return Ok(());
    }
    inner.guest_debug = dbg.control;
    let r = &dbg.arch.debugreg;
    inner.debugger_drs = DebugRegs { db: [r[0], r[1], r[2], r[3]], dr7: r[7], exit_dr6: DR6_ACTIVE_LOW };
    Ok(())
}

fn single_stepping(inner: &VcpuInner) -> bool {
    inner.guest_debug & uapi::KVM_GUESTDBG_SINGLESTEP != 0
}

fn hw_breakpoints(inner: &VcpuInner) -> bool {
    inner.guest_debug & uapi::KVM_GUESTDBG_USE_HW_BP != 0
}

fn sw_breakpoints(inner: &VcpuInner) -> bool {
    inner.guest_debug & uapi::KVM_GUESTDBG_USE_SW_BP != 0
}

/// Interrupts and NMIs stay pending while the debugger asks so (BLOCKIRQ).
pub(crate) fn interrupts_blocked(inner: &VcpuInner) -> bool {
    inner.guest_debug & uapi::KVM_GUESTDBG_BLOCKIRQ != 0
}

/// The exceptions to intercept for this entry (bit n: vector n).
pub(crate) fn intercepts(inner: &VcpuInner) -> u32 {
    let mut bits = 0;
    if single_stepping(inner) || hw_breakpoints(inner) {
        bits |= 1 << DB_VECTOR;
    }
    if sw_breakpoints(inner) {
        bits |= 1 << BP_VECTOR;
    }
    bits
}

/// Before entry: arm the single-step trap, load the debugger's breakpoints.
pub(crate) fn before_entry(inner: &mut VcpuInner) -> EntryDebug {
    let mut e = EntryDebug { tf_set: false, guest_drs: None, guest_dr6: None };
    if single_stepping(inner) || hw_breakpoints(inner) {
        // The guest runs with a clean DR6 (upstream's svm_set_dr6 with
        // DR6_ACTIVE_LOW before each VMRUN): SVM hands back DR6 as the
        // hardware left it, and conditions of an earlier hit (a step's BS)
        // must not be reported with the next one; QEMU's gdbstub hands a
        // #DB whose DR6 names no breakpoint of its own to the guest.
        e.guest_dr6 = Some(inner.state.dr6);
        inner.state.dr6 = DR6_ACTIVE_LOW;
    }
    if single_stepping(inner) && inner.state.rflags & rflags::TF == 0 {
        inner.state.rflags |= rflags::TF;
        e.tf_set = true;
    }
    if hw_breakpoints(inner) {
        let s = &mut inner.state;
        e.guest_drs = Some((s.db, s.dr7));
        s.db = inner.debugger_drs.db;
        // Bit 10 of DR7 reads as one.
        s.dr7 = inner.debugger_drs.dr7 | (1 << 10);
    }
    e
}

/// After the exit: the guest never sees the TF or the breakpoints the
/// debugger set.
pub(crate) fn after_exit(inner: &mut VcpuInner, e: EntryDebug) {
    if e.tf_set {
        inner.state.rflags &= !rflags::TF;
    }
    if let Some((db, dr7)) = e.guest_drs {
        inner.state.db = db;
        inner.state.dr7 = dr7;
    }
    if let Some(dr6) = e.guest_dr6 {
        inner.debugger_drs.exit_dr6 = inner.state.dr6;
        inner.state.dr6 = dr6;
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

/// An intercepted #DB or #BP: user space's debugger gets it while it
/// single-steps or has breakpoints set (upstream reports every #DB then).
/// Returns false if the exception is not the debugger's.
pub(crate) fn exception(vcpu: &Vcpu, inner: &mut VcpuInner, vector: u8) -> bool {
    match vector {
        DB_VECTOR if single_stepping(inner) || hw_breakpoints(inner) => {
            inner.singlestep_done = false;
            let exit_dr6 = inner.debugger_drs.exit_dr6;
            let dr6 = if hw_breakpoints(inner) { exit_dr6 | DR6_ACTIVE_LOW } else { DR6_SINGLE_STEP };
            report(vcpu, inner, DB_VECTOR, dr6);
            true
        }
        BP_VECTOR if sw_breakpoints(inner) => {
            // RIP is the INT3's; a re-injected #BP resumes after it.
            inner.bp_exit = true;
            report(vcpu, inner, BP_VECTOR, inner.state.dr6);
            true
        }
        _ => false,
    }
}

/// KVM_EXIT_DEBUG with the exception, the linear RIP, DR6 and DR7 (the
/// debugger's DR7 while its breakpoints are set).
fn report(vcpu: &Vcpu, inner: &VcpuInner, vector: u8, dr6: u64) {
    let s = &inner.state;
    let pc = s.cs.base.wrapping_add(s.rip);
    let dr7 = if hw_breakpoints(inner) { inner.debugger_drs.dr7 | (1 << 10) } else { s.dr7 };
    vcpu.run.set_debug(vector as u32, pc, dr6, dr7);
}

/// KVM_SET_VCPU_EVENTS injects an exception: a #BP right after a #BP exit is
/// the guest's own INT3 handed back by the VMM, delivered as the INT3 would
/// have been (a software exception, returning after the one-byte INT3).
pub(crate) fn reinjected_exception(inner: &mut VcpuInner, vector: u8) {
    if vector == BP_VECTOR && core::mem::take(&mut inner.bp_exit) {
        inner.state.rip = inner.state.rip.wrapping_add(1);
        if let Some(e) = inner.state.pending_event.as_mut() {
            e.soft = true;
        }
    }
}
