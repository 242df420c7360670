// SPDX-License-Identifier: GPL-2.0
//! The MSRs reported by KVM_GET_MSR_INDEX_LIST (upstream's msrs_to_save +
//! emulated_msrs) and KVM_GET_MSR_FEATURE_INDEX_LIST.
//!
//! A candidate is reported only if the host CPU has it (probed with rdmsr_safe, as
//! upstream's kvm_probe_msr_to_save) and the vendor virtualizes it. QEMU writes
//! every listed MSR and asserts each write is accepted, so the list must never
//! name an MSR that KVM_SET_MSRS would refuse.

use crate::arch::msr;
use crate::x86_ops::VendorOps;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// MSRs that vCPUs save and restore (guest state kept in the VMCB/VMCS or in
/// software).
const CANDIDATES: &[u32] = &[
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
    msr::STAR,
    msr::LSTAR,
    msr::CSTAR,
    msr::SYSCALL_MASK,
    msr::KERNEL_GS_BASE,
    msr::IA32_TSC,
    msr::IA32_PAT,
];

/// MSRs kvm.ko emulates whatever the host has (upstream's emulated_msrs):
/// IA32_TSC_DEADLINE (the in-kernel APIC's; without one it reads 0 and
/// ignores writes, as upstream), IA32_TSC_ADJUST, kvmclock's four,
/// MSR_PLATFORM_INFO, MSR_MISC_FEATURES_ENABLES, MSR_IA32_POWER_CTL,
/// MSR_KVM_STEAL_TIME, IA32_SMBASE (on vendors that offer SMM),
/// MSR_SMI_COUNT. Each one only if the vendor virtualizes it
/// (has_emulated_msr).
const EMULATED: &[u32] = &[
    crate::platform_info::MSR_PLATFORM_INFO,
    crate::platform_info::MSR_MISC_FEATURES_ENABLES,
    0x1fc, // MSR_IA32_POWER_CTL
    msr::IA32_SMBASE,
    msr::SMI_COUNT,
    msr::IA32_TSC_DEADLINE,
    msr::IA32_TSC_ADJUST,
    msr::KVM_WALL_CLOCK,
    msr::KVM_SYSTEM_TIME,
    msr::KVM_WALL_CLOCK_NEW,
    msr::KVM_SYSTEM_TIME_NEW,
    msr::KVM_STEAL_TIME,
];

const MAX: usize = 64;
static LIST: [AtomicU32; MAX] = [const { AtomicU32::new(0) }; MAX];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Builds the list for `vendor` (at registration, before /dev/kvm exists).
pub(crate) fn init(vendor: &dyn VendorOps) {
    let mut n = 0;
    for &index in CANDIDATES {
        if crate::cpu::rdmsr_safe(index).is_ok() && vendor.has_emulated_msr(index) && n < MAX {
            LIST[n].store(index, Ordering::Relaxed);
            n += 1;
        }
    }
    for &index in EMULATED {
        if n < MAX && vendor.has_emulated_msr(index) {
            LIST[n].store(index, Ordering::Relaxed);
            n += 1;
        }
    }
    COUNT.store(n, Ordering::Release);
}

/// Calls `f` with the reported MSR indices.
pub fn with_msrs_to_save<R>(f: impl FnOnce(&[u32]) -> R) -> R {
    let n = COUNT.load(Ordering::Acquire).min(MAX);
    let mut buf = [0u32; MAX];
    for (dst, src) in buf.iter_mut().zip(LIST.iter()).take(n) {
        *dst = src.load(Ordering::Relaxed);
    }
    f(&buf[..n])
}

/// Whether `index` is in the reported list.
pub fn is_reported(index: u32) -> bool {
    with_msrs_to_save(|l| l.contains(&index))
}
