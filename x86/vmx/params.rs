// SPDX-License-Identifier: GPL-2.0
//! Values of kvm_intel's module parameters (declared in params.c) and the hook
//! for its fixed ones.

use kernel::ffi::{c_char, c_int};
use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    static kvm_intel_ept: bool;
    static kvm_intel_unrestricted_guest: bool;
    static mut kvm_intel_vpid: bool;
    static mut kvm_intel_vnmi: bool;
    static kvm_intel_dump_invalid_vmcs: bool;
}

/// `dump_invalid_vmcs` (writable at any time: read at each use).
pub(crate) fn dump_invalid_vmcs() -> bool {
    // SAFETY: a bool written only by the kernel's parameter code; a volatile
    // read sees a whole value.
    unsafe { core::ptr::read_volatile(&raw const kvm_intel_dump_invalid_vmcs) }
}

/// `ept`: use extended page tables (the only paging mode implemented).
pub(crate) fn ept() -> bool {
    // SAFETY: a bool written only by the module loader before init runs (0444).
    unsafe { core::ptr::read_volatile(&raw const kvm_intel_ept) }
}

/// `unrestricted_guest` (required: real mode is not emulated).
pub(crate) fn unrestricted_guest() -> bool {
    // SAFETY: as for `ept`.
    unsafe { core::ptr::read_volatile(&raw const kvm_intel_unrestricted_guest) }
}

/// `vpid` and `vnmi`: whether each may be used, given whether the CPU can.
/// Returns the decisions and leaves them in the parameters, which then read
/// as what is used (upstream's vmx hardware_setup).
pub(crate) fn resolve(vpid_hw: bool, vnmi_hw: bool) -> (bool, bool) {
    // SAFETY: hardware_setup, called from module init: the parameters are 0444,
    // so nothing else writes them.
    unsafe {
        let vpid = core::ptr::read_volatile(&raw const kvm_intel_vpid) && vpid_hw;
        let vnmi = core::ptr::read_volatile(&raw const kvm_intel_vnmi) && vnmi_hw;
        core::ptr::write_volatile(&raw mut kvm_intel_vpid, vpid);
        core::ptr::write_volatile(&raw mut kvm_intel_vnmi, vnmi);
        (vpid, vnmi)
    }
}

/// Set at the end of module init (see [`kvm::params::fixed_param`]).
pub(crate) static LIVE: AtomicBool = AtomicBool::new(false);

/// kvm_intel's hook for its fixed parameters (params.c).
///
/// # Safety
/// `name`, `val` and `why` are NUL-terminated strings valid for the call.
#[no_mangle]
pub(crate) unsafe extern "C" fn kvm_intel_param_fixed(name: *const c_char, val: *const c_char, same: bool, why: *const c_char) -> c_int {
    // SAFETY: the caller's strings, per the contract.
    unsafe { kvm::params::fixed_param("kvm_intel", LIVE.load(Ordering::Acquire), name, val, same, why) }
}
