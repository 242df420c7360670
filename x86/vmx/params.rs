// SPDX-License-Identifier: GPL-2.0
//! Values of kvm_intel's module parameters (declared in params.c).

extern "C" {
    static kvm_intel_ept: bool;
}

/// `ept`: use extended page tables (the only paging mode implemented).
pub(crate) fn ept() -> bool {
    // SAFETY: a bool written only by the module loader before init runs (0444).
    unsafe { core::ptr::read_volatile(&raw const kvm_intel_ept) }
}
