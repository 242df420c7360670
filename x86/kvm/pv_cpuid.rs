// SPDX-License-Identifier: GPL-2.0
//! KVM_CAP_ENFORCE_PV_FEATURE_CPUID (upstream's pv_cpuid, guest_pv_has,
//! kvm_update_pv_runtime): once a vCPU enables it, the KVM paravirtual MSRs
//! and hypercalls work only if the vCPU's CPUID offers their feature bit
//! (KVM_CPUID_FEATURES EAX, found after the "KVMKVMKVM" signature leaf);
//! otherwise an MSR access is #GP and a hypercall answers -KVM_ENOSYS.
//! Without it (the default), features work whatever the CPUID says.

use crate::arch::msr;
use crate::arch::pvclock::{feature, CPUID_FEATURES, SIGNATURE};
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// A vCPU's enforcement switch and the feature bits of its CPUID.
#[derive(Clone, Copy, Default)]
pub(crate) struct PvCpuid {
    enforce: bool,
    /// KVM_CPUID_FEATURES EAX as of the last KVM_SET_CPUID2 or enable.
    features: u32,
}

/// Whether the vCPU may use KVM paravirtual feature `bit` (guest_pv_has).
pub(crate) fn has(inner: &VcpuInner, bit: u32) -> bool {
    !inner.pv.enforce || inner.pv.features & (1 << bit) != 0
}

/// The base of the KVM leaves in a CPUID table: the first hypervisor leaf
/// (0x40000000..0x4000ff00 in steps of 0x100) with KVM's signature
/// (upstream's kvm_get_hypervisor_cpuid).
fn kvm_cpuid_base(t: &[uapi::kvm_cpuid_entry2]) -> Option<u32> {
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&f| {
        t.iter().any(|e| e.function == f && [e.ebx, e.ecx, e.edx] == SIGNATURE)
    })
}

/// The KVM_CPUID_FEATURES entry of a table, if it has KVM's leaves.
pub(crate) fn features_entry(t: &mut [uapi::kvm_cpuid_entry2]) -> Option<&mut uapi::kvm_cpuid_entry2> {
    let base = kvm_cpuid_base(t)?;
    let leaf = base | (CPUID_FEATURES - 0x4000_0000);
    t.iter_mut().find(|e| e.function == leaf)
}

/// Takes the feature bits from the vCPU's CPUID (kvm_update_pv_runtime: a
/// table without the leaf leaves them as they were, as upstream).
fn update_features(inner: &mut VcpuInner) {
    if let Some(e) = features_entry(&mut inner.cpuid) {
        inner.pv.features = e.eax;
    }
}

/// After KVM_SET_CPUID2: with HLT exits disabled in the VM, PV_UNHALT is
/// taken out of the table (upstream's kvm_update_cpuid_runtime), then the
/// feature bits are taken.
pub(crate) fn cpuid_changed(vcpu: &Vcpu, inner: &mut VcpuInner) {
    if crate::disable_exits::hlt_in_guest(&vcpu.vm) {
        if let Some(e) = features_entry(&mut inner.cpuid) {
            e.eax &= !(1 << feature::PV_UNHALT);
        }
    }
    update_features(inner);
}

/// KVM_ENABLE_CAP on a vCPU (upstream's kvm_vcpu_ioctl_enable_cap): only
/// KVM_CAP_ENFORCE_PV_FEATURE_CPUID exists here; flags must be 0.
pub(crate) fn vcpu_enable_cap(inner: &mut VcpuInner, arg: usize) -> Result<isize> {
    let cap: uapi::kvm_enable_cap = crate::user::read(arg)?;
    if cap.flags != 0 {
        return Err(EINVAL);
    }
    match cap.cap {
        uapi::KVM_CAP_ENFORCE_PV_FEATURE_CPUID => {
            inner.pv.enforce = cap.args[0] != 0;
            if inner.pv.enforce {
                update_features(inner);
            }
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}

/// The feature a KVM paravirtual MSR belongs to.
fn msr_feature(index: u32) -> Option<u32> {
    Some(match index {
        msr::KVM_WALL_CLOCK | msr::KVM_SYSTEM_TIME => feature::CLOCKSOURCE,
        msr::KVM_WALL_CLOCK_NEW | msr::KVM_SYSTEM_TIME_NEW => feature::CLOCKSOURCE2,
        msr::KVM_ASYNC_PF_EN => feature::ASYNC_PF,
        msr::KVM_ASYNC_PF_INT | msr::KVM_ASYNC_PF_ACK => feature::ASYNC_PF_INT,
        msr::KVM_STEAL_TIME => feature::STEAL_TIME,
        msr::KVM_PV_EOI_EN => feature::PV_EOI,
        msr::KVM_POLL_CONTROL => feature::POLL_CONTROL,
        _ => return None,
    })
}

/// Refuses an access (guest or user space, as upstream) to a paravirtual MSR
/// whose feature the vCPU may not use: the MSR does not exist for it
/// (msrs::UNSUPPORTED; user space may still read 0 and write 0, as for any
/// listed MSR, see msrs::get_msr_vcpu).
pub(crate) fn check_msr(inner: &VcpuInner, index: u32) -> Result {
    match msr_feature(index) {
        Some(f) if !has(inner, f) => Err(crate::msrs::UNSUPPORTED),
        _ => Ok(()),
    }
}
