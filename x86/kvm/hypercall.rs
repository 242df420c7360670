// SPDX-License-Identifier: GPL-2.0
//! KVM hypercalls (VMMCALL on AMD, VMCALL on Intel; upstream's
//! kvm_emulate_hypercall): the number in RAX, arguments in RBX, RCX, RDX,
//! RSI, the result in RAX (32-bit values outside 64-bit mode). Only CPL 0 may
//! call (-KVM_EPERM otherwise).
//!
//! What is answered: KVM_HC_VAPIC_POLL_IRQ (0: nothing to do, an interrupt
//! is injected at the next entry anyway); KVM_HC_CLOCK_PAIRING
//! -KVM_EOPNOTSUPP (upstream's answer when the host clock cannot be paired
//! with the TSC; the pairing is not implemented); everything else
//! -KVM_ENOSYS. That includes KVM_HC_KICK_CPU, KVM_HC_SEND_IPI and
//! KVM_HC_SCHED_YIELD: their features (PV_UNHALT, PV_SEND_IPI,
//! PV_SCHED_YIELD) are not offered in KVM_GET_SUPPORTED_CPUID and not
//! implemented, so they answer as upstream does for a vCPU that enforces
//! its PV CPUID without them (upstream performs them for a vCPU that does
//! not enforce, whatever its CPUID says), and KVM_HC_MAP_GPA_RANGE, which
//! needs KVM_CAP_EXIT_HYPERCALL (not offered).

use crate::arch_state::gpr;
use crate::run::{skip_instruction, Next};
use crate::vcpu::{Vcpu, VcpuInner};

/// Hypercall numbers (include/uapi/linux/kvm_para.h).
pub(crate) const KVM_HC_VAPIC_POLL_IRQ: u64 = 1;
pub(crate) const KVM_HC_CLOCK_PAIRING: u64 = 9;

/// Results (negated in RAX).
const KVM_ENOSYS: u64 = 1000;
const KVM_EPERM: u64 = 1;
const KVM_EOPNOTSUPP: u64 = 95;

fn neg(e: u64) -> u64 {
    e.wrapping_neg()
}

/// The guest executed VMMCALL/VMCALL.
pub(crate) fn kvm_emulate_hypercall(vcpu: &Vcpu, inner: &mut VcpuInner) -> Next {
    let s = &inner.state;
    let op_64_bit = s.long_mode() && s.cs.l != 0;
    let nr = if op_64_bit { s.gprs[gpr::RAX] } else { s.gprs[gpr::RAX] & 0xffff_ffff };
    let ret = if s.cpl() != 0 {
        neg(KVM_EPERM)
    } else {
        match nr {
            KVM_HC_VAPIC_POLL_IRQ => 0,
            KVM_HC_CLOCK_PAIRING => neg(KVM_EOPNOTSUPP),
            _ => neg(KVM_ENOSYS),
        }
    };
    inner.state.gprs[gpr::RAX] = if op_64_bit { ret } else { ret & 0xffff_ffff };
    skip_instruction(vcpu, inner, 3);
    Next::Guest
}
