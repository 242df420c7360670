// SPDX-License-Identifier: GPL-2.0
//! KVM hypercalls (VMMCALL on AMD, VMCALL on Intel; upstream's
//! kvm_emulate_hypercall) and the fix-up of the other vendor's instruction
//! (upstream's em_hypercall / emulator_fix_hypercall,
//! KVM_X86_QUIRK_FIX_HYPERCALL_INSN).
//!
//! The number is in RAX, arguments in RBX, RCX, RDX, RSI, the result in RAX
//! (32-bit values outside 64-bit mode). Only CPL 0 may call (-KVM_EPERM
//! otherwise). What is answered: KVM_HC_VAPIC_POLL_IRQ (0: nothing to do, an
//! interrupt is injected at the next entry anyway); KVM_HC_SCHED_YIELD 0 when
//! the vCPU may use PV_SCHED_YIELD (always, unless it enforces its PV CPUID:
//! pv_cpuid.rs) — upstream answers 0 whether or not the directed yield
//! happened, and it is not done here (a hint only); KVM_HC_CLOCK_PAIRING
//! -KVM_EOPNOTSUPP (upstream's answer when the host clock cannot be paired
//! with the TSC; the pairing is not implemented); everything else
//! -KVM_ENOSYS. That includes KVM_HC_KICK_CPU and KVM_HC_SEND_IPI, whose
//! features (PV_UNHALT, PV_SEND_IPI) are not offered in
//! KVM_GET_SUPPORTED_CPUID and not implemented, and KVM_HC_MAP_GPA_RANGE,
//! which needs KVM_CAP_EXIT_HYPERCALL (not offered).

use crate::arch::pvclock::feature;
use crate::arch_state::gpr;
use crate::emulate;
use crate::run::{skip_instruction, Next};
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// Hypercall numbers (include/uapi/linux/kvm_para.h).
pub(crate) const KVM_HC_VAPIC_POLL_IRQ: u64 = 1;
pub(crate) const KVM_HC_CLOCK_PAIRING: u64 = 9;
pub(crate) const KVM_HC_SCHED_YIELD: u64 = 11;

/// Results (negated in RAX).
const KVM_ENOSYS: u64 = 1000;
const KVM_EPERM: u64 = 1;
const KVM_EOPNOTSUPP: u64 = 95;

/// VMCALL and VMMCALL: both three bytes.
const VMCALL: [u8; 3] = [0x0f, 0x01, 0xc1];
const VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];

fn neg(e: u64) -> u64 {
    e.wrapping_neg()
}

/// The guest executed VMMCALL/VMCALL: the result goes to RAX and the
/// instruction is done.
pub(crate) fn kvm_emulate_hypercall(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let s = &inner.state;
    let op_64_bit = s.long_mode() && s.cs.l != 0;
    let nr = if op_64_bit { s.gprs[gpr::RAX] } else { s.gprs[gpr::RAX] & 0xffff_ffff };
    let ret = if s.cpl() != 0 {
        neg(KVM_EPERM)
    } else {
        match nr {
            KVM_HC_VAPIC_POLL_IRQ => 0,
            KVM_HC_SCHED_YIELD if crate::pv_cpuid::has(inner, feature::PV_SCHED_YIELD) => 0,
            KVM_HC_CLOCK_PAIRING => neg(KVM_EOPNOTSUPP),
            _ => neg(KVM_ENOSYS),
        }
    };
    inner.state.gprs[gpr::RAX] = if op_64_bit { ret } else { ret & 0xffff_ffff };
    skip_instruction(vcpu, inner, 3);
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
