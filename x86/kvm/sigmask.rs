// SPDX-License-Identifier: GPL-2.0
//! KVM_SET_SIGNAL_MASK: the signal mask a vCPU thread has while KVM_RUN runs the
//! guest (upstream's kvm_vcpu_ioctl_set_sigmask, kvm_sigset_activate/deactivate).

use crate::bindings;
use crate::uapi;
use crate::user;
use kernel::prelude::*;

/// A signal set (x86-64: one 64-bit word).
pub(crate) type SigSet = u64;

/// SIGKILL and SIGSTOP can never be blocked.
const UNBLOCKABLE: u64 = (1 << (9 - 1)) | (1 << (19 - 1));

/// Reads `struct kvm_signal_mask { u32 len; u8 sigset[len]; }`; a null pointer
/// removes the mask.
pub(crate) fn set_signal_mask(slot: &mut Option<SigSet>, arg: usize) -> Result {
    if arg == 0 {
        *slot = None;
        return Ok(());
    }
    let hdr: uapi::kvm_signal_mask = user::read(arg)?;
    if hdr.len != 8 {
        return Err(EINVAL);
    }
    let set: u64 = user::read(arg + core::mem::size_of::<uapi::kvm_signal_mask>())?;
    *slot = Some(set & !UNBLOCKABLE);
    Ok(())
}

/// Installs the vCPU's mask, if it has one; returns whether it did.
pub(crate) fn activate(mask: &Option<SigSet>) -> bool {
    match mask {
        Some(set) => {
            // SAFETY: sets the current task's blocked mask, saving the old one in
            // current->real_blocked, exactly as upstream's kvm_sigset_activate.
            unsafe { bindings::kvm_rs_sigmask_activate(*set) };
            true
        }
        None => false,
    }
}

/// Restores the mask saved by [`activate`].
pub(crate) fn deactivate(activated: bool) {
    if activated {
        // SAFETY: pairs with kvm_rs_sigmask_activate on the same task.
        unsafe { bindings::kvm_rs_sigmask_deactivate() };
    }
}
