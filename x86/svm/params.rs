// SPDX-License-Identifier: GPL-2.0
//! Values of kvm_amd's module parameters (declared in params.c).

extern "C" {
    static kvm_amd_npt: bool;
}

/// `npt`: use nested paging (the only paging mode implemented).
pub(crate) fn npt() -> bool {
    // SAFETY: a bool written only by the module loader before init runs (0444).
    unsafe { core::ptr::read_volatile(&raw const kvm_amd_npt) }
}
