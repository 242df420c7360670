// SPDX-License-Identifier: GPL-2.0
//! KVM_CHECK_EXTENSION: which capabilities this implementation has.
//!
//! A capability answers non-zero only when every ioctl and behaviour it promises
//! works; everything else answers 0, as upstream does for capabilities it lacks.
//! Clients (QEMU above all) decide what to use from these answers.

use crate::uapi;

/// The answer for capability `cap` on /dev/kvm (and, later, on VM file descriptors).
pub fn check_extension(cap: u64) -> isize {
    let Ok(cap) = u32::try_from(cap) else { return 0 };
    match cap {
        // KVM_GET_SUPPORTED_CPUID with E2BIG semantics.
        uapi::KVM_CAP_EXT_CPUID => 1,
        _ => 0,
    }
}
