// SPDX-License-Identifier: GPL-2.0
//! KVM hypercalls (VMMCALL on AMD, VMCALL on Intel; upstream's
//! kvm_emulate_hypercall) and the fix-up of the other vendor's instruction
//! (upstream's em_hypercall / emulator_fix_hypercall, KVM_X86_QUIRK_FIX_HYPERCALL_INSN).

use crate::arch_state::gpr;
use crate::emulate;
use crate::run::Next;
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// Hypercall numbers (include/uapi/linux/kvm_para.h) and errors.
const KVM_HC_VAPIC_POLL_IRQ: u64 = 1;
const KVM_HC_SCHED_YIELD: u64 = 11;
const KVM_ENOSYS: u64 = 1000;
const KVM_EPERM: u64 = 1;

/// VMCALL and VMMCALL: both three bytes.
const VMCALL: [u8; 3] = [0x0f, 0x01, 0xc1];
const VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];

/// A hypercall exit: the result goes to RAX and the instruction is done.
pub(crate) fn kvm_emulate_hypercall(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let s = &inner.state;
    let op_64_bit = s.long_mode() && s.cs.l != 0;
    let mut nr = s.gprs[gpr::RAX];
    if !op_64_bit {
        nr &= 0xffff_ffff;
    }
    let ret = if s.cpl() != 0 {
        KVM_EPERM.wrapping_neg()
    } else {
        match nr {
            KVM_HC_VAPIC_POLL_IRQ => 0,
            // A hint that the vCPU in RBX is worth running first; upstream
            // answers 0 whether or not it can yield to it (it cannot when
            // the target is not preempted, or nothing else runs here). The
            // directed yield is not implemented: the answer is the same.
            KVM_HC_SCHED_YIELD => 0,
            _ => KVM_ENOSYS.wrapping_neg(),
        }
    };
    inner.state.gprs[gpr::RAX] = if op_64_bit { ret } else { ret & 0xffff_ffff };
    crate::run::skip_instruction(vcpu, inner, 3);
    Ok(Next::Guest)
}

/// For a #UD at RIP: the other vendor's hypercall instruction, and the native
/// one to put in its place.
pub(crate) fn foreign_hypercall_at_rip(vcpu: &Vcpu, inner: &VcpuInner) -> Option<[u8; 3]> {
    let (bytes, n) = emulate::fetch_at_rip(vcpu, &inner.state)?;
    if n < 3 {
        return None;
    }
    // The instruction that exits as a hypercall never #UDs: the one that did
    // is the other vendor's.
    match [bytes[0], bytes[1], bytes[2]] {
        VMCALL => Some(VMMCALL),
        VMMCALL => Some(VMCALL),
        _ => None,
    }
}

/// Upstream's emulator_fix_hypercall: with KVM_X86_QUIRK_FIX_HYPERCALL_INSN
/// (the default) the native instruction is written over the foreign one and
/// the guest executes it again; with the quirk disabled the guest gets #UD.
pub(crate) fn fix_hypercall(vcpu: &Vcpu, inner: &mut VcpuInner, native: [u8; 3]) -> Result<Next> {
    let s = &inner.state;
    // The emulator's checks first: VMCALL is privileged (#GP above CPL 0),
    // VMMCALL a protected-mode instruction (#UD in real and virtual-8086 mode).
    if native == VMMCALL && s.cpl() != 0 {
        inner.state.queue_exception(13, Some(0));
        return Ok(Next::Guest);
    }
    let real_or_vm86 = s.cr0 & crate::arch::regs::cr0::PE == 0 || s.rflags & crate::arch_state::rflags::VM != 0;
    if native == VMCALL && real_or_vm86 {
        inner.state.queue_exception(6, None);
        return Ok(Next::Guest);
    }
    if !crate::quirks::has_quirk(&vcpu.vm, uapi::KVM_X86_QUIRK_FIX_HYPERCALL_INSN) {
        inner.state.queue_exception(6, None);
        return Ok(Next::Guest);
    }
    emulate::write_at_rip(vcpu, inner, &native)
}
