// SPDX-License-Identifier: GPL-2.0
//! The VM's clock (upstream's kvmclock_offset, master clock, KVM_GET_CLOCK /
//! KVM_SET_CLOCK): nanoseconds the guest's kvmclock counts, the same for every
//! vCPU.
//!
//! The clock is extrapolated from one reference point, the master snapshot
//! (a host TSC value and the host's boot time read together), with the host
//! TSC rate: `clock = master_ns + offset + scale(tsc - master_tsc)`. Every
//! vCPU's pvclock record is built from the same snapshot, so the guest's reads
//! agree across vCPUs whatever their TSC offsets, and KVM_GET_CLOCK returns
//! exactly what the guest computes at that instant. KVM_SET_CLOCK takes a new
//! snapshot and asks every vCPU to rewrite its record.

use crate::arch::pvclock;
use crate::bindings;
use crate::irq::sys;
use crate::uapi;
use crate::user;
use core::sync::atomic::AtomicU64;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::SpinLock;

/// The flags KVM_SET_CLOCK accepts (upstream's KVM_CLOCK_VALID_FLAGS), also
/// KVM_CAP_ADJUST_CLOCK's answer.
pub(crate) const VALID_FLAGS: u32 = uapi::KVM_CLOCK_TSC_STABLE | uapi::KVM_CLOCK_REALTIME | uapi::KVM_CLOCK_HOST_TSC;

pub(crate) fn boottime_ns() -> u64 {
    // SAFETY: reads the clock; no preconditions.
    unsafe { bindings::kvm_rs_ktime_get_boottime_ns() }
}

fn realtime_ns() -> u64 {
    // SAFETY: as above.
    unsafe { bindings::kvm_rs_ktime_get_real_ns() }
}

/// Whether the host's TSCs tick together on all CPUs (the kernel has not
/// marked the TSC unstable): then the records may carry PVCLOCK_TSC_STABLE_BIT.
pub(crate) fn host_tsc_stable() -> bool {
    // SAFETY: reads a kernel flag.
    unsafe { bindings::kvm_rs_check_tsc_unstable() == 0 }
}

/// The reference point and the conversion of host TSC cycles to nanoseconds.
#[derive(Clone, Copy)]
struct Master {
    tsc: u64,
    ns: u64,
    /// Added to `ns` (KVM_SET_CLOCK moves it).
    offset: i64,
    mul: u32,
    shift: i8,
}

impl Master {
    fn now() -> Self {
        let khz = sys::tsc_khz().max(1) as u64;
        let (mul, shift) = pvclock::time_scale(1_000_000_000, khz * 1000);
        let tsc = sys::rdtsc();
        let ns = boottime_ns();
        Master { tsc, ns, offset: 0, mul, shift }
    }

    /// The clock at host TSC `tsc` (not before the snapshot: a TSC read on a
    /// CPU slightly behind gives the snapshot's time, never a wrapped one).
    fn clock_at(&self, tsc: u64) -> u64 {
        let delta = tsc.saturating_sub(self.tsc);
        self.ns.wrapping_add(self.offset as u64).wrapping_add(pvclock::scale_delta(delta, self.mul, self.shift))
    }
}

/// The VM clock.
#[pin_data]
pub(crate) struct VmClock {
    /// The master snapshot. Taken with no other lock held or under a vCPU's
    /// mutex; nothing is taken under it; never held across a sleep.
    #[pin]
    master: SpinLock<Master>,
    /// MSR_KVM_WALL_CLOCK(_NEW): the guest address of the wall-clock record
    /// (one per VM, as upstream).
    pub(crate) wall_clock_msr: AtomicU64,
}

impl VmClock {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(VmClock {
            master <- new_spinlock!(Master::now(), "VmClock::master"),
            wall_clock_msr: AtomicU64::new(0),
        })
    }

    /// The clock now, in nanoseconds.
    pub(crate) fn now_ns(&self) -> u64 {
        let m = *self.master.lock();
        m.clock_at(sys::rdtsc())
    }

    /// The pvclock record for a vCPU whose TSC is host TSC + `tsc_offset`
    /// (version 0: the writer sets it). `stable`: the guest may rely on the
    /// records of all vCPUs being one clock.
    pub(crate) fn record(&self, tsc_offset: u64, stable: bool) -> pvclock::VcpuTimeInfo {
        let m = *self.master.lock();
        pvclock::VcpuTimeInfo {
            tsc_timestamp: m.tsc.wrapping_add(tsc_offset),
            system_time: m.ns.wrapping_add(m.offset as u64),
            tsc_to_system_mul: m.mul,
            tsc_shift: m.shift,
            flags: if stable { pvclock::TSC_STABLE_BIT } else { 0 },
            ..Default::default()
        }
    }

    /// The wall-clock time (ns since the epoch) at which the VM clock read 0
    /// (upstream's kvm_get_wall_clock_epoch).
    pub(crate) fn wall_clock_epoch_ns(&self) -> u64 {
        realtime_ns().wrapping_sub(self.now_ns())
    }

    /// KVM_GET_CLOCK: the clock, with the host's real time and TSC read at
    /// (nearly) the same instant.
    pub(crate) fn get(&self, arg: usize) -> Result {
        let m = *self.master.lock();
        let tsc = sys::rdtsc();
        let real = realtime_ns();
        let mut flags = uapi::KVM_CLOCK_REALTIME | uapi::KVM_CLOCK_HOST_TSC;
        if host_tsc_stable() {
            flags |= uapi::KVM_CLOCK_TSC_STABLE;
        }
        let d = uapi::kvm_clock_data { clock: m.clock_at(tsc), flags, realtime: real, host_tsc: tsc, ..Default::default() };
        user::write(arg, &d)
    }

    /// KVM_SET_CLOCK: with KVM_CLOCK_REALTIME the time that passed since
    /// `realtime` (say, during a migration) is added, as upstream. Takes a new
    /// snapshot; the caller makes every vCPU rewrite its record.
    pub(crate) fn set(&self, arg: usize) -> Result {
        let d: uapi::kvm_clock_data = user::read(arg)?;
        if d.flags & !VALID_FLAGS != 0 {
            return Err(EINVAL);
        }
        let mut clock = d.clock;
        if d.flags & uapi::KVM_CLOCK_REALTIME != 0 {
            let real = realtime_ns();
            if real > d.realtime {
                clock = clock.wrapping_add(real - d.realtime);
            }
        }
        let mut m = Master::now();
        m.offset = clock.wrapping_sub(m.ns) as i64;
        *self.master.lock() = m;
        Ok(())
    }
}
