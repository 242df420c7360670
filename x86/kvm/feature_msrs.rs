// SPDX-License-Identifier: GPL-2.0
//! Feature MSRs: MSRs that describe what KVM can offer a guest rather than a
//! vCPU's state (upstream's msr_based_features): KVM_GET_MSR_FEATURE_INDEX_LIST
//! lists them and KVM_GET_MSRS on /dev/kvm reads them. VMMs use them to decide
//! which CPU model fits (QEMU filters its feature words with them).
//!
//! Values as upstream's on this host: IA32_ARCH_CAPABILITIES from the host's
//! own and the kernel's vulnerability facts; IA32_PERF_CAPABILITIES 0 (no
//! vPMU, as upstream without one); IA32_UCODE_REV the host's microcode
//! revision; on AMD, DE_CFG with LFENCE-serializing if the host has it.

use crate::bindings;
use kernel::prelude::*;

const MSR_IA32_UCODE_REV: u32 = 0x8b;
const MSR_IA32_ARCH_CAPABILITIES: u32 = 0x10a;
const MSR_IA32_PERF_CAPABILITIES: u32 = 0x345;
/// A vendor feature MSR (kvm-amd's DE_CFG), probed as upstream does.
const VENDOR_CANDIDATES: &[u32] = &[0xc001_1029];

fn vendor_msr(index: u32) -> Option<u64> {
    crate::virtualization::vendor().and_then(|v| v.get_feature_msr(index))
}

/// Calls `f` with the feature MSRs of the registered vendor, in upstream's
/// order (the vendor's first).
pub(crate) fn with_indices<R>(f: impl FnOnce(&[u32]) -> R) -> R {
    let mut list = [0u32; 4];
    let mut n = 0;
    for &i in VENDOR_CANDIDATES {
        if vendor_msr(i).is_some() {
            list[n] = i;
            n += 1;
        }
    }
    for i in [MSR_IA32_UCODE_REV, MSR_IA32_ARCH_CAPABILITIES, MSR_IA32_PERF_CAPABILITIES] {
        list[n] = i;
        n += 1;
    }
    f(&list[..n])
}

/// The value of feature MSR `index`, or None if it is not one.
pub(crate) fn value(index: u32) -> Option<u64> {
    match index {
        // SAFETY: reads host state; no preconditions.
        MSR_IA32_ARCH_CAPABILITIES => Some(unsafe { bindings::kvm_rs_arch_capabilities() }),
        MSR_IA32_PERF_CAPABILITIES => Some(0),
        MSR_IA32_UCODE_REV => Some(crate::cpu::rdmsr_safe(MSR_IA32_UCODE_REV).unwrap_or(0)),
        _ => vendor_msr(index),
    }
}

/// Whether the host runs with LFENCE dispatch-serializing (kvm-amd offers
/// DE_CFG bit 1 then).
pub fn lfence_serializing() -> bool {
    // SAFETY: reads a CPU feature flag.
    unsafe { bindings::kvm_rs_lfence_serializing() }
}

/// KVM_GET_MSRS on /dev/kvm: fills in each entry's value until the first
/// index that is neither a feature MSR nor an advertised vCPU MSR; returns how
/// many were filled (upstream's msr_io with do_get_feature_msr).
pub(crate) fn get_msrs(arg: usize) -> Result<isize> {
    crate::msrs::msr_io(arg, true, |e| {
        // MSRs advertised for vCPUs read as 0 here, as upstream lets user
        // space read every MSR it advertises.
        match value(e.index).or_else(|| crate::msr_list::is_reported(e.index).then_some(0)) {
            Some(v) => {
                e.data = v;
                true
            }
            None => false,
        }
    })
}
