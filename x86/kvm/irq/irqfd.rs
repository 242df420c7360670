// SPDX-License-Identifier: GPL-2.0
//! KVM_IRQFD (upstream virt/kvm/eventfd.c): an eventfd whose signal raises a
//! GSI. Our wait entry sits on the eventfd's wait queue; the wake-up callback
//! runs under that queue's lock with interrupts off, so it only consumes the
//! count and queues a work item, which injects in process context.
//!
//! With KVM_IRQFD_FLAG_RESAMPLE the GSI is level-triggered: the work raises it
//! and leaves it up; when the guest EOIs the IOAPIC pin it routes to, the line
//! is lowered and the resamplefd is signalled so the device can re-assert.
//!
//! An eventfd that is closed while assigned stays referenced until
//! KVM_IRQFD_FLAG_DEASSIGN or the VM's end (upstream tears it down on EPOLLHUP).

use super::sys::{self, WorkItem};
use crate::bindings;
use crate::irqchip::routing::{self, Route};
use crate::uapi;
use crate::user;
use crate::vm::Vm;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;
use kernel::types::Opaque;

/// `EPOLLIN` as the wake-up key carries it.
const EPOLLIN: usize = 0x1;
/// Upstream's bound on irqfds is memory; ours is explicit.
const MAX_IRQFDS: usize = 4096;

/// An eventfd context reference (eventfd_ctx_fdget).
pub(crate) struct EventfdCtx(*mut bindings::eventfd_ctx);

// SAFETY: an eventfd context is refcounted kernel memory usable from any thread.
unsafe impl Send for EventfdCtx {}
// SAFETY: as above; its operations take its own lock.
unsafe impl Sync for EventfdCtx {}

impl EventfdCtx {
    /// The eventfd behind file descriptor `fd` (EBADF, or EINVAL if not one).
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: looks up `fd` in the current task's table; returns a counted
        // reference or an ERR_PTR.
        let p = unsafe { bindings::eventfd_ctx_fdget(fd) };
        if p.is_null() {
            return Err(EBADF);
        }
        let v = p as isize;
        if (-4095..0).contains(&v) {
            return Err(Error::from_errno(v as i32));
        }
        Ok(EventfdCtx(p))
    }

    /// Whether both refer to the same eventfd.
    pub(crate) fn is(&self, other: &EventfdCtx) -> bool {
        self.0 == other.0
    }

    pub(crate) fn signal(&self) {
        // SAFETY: a live context we hold a reference to.
        unsafe { bindings::kvm_rs_eventfd_signal(self.0) }
    }
}

impl Drop for EventfdCtx {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `from_fd`.
        unsafe { bindings::eventfd_ctx_put(self.0) }
    }
}

/// One assigned irqfd. Pinned: the eventfd's wait queue points at `wait`.
#[pin_data(PinnedDrop)]
pub(crate) struct Irqfd {
    #[pin]
    wait: Opaque<bindings::wait_queue_entry>,
    #[pin]
    pt: Opaque<bindings::poll_table_struct>,
    #[pin]
    inject: WorkItem,
    /// The queue `wait` is on (null until registered).
    wqh: AtomicPtr<bindings::wait_queue_head>,
    vm: *const Vm,
    gsi: u32,
    eventfd: EventfdCtx,
    resample: Option<EventfdCtx>,
}

// SAFETY: `vm` points to the Vm that owns this irqfd (it outlives it); the
// raw kernel objects are only used through their thread-safe APIs.
unsafe impl Send for Irqfd {}
// SAFETY: as above.
unsafe impl Sync for Irqfd {}

/// The wait entry's callback: called by eventfd_signal under the queue lock.
unsafe extern "C" fn irqfd_wakeup(wait: *mut bindings::wait_queue_entry, _mode: c_uint, _sync: c_int, key: *mut c_void) -> c_int {
    // SAFETY: `wait` is the `wait` field of a registered Irqfd, which stays
    // alive until it is removed from this queue (in its drop).
    let irqfd = unsafe { &*sys::owner_of::<Irqfd, _>(wait, core::mem::offset_of!(Irqfd, wait)) };
    if key as usize & EPOLLIN != 0 {
        let mut cnt = 0u64;
        // SAFETY: called with the eventfd's queue lock held, as required.
        unsafe { bindings::eventfd_ctx_do_read(irqfd.eventfd.0, &mut cnt) };
        irqfd.inject.schedule();
    }
    0
}

/// vfs_poll's queueing callback: puts our entry on the eventfd's queue.
unsafe extern "C" fn irqfd_queue_proc(
    _file: *mut bindings::file,
    wqh: *mut bindings::wait_queue_head,
    pt: *mut bindings::poll_table_struct,
) {
    // SAFETY: `pt` is the `pt` field of the Irqfd being registered.
    let irqfd = unsafe { &*sys::owner_of::<Irqfd, _>(pt, core::mem::offset_of!(Irqfd, pt)) };
    irqfd.wqh.store(wqh, Ordering::SeqCst);
    // SAFETY: `wait` was initialized with our callback and is pinned.
    unsafe { bindings::add_wait_queue_priority(wqh, irqfd.wait.get()) };
}

/// The inject work: raise the GSI (and lower it again unless level/resample).
unsafe extern "C" fn irqfd_inject(w: *mut bindings::work_struct) {
    // SAFETY: `w` is the `inject` field of a live Irqfd (its drop cancels this
    // work before freeing it); `vm` outlives its irqfds.
    let irqfd = unsafe { &*sys::owner_of::<Irqfd, _>(w, core::mem::offset_of!(Irqfd, inject)) };
    // SAFETY: as above.
    let vm = unsafe { &*irqfd.vm };
    super::chips::kvm_set_irq(vm, irqfd.gsi, true);
    if irqfd.resample.is_none() {
        super::chips::kvm_set_irq(vm, irqfd.gsi, false);
    }
}

#[pinned_drop]
impl PinnedDrop for Irqfd {
    fn drop(self: Pin<&mut Self>) {
        let wqh = self.wqh.load(Ordering::SeqCst);
        if !wqh.is_null() {
            // SAFETY: our entry is on `wqh` (the eventfd's queue, alive while we
            // hold the context); removing it under the queue lock guarantees
            // the callback is not running and will not run again.
            unsafe { bindings::remove_wait_queue(wqh, self.wait.get()) };
        }
        self.inject.cancel_sync();
    }
}

fn new_irqfd(vm: &Vm, gsi: u32, eventfd: EventfdCtx, resample: Option<EventfdCtx>) -> impl PinInit<Irqfd> {
    let vm: *const Vm = vm;
    pin_init!(Irqfd {
        // SAFETY: initializes the entry with our callback before it is queued.
        wait <- Opaque::ffi_init(|p| unsafe { bindings::kvm_rs_init_wait_func(p, Some(irqfd_wakeup)) }),
        pt: Opaque::uninit(),
        inject <- WorkItem::new(irqfd_inject),
        wqh: AtomicPtr::new(core::ptr::null_mut()),
        vm,
        gsi,
        eventfd,
        resample,
    })
}

/// KVM_IRQFD.
pub(crate) fn kvm_irqfd(vm: &Vm, arg: usize) -> Result {
    let a: uapi::kvm_irqfd = user::read(arg)?;
    if a.flags & !(uapi::KVM_IRQFD_FLAG_DEASSIGN | uapi::KVM_IRQFD_FLAG_RESAMPLE) != 0 {
        return Err(EINVAL);
    }
    if a.flags & uapi::KVM_IRQFD_FLAG_DEASSIGN != 0 {
        return deassign(vm, a.fd as i32, a.gsi);
    }
    let resample = a.flags & uapi::KVM_IRQFD_FLAG_RESAMPLE != 0;
    // Upstream kvm_arch_irqfd_allowed: resampling needs the full irqchip.
    let allowed = if resample { vm.irq.pic_in_kernel() } else { vm.irq.lapic_in_kernel() };
    if !allowed {
        return Err(EINVAL);
    }
    if a.gsi >= routing::MAX_IRQ_ROUTES {
        return Err(EINVAL);
    }
    let eventfd = EventfdCtx::from_fd(a.fd as i32)?;
    let resamplefd = if resample { Some(EventfdCtx::from_fd(a.resamplefd as i32)?) } else { None };
    let mut list = vm.irq.irqfds.lock();
    if list.iter().any(|f| f.eventfd.0 == eventfd.0) {
        return Err(EBUSY);
    }
    if list.len() >= MAX_IRQFDS {
        return Err(ENOSPC);
    }
    // The file to poll: look it up again (the context does not lead back to it).
    // SAFETY: takes a counted reference to the file of `fd` (or null).
    let file = unsafe { bindings::fget(a.fd) };
    if file.is_null() {
        return Err(EBADF);
    }
    let irqfd = KBox::pin_init(new_irqfd(vm, a.gsi, eventfd, resamplefd), GFP_KERNEL);
    let irqfd = match irqfd {
        Ok(i) => i,
        Err(e) => {
            // SAFETY: drops the reference taken above.
            unsafe { bindings::fput(file) };
            return Err(e);
        }
    };
    // SAFETY: `file` is a live eventfd file (we hold a reference); `pt` is ours
    // and pinned; the queue callback stores the queue and adds `wait`.
    let mask = unsafe { bindings::kvm_rs_vfs_poll(file, irqfd.pt.get(), Some(irqfd_queue_proc)) };
    // SAFETY: drops the reference taken above (the eventfd context keeps the
    // queue alive).
    unsafe { bindings::fput(file) };
    if mask as usize & EPOLLIN != 0 {
        // Signalled before it was assigned: inject now, as upstream does.
        irqfd.inject.schedule();
    }
    list.push(irqfd, GFP_KERNEL)?;
    Ok(())
}

/// KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN: 0 even if nothing matched (upstream).
fn deassign(vm: &Vm, fd: i32, gsi: u32) -> Result {
    let eventfd = EventfdCtx::from_fd(fd)?;
    let removed = {
        let mut list = vm.irq.irqfds.lock();
        match list.iter().position(|f| f.eventfd.0 == eventfd.0 && f.gsi == gsi) {
            Some(i) => crate::kvec_ext::swap_remove(&mut list, i),
            None => None,
        }
    };
    // Dropped outside the list lock: the drop waits for the inject work.
    drop(removed);
    Ok(())
}

/// The guest EOIed IOAPIC pins `pins` (bitmask): lower the GSIs of resampling
/// irqfds routed to them and tell their resamplefds (upstream's
/// irqfd_resampler_ack).
pub(crate) fn notify_acked(vm: &Vm, pins: u32) {
    if pins == 0 {
        return;
    }
    let list = vm.irq.irqfds.lock();
    for f in list.iter() {
        let Some(resample) = f.resample.as_ref() else { continue };
        let routed = vm.irq.gsi_routes(f.gsi).iter().flatten().any(|r| match *r {
            Route::Irqchip { chip: routing::IRQCHIP_IOAPIC, pin } => pin < 32 && pins & (1 << pin) != 0,
            _ => false,
        });
        if routed {
            super::chips::kvm_set_irq(vm, f.gsi, false);
            resample.signal();
        }
    }
}

/// The list type the VM keeps.
pub(crate) type IrqfdList = KVec<Pin<KBox<Irqfd>>>;
