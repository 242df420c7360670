// SPDX-License-Identifier: GPL-2.0
//! The VM's clock (upstream's KVM_GET_CLOCK / KVM_SET_CLOCK and
//! kvmclock_offset): nanoseconds since the host booted plus an offset the VMM
//! sets, so that a migrated or restored guest's clock continues where it was.
//! It is the time base kvmclock would give the guest; kvmclock itself is not
//! offered in CPUID yet, so today only the VMM reads it.

use crate::uapi;
use crate::user;
use crate::irq::sys;
use crate::bindings;
use core::sync::atomic::{AtomicI64, Ordering};
use kernel::prelude::*;

/// The flags KVM_SET_CLOCK accepts (upstream's KVM_CLOCK_VALID_FLAGS), also
/// KVM_CAP_ADJUST_CLOCK's answer.
pub(crate) const VALID_FLAGS: u32 = uapi::KVM_CLOCK_TSC_STABLE | uapi::KVM_CLOCK_REALTIME | uapi::KVM_CLOCK_HOST_TSC;

fn boottime_ns() -> u64 {
    // SAFETY: reads the clock; no preconditions.
    unsafe { bindings::kvm_rs_ktime_get_boottime_ns() }
}

fn realtime_ns() -> u64 {
    // SAFETY: as above.
    unsafe { bindings::kvm_rs_ktime_get_real_ns() }
}

/// The VM clock's offset from host boot time.
pub(crate) struct VmClock {
    offset: AtomicI64,
}

impl VmClock {
    pub(crate) const fn new() -> Self {
        VmClock { offset: AtomicI64::new(0) }
    }

    /// KVM_GET_CLOCK: the clock, with the host's real time and TSC read at
    /// (nearly) the same instant.
    pub(crate) fn get(&self, arg: usize) -> Result {
        let tsc = sys::rdtsc();
        let now = boottime_ns();
        let real = realtime_ns();
        let d = uapi::kvm_clock_data {
            clock: now.wrapping_add(self.offset.load(Ordering::SeqCst) as u64),
            flags: uapi::KVM_CLOCK_REALTIME | uapi::KVM_CLOCK_HOST_TSC,
            realtime: real,
            host_tsc: tsc,
            ..Default::default()
        };
        user::write(arg, &d)
    }

    /// KVM_SET_CLOCK: with KVM_CLOCK_REALTIME the time that passed since
    /// `realtime` (say, during a migration) is added, as upstream.
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
        self.offset.store(clock.wrapping_sub(boottime_ns()) as i64, Ordering::SeqCst);
        Ok(())
    }
}
