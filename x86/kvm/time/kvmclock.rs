// SPDX-License-Identifier: GPL-2.0
//! kvmclock for guests (upstream's kvm_write_system_time, kvm_guest_time_update,
//! kvm_write_wall_clock): the guest enables it by writing the address of a
//! pvclock record to MSR_KVM_SYSTEM_TIME(_NEW) with bit 0 set; kvm.ko keeps the
//! record current, rewriting it before the next entry whenever it changes:
//! after the MSR write, a TSC offset change, KVM_SET_CLOCK, or a move to
//! another host CPU. The wall-clock MSRs make kvm.ko write, once, the time of
//! day at which the VM clock read 0.
//!
//! Records are written through the VMM's mapping of guest memory (as the
//! emulator writes), in the vCPU's task, before preemption is disabled for the
//! entry: a record outside guest RAM is silently not written, as upstream's
//! cache activation fails for it.

use crate::arch::msr;
// Address space 0 even while the vCPU is in SMM (upstream's pfn caches).
use crate::emulate::{read_gpa_as0 as read_gpa, write_gpa_as0 as write_gpa};
use crate::vcpu::{Vcpu, VcpuInner, VcpuShared};
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// A vCPU's kvmclock state.
#[derive(Clone, Copy, Default)]
pub(crate) struct KvmClock {
    /// MSR_KVM_SYSTEM_TIME(_NEW) as last written: record address | enable.
    system_time: u64,
    /// Enabled through the old MSR (0x12): such guests predate the stable bit.
    old_abi: bool,
    /// The host CPU of the last entry (a move rewrites the record).
    last_cpu: Option<u32>,
}

/// Makes the vCPU rewrite its record before it next enters the guest
/// (upstream's KVM_REQ_CLOCK_UPDATE); safe from any context.
pub(crate) fn request_update(shared: &VcpuShared) {
    shared.clock_update.store(true, Ordering::SeqCst);
}

/// Called before each entry: rewrites the record if asked to.
pub(crate) fn update_if_requested(vcpu: &Vcpu, inner: &mut VcpuInner) {
    if !vcpu.shared.clock_update.swap(false, Ordering::SeqCst) {
        return;
    }
    let kc = inner.kvmclock;
    if kc.system_time & 1 == 0 || crate::irq::sys::tsc_khz() == 0 {
        return;
    }
    let gpa = kc.system_time & !1;
    let stable = !kc.old_abi && super::vm_clock::host_tsc_stable();
    let mut rec = vcpu.vm.clock.record(inner.state.tsc_offset, stable);
    // The guest may read another vCPU's record at any time: odd version while
    // the record changes, the next even one when it is whole.
    let mut v = [0u8; 4];
    if !matches!(read_gpa(vcpu, gpa, &mut v), Ok(true)) {
        return;
    }
    let odd = (u32::from_le_bytes(v).wrapping_add(1)) | 1;
    rec.version = odd;
    let written = write_gpa(vcpu, gpa, &odd.to_le_bytes())
        .and_then(|ok| if ok { write_gpa(vcpu, gpa, &rec.to_bytes()) } else { Ok(false) })
        .and_then(|ok| if ok { write_gpa(vcpu, gpa, &odd.wrapping_add(1).to_le_bytes()) } else { Ok(false) });
    if !matches!(written, Ok(true)) {
        pr_info!("vCPU {}: kvmclock record at {:#x} could not be written\n", vcpu.shared.id, gpa);
    }
}

/// Called after each exit with the host CPU the vCPU ran on.
pub(crate) fn note_cpu(vcpu: &Vcpu, inner: &mut VcpuInner, cpu: u32) {
    if inner.kvmclock.last_cpu != Some(cpu) {
        if inner.kvmclock.last_cpu.is_some() {
            request_update(&vcpu.shared);
        }
        inner.kvmclock.last_cpu = Some(cpu);
    }
}

/// Writes the wall-clock record at `gpa` (upstream's kvm_write_wall_clock).
fn write_wall_clock(vcpu: &Vcpu, gpa: u64) {
    let mut v = [0u8; 4];
    if !matches!(read_gpa(vcpu, gpa, &mut v), Ok(true)) {
        return;
    }
    let mut version = u32::from_le_bytes(v);
    if version & 1 != 0 {
        version = version.wrapping_add(1);
    }
    version = version.wrapping_add(1);
    if !matches!(write_gpa(vcpu, gpa, &version.to_le_bytes()), Ok(true)) {
        return;
    }
    let epoch = vcpu.vm.clock.wall_clock_epoch_ns();
    let wc = crate::arch::pvclock::WallClock {
        version,
        // The record has 32 bits of seconds (overflows in 2106, as upstream).
        sec: (epoch / 1_000_000_000) as u32,
        nsec: (epoch % 1_000_000_000) as u32,
    };
    if matches!(write_gpa(vcpu, gpa, &wc.to_bytes()), Ok(true)) {
        let _ = write_gpa(vcpu, gpa, &version.wrapping_add(1).to_le_bytes());
    }
}

/// Reads a kvmclock MSR; None for other MSRs.
pub(crate) fn get_msr(vcpu: &Vcpu, inner: &VcpuInner, index: u32) -> Option<Result<u64>> {
    match index {
        msr::KVM_WALL_CLOCK | msr::KVM_WALL_CLOCK_NEW => Some(Ok(vcpu.vm.clock.wall_clock_msr.load(Ordering::Relaxed))),
        msr::KVM_SYSTEM_TIME | msr::KVM_SYSTEM_TIME_NEW => Some(Ok(inner.kvmclock.system_time)),
        _ => None,
    }
}

/// Writes a kvmclock MSR (guest or host, as upstream: both act).
pub(crate) fn set_msr(vcpu: &Vcpu, inner: &mut VcpuInner, index: u32, value: u64) -> Option<Result> {
    match index {
        msr::KVM_WALL_CLOCK | msr::KVM_WALL_CLOCK_NEW => {
            vcpu.vm.clock.wall_clock_msr.store(value, Ordering::Relaxed);
            write_wall_clock(vcpu, value);
        }
        msr::KVM_SYSTEM_TIME | msr::KVM_SYSTEM_TIME_NEW => {
            inner.kvmclock.system_time = value;
            inner.kvmclock.old_abi = index == msr::KVM_SYSTEM_TIME;
            request_update(&vcpu.shared);
        }
        _ => return None,
    }
    Some(Ok(()))
}
