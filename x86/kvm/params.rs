// SPDX-License-Identifier: GPL-2.0
//! kvm.ko's module parameters (declared in params.c with upstream's names,
//! types and permissions) and the decision for the fixed ones
//! (include-compat/kvm_rs_params.h), shared with the vendor modules.
//!
//! The writable (0644) values are read with a volatile load at each use: sysfs
//! may store a new value at any time (an aligned word, so a use sees the old or
//! the new value, as upstream's READ_ONCE).

use kernel::ffi::{c_char, c_int};
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::prelude::*;
use kernel::str::CStr;

extern "C" {
    static kvm_rs_ignore_msrs: bool;
    static kvm_rs_report_ignored_msrs: bool;
    static kvm_rs_min_timer_period_us: u32;
    static kvm_rs_tsc_tolerance_ppm: u32;
    static kvm_rs_force_emulation_prefix: i32;
    static mut kvm_rs_pi_inject_timer: i32;
}

/// `force_emulation_prefix` bit 1 (upstream's KVM_FEP_CLEAR_RFLAGS_RF).
pub(crate) const FEP_CLEAR_RFLAGS_RF: i32 = 1 << 1;

macro_rules! read_param {
    ($v:ident) => {
        // SAFETY: a word-sized parameter written only by the kernel's parameter
        // code (module load, sysfs stores); a volatile read sees a whole value.
        unsafe { core::ptr::read_volatile(&raw const $v) }
    };
}

/// `ignore_msrs`: unknown MSRs read as 0 and ignore writes (no #GP).
pub(crate) fn ignore_msrs() -> bool {
    read_param!(kvm_rs_ignore_msrs)
}

/// `report_ignored_msrs`: log what `ignore_msrs` lets through.
pub(crate) fn report_ignored_msrs() -> bool {
    read_param!(kvm_rs_report_ignored_msrs)
}

/// `min_timer_period_us` in ns: the shortest period of a periodic LAPIC or
/// PIT timer.
pub(crate) fn min_timer_period_ns() -> u64 {
    u64::from(read_param!(kvm_rs_min_timer_period_us)) * 1000
}

/// `tsc_tolerance_ppm`.
pub(crate) fn tsc_tolerance_ppm() -> u64 {
    u64::from(read_param!(kvm_rs_tsc_tolerance_ppm))
}

/// `force_emulation_prefix` (0: off; any other value on; bit 1: clear RF).
pub(crate) fn force_emulation_prefix() -> i32 {
    read_param!(kvm_rs_force_emulation_prefix)
}

/// Upstream's kvm_msr_ignored_check: whether an access to an MSR KVM does not
/// know is let through (reads give 0, writes are dropped) instead of #GP.
pub(crate) fn msr_ignored(index: u32, data: u64, write: bool) -> bool {
    if !ignore_msrs() {
        return false;
    }
    if report_ignored_msrs() {
        let op = if write { "wrmsr" } else { "rdmsr" };
        pr_info!("ignored {}: {:#x} data {:#x}\n", op, index, data);
    }
    true
}

/// Set once kvm.ko's init has run: later writes are sysfs stores.
static KVM_LIVE: AtomicBool = AtomicBool::new(false);

/// Called by kvm.ko's module init: resolves the "auto" values (as upstream's
/// kvm_x86_vendor_init) and marks the module live.
pub(crate) fn init() {
    // pi_inject_timer=-1 means "decide at load": upstream takes it from the
    // timer housekeeping; without posted interrupts it has no effect, so the
    // value of a system without nohz_full is used.
    // SAFETY: module init, before sysfs can write the parameter concurrently
    // (the module is not live yet); an aligned word.
    unsafe {
        if core::ptr::read_volatile(&raw const kvm_rs_pi_inject_timer) == -1 {
            core::ptr::write_volatile(&raw mut kvm_rs_pi_inject_timer, 0);
        }
    }
    KVM_LIVE.store(true, Ordering::Release);
}

/// The decision for a fixed parameter (see kvm_rs_params.h): the fixed value
/// is always fine; another one is dropped with a dmesg line while the module
/// loads (it then runs as upstream's does on hardware without the feature)
/// and refused with EINVAL afterwards.
///
/// # Safety
/// `name`, `val` and `why` are NUL-terminated strings valid for the call.
pub unsafe fn fixed_param(module: &str, live: bool, name: *const c_char, val: *const c_char, same: bool, why: *const c_char) -> c_int {
    if same {
        return 0;
    }
    // SAFETY: per the function's contract.
    let (name, val, why) = unsafe { (CStr::from_char_ptr(name), CStr::from_char_ptr(val), CStr::from_char_ptr(why)) };
    // A sysfs write brings its newline.
    let val = core::str::from_utf8(val.as_bytes().trim_ascii_end()).unwrap_or("?");
    if live {
        pr_warn!("{}.{}={} refused: {}\n", module, name, val, why);
        return EINVAL.to_errno();
    }
    pr_warn!("{}.{}={} ignored: {}\n", module, name, val, why);
    0
}

/// kvm.ko's hook for its fixed parameters (params.c).
///
/// # Safety
/// See [`fixed_param`].
#[no_mangle]
pub unsafe extern "C" fn kvm_rs_param_fixed(name: *const c_char, val: *const c_char, same: bool, why: *const c_char) -> c_int {
    // SAFETY: the caller's strings, per the contract.
    unsafe { fixed_param("kvm", KVM_LIVE.load(Ordering::Acquire), name, val, same, why) }
}

/// Upstream's kstrtobool: the first character decides (`on`/`off` by the
/// second).
fn kstrtobool(s: &[u8]) -> Option<bool> {
    match s {
        [b'y' | b'Y' | b't' | b'T' | b'1', ..] => Some(true),
        [b'n' | b'N' | b'f' | b'F' | b'0', ..] => Some(false),
        [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

/// `nx_huge_pages` with upstream's spellings: `force` is on (1), `off` and
/// `never` are off (0), `auto` is KVM's choice (2: on exactly on CPUs with
/// the iTLB multihit bug, params.c), else a boolean. Returns the mode for
/// params.c to store, or a negative errno.
///
/// # Safety
/// `val` is a NUL-terminated string valid for the call.
#[no_mangle]
pub unsafe extern "C" fn kvm_rs_param_nx_huge_pages(val: *const c_char) -> c_int {
    // SAFETY: per the contract.
    let v = unsafe { CStr::from_char_ptr(val) };
    let word = v.as_bytes().trim_ascii_end();
    match word {
        b"auto" => 2,
        b"force" => 1,
        b"off" | b"never" => 0,
        w => match kstrtobool(w) {
            Some(on) => on as c_int,
            None => EINVAL.to_errno(),
        },
    }
}
