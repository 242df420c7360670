// SPDX-License-Identifier: GPL-2.0
//! MSR_PLATFORM_INFO and CPUID faulting (upstream's msr_platform_info,
//! msr_misc_features_enables, KVM_CAP_MSR_PLATFORM_INFO).
//!
//! MSR_PLATFORM_INFO is what user space sets (host writes only); the guest may
//! read it unless the VM turned that off with KVM_ENABLE_CAP(
//! KVM_CAP_MSR_PLATFORM_INFO, 0), after which a guest read is #GP. Its bit 31
//! (set at vCPU creation, as upstream) says CPUID faulting exists: the guest
//! then turns it on in MSR_MISC_FEATURES_ENABLES bit 0, and CPUID at CPL > 0
//! raises #GP.

use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use crate::vm::Vm;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

pub(crate) const MSR_PLATFORM_INFO: u32 = 0xce;
pub(crate) const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;
const PLATFORM_INFO_CPUID_FAULT: u64 = 1 << 31;
const MISC_FEATURES_CPUID_FAULT: u64 = 1 << 0;

/// A vCPU's two MSRs.
#[derive(Clone, Copy)]
pub(crate) struct VcpuPlatform {
    platform_info: u64,
    misc_features_enables: u64,
}

impl VcpuPlatform {
    pub(crate) fn new() -> Self {
        VcpuPlatform { platform_info: PLATFORM_INFO_CPUID_FAULT, misc_features_enables: 0 }
    }
}

/// Reads one of the two MSRs; None for other MSRs.
pub(crate) fn get_msr(vcpu: &Vcpu, inner: &VcpuInner, index: u32, host: bool) -> Option<Result<u64>> {
    let p = &inner.msrs.platform;
    Some(match index {
        MSR_PLATFORM_INFO if !host && !vcpu.vm.platform_info_readable.load(Ordering::Relaxed) => Err(EINVAL),
        MSR_PLATFORM_INFO => Ok(p.platform_info),
        MSR_MISC_FEATURES_ENABLES => Ok(p.misc_features_enables),
        _ => return None,
    })
}

/// Writes one of the two MSRs; None for other MSRs.
pub(crate) fn set_msr(inner: &mut VcpuInner, index: u32, v: u64, host: bool) -> Option<Result> {
    let p = &mut inner.msrs.platform;
    let faulting = p.misc_features_enables & MISC_FEATURES_CPUID_FAULT != 0;
    Some(match index {
        // Only user space writes it, and it cannot take CPUID faulting away
        // while the guest uses it.
        MSR_PLATFORM_INFO if !host || (v & PLATFORM_INFO_CPUID_FAULT == 0 && faulting) => Err(EINVAL),
        MSR_PLATFORM_INFO => {
            p.platform_info = v;
            Ok(())
        }
        MSR_MISC_FEATURES_ENABLES => {
            let may_fault = p.platform_info & PLATFORM_INFO_CPUID_FAULT != 0;
            if v & !MISC_FEATURES_CPUID_FAULT != 0 || (v & MISC_FEATURES_CPUID_FAULT != 0 && !may_fault) {
                Err(EINVAL)
            } else {
                p.misc_features_enables = v;
                Ok(())
            }
        }
        _ => return None,
    })
}

/// Whether the guest's CPUID must raise #GP now (faulting on, CPL > 0).
pub(crate) fn cpuid_faults(inner: &VcpuInner) -> bool {
    inner.msrs.platform.misc_features_enables & MISC_FEATURES_CPUID_FAULT != 0 && inner.state.cpl() > 0
}

/// KVM_ENABLE_CAP(KVM_CAP_MSR_PLATFORM_INFO) on the VM: args[0] says whether
/// guests may read MSR_PLATFORM_INFO (any time; upstream). None for other caps.
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Option<Result> {
    if cap.cap != uapi::KVM_CAP_MSR_PLATFORM_INFO {
        return None;
    }
    vm.platform_info_readable.store(cap.args[0] != 0, Ordering::Relaxed);
    Some(Ok(()))
}
