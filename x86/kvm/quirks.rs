// SPDX-License-Identifier: GPL-2.0
//! KVM_CAP_DISABLE_QUIRKS2: the upstream behaviours ("quirks") a VMM may turn
//! off for a VM. Only the quirks whose both behaviours are implemented are
//! offered (upstream's kvm_caps.supported_quirks lists more); KVM_CAP_DISABLE_QUIRKS
//! (version 1, which cannot refuse a quirk) is not offered.

use crate::uapi;
use crate::vm::Vm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::prelude::*;

/// A VM's behaviour switches set with KVM_ENABLE_CAP (upstream keeps them in
/// kvm->arch): read without a lock by the vCPUs.
pub(crate) struct VmSwitches {
    /// KVM_CAP_DISABLE_QUIRKS2: the disabled quirks.
    pub(crate) disabled_quirks: AtomicU64,
    /// KVM_CAP_EXIT_ON_EMULATION_FAILURE (x86/kvm/emulation_failure.rs).
    pub(crate) exit_on_emulation_error: AtomicBool,
}

impl VmSwitches {
    pub(crate) const fn new() -> Self {
        VmSwitches { disabled_quirks: AtomicU64::new(0), exit_on_emulation_error: AtomicBool::new(false) }
    }
}

/// The quirks that can be disabled (KVM_CHECK_EXTENSION's answer):
/// FIX_HYPERCALL_INSN (x86/kvm/hypercall.rs).
pub(crate) const SUPPORTED: u64 = uapi::KVM_X86_QUIRK_FIX_HYPERCALL_INSN as u64;

/// KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2): args[0] the quirks to disable,
/// added to those already disabled (upstream's order: any unsupported bit
/// is EINVAL).
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Result {
    if cap.args[0] & !SUPPORTED != 0 {
        return Err(EINVAL);
    }
    vm.switches.disabled_quirks.fetch_or(cap.args[0], Ordering::Relaxed);
    Ok(())
}

/// Upstream's kvm_check_has_quirk: the quirk's behaviour is on.
pub(crate) fn has_quirk(vm: &Vm, quirk: u32) -> bool {
    vm.switches.disabled_quirks.load(Ordering::Relaxed) & quirk as u64 == 0
}
