// SPDX-License-Identifier: GPL-2.0
//! The kvm:* trace events (kvm_rs_trace.h, instantiated in kvm_trace.c).
//!
//! Each function first asks whether the event is on (a call that reads the
//! event's static key count and returns false while it is off) and only then
//! gathers the fields, so a disabled event costs one call and a branch per
//! site. Call sites are the
//! places upstream traces: entry and exit in the run loop, the PIO/MMIO/MSR/
//! CPUID/CR handlers, injection at entry, the nested page fault.

use crate::bindings;

/// KVM_TRACE_MMIO_READ_UNSATISFIED, _READ, _WRITE.
pub(crate) const MMIO_READ_UNSATISFIED: i32 = 0;
pub(crate) const MMIO_READ: i32 = 1;
pub(crate) const MMIO_WRITE: i32 = 2;

macro_rules! enabled {
    ($f:ident) => {
        // SAFETY: reads a static key.
        unsafe { bindings::$f() }
    };
}

pub(crate) fn kvm_entry(vcpu_id: u32, rip: u64) {
    if enabled!(kvm_rs_trace_kvm_entry_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_entry(vcpu_id, rip, false) };
    }
}

/// `info` is asked for only when the event is on (it may read the VMCS).
pub(crate) fn kvm_exit(vcpu_id: u32, rip: u64, info: impl FnOnce() -> crate::x86_ops::ExitInfo) {
    if enabled!(kvm_rs_trace_kvm_exit_enabled) {
        let i = info();
        // SAFETY: plain values.
        unsafe {
            bindings::kvm_rs_trace_kvm_exit(vcpu_id, rip, i.isa, i.reason, i.info1, i.info2, i.intr_info, i.error_code)
        };
    }
}

pub(crate) fn kvm_page_fault(vcpu_id: u32, rip: u64, gpa: u64, error_code: impl FnOnce() -> u64) {
    if enabled!(kvm_rs_trace_kvm_page_fault_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_page_fault(vcpu_id, rip, gpa, error_code()) };
    }
}

/// rw: 1 for OUT, 0 for IN.
pub(crate) fn kvm_pio(write: bool, port: u16, size: u8, count: u32, val: u32) {
    if enabled!(kvm_rs_trace_kvm_pio_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_pio(write as u32, port as u32, size as u32, count, val) };
    }
}

pub(crate) fn kvm_mmio(ty: i32, len: u32, gpa: u64, val: u64) {
    if enabled!(kvm_rs_trace_kvm_mmio_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_mmio(ty, len as i32, gpa, val) };
    }
}

pub(crate) fn kvm_cpuid(function: u32, index: u32, regs: [u64; 4], found: bool) {
    if enabled!(kvm_rs_trace_kvm_cpuid_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_cpuid(function, index, regs[0], regs[1], regs[2], regs[3], found, false) };
    }
}

pub(crate) fn kvm_msr(write: bool, index: u32, data: u64, exception: bool) {
    if enabled!(kvm_rs_trace_kvm_msr_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_msr(write as u32, index, data, exception) };
    }
}

pub(crate) fn kvm_cr(write: bool, cr: u8, val: impl FnOnce() -> u64) {
    if enabled!(kvm_rs_trace_kvm_cr_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_cr(write as u32, cr as u32, val()) };
    }
}

pub(crate) fn kvm_inj_virq(vector: u8, soft: bool, reinjected: bool) {
    if enabled!(kvm_rs_trace_kvm_inj_virq_enabled) {
        // SAFETY: plain values.
        unsafe { bindings::kvm_rs_trace_kvm_inj_virq(vector as u32, soft, reinjected) };
    }
}
