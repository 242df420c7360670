// SPDX-License-Identifier: GPL-2.0
//! KVM_CAP_X86_DISABLE_EXITS (upstream's hlt_in_guest, pause_in_guest...):
//! a VM whose vCPUs own their host CPUs may let the guest execute HLT
//! without an exit: the CPU halts in guest mode until an interrupt (a host
//! interrupt ends the guest, which then resumes after the HLT; an injected
//! event wakes it). As upstream, this applies to vCPUs created after the
//! capability is enabled, cannot be undone, and hides KVM_FEATURE_PV_UNHALT
//! from the KVM CPUID leaf (a halted vCPU could not be kicked by
//! KVM_HC_KICK_CPU).
//!
//! Offered (KVM_CHECK_EXTENSION): HLT and PAUSE (PAUSE never exits here:
//! there is no pause filter, so disabling its exits changes nothing).
//! Accepted too, as upstream on a host that cannot let guests use it: MWAIT,
//! which stays intercepted as without the capability. Refused (EINVAL, not offered): CSTATE, whose VMX
//! half (the C-state residency MSRs passed through) is not implemented.

use crate::uapi;
use crate::vm::Vm;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// KVM_CHECK_EXTENSION(KVM_CAP_X86_DISABLE_EXITS).
pub(crate) const OFFERED: u32 = uapi::KVM_X86_DISABLE_EXITS_HLT | uapi::KVM_X86_DISABLE_EXITS_PAUSE;

/// Whether the VM's new vCPUs run HLT in the guest.
pub(crate) fn hlt_in_guest(vm: &Vm) -> bool {
    vm.disable_exits.load(Ordering::Relaxed) & uapi::KVM_X86_DISABLE_EXITS_HLT != 0
}

/// KVM_ENABLE_CAP(KVM_CAP_X86_DISABLE_EXITS) on the VM; None for other caps.
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Option<Result> {
    if cap.cap != uapi::KVM_CAP_X86_DISABLE_EXITS {
        return None;
    }
    let accepted = OFFERED | uapi::KVM_X86_DISABLE_EXITS_MWAIT;
    if cap.args[0] & !(accepted as u64) != 0 {
        return Some(Err(EINVAL));
    }
    // Only HLT has an effect; exits once disabled stay disabled (upstream).
    vm.disable_exits.fetch_or(cap.args[0] as u32 & uapi::KVM_X86_DISABLE_EXITS_HLT, Ordering::Relaxed);
    Some(Ok(()))
}
