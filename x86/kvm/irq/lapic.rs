// SPDX-License-Identifier: GPL-2.0
//! The vCPU side of the in-kernel irqchip (upstream's lapic.c glue and the
//! event handling of x86.c): each vCPU's local APIC (the register model of
//! src/irqchip behind a spinlock), its timer, the events other contexts post to
//! it (interrupts, NMI, INIT, SIPI), the choice of the interrupt to inject at
//! entry, and HLT/wait-for-SIPI blocking.

use super::sys::{self, Timer, WaitQueue};
use crate::arch_state::{rflags, PendingEvent};
use crate::bindings;
use crate::irqchip::lapic::{Lapic, WriteEffects};
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner, VcpuShared};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use kernel::ffi::c_int;
use kernel::prelude::*;
use kernel::sync::SpinLock;
use kernel::new_spinlock;

/// `sipi_vector` holds a vector only with this bit set.
const SIPI_VALID: u32 = 1 << 8;
/// Likewise for `eoi_exit`.
const EOI_VALID: u32 = 1 << 8;

/// Per-vCPU irqchip state. Everything here may be touched by other threads
/// (senders of interrupts) and, for the atomics, by the APIC timer in hard-IRQ
/// context; the vCPU's own mutex is not needed to post an event.
#[pin_data]
pub(crate) struct VcpuIrq {
    /// The APIC timer. Its callback only bumps `timer_fired` and kicks: it is
    /// declared first so that it is cancelled before the rest is dropped.
    #[pin]
    timer: Timer,
    /// Whether the VM has an in-kernel local APIC (fixed when the vCPU is made).
    pub(crate) in_kernel: bool,
    /// The local APIC's registers. Taken by the vCPU's thread and by whoever
    /// delivers an interrupt to it, always in process context; never held
    /// across guest entry or a sleep; no other lock is taken under it.
    #[pin]
    pub(crate) apic: SpinLock<Lapic>,
    /// Set (non-zero) by every post; cleared by the vCPU before it looks at its
    /// events. Checked again after the vCPU entered guest mode, so a post that
    /// raced with entry makes it leave at once (upstream's KVM_REQ_EVENT).
    pub(crate) requests: AtomicU32,
    /// Timer expiries not yet folded into the APIC.
    timer_fired: AtomicU32,
    /// The guest's TSC offset as of its last entry (TSC-deadline arming).
    pub(crate) tsc_offset: AtomicU64,
    /// NMIs sent (IPI with NMI delivery mode, KVM_NMI).
    pub(crate) nmi_queued: AtomicU32,
    /// An SMI was sent (IPI with SMI delivery mode; upstream KVM_REQ_SMI).
    pub(crate) smi_queued: AtomicBool,
    /// An INIT was received (upstream KVM_APIC_INIT).
    init_pending: AtomicBool,
    /// A SIPI was received: `SIPI_VALID | vector` (upstream KVM_APIC_SIPI).
    sipi_vector: AtomicU32,
    /// Split irqchip: a level-triggered vector was EOIed; user space's IOAPIC
    /// must hear of it (`EOI_VALID | vector`, upstream KVM_REQ_IOAPIC_EOI_EXIT).
    eoi_exit: AtomicU32,
    /// The vCPU sleeps here while halted or waiting for SIPI.
    #[pin]
    pub(crate) wq: WaitQueue,
}

impl VcpuIrq {
    pub(crate) fn new(vcpu_id: u32, bsp: bool, in_kernel: bool) -> impl PinInit<Self> {
        pin_init!(VcpuIrq {
            timer <- Timer::new(apic_timer_fired),
            in_kernel,
            apic <- new_spinlock!(Lapic::new(vcpu_id, bsp), "VcpuIrq::apic"),
            requests: AtomicU32::new(0),
            timer_fired: AtomicU32::new(0),
            tsc_offset: AtomicU64::new(0),
            nmi_queued: AtomicU32::new(0),
            smi_queued: AtomicBool::new(false),
            init_pending: AtomicBool::new(false),
            sipi_vector: AtomicU32::new(0),
            eoi_exit: AtomicU32::new(0),
            wq <- WaitQueue::new(),
        })
    }

    /// Posts an INIT (delivered at the vCPU's next look at its events). A SIPI
    /// still pending from before is void; one sent after this INIT counts.
    pub(crate) fn post_init(&self) {
        self.sipi_vector.store(0, Ordering::SeqCst);
        self.init_pending.store(true, Ordering::SeqCst);
    }

    /// Whether an INIT waits (latched while the vCPU is in SMM).
    pub(crate) fn latched_init(&self) -> bool {
        self.init_pending.load(Ordering::SeqCst)
    }

    /// KVM_SET_VCPU_EVENTS' smi.latched_init.
    pub(crate) fn set_latched_init(&self, on: bool) {
        self.init_pending.store(on, Ordering::SeqCst);
    }

    /// Posts a SIPI with `vector`.
    pub(crate) fn post_sipi(&self, vector: u8) {
        self.sipi_vector.store(SIPI_VALID | vector as u32, Ordering::SeqCst);
    }
}

/// The APIC timer's hrtimer callback (hard-IRQ context): note the expiry and
/// kick the vCPU; the vCPU folds it into the APIC itself.
unsafe extern "C" fn apic_timer_fired(t: *mut bindings::hrtimer) -> c_int {
    let offset = core::mem::offset_of!(VcpuShared, irq) + core::mem::offset_of!(VcpuIrq, timer);
    // SAFETY: this hrtimer is the `irq.timer` field of a live VcpuShared: the
    // timer is cancelled (waiting for this callback) before the VcpuShared is
    // dropped, and `Timer` is repr(C) with the hrtimer at offset 0.
    let shared = unsafe { &*sys::owner_of::<VcpuShared, _>(t, offset) };
    shared.irq.timer_fired.fetch_add(1, Ordering::SeqCst);
    shared.kick();
    0 // HRTIMER_NORESTART: the vCPU re-arms a periodic timer.
}

/// Arms or stops the host timer for the APIC's current timer configuration.
/// Only the vCPU's thread (holding the vCPU mutex) calls this, so arming is
/// serialized.
fn rearm_timer(irq: &VcpuIrq) {
    let (deadline, tsc_deadline) = {
        let apic = irq.apic.lock();
        (apic.timer_deadline_ns(), apic.tsc_deadline())
    };
    let deadline = deadline.or_else(|| {
        tsc_deadline.map(|t| sys::guest_tsc_to_ns(t, irq.tsc_offset.load(Ordering::Relaxed)))
    });
    match deadline {
        Some(ns) => irq.timer.start_at(ns),
        None => irq.timer.cancel(),
    }
}

/// Folds expired timer ticks into the APIC (upstream kvm_inject_apic_timer_irqs).
fn process_timer(irq: &VcpuIrq) {
    if irq.timer_fired.swap(0, Ordering::SeqCst) == 0 {
        return;
    }
    let now = sys::now_ns();
    let guest_tsc = sys::rdtsc().wrapping_add(irq.tsc_offset.load(Ordering::Relaxed));
    {
        let mut apic = irq.apic.lock();
        // A stale expiry (the guest re-programmed the timer since) is ignored.
        let due = match (apic.timer_deadline_ns(), apic.tsc_deadline()) {
            (Some(d), _) => d <= now,
            (None, Some(t)) => t <= guest_tsc,
            (None, None) => false,
        };
        if due {
            apic.timer_expired(now);
        }
    }
    rearm_timer(irq);
}

/// Acts on what an APIC register write asks for beyond the register itself.
pub(crate) fn apply_effects(vcpu: &Vcpu, fx: WriteEffects) {
    let irq = &vcpu.shared.irq;
    if let Some(req) = fx.ipi {
        super::delivery::deliver(&vcpu.vm, Some(&vcpu.shared), &req);
    }
    if let Some((vector, level)) = fx.eoi {
        if level {
            if vcpu.vm.irq.pic_in_kernel() {
                super::chips::ioapic_eoi(&vcpu.vm, vector);
            } else if vcpu.vm.irq.lapic_in_kernel() {
                // Split irqchip: exit to user space before the next entry.
                irq.eoi_exit.store(EOI_VALID | vector as u32, Ordering::SeqCst);
            }
        }
    }
    if fx.timer_changed {
        rearm_timer(irq);
    }
    // An EOI, a TPR change or LVT0 may make another interrupt deliverable.
    irq.requests.fetch_or(1, Ordering::SeqCst);
}

/// INIT and SIPI (upstream kvm_apic_accept_events).
fn accept_events(vcpu: &Vcpu, inner: &mut VcpuInner) {
    let irq = &vcpu.shared.irq;
    // In SMM an INIT stays latched until RSM and a SIPI is dropped.
    if crate::smm::init_blocked(inner) {
        irq.sipi_vector.store(0, Ordering::SeqCst);
        return;
    }
    if irq.init_pending.swap(false, Ordering::SeqCst) {
        let bsp = vcpu.vm.irq.is_bsp(vcpu.shared.id);
        crate::vcpu::init_reset(vcpu, inner);
        irq.apic.lock().reset(true, bsp);
        rearm_timer(irq);
        inner.mp_state = if bsp { uapi::KVM_MP_STATE_RUNNABLE } else { uapi::KVM_MP_STATE_INIT_RECEIVED };
    }
    let sipi = irq.sipi_vector.swap(0, Ordering::SeqCst);
    if sipi & SIPI_VALID != 0 && inner.mp_state == uapi::KVM_MP_STATE_INIT_RECEIVED {
        // The AP starts in real mode at vector:0000 (SDM 8.4.4.1).
        let vector = (sipi & 0xff) as u16;
        inner.last_sipi_vector = vector as u8;
        let s = &mut inner.state;
        s.cs.selector = vector << 8;
        s.cs.base = (vector as u64) << 12;
        s.rip = 0;
        inner.mp_state = uapi::KVM_MP_STATE_RUNNABLE;
    }
}

/// Whether the guest would take an external interrupt now, ignoring IF-less
/// blocking (used to wake a halted vCPU: upstream kvm_vcpu_has_events).
fn interrupt_pending(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    let irq = &vcpu.shared.irq;
    let (apic_vector, accepts_pic) = {
        let apic = irq.apic.lock();
        (apic.pending_interrupt(), apic.accept_pic_intr())
    };
    apic_vector.is_some() || (accepts_pic && (inner.pending_external.is_some() || vcpu.vm.irq.pic_output()))
}

/// Split irqchip: whether user space may inject an ExtINT with KVM_INTERRUPT
/// now (upstream kvm_vcpu_ready_for_interrupt_injection with a user-space
/// PIC: the guest takes interrupts, none is queued, the APIC takes the PIC's).
pub(crate) fn ready_for_user_extint(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    inner.pending_external.is_none()
        && inner.vendor.interrupt_allowed(&inner.state)
        && vcpu.shared.irq.apic.lock().accept_pic_intr()
}

/// Takes posted events in without injecting anything (the debugger blocks
/// interrupts: KVM_GUESTDBG_BLOCKIRQ).
pub(crate) fn take_posted_events(vcpu: &Vcpu, inner: &mut VcpuInner) {
    process_events(vcpu, inner);
}

/// Folds posted events into the vCPU (timer, INIT/SIPI, NMIs).
fn process_events(vcpu: &Vcpu, inner: &mut VcpuInner) {
    let irq = &vcpu.shared.irq;
    irq.requests.store(0, Ordering::SeqCst);
    irq.tsc_offset.store(inner.state.tsc_offset, Ordering::Relaxed);
    process_timer(irq);
    accept_events(vcpu, inner);
    if irq.nmi_queued.swap(0, Ordering::SeqCst) != 0 {
        inner.nmi_pending = true;
    }
    crate::smm::take_posted(vcpu, inner);
}

/// Before entry with an in-kernel LAPIC: fold in the posted events and choose
/// the interrupt to inject (upstream kvm_check_and_inject_events). Returns
/// whether an interrupt waits for the guest to open its interrupt window.
pub(crate) fn inject_pending(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    process_events(vcpu, inner);
    let irq = &vcpu.shared.irq;
    inner.state.cr8 = (irq.apic.lock().tpr() >> 4) as u64;
    // Exceptions and re-injected events first, then NMIs (run.rs).
    crate::run::inject_exception_or_nmi(vcpu, inner);
    if inner.state.pending_event.is_some() || !inner.vendor.interrupt_allowed(&inner.state) {
        sync_to_vapic(vcpu, inner);
        return interrupt_pending(vcpu, inner);
    }
    // The PIC (through LINT0 in ExtINT mode) comes before the APIC, as upstream;
    // with the split irqchip the PIC is user space's, which passes its vector
    // with KVM_INTERRUPT.
    let accepts_pic = irq.apic.lock().accept_pic_intr();
    let vector = if accepts_pic && inner.pending_external.is_some() {
        inner.pending_external.take()
    } else if accepts_pic && vcpu.vm.irq.pic_output() {
        super::chips::pic_read_irq(&vcpu.vm)
    } else {
        let mut apic = irq.apic.lock();
        match apic.pending_interrupt() {
            Some(v) => {
                apic.ack_interrupt(v);
                Some(v)
            }
            None => None,
        }
    };
    if let Some(vector) = vector {
        inner.state.pending_event = Some(PendingEvent { vector, error_code: None, soft: false, external: true });
    }
    sync_to_vapic(vcpu, inner);
    false
}

/// Split irqchip: the level-triggered EOI user space must be told about
/// (KVM_EXIT_IOAPIC_EOI), if any.
pub(crate) fn take_eoi_exit(vcpu: &Vcpu) -> Option<u8> {
    let v = vcpu.shared.irq.eoi_exit.swap(0, Ordering::SeqCst);
    (v & EOI_VALID != 0).then_some(v as u8)
}

/// Whether a post arrived since `inject_pending` looked (checked after entry to
/// guest mode was announced; the entry is then abandoned).
pub(crate) fn entry_must_abort(vcpu: &Vcpu) -> bool {
    vcpu.shared.irq.requests.load(Ordering::SeqCst) != 0
}

/// Whether a non-running vCPU (halted, waiting for INIT/SIPI) can run again.
fn can_resume(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    match inner.mp_state {
        uapi::KVM_MP_STATE_RUNNABLE => true,
        uapi::KVM_MP_STATE_HALTED => {
            inner.nmi_pending
                || crate::smm::smi_wakes(inner)
                || (inner.state.rflags & rflags::IF != 0 && interrupt_pending(vcpu, inner))
        }
        _ => false,
    }
}

/// The vCPU is not runnable (HLT, waiting for SIPI): sleep until it is
/// (upstream vcpu_block). Returns false when a signal interrupted the wait.
pub(crate) fn vcpu_block(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    let irq = &vcpu.shared.irq;
    loop {
        process_events(vcpu, inner);
        if can_resume(vcpu, inner) {
            inner.mp_state = uapi::KVM_MP_STATE_RUNNABLE;
            return true;
        }
        if !irq.wq.wait_until(|| irq.requests.load(Ordering::SeqCst) != 0) {
            return false;
        }
    }
}

/// KVM_RUN on a vCPU that has not been started (UNINITIALIZED): wait for an
/// event once, then return so user space re-enters (upstream returns EAGAIN,
/// or EINTR on a signal).
pub(crate) fn wait_uninitialized(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result {
    let irq = &vcpu.shared.irq;
    let woke = irq.wq.wait_until(|| irq.requests.load(Ordering::SeqCst) != 0);
    process_events(vcpu, inner);
    if !woke {
        vcpu.run.set_simple(uapi::KVM_EXIT_INTR);
        return Err(EINTR);
    }
    Err(EAGAIN)
}

/// The state the KVM_GET_MP_STATE caller sees (upstream accepts pending
/// INIT/SIPI first).
pub(crate) fn get_mp_state(vcpu: &Vcpu, inner: &mut VcpuInner) -> u32 {
    if vcpu.shared.irq.in_kernel {
        accept_events(vcpu, inner);
    }
    inner.mp_state
}

/// KVM_SET_MP_STATE (upstream kvm_arch_vcpu_ioctl_set_mpstate).
pub(crate) fn set_mp_state(vcpu: &Vcpu, inner: &mut VcpuInner, state: u32) -> Result {
    let in_kernel = vcpu.shared.irq.in_kernel;
    match state {
        uapi::KVM_MP_STATE_RUNNABLE => {}
        uapi::KVM_MP_STATE_UNINITIALIZED
        | uapi::KVM_MP_STATE_HALTED
        | uapi::KVM_MP_STATE_AP_RESET_HOLD
        | uapi::KVM_MP_STATE_INIT_RECEIVED
        | uapi::KVM_MP_STATE_SIPI_RECEIVED
            if in_kernel => {}
        _ => return Err(EINVAL),
    }
    if crate::smm::mp_state_refused(inner, state) {
        return Err(EINVAL);
    }
    if state == uapi::KVM_MP_STATE_SIPI_RECEIVED {
        // The SIPI is redelivered from the vector the APIC last received.
        inner.mp_state = uapi::KVM_MP_STATE_INIT_RECEIVED;
        let v = inner.last_sipi_vector;
        vcpu.shared.irq.post_sipi(v);
    } else {
        inner.mp_state = state;
    }
    vcpu.shared.irq.requests.fetch_or(1, Ordering::SeqCst);
    Ok(())
}

/// The in-kernel APIC's MMIO page, if `gpa` falls in it: read.
pub(crate) fn mmio_read(vcpu: &Vcpu, gpa: u64, len: u8) -> Option<u64> {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        return None;
    }
    let apic = irq.apic.lock();
    if !apic.mmio_covers(gpa) {
        return None;
    }
    Some(apic.mmio_read((gpa & 0xfff) as u32, len, sys::now_ns()))
}

/// The in-kernel APIC's MMIO page, if `gpa` falls in it: write. Returns
/// whether the write was handled.
pub(crate) fn mmio_write(vcpu: &Vcpu, gpa: u64, len: u8, val: u64) -> bool {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        return false;
    }
    let fx = {
        let mut apic = irq.apic.lock();
        if !apic.mmio_covers(gpa) {
            return false;
        }
        apic.set_min_timer_period_ns(crate::params::min_timer_period_ns());
        apic.mmio_write((gpa & 0xfff) as u32, len, val, sys::now_ns())
    };
    apply_effects(vcpu, fx);
    true
}

/// The MSRs the in-kernel APIC owns: IA32_APIC_BASE, the x2APIC range and
/// IA32_TSC_DEADLINE. `None`: not an APIC MSR (or no in-kernel APIC).
pub(crate) fn get_msr(vcpu: &Vcpu, index: u32) -> Option<Result<u64>> {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        // No in-kernel APIC: IA32_TSC_DEADLINE reads 0 (upstream).
        return (index == MSR_IA32_TSC_DEADLINE).then_some(Ok(0));
    }
    let apic = irq.apic.lock();
    match index {
        crate::arch::msr::IA32_APIC_BASE => Some(Ok(apic.base())),
        0x800..=0x8ff => Some(apic.msr_read(index, sys::now_ns()).ok_or(EINVAL)),
        MSR_IA32_TSC_DEADLINE => Some(Ok(apic.read_tsc_deadline())),
        _ => None,
    }
}

/// IA32_TSC_DEADLINE.
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;

/// KVM_SET_CPUID2 with an in-kernel APIC: TSC-deadline mode exists only if the
/// guest's CPUID offers it (upstream's timer_mode_mask).
pub(crate) fn cpuid_changed(vcpu: &Vcpu, inner: &VcpuInner) {
    let irq = &vcpu.shared.irq;
    if irq.in_kernel {
        let allowed = crate::cpuid::guest_has_tsc_deadline(&inner.cpuid);
        irq.apic.lock().set_tsc_deadline_allowed(allowed);
    }
}

/// The reserved bits of IA32_APIC_BASE for a guest with `maxphyaddr` bits.
fn apic_base_reserved(maxphyaddr: u32) -> u64 {
    let addr_bits = if maxphyaddr >= 64 { u64::MAX } else { (1u64 << maxphyaddr) - 1 };
    !(addr_bits & !0xfff) & !((1 << 8) | (1 << 10) | (1 << 11))
}

/// Writes an APIC-owned MSR (see [`get_msr`]); `host` for KVM_SET_MSRS.
pub(crate) fn set_msr(vcpu: &Vcpu, inner: &VcpuInner, index: u32, value: u64, host: bool) -> Option<Result> {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        // No in-kernel APIC: IA32_TSC_DEADLINE writes are ignored (upstream).
        return (index == MSR_IA32_TSC_DEADLINE).then_some(Ok(()));
    }
    let fx = match index {
        crate::arch::msr::IA32_APIC_BASE => set_apic_base(inner, irq, value, host),
        0x800..=0x8ff => {
            let mut apic = irq.apic.lock();
            apic.set_min_timer_period_ns(crate::params::min_timer_period_ns());
            apic.msr_write(index, value, sys::now_ns()).ok_or(EINVAL)
        }
        MSR_IA32_TSC_DEADLINE => {
            irq.tsc_offset.store(inner.state.tsc_offset, Ordering::Relaxed);
            Ok(irq.apic.lock().write_tsc_deadline(value))
        }
        _ => return None,
    };
    Some(fx.map(|fx| apply_effects(vcpu, fx)))
}

/// IA32_APIC_BASE from WRMSR, KVM_SET_MSRS or KVM_SET_SREGS.
fn set_apic_base(inner: &VcpuInner, irq: &VcpuIrq, value: u64, host: bool) -> Result<WriteEffects> {
    let maxphy = crate::cpuid::guest_maxphyaddr(&inner.cpuid);
    let x2apic = crate::cpuid::guest_has_x2apic(&inner.cpuid);
    irq.apic.lock().set_base(value, host, x2apic, apic_base_reserved(maxphy)).map_err(|_| EINVAL)
}

/// KVM_SET_SREGS's apic_base with an in-kernel APIC (host-initiated).
pub(crate) fn set_sregs_apic_base(vcpu: &Vcpu, inner: &VcpuInner, value: u64) -> Result {
    let fx = set_apic_base(inner, &vcpu.shared.irq, value, true)?;
    apply_effects(vcpu, fx);
    Ok(())
}

/// MOV to CR8 with an in-kernel APIC: the TPR.
pub(crate) fn set_cr8(vcpu: &Vcpu, cr8: u64) {
    let irq = &vcpu.shared.irq;
    irq.apic.lock().set_tpr(((cr8 & 0xf) << 4) as u8);
    irq.requests.fetch_or(1, Ordering::SeqCst);
}

/// KVM_GET_LAPIC.
pub(crate) fn get_lapic(vcpu: &Vcpu, arg: usize) -> Result {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        return Err(EINVAL);
    }
    let ids32 = vcpu.vm.irq.x2apic_32bit_ids();
    let mut state = KBox::new(uapi::kvm_lapic_state { regs: [0; 1024] }, GFP_KERNEL)?;
    let regs = irq.apic.lock().get_state(ids32, sys::now_ns());
    for (d, s) in state.regs.iter_mut().zip(regs.iter()) {
        *d = *s as _;
    }
    crate::user::write(arg, &*state)
}

/// KVM_SET_LAPIC.
pub(crate) fn set_lapic(vcpu: &Vcpu, arg: usize) -> Result {
    let irq = &vcpu.shared.irq;
    if !irq.in_kernel {
        return Err(EINVAL);
    }
    let state: KBox<uapi::kvm_lapic_state> = KBox::new(crate::user::read(arg)?, GFP_KERNEL)?;
    let mut regs = crate::heap::zeroed_bytes::<1024>()?;
    for (d, s) in regs.iter_mut().zip(state.regs.iter()) {
        *d = *s as u8;
    }
    let ids32 = vcpu.vm.irq.x2apic_32bit_ids();
    let fx = {
        let mut apic = irq.apic.lock();
        apic.set_min_timer_period_ns(crate::params::min_timer_period_ns());
        apic.set_state(&regs, ids32, sys::now_ns()).map_err(|_| EINVAL)?
    };
    apply_effects(vcpu, WriteEffects { timer_changed: true, ..fx });
    Ok(())
}

/// KVM_SET_VAPIC_ADDR: the guest page where the kernel mirrors TPR, the
/// highest in-service and the highest requested vector around each entry
/// (for QEMU's kvmvapic option ROM, which patches TPR accesses to use it).
/// 0 turns it off; an address outside guest RAM is EINVAL (upstream).
pub(crate) fn set_vapic_addr(vcpu: &Vcpu, inner: &mut VcpuInner, arg: usize) -> Result {
    let a: uapi::kvm_vapic_addr = crate::user::read(arg)?;
    if !vcpu.shared.irq.in_kernel {
        return Err(EINVAL);
    }
    if a.vapic_addr == 0 {
        inner.vapic_addr = None;
        return Ok(());
    }
    let end = a.vapic_addr.checked_add(3).ok_or(EINVAL)?;
    let in_ram = |gpa: u64| vcpu.vm.gfn_to_hva(0, gpa >> 12).is_some();
    if !in_ram(a.vapic_addr) || !in_ram(end) {
        return Err(EINVAL);
    }
    inner.vapic_addr = Some(a.vapic_addr);
    Ok(())
}

/// Before entry: the vAPIC word (upstream kvm_lapic_sync_to_vapic).
fn sync_to_vapic(vcpu: &Vcpu, inner: &VcpuInner) {
    let Some(addr) = inner.vapic_addr else { return };
    let data = {
        let apic = vcpu.shared.irq.apic.lock();
        let max_isr = apic.highest_isr().unwrap_or(0) as u32;
        let max_irr = apic.highest_irr().unwrap_or(0) as u32;
        apic.tpr() as u32 | (max_isr & 0xf0) << 8 | max_irr << 24
    };
    // A slot that went away: nothing to mirror into (upstream ignores it too).
    let _ = crate::emulate::write_gpa_as0(vcpu, addr, &data.to_le_bytes());
}

/// After an exit: the guest may have written its TPR into the vAPIC word
/// (upstream kvm_lapic_sync_from_vapic).
pub(crate) fn sync_from_vapic(vcpu: &Vcpu, inner: &VcpuInner) {
    let Some(addr) = inner.vapic_addr else { return };
    let mut b = [0u8; 4];
    if let Ok(true) = crate::emulate::read_gpa_as0(vcpu, addr, &mut b) {
        vcpu.shared.irq.apic.lock().set_tpr(b[0]);
    }
}

/// KVM_NMI with an in-kernel APIC (upstream kvm_inject_nmi).
pub(crate) fn queue_nmi(vcpu: &Vcpu) {
    vcpu.shared.irq.nmi_queued.fetch_add(1, Ordering::SeqCst);
    vcpu.shared.kick();
}
