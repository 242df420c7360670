// SPDX-License-Identifier: GPL-2.0
//! The in-kernel 8254 PIT (upstream i8254.c glue): the register model of
//! src/irqchip behind a lock, ports 0x40-0x43 (and the speaker port 0x61 with
//! KVM_PIT_SPEAKER_DUMMY), and channel 0's interrupt on an hrtimer.
//!
//! The hrtimer fires in hard-IRQ context, where the PIC/IOAPIC locks cannot
//! be taken: it counts the tick and queues a work item, which raises and
//! lowers GSI 0 and re-arms the timer for the next period.
//!
//! Reinjection (KVM_REINJECT_CONTROL, on by default as upstream): every tick
//! is delivered, one at a time: the next only after the guest acknowledged
//! the previous one (EOI at the PIC or IOAPIC pin GSI 0 is routed to), so a
//! guest that counts ticks loses none even when it runs late. Without it, a
//! tick is delivered whenever the timer fires and missed ones are merged.

use super::sys::{self, Timer, WorkItem};
use crate::bindings;
use crate::irqchip::pit::Pit;
use crate::vm::Vm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::sync::SpinLock;
use kernel::new_spinlock;

/// `KVM_PIT_SPEAKER_DUMMY`.
pub(crate) const PIT_SPEAKER_DUMMY: u32 = 1;

#[pin_data(PinnedDrop)]
pub(crate) struct PitDevice {
    /// Channel 0's interrupt timer; its callback only queues `work`.
    #[pin]
    timer: Timer,
    /// Raises GSI 0 and re-arms the timer (process context).
    #[pin]
    work: WorkItem,
    /// KVM_CREATE_PIT2 was done.
    created: AtomicBool,
    /// The speaker port (0x61) is emulated too.
    speaker: AtomicBool,
    /// KVM_REINJECT_CONTROL's value (see the module comment).
    pub(crate) reinject: AtomicBool,
    /// Ticks not yet delivered (reinjection).
    pending: AtomicU32,
    /// The last delivered tick was acknowledged by the guest (reinjection).
    irq_ack: AtomicBool,
    /// Channel 0's next expiry and period (0: one-shot), both host ns.
    next_ns: AtomicU64,
    period_ns: AtomicU64,
    /// The 8254 registers. Taken by vCPU threads (port I/O), the PIT work and
    /// the PIT ioctls; process context only; nothing is taken under it.
    #[pin]
    pub(crate) model: SpinLock<Pit>,
}

impl PitDevice {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(PitDevice {
            timer <- Timer::new(pit_timer_fired),
            work <- WorkItem::new(pit_work),
            created: AtomicBool::new(false),
            speaker: AtomicBool::new(false),
            reinject: AtomicBool::new(true),
            pending: AtomicU32::new(0),
            irq_ack: AtomicBool::new(true),
            next_ns: AtomicU64::new(0),
            period_ns: AtomicU64::new(0),
            model <- new_spinlock!(Pit::new(0), "PitDevice::model"),
        })
    }

    pub(crate) fn created(&self) -> bool {
        self.created.load(Ordering::SeqCst)
    }

    /// KVM_CREATE_PIT2 (the caller checked that none exists).
    pub(crate) fn create(&self, flags: u32) {
        self.model.lock().reset(sys::now_ns());
        self.speaker.store(flags & PIT_SPEAKER_DUMMY != 0, Ordering::SeqCst);
        self.created.store(true, Ordering::SeqCst);
    }

    /// Re-arms channel 0's timer for what the model now says.
    pub(crate) fn rearm(&self) {
        let t = self.model.lock().ch0_timer();
        match t {
            Some(t) => {
                self.next_ns.store(t.first_ns, Ordering::SeqCst);
                self.period_ns.store(t.period_ns.unwrap_or(0), Ordering::SeqCst);
                self.timer.start_at(t.first_ns);
            }
            None => {
                self.period_ns.store(0, Ordering::SeqCst);
                self.timer.cancel();
            }
        }
    }

    /// KVM_REINJECT_CONTROL: switching clears the backlog (upstream).
    pub(crate) fn set_reinject(&self, on: bool) {
        self.pending.store(0, Ordering::SeqCst);
        self.irq_ack.store(true, Ordering::SeqCst);
        self.reinject.store(on, Ordering::SeqCst);
    }

    /// The guest acknowledged GSI 0 (upstream kvm_pit_ack_irq): the next
    /// pending tick may go.
    pub(crate) fn acked(&self) {
        self.irq_ack.store(true, Ordering::SeqCst);
        let more = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1))
            .map_or(false, |p| p > 1);
        if more {
            self.work.schedule();
        }
    }

    /// Stops the timer and its work (VM teardown).
    pub(crate) fn stop(&self) {
        self.period_ns.store(0, Ordering::SeqCst);
        self.timer.cancel();
        self.work.cancel_sync();
        self.timer.cancel();
    }
}

#[pinned_drop]
impl PinnedDrop for PitDevice {
    fn drop(self: Pin<&mut Self>) {
        // No period left, so the work cannot re-arm the timer while the
        // fields are dropped.
        self.stop();
    }
}

fn vm_of_pit(pit: *const PitDevice) -> *const Vm {
    let offset = core::mem::offset_of!(Vm, irq) + core::mem::offset_of!(super::chips::VmIrq, pit);
    // SAFETY: every PitDevice is the `irq.pit` field of a Vm (see VmIrq).
    unsafe { sys::owner_of::<Vm, _>(pit, offset) }
}

/// Hard-IRQ context: hand the tick to the work item.
unsafe extern "C" fn pit_timer_fired(t: *mut bindings::hrtimer) -> c_int {
    // SAFETY: the hrtimer is the `timer` field of a live PitDevice (cancelled
    // before the device is dropped); Timer is repr(C) with the hrtimer first.
    let pit = unsafe { &*sys::owner_of::<PitDevice, _>(t, core::mem::offset_of!(PitDevice, timer)) };
    if pit.reinject.load(Ordering::SeqCst) {
        pit.pending.fetch_add(1, Ordering::SeqCst);
    }
    pit.work.schedule();
    0
}

/// Process context: raise GSI 0 (a pulse, as upstream's edge for the PIT) and
/// re-arm for the next period.
unsafe extern "C" fn pit_work(w: *mut bindings::work_struct) {
    // SAFETY: the work_struct is the `work` field of a live PitDevice, itself
    // the `irq.pit` field of a live Vm: the Vm's drop cancels this work first.
    let pit = unsafe { &*sys::owner_of::<PitDevice, _>(w, core::mem::offset_of!(PitDevice, work)) };
    // SAFETY: as above.
    let vm = unsafe { &*vm_of_pit(pit) };
    // With reinjection, a tick goes only once the previous one was acked.
    if !pit.reinject.load(Ordering::SeqCst) || pit.irq_ack.swap(false, Ordering::SeqCst) {
        super::chips::kvm_set_irq(vm, 0, true);
        super::chips::kvm_set_irq(vm, 0, false);
    }
    rearm_after_tick(pit);
}

/// The next period of a periodic channel 0 (from the work, process context).
fn rearm_after_tick(pit: &PitDevice) {
    let period = pit.period_ns.load(Ordering::SeqCst);
    if period != 0 {
        let now = sys::now_ns();
        let mut next = pit.next_ns.load(Ordering::SeqCst).saturating_add(period);
        if next <= now {
            // The work ran late: keep the phase; with reinjection the missed
            // ticks are owed to the guest.
            let behind = (now - next) / period + 1;
            next = next.saturating_add(behind.saturating_mul(period));
            if pit.reinject.load(Ordering::SeqCst) {
                let owed = u32::try_from(behind).unwrap_or(u32::MAX);
                pit.pending.fetch_add(owed, Ordering::SeqCst);
            }
        }
        pit.next_ns.store(next, Ordering::SeqCst);
        pit.timer.start_at(next);
    }
}

/// Guest port I/O to the PIT (0x40-0x43) and, with KVM_PIT_SPEAKER_DUMMY, the
/// speaker port 0x61. Only byte accesses (upstream leaves others to user space).
pub(crate) fn pio(vm: &Vm, port: u16, size: u8, input: bool, value: u32) -> Option<u32> {
    let pit = &vm.irq.pit;
    if !pit.created() || size != 1 {
        return None;
    }
    let now = sys::now_ns();
    if Pit::handles_port(port) {
        let rearm = {
            let mut m = pit.model.lock();
            if input {
                return Some(m.port_read(port, now) as u32);
            }
            m.set_min_timer_period_ns(crate::params::min_timer_period_ns());
            m.port_write(port, value as u8, now)
        };
        if rearm {
            pit.rearm();
        }
        return Some(0);
    }
    if port == 0x61 && pit.speaker.load(Ordering::SeqCst) {
        let mut m = pit.model.lock();
        if input {
            return Some(m.speaker_read(now) as u32);
        }
        m.speaker_write(value as u8, now);
        return Some(0);
    }
    None
}
