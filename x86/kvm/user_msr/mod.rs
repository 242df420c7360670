// SPDX-License-Identifier: GPL-2.0
//! MSR accesses user space takes part in: KVM_CAP_X86_USER_SPACE_MSR (the
//! guest's RDMSR/WRMSR that fail in the kernel exit to user space with
//! KVM_EXIT_X86_RDMSR/WRMSR instead of raising #GP, for the reasons user
//! space chose) and KVM_X86_SET_MSR_FILTER (which MSRs the guest may access
//! at all). Upstream's kvm_emulate_rdmsr/wrmsr, kvm_msr_user_space and the
//! complete_fast_* callbacks in arch/x86/kvm/x86.c.

mod exit;
mod filter;

pub(crate) use exit::{complete, handle_rdmsr, handle_wrmsr};

use crate::uapi;
use crate::vm::Vm;
use core::sync::atomic::{AtomicU32, Ordering};
use filter::MsrFilter;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::{Arc, SpinLock};

/// The VM's choices (upstream's user_space_msr_mask and msr_filter).
#[pin_data]
pub(crate) struct VmUserMsr {
    /// KVM_MSR_EXIT_REASON_* for which a failed access exits to user space.
    mask: AtomicU32,
    /// The current filter (None: everything allowed). A leaf spinlock, taken
    /// by vCPUs for the look-up of one MSR and by the ioctl for the swap;
    /// never held across guest entry or anything that sleeps.
    #[pin]
    filter: SpinLock<Option<Arc<MsrFilter>>>,
}

impl VmUserMsr {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(VmUserMsr {
            mask: AtomicU32::new(0),
            filter <- new_spinlock!(None, "VmUserMsr::filter"),
        })
    }

    /// Whether a failure for `reason` (KVM_MSR_EXIT_REASON_*) goes to user space.
    pub(crate) fn exits_for(&self, reason: u32) -> bool {
        self.mask.load(Ordering::Relaxed) & reason != 0
    }

    /// Whether the guest may access MSR `index` for `kind` (KVM_MSR_FILTER_READ
    /// or _WRITE). The x2APIC MSRs are never filtered (upstream).
    pub(crate) fn allows(&self, index: u32, kind: u32) -> bool {
        if (0x800..=0x8ff).contains(&index) {
            return true;
        }
        self.filter.lock().as_ref().map_or(true, |f| f.allows(index, kind))
    }

    /// Whether an MSR filter that may deny something is installed: a vendor
    /// that lets some MSRs through without exits must then intercept them.
    pub(crate) fn filtering(&self) -> bool {
        self.filter.lock().as_ref().map_or(false, |f| f.may_deny())
    }
}

/// KVM_ENABLE_CAP on the VM for the capabilities of this file; None for others.
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Option<Result> {
    match cap.cap {
        uapi::KVM_CAP_X86_USER_SPACE_MSR => {
            // Any time, any number of times (upstream); unknown reasons: EINVAL.
            if cap.args[0] & !(uapi::KVM_MSR_EXIT_REASON_VALID_MASK as u64) != 0 {
                return Some(Err(EINVAL));
            }
            vm.user_msr.mask.store(cap.args[0] as u32, Ordering::Relaxed);
            Some(Ok(()))
        }
        _ => None,
    }
}

/// KVM_X86_SET_MSR_FILTER: builds the new filter, then swaps it in whole.
/// vCPUs use it from their next MSR exit on (with VMX, from their next entry
/// for the MSRs it otherwise lets through).
pub(crate) fn set_msr_filter(vm: &Vm, arg: usize) -> Result<isize> {
    let new = filter::build(arg)?;
    let old = vm.user_msr.filter.lock().replace(new);
    // Freed here, outside the spinlock.
    drop(old);
    Ok(0)
}
