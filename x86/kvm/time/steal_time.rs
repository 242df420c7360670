// SPDX-License-Identifier: GPL-2.0
//! Steal time (MSR_KVM_STEAL_TIME, KVM_FEATURE_STEAL_TIME; upstream's
//! record_steal_time and kvm_steal_time_set_preempted): the guest gives the
//! address of a 64-byte `struct kvm_steal_time` (bit 0: enable); before it
//! next runs, kvm.ko adds to `steal` the time the vCPU's thread spent
//! runnable but waiting for a host CPU since the last update (the
//! scheduler's run_delay of the thread, so it needs CONFIG_SCHED_INFO, as
//! upstream: without it the feature is not offered), bumping `version` to an
//! odd value while the record changes and to the next even one when done,
//! and clears `preempted`.
//!
//! The record is updated before the first entry of every KVM_RUN (upstream:
//! at each vcpu_load), after the MSR is written, and whenever run_delay grew
//! since the last update (the thread was preempted, or moved to another CPU
//! and waited there: upstream updates at the sched-in that follows). There
//! are no preempt notifiers here: `preempted` is set (KVM_VCPU_PREEMPTED)
//! when the run loop is about to give the CPU away at its reschedule point
//! (the only place a vCPU thread is preempted inside KVM_RUN on this
//! kernel's voluntary preemption model), not on an involuntary preemption at
//! an arbitrary point of a fully preemptible kernel.
//!
//! The record is written through the VMM's mapping of guest memory in the
//! vCPU's thread with preemption enabled (like kvmclock's); one outside
//! guest RAM is silently not written, as upstream's cache fails for it.

use crate::arch::msr;
use crate::bindings;
use crate::emulate::{read_gpa, write_gpa};
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// MSR bit 0: the record is enabled.
const MSR_ENABLED: u64 = 1;
/// Bits 1-5 are reserved (the record is 64-byte aligned).
const RESERVED_MASK: u64 = 0x1f << 1;
/// The record's address bits.
const VALID_BITS: u64 = !0x3f;
/// `struct kvm_steal_time` offsets: steal (u64), version (u32), flags (u32),
/// preempted (u8).
const OFF_STEAL: u64 = 0;
const OFF_VERSION: u64 = 8;
const OFF_PREEMPTED: u64 = 16;
/// `preempted` value: the vCPU is not running (KVM_VCPU_PREEMPTED).
const VCPU_PREEMPTED: u8 = 1;

/// A vCPU's steal-time state.
#[derive(Clone, Copy, Default)]
pub(crate) struct StealTime {
    /// MSR_KVM_STEAL_TIME as last written.
    msr_val: u64,
    /// run_delay of the vCPU's thread when `steal` was last updated.
    last_steal: u64,
    /// The record must be updated before the next entry (KVM_REQ_STEAL_UPDATE).
    update: bool,
    /// `preempted` was set in the record since the last update.
    preempted: bool,
}

/// Whether the scheduler accounts run_delay (upstream's sched_info_on()).
pub(crate) fn sched_info_on() -> bool {
    // SAFETY: reads a kernel configuration fact.
    unsafe { bindings::kvm_rs_sched_info_on() }
}

fn run_delay() -> u64 {
    // SAFETY: reads the current task's scheduler statistics.
    unsafe { bindings::kvm_rs_current_run_delay() }
}

/// The steal-time bit for KVM_GET_SUPPORTED_CPUID's KVM_CPUID_FEATURES.
pub(crate) fn supported_pv_features() -> u32 {
    if sched_info_on() {
        1 << crate::arch::pvclock::feature::STEAL_TIME
    } else {
        0
    }
}

/// KVM_RUN begins (upstream's vcpu_load): update the record before entry.
pub(crate) fn vcpu_load(inner: &mut VcpuInner) {
    inner.steal.update = true;
}

/// Before an entry: updates the record if asked to or if the thread waited
/// for a CPU since the last update.
pub(crate) fn record_if_needed(vcpu: &Vcpu, inner: &mut VcpuInner) {
    let st = &mut inner.steal;
    if st.msr_val & MSR_ENABLED == 0 {
        return;
    }
    let delay = run_delay();
    if !st.update && delay == st.last_steal {
        return;
    }
    st.update = false;
    record_steal_time(vcpu, inner, delay);
}

fn u32_at(vcpu: &Vcpu, gpa: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    matches!(read_gpa(vcpu, gpa, &mut b), Ok(true)).then(|| u32::from_le_bytes(b))
}

fn put(vcpu: &Vcpu, gpa: u64, data: &[u8]) -> bool {
    matches!(write_gpa(vcpu, gpa, data), Ok(true))
}

fn record_steal_time(vcpu: &Vcpu, inner: &mut VcpuInner, delay: u64) {
    let gpa = inner.steal.msr_val & VALID_BITS;
    if !put(vcpu, gpa + OFF_PREEMPTED, &[0]) {
        return;
    }
    inner.steal.preempted = false;
    let Some(mut version) = u32_at(vcpu, gpa + OFF_VERSION) else { return };
    // An odd version on the first update is junk left in the page.
    if version & 1 != 0 {
        version = version.wrapping_add(1);
    }
    version = version.wrapping_add(1);
    if !put(vcpu, gpa + OFF_VERSION, &version.to_le_bytes()) {
        return;
    }
    let mut b = [0u8; 8];
    if !matches!(read_gpa(vcpu, gpa + OFF_STEAL, &mut b), Ok(true)) {
        return;
    }
    let steal = u64::from_le_bytes(b).wrapping_add(delay.wrapping_sub(inner.steal.last_steal));
    inner.steal.last_steal = delay;
    if !put(vcpu, gpa + OFF_STEAL, &steal.to_le_bytes()) {
        return;
    }
    let _ = put(vcpu, gpa + OFF_VERSION, &version.wrapping_add(1).to_le_bytes());
}

/// The run loop is at its reschedule point: if the thread is about to be
/// preempted, tell the guest its vCPU is not running.
pub(crate) fn before_resched(vcpu: &Vcpu, inner: &mut VcpuInner) {
    let st = &inner.steal;
    if st.msr_val & MSR_ENABLED == 0 || st.preempted {
        return;
    }
    // SAFETY: reads the current task's flag.
    if !unsafe { bindings::kvm_rs_need_resched() } {
        return;
    }
    let gpa = st.msr_val & VALID_BITS;
    if put(vcpu, gpa + OFF_PREEMPTED, &[VCPU_PREEMPTED]) {
        inner.steal.preempted = true;
    }
}

/// Reads MSR_KVM_STEAL_TIME; None for other MSRs.
pub(crate) fn get_msr(inner: &VcpuInner, index: u32) -> Option<Result<u64>> {
    (index == msr::KVM_STEAL_TIME).then_some(Ok(inner.steal.msr_val))
}

/// Writes MSR_KVM_STEAL_TIME (guest or host alike, as upstream); None for
/// other MSRs.
pub(crate) fn set_msr(inner: &mut VcpuInner, index: u32, value: u64) -> Option<Result> {
    if index != msr::KVM_STEAL_TIME {
        return None;
    }
    if !sched_info_on() || value & RESERVED_MASK != 0 {
        return Some(Err(EINVAL));
    }
    inner.steal.msr_val = value;
    if value & MSR_ENABLED != 0 {
        inner.steal.update = true;
    }
    Some(Ok(()))
}
