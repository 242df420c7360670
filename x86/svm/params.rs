// SPDX-License-Identifier: GPL-2.0
//! Values of kvm_amd's module parameters (declared in params.c) and the hook
//! for its fixed ones.

use kernel::ffi::{c_char, c_int};
use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    static kvm_amd_npt: bool;
    static mut kvm_amd_nrips: i32;
    static kvm_amd_dump_invalid_vmcb: bool;
}

/// `dump_invalid_vmcb` (writable at any time: read at each use).
pub(crate) fn dump_invalid_vmcb() -> bool {
    // SAFETY: a bool written only by the kernel's parameter code; a volatile
    // read sees a whole value.
    unsafe { core::ptr::read_volatile(&raw const kvm_amd_dump_invalid_vmcb) }
}

/// `npt`: use nested paging (the only paging mode implemented).
pub(crate) fn npt() -> bool {
    // SAFETY: a bool written only by the module loader before init runs (0444).
    unsafe { core::ptr::read_volatile(&raw const kvm_amd_npt) }
}

/// `nrips`: whether next-RIP save may be used; `hardware` says whether the
/// CPU has it. Returns the decision and leaves it in the parameter, which then
/// reads as what is used (upstream's svm_hardware_setup).
pub(crate) fn resolve_nrips(hardware: bool) -> bool {
    // SAFETY: hardware_setup, called from module init: the parameter is 0444,
    // so nothing else writes it; an aligned word.
    unsafe {
        let on = core::ptr::read_volatile(&raw const kvm_amd_nrips) != 0 && hardware;
        core::ptr::write_volatile(&raw mut kvm_amd_nrips, on as i32);
        on
    }
}

/// Set at the end of module init (see [`kvm::params::fixed_param`]).
pub(crate) static LIVE: AtomicBool = AtomicBool::new(false);

/// kvm_amd's hook for its fixed parameters (params.c).
///
/// # Safety
/// `name`, `val` and `why` are NUL-terminated strings valid for the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn kvm_amd_param_fixed(name: *const c_char, val: *const c_char, same: bool, why: *const c_char) -> c_int {
    // SAFETY: the caller's strings, per the contract.
    unsafe { kvm::params::fixed_param("kvm_amd", LIVE.load(Ordering::Acquire), name, val, same, why) }
}
