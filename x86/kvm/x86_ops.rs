// SPDX-License-Identifier: GPL-2.0
//! The seam between kvm.ko and the vendor modules: what kvm-amd.ko (SVM) and
//! kvm-intel.ko (VMX) each implement, the counterpart of upstream's
//! `struct kvm_x86_ops` + `struct kvm_x86_init_ops`.

use kernel::prelude::*;

/// A vendor implementation of hardware virtualization.
///
/// The value is created by [`KvmX86Ops::hardware_setup`] when the vendor module
/// calls [`crate::kvm_init`], lives as long as the returned registration, and its
/// `Drop` is upstream's hardware_unsetup.
pub trait KvmX86Ops: Sync + Send + Sized + 'static {
    /// Module name as users see it ("kvm_amd", "kvm_intel"), for messages.
    const NAME: &'static CStr;

    /// Computes the vendor configuration (capability MSRs, feature checks) and
    /// allocates the per-CPU state that enabling virtualization needs. Runs once,
    /// in kvm_init, before any CPU is enabled.
    fn hardware_setup() -> Result<Self>;

    /// Turns virtualization on for the CPU this runs on (EFER.SVME + host save
    /// area, or CR4.VMXE + VMXON). Called on each CPU, with preemption off.
    /// Must fail with `EBUSY` if another user already turned it on.
    fn enable_virtualization_cpu(&self) -> Result;

    /// Turns virtualization off for the CPU this runs on. Must be idempotent: it is
    /// also called on shutdown/reboot and in emergencies, possibly twice.
    fn disable_virtualization_cpu(&self);

    /// Whether the vendor can virtualize the MSR `index` for guests (the
    /// counterpart of upstream's has_emulated_msr): decides which candidate MSRs
    /// enter KVM_GET_MSR_INDEX_LIST.
    fn has_emulated_msr(&self, _index: u32) -> bool {
        true
    }
}

/// The object-safe part of [`KvmX86Ops`] that kvm.ko's non-generic code calls
/// through a `&'static dyn` (per-CPU callbacks, ioctls).
pub trait VendorOps: Sync + Send {
    fn name(&self) -> &'static CStr;
    fn enable_virtualization_cpu(&self) -> Result;
    fn disable_virtualization_cpu(&self);
    fn has_emulated_msr(&self, index: u32) -> bool;
}

impl<T: KvmX86Ops> VendorOps for T {
    fn name(&self) -> &'static CStr {
        T::NAME
    }
    fn enable_virtualization_cpu(&self) -> Result {
        KvmX86Ops::enable_virtualization_cpu(self)
    }
    fn disable_virtualization_cpu(&self) {
        KvmX86Ops::disable_virtualization_cpu(self)
    }
    fn has_emulated_msr(&self, index: u32) -> bool {
        KvmX86Ops::has_emulated_msr(self, index)
    }
}
