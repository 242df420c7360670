// SPDX-License-Identifier: GPL-2.0
//! The kernel primitives the in-kernel irqchip runs on, as small safe types:
//! an hrtimer and a work item embedded in a pinned owner, and a wait queue a
//! halted vCPU sleeps on. Each is cancelled/drained when dropped, so an owner
//! that declares them before the fields their callbacks use can be freed safely.
//!
//! Callbacks find their owner with `container_of` (see [`owner_of`]); they run
//! in hard-IRQ context (timers) or in a kworker (work), so they may only use
//! atomics, wake-ups and `schedule()` of a work item (timers), or take
//! spinlocks/mutexes (work).

use crate::bindings;
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::types::Opaque;

/// Host CLOCK_MONOTONIC in nanoseconds: the time base of every device model.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: reads the clock; no preconditions.
    unsafe { bindings::kvm_rs_ktime_get_ns() }
}

/// The host TSC frequency in kHz (0 if the kernel could not calibrate it).
pub(crate) fn tsc_khz() -> u32 {
    // SAFETY: reads a kernel variable set once at boot.
    unsafe { bindings::kvm_rs_tsc_khz() }
}

/// The host TSC.
pub(crate) fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Host CLOCK_MONOTONIC ns at which a guest TSC (host TSC + `tsc_offset`)
/// reaches `guest_tsc` (now if it already has).
pub(crate) fn guest_tsc_to_ns(guest_tsc: u64, tsc_offset: u64) -> u64 {
    let now = now_ns();
    let khz = tsc_khz() as u64;
    let guest_now = rdtsc().wrapping_add(tsc_offset);
    if khz == 0 || guest_tsc <= guest_now {
        return now;
    }
    let delta = guest_tsc - guest_now;
    let ns = match delta.checked_mul(1_000_000) {
        Some(p) => p / khz,
        None => (delta / khz).saturating_mul(1_000_000),
    };
    now.saturating_add(ns)
}

/// Makes `cpu` leave guest mode (a reschedule IPI, safe from any context).
pub(crate) fn send_reschedule(cpu: i32) {
    // SAFETY: an IPI to a CPU number the vCPU recorded when it entered; an
    // offline or stale CPU only gets a spurious reschedule.
    unsafe { bindings::kvm_rs_send_reschedule(cpu) }
}

/// The owner of an embedded field, from the field's address.
///
/// # Safety
/// `field` must point to the field at byte offset `offset` inside a live `T`.
pub(crate) unsafe fn owner_of<T, F>(field: *const F, offset: usize) -> *const T {
    // SAFETY: per the contract, stepping back `offset` bytes stays inside the
    // same allocation and lands on the start of the owner.
    unsafe { field.cast::<u8>().sub(offset).cast::<T>() }
}

/// A one-shot hrtimer on CLOCK_MONOTONIC, absolute expiry, hard-IRQ callback.
/// `repr(C)`: the hrtimer is at offset 0, so a callback's pointer is the
/// address of this field in its owner.
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct Timer {
    #[pin]
    raw: Opaque<bindings::hrtimer>,
}

/// The signature of a timer callback: returns HRTIMER_NORESTART (0).
pub(crate) type TimerFn = unsafe extern "C" fn(*mut bindings::hrtimer) -> c_int;

// SAFETY: an hrtimer is used through the hrtimer API only, which serializes
// on the timer base's lock; it may be armed and cancelled from any thread.
unsafe impl Send for Timer {}
// SAFETY: as above.
unsafe impl Sync for Timer {}

impl Timer {
    pub(crate) fn new(callback: TimerFn) -> impl PinInit<Self> {
        pin_init!(Timer {
            // SAFETY: initializes the hrtimer in place, before first use.
            raw <- Opaque::ffi_init(move |p| unsafe { bindings::kvm_rs_hrtimer_init(p, Some(callback)) }),
        })
    }

    /// (Re)arms the timer to fire at `abs_ns` (a past time fires at once).
    pub(crate) fn start_at(&self, abs_ns: u64) {
        // SAFETY: the hrtimer was initialized by `new` and is pinned.
        unsafe { bindings::kvm_rs_hrtimer_start(self.raw.get(), abs_ns) }
    }

    /// Stops the timer and waits for a running callback to finish.
    pub(crate) fn cancel(&self) {
        // SAFETY: as above; hrtimer_cancel may be called on an idle timer.
        unsafe { bindings::hrtimer_cancel(self.raw.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for Timer {
    fn drop(self: Pin<&mut Self>) {
        self.cancel();
    }
}

/// A work item on the system workqueue, embedded in its owner (`repr(C)`: the
/// work_struct is at offset 0).
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct WorkItem {
    #[pin]
    raw: Opaque<bindings::work_struct>,
}

pub(crate) type WorkFn = unsafe extern "C" fn(*mut bindings::work_struct);

// SAFETY: a work_struct is used through the workqueue API only, which is
// safe to call from any thread.
unsafe impl Send for WorkItem {}
// SAFETY: as above.
unsafe impl Sync for WorkItem {}

impl WorkItem {
    pub(crate) fn new(callback: WorkFn) -> impl PinInit<Self> {
        pin_init!(WorkItem {
            // SAFETY: initializes the work_struct in place, before first use.
            raw <- Opaque::ffi_init(move |p| unsafe { bindings::kvm_rs_init_work(p, Some(callback)) }),
        })
    }

    /// Queues the work (no-op if already queued); callable from any context.
    pub(crate) fn schedule(&self) {
        // SAFETY: initialized by `new`, pinned.
        unsafe { bindings::kvm_rs_schedule_work(self.raw.get()) }
    }

    /// Cancels queued work and waits for a running one.
    pub(crate) fn cancel_sync(&self) {
        // SAFETY: as above; may sleep (process context only).
        unsafe { bindings::cancel_work_sync(self.raw.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for WorkItem {
    fn drop(self: Pin<&mut Self>) {
        self.cancel_sync();
    }
}

/// A wait queue: a vCPU blocks on it (HLT, waiting for SIPI); interrupts,
/// IPIs and timers wake it.
#[pin_data]
pub(crate) struct WaitQueue {
    #[pin]
    raw: Opaque<bindings::wait_queue_head>,
}

// SAFETY: a wait queue head has its own lock; every operation takes it.
unsafe impl Send for WaitQueue {}
// SAFETY: as above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(WaitQueue {
            // SAFETY: initializes the head in place.
            raw <- Opaque::ffi_init(|p| unsafe { bindings::kvm_rs_init_waitqueue_head(p) }),
        })
    }

    /// Wakes the sleeper; safe from hard-IRQ context.
    pub(crate) fn wake(&self) {
        // SAFETY: initialized head; wake_up takes the queue's irq-safe lock.
        unsafe { bindings::kvm_rs_wake_up(self.raw.get()) }
    }

    /// Sleeps until `ready()` is true (returns true) or a signal is pending
    /// (returns false). A waker makes `ready()` true and then calls `wake`; the
    /// task state is set before `ready()` is checked, so no wake-up is lost.
    pub(crate) fn wait_until(&self, mut ready: impl FnMut() -> bool) -> bool {
        loop {
            let entry = Opaque::<bindings::wait_queue_entry>::uninit();
            // SAFETY: `entry` lives on this stack frame, is not moved, and is
            // removed from the queue by finish_wait before the frame ends.
            unsafe { bindings::kvm_rs_prepare_to_wait(self.raw.get(), entry.get()) };
            let ready_now = ready();
            // SAFETY: reads the current task's signal state.
            let signal = unsafe { bindings::kvm_rs_signal_pending() };
            if !ready_now && !signal {
                // SAFETY: process context, no spinlock held (callers hold only
                // the vCPU mutex, a sleeping lock).
                unsafe { bindings::schedule() };
            }
            // SAFETY: pairs with prepare_to_wait above.
            unsafe { bindings::finish_wait(self.raw.get(), entry.get()) };
            if ready_now {
                return true;
            }
            if signal {
                return false;
            }
        }
    }
}
