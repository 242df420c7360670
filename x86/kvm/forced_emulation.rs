// SPDX-License-Identifier: GPL-2.0
//! #UD exits and the forced emulation prefix (upstream's handle_ud).
//!
//! #UD is always intercepted, as upstream does. Without the prefix the #UD is
//! given back to the guest, except for the other vendor's hypercall
//! instruction (upstream emulates the few instructions its emulator marks
//! EmulateOnUD; kvm.ko does that one: x86/kvm/hypercall.rs). With kvm's `force_emulation_prefix` parameter non-zero, the
//! five bytes `ud2; .ascii "kvm"` (0f 0b 6b 76 6d) before an instruction make
//! KVM skip them and run that instruction through the emulator: the KVM
//! selftests and kvm-unit-tests use it to test the emulator from a guest.

use crate::arch_state::rflags;
use crate::emulate;
use crate::run::{set_rip, Next};
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// `ud2; .ascii "kvm"` (upstream's __KVM_EMULATE_PREFIX).
const KVM_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x6b, 0x76, 0x6d];

/// An intercepted #UD at RIP.
pub(crate) fn handle_ud(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let fep = crate::params::force_emulation_prefix();
    if fep != 0 && has_prefix(vcpu, inner) {
        if fep & crate::params::FEP_CLEAR_RFLAGS_RF != 0 {
            inner.state.rflags &= !rflags::RF;
        }
        let rip = inner.state.rip.wrapping_add(KVM_EMULATE_PREFIX.len() as u64);
        set_rip(&mut inner.state, rip);
        // Upstream's EMULTYPE_TRAP_UD_FORCED: an instruction that cannot be
        // decoded (or fetched) is #UD; one that decodes but cannot be
        // executed is an emulation failure.
        if let Some(native) = crate::hypercall::foreign_hypercall_at_rip(vcpu, inner) {
            return crate::hypercall::fix_hypercall(vcpu, inner, native);
        }
        if is_cpuid_at_rip(vcpu, inner) {
            // The memory emulator has no CPUID; the exit handler's answer is
            // the emulated one.
            crate::cpuid::emulate_cpuid(inner, vcpu.shared.id);
            let rip = inner.state.rip.wrapping_add(2);
            set_rip(&mut inner.state, rip);
            inner.state.rflags &= !rflags::RF;
            inner.state.interrupt_shadow = false;
            return Ok(Next::Guest);
        }
        if !emulate::decodes_at_rip(vcpu, &inner.state) {
            inner.state.queue_exception(6, None);
            return Ok(Next::Guest);
        }
        return emulate::emulate_instruction(vcpu, inner);
    }
    // Upstream's EMULTYPE_TRAP_UD: of the instructions its emulator runs on
    // #UD (EmulateOnUD), kvm.ko does the other vendor's hypercall.
    if let Some(native) = crate::hypercall::foreign_hypercall_at_rip(vcpu, inner) {
        return crate::hypercall::fix_hypercall(vcpu, inner, native);
    }
    inner.state.queue_exception(6, None);
    Ok(Next::Guest)
}

/// Whether the bytes at RIP are the forced emulation prefix.
fn has_prefix(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    match emulate::fetch_at_rip(vcpu, &inner.state) {
        Some((bytes, n)) => n >= KVM_EMULATE_PREFIX.len() && bytes[..KVM_EMULATE_PREFIX.len()] == KVM_EMULATE_PREFIX,
        None => false,
    }
}

/// Whether the instruction at RIP is CPUID (0f a2, without prefixes).
fn is_cpuid_at_rip(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    matches!(emulate::fetch_at_rip(vcpu, &inner.state), Some((b, n)) if n >= 2 && b[0] == 0x0f && b[1] == 0xa2)
}
