// SPDX-License-Identifier: GPL-2.0
//! The in-kernel 8254 PIT (upstream i8254.c glue): the register model of
//! src/irqchip behind a lock, ports 0x40-0x43 (and the speaker port 0x61 with
//! KVM_PIT_SPEAKER_DUMMY), and channel 0's interrupt on an hrtimer.
//!
//! The hrtimer fires in hard-IRQ context, where the PIC/IOAPIC locks cannot
//! be taken: it queues a work item, which raises and lowers GSI 0 and re-arms
//! the timer for the next period. Ticks that pile up while the work is delayed
//! are merged into one (no reinjection of lost ticks, whatever
//! KVM_REINJECT_CONTROL says; upstream reinjects by default).

use super::sys::{self, Timer, WorkItem};
use crate::bindings;
use crate::irqchip::pit::Pit;
use crate::vm::Vm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// KVM_REINJECT_CONTROL's value (kept for the API; see the module comment).
    pub(crate) reinject: AtomicBool,
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
    super::chips::kvm_set_irq(vm, 0, true);
    super::chips::kvm_set_irq(vm, 0, false);
    let period = pit.period_ns.load(Ordering::SeqCst);
    if period != 0 {
        let now = sys::now_ns();
        let mut next = pit.next_ns.load(Ordering::SeqCst).saturating_add(period);
        if next <= now {
            // Ticks were missed: merge them and keep the phase.
            let behind = (now - next) / period + 1;
            next = next.saturating_add(behind.saturating_mul(period));
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
