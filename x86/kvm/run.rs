// SPDX-License-Identifier: GPL-2.0
//! KVM_RUN: the vCPU run loop and the exit handlers (upstream's
//! kvm_arch_vcpu_ioctl_run, vcpu_run, vcpu_enter_guest, and the common handlers
//! kvm_fast_pio, kvm_emulate_cpuid, kvm_emulate_rdmsr/wrmsr, kvm_emulate_halt...).

use crate::arch::regs::cr4;
use crate::arch_state::{gpr, rflags, ArchState, PendingEvent};
use crate::bindings;
use crate::emulate;
use crate::exit::Exit;
use crate::uapi;
use crate::vcpu::{Pending, Vcpu, VcpuInner};
use crate::vm::Resolved;
use crate::x86_ops::EntryParams;
use kernel::prelude::*;
use kernel::sync::Arc;

/// What to do after an exit was handled.
pub(crate) enum Next {
    /// Enter the guest again.
    Guest,
    /// Return to user space (kvm_run says why).
    User,
}

/// `KVM_INTERNAL_ERROR_EMULATION`, `..._UNEXPECTED_EXIT_REASON` (linux/kvm.h).
const INTERNAL_ERROR_EMULATION: u32 = 1;
pub(crate) const INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: u32 = 4;

pub(crate) fn kvm_arch_vcpu_ioctl_run(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner) -> Result {
    let r = run_with_synced_regs(vcpu, inner);
    crate::sync_regs::store(vcpu, inner);
    r
}

fn run_with_synced_regs(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner) -> Result {
    // As upstream, a vCPU waiting for INIT/SIPI takes no synced registers.
    if !(vcpu.shared.irq.in_kernel && inner.mp_state == uapi::KVM_MP_STATE_UNINITIALIZED) {
        crate::sync_regs::load(vcpu, inner)?;
    }
    if let Next::User = complete_userspace_exit(vcpu, inner)? {
        post_run_save(vcpu, inner);
        return Ok(());
    }
    // Upstream returns at once, leaving kvm_run's exit reason as it was but
    // refreshing the rest (ready_for_interrupt_injection, if_flag...): QEMU
    // decides whether to inject from those after every return.
    if vcpu.run.immediate_exit() != 0 {
        post_run_save(vcpu, inner);
        return Err(EINTR);
    }
    let apic_in_kernel = vcpu.shared.irq.in_kernel;
    if !apic_in_kernel {
        // Without an in-kernel LAPIC user space owns the TPR: it passes it in cr8.
        let cr8 = vcpu.run.cr8();
        if cr8 > 15 {
            return Err(EINVAL);
        }
        inner.state.cr8 = cr8;
    } else if inner.mp_state == uapi::KVM_MP_STATE_UNINITIALIZED {
        // Not started yet: wait for INIT/SIPI once, then let user space
        // re-enter (upstream: EAGAIN, or EINTR on a signal).
        let r = crate::irq::lapic::wait_uninitialized(vcpu, inner);
        post_run_save(vcpu, inner);
        return r;
    }
    inner.has_run = true;
    crate::time::steal_time::vcpu_load(inner);
    let saved = crate::sigmask::activate(&inner.sigmask);
    inner.fpu.load();
    let r = vcpu_run(vcpu, inner);
    inner.fpu.put();
    crate::sigmask::deactivate(saved);
    post_run_save(vcpu, inner);
    r
}

/// Whether an interrupt from user space could be injected now (upstream's
/// kvm_vcpu_ready_for_interrupt_injection with a user-space irqchip; always
/// with the in-kernel PIC, where user space injects through it).
fn ready_for_interrupt(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    if vcpu.vm.irq.pic_in_kernel() {
        return true;
    }
    if vcpu.shared.irq.in_kernel {
        return crate::irq::lapic::ready_for_user_extint(vcpu, inner);
    }
    inner.pending_external.is_none() && inner.vendor.interrupt_allowed(&inner.state)
}

/// Whether user space's request_interrupt_window counts (upstream's
/// dm_request_for_irq_injection && kvm_cpu_accept_dm_intr): never with the
/// in-kernel PIC; with the split irqchip only while the APIC takes the PIC's
/// interrupts (LINT0 in ExtINT mode) and none is queued, or the guest would
/// exit at every instruction for an interrupt it cannot take.
fn user_wants_window(vcpu: &Vcpu, inner: &VcpuInner) -> bool {
    if vcpu.run.request_interrupt_window() == 0 || vcpu.vm.irq.pic_in_kernel() {
        return false;
    }
    if vcpu.shared.irq.in_kernel {
        return inner.pending_external.is_none() && vcpu.shared.irq.apic.lock().accept_pic_intr();
    }
    true
}

/// The first steps of choosing the event for this entry (upstream's
/// kvm_check_and_inject_events): a pending exception or re-injected event
/// stays; else a pending SMI enters SMM (smm.rs); else an NMI if NMIs are
/// open. Returns whether the slot is taken.
pub(crate) fn inject_exception_or_nmi(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    if inner.state.pending_event.is_some() {
        return true;
    }
    if crate::smm::inject_smi(vcpu, inner) {
        return true;
    }
    if inner.nmi_pending && !inner.state.nmi_masked && !inner.state.interrupt_shadow {
        inner.nmi_pending = false;
        inner.state.nmi_masked = true;
        inner.state.pending_event = Some(PendingEvent { vector: 2, error_code: None, soft: false, external: false });
        return true;
    }
    false
}

/// Chooses the event to deliver at this entry: exceptions, NMIs, then the
/// external interrupt (from the in-kernel irqchip, or KVM_INTERRUPT's).
/// Returns whether an interrupt must wait for the guest's interrupt window.
fn inject_pending_event(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    // The debugger keeps interrupts and NMIs out (KVM_GUESTDBG_BLOCKIRQ);
    // exceptions already chosen stay. Posted events are still taken in (the
    // timer into the APIC, NMIs into nmi_pending), or the entry would see
    // them outstanding and abort forever.
    if crate::guest_debug::interrupts_blocked(inner) {
        if vcpu.shared.irq.in_kernel {
            crate::irq::lapic::take_posted_events(vcpu, inner);
        }
        return false;
    }
    if vcpu.shared.irq.in_kernel {
        return crate::irq::lapic::inject_pending(vcpu, inner);
    }
    if inject_exception_or_nmi(vcpu, inner) {
        return false;
    }
    if let Some(v) = inner.pending_external.take() {
        inner.state.pending_event = Some(PendingEvent { vector: v, error_code: None, soft: false, external: true });
    }
    false
}

fn vcpu_run(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner) -> Result {
    loop {
        // SAFETY: reads the current task's state.
        if unsafe { bindings::kvm_rs_signal_pending() } {
            crate::stats::signal_exit(vcpu);
            vcpu.run.set_simple(uapi::KVM_EXIT_INTR);
            return Err(EINTR);
        }
        crate::time::steal_time::before_resched(vcpu, inner);
        // SAFETY: may sleep; no spinlock or IRQ-off section is held here.
        unsafe { bindings::kvm_rs_cond_resched() };
        // Halted or waiting for SIPI (in-kernel APIC): sleep until runnable.
        if inner.mp_state != uapi::KVM_MP_STATE_RUNNABLE {
            let start = crate::stats::block_begin(vcpu);
            let woke = crate::irq::lapic::vcpu_block(vcpu, inner);
            crate::stats::block_end(vcpu, start, woke);
            if !woke {
                vcpu.run.set_simple(uapi::KVM_EXIT_INTR);
                return Err(EINTR);
            }
            continue;
        }
        match vcpu_enter_guest(vcpu, inner)? {
            Next::Guest => {}
            Next::User => return Ok(()),
        }
        // User space asked to be told when it can inject: tell it now.
        if user_wants_window(vcpu, inner) && ready_for_interrupt(vcpu, inner) {
            crate::stats::request_irq_exit(vcpu);
            vcpu.run.set_simple(uapi::KVM_EXIT_IRQ_WINDOW_OPEN);
            return Ok(());
        }
    }
}

fn xsetbv(xcr0: u64) {
    // SAFETY: only called with values valid for the CPU (the host's own XCR0, or a
    // guest XCR0 checked by valid_xcr0 against the host's supported components).
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") xcr0 as u32, in("edx") (xcr0 >> 32) as u32, options(nostack))
    };
}

fn vcpu_enter_guest(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner) -> Result<Next> {
    // The page tables of the vCPU's address space (SMM has its own).
    let params_root = vcpu.vm.tdp_roots[crate::smm::as_id(vcpu)];
    if crate::guest_debug::take_pending_step(vcpu, inner) {
        return Ok(Next::User);
    }
    if core::mem::take(&mut inner.shutdown_requested) {
        vcpu.run.set_simple(uapi::KVM_EXIT_SHUTDOWN);
        return Ok(Next::User);
    }
    if let Some(vector) = crate::irq::lapic::take_eoi_exit(vcpu) {
        vcpu.run.set_ioapic_eoi(vector);
        return Ok(Next::User);
    }
    // The dirty ring is nearly full: user space must harvest and reset it
    // (upstream's kvm_dirty_ring_check_request). Again at every entry until
    // it has.
    if vcpu.shared.dirty_ring.as_ref().is_some_and(|r| r.soft_full()) {
        vcpu.run.set_simple(uapi::KVM_EXIT_DIRTY_RING_FULL);
        return Ok(Next::User);
    }
    crate::time::kvmclock::update_if_requested(vcpu, inner);
    crate::time::steal_time::record_if_needed(vcpu, inner);
    let irq_waits = inject_pending_event(vcpu, inner);
    crate::smm::check_entry(inner)?;
    // User space wants to inject (request_interrupt_window), or KVM_INTERRUPT's
    // vector could not go in yet, or the in-kernel irqchip has an interrupt the
    // guest cannot take yet: exit as soon as the guest can take one, which is
    // at once if it already can (upstream arms the window in these cases, so a
    // guest spinning with IF=1 cannot starve user space).
    let want_window = irq_waits || user_wants_window(vcpu, inner);
    let intercept_iret = inner.state.nmi_masked && !inner.iret_seen;
    // SAFETY: paired with the enable below; nothing in between sleeps.
    unsafe { bindings::kvm_rs_preempt_disable() };
    let cpu = crate::cpu::smp_processor_id();
    inner.vendor.vcpu_load(cpu);
    // SAFETY: paired with the enable below; nothing in between sleeps.
    unsafe { bindings::kvm_rs_local_irq_disable() };
    crate::vcpu::fpu_load_if_needed();
    let gen = vcpu.shared.enter(&vcpu.vm, cpu);
    // An interrupt posted after the events were looked at, but before guest
    // mode was announced, would wait for the next exit: leave now instead.
    if vcpu.shared.irq.in_kernel && crate::irq::lapic::entry_must_abort(vcpu) {
        vcpu.shared.leave();
        // SAFETY: pairs with the disables above.
        unsafe {
            bindings::kvm_rs_local_irq_enable();
            bindings::kvm_rs_preempt_enable();
        }
        return Ok(Next::Guest);
    }
    let flush = gen != inner.flushed_gen;
    inner.flushed_gen = gen;

    // The guest's XCR0 is live only while it runs.
    let host_xcr0 = crate::cpu::xgetbv0();
    let guest_xcr0 = if inner.state.cr4 & cr4::OSXSAVE != 0 { inner.state.xcr0 } else { host_xcr0 };
    if guest_xcr0 != host_xcr0 {
        xsetbv(guest_xcr0);
    }
    let params = EntryParams {
        tdp_root: params_root,
        flush_tlb: flush,
        flush_guest_tlb: core::mem::take(&mut inner.flush_guest_tlb),
        request_interrupt_window: want_window,
        intercept_iret,
        // #UD always (upstream too): handle_ud, the forced emulation prefix,
        // and RSM in SMM on VMX.
        intercept_exceptions: crate::guest_debug::intercepts(inner) | (1 << 6),
        intercept_all_msrs: vcpu.vm.user_msr.filtering(),
        intercept_hlt: inner.intercept_hlt,
    };
    let debug = crate::guest_debug::before_entry(inner);
    inner.bp_exit = false;
    // The guest's DR0-3 are in the hardware only while it runs with breakpoints
    // enabled (DR7 is switched by the hardware; every DR access exits).
    let guest_bps = inner.state.dr7 & 0xff != 0;
    let host_db = if guest_bps { Some(crate::cpu::read_db()) } else { None };
    if guest_bps {
        // SAFETY: interrupts are off; the host's values are restored below.
        unsafe { crate::cpu::write_db(&inner.state.db) };
    }
    crate::stats::on_entry(vcpu, inner, &params);
    let exit = inner.vendor.run(&mut inner.state, &params);
    crate::stats::on_exit(vcpu, inner, &exit);
    crate::guest_debug::after_exit(inner, debug);
    if let Some(h) = host_db {
        // SAFETY: the host's own values, read above.
        unsafe { crate::cpu::write_db(&h) };
    }
    if inner.iret_seen {
        // The IRET that ended the NMI handler has executed by now.
        inner.iret_seen = false;
        inner.state.nmi_masked = false;
    }
    if guest_xcr0 != host_xcr0 {
        xsetbv(host_xcr0);
    }
    vcpu.shared.leave();
    // SAFETY: pairs with the disables above.
    unsafe {
        bindings::kvm_rs_local_irq_enable();
        bindings::kvm_rs_preempt_enable();
    }
    crate::irq::lapic::sync_from_vapic(vcpu, inner);
    crate::time::kvmclock::note_cpu(vcpu, inner, cpu);
    handle_exit(vcpu, inner, exit, cpu)
}

/// Advances RIP past the instruction that exited (upstream's
/// kvm_skip_emulated_instruction): the hardware's next RIP when it reports one,
/// else the decoded length of the instruction, else `fallback_len`.
pub(crate) fn skip_instruction(vcpu: &Vcpu, inner: &mut VcpuInner, fallback_len: u64) {
    let next = match inner.vendor.next_rip() {
        Some(n) => n,
        None => {
            let len = emulate::instruction_length(vcpu, &inner.state).unwrap_or(fallback_len);
            inner.state.rip.wrapping_add(len)
        }
    };
    set_rip(&mut inner.state, next);
    inner.state.interrupt_shadow = false;
    crate::guest_debug::instruction_completed(inner);
}

/// Writes RIP, truncated to the width of the current code segment.
pub(crate) fn set_rip(s: &mut ArchState, rip: u64) {
    s.rip = if s.long_mode() && s.cs.l != 0 { rip } else { rip & 0xffff_ffff };
}

fn inject_gp(inner: &mut VcpuInner) {
    inner.state.queue_exception(13, Some(0));
}

pub(crate) fn valid_xcr0(inner: &VcpuInner, v: u64) -> bool {
    let supported = crate::supported_cpuid::SUPPORTED_XCR0 & crate::cpu::xgetbv0();
    // x87 always (XCR0 = 1, its reset value, is valid even for a guest without
    // XSAVE, as upstream's __kvm_set_xcr); AVX needs SSE; nothing the host or
    // KVM does not support; more than x87 only for a guest with XSAVE.
    v & 1 != 0 && v & !supported == 0 && !(v & 4 != 0 && v & 2 == 0) && (inner.features.xsave || v == 1)
}

fn handle_exit(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner, exit: Exit, cpu: u32) -> Result<Next> {
    let run = &vcpu.run;
    match exit {
        Exit::Io { port, size, input, string, rep } => handle_io(vcpu, inner, port, size, input, string, rep),
        Exit::Hlt => {
            skip_instruction(vcpu, inner, 1);
            if vcpu.shared.irq.in_kernel {
                // The vCPU sleeps in the kernel until an interrupt wakes it.
                inner.mp_state = uapi::KVM_MP_STATE_HALTED;
                return Ok(Next::Guest);
            }
            run.set_simple(uapi::KVM_EXIT_HLT);
            Ok(Next::User)
        }
        Exit::Cpuid if crate::platform_info::cpuid_faults(inner) => {
            inject_gp(inner);
            Ok(Next::Guest)
        }
        Exit::Cpuid => {
            crate::cpuid::emulate_cpuid(inner, vcpu.shared.id);
            skip_instruction(vcpu, inner, 2);
            Ok(Next::Guest)
        }
        Exit::Rdmsr => crate::user_msr::handle_rdmsr(vcpu, inner),
        Exit::Wrmsr => crate::user_msr::handle_wrmsr(vcpu, inner),
        Exit::Xsetbv => {
            let s = &inner.state;
            let v = (s.gprs[gpr::RDX] << 32) | (s.gprs[gpr::RAX] & 0xffff_ffff);
            if s.gprs[gpr::RCX] as u32 == 0 && s.cpl() == 0 && valid_xcr0(inner, v) {
                inner.state.xcr0 = v;
                skip_instruction(vcpu, inner, 3);
            } else {
                inject_gp(inner);
            }
            Ok(Next::Guest)
        }
        Exit::Hypercall => crate::hypercall::kvm_emulate_hypercall(vcpu, inner),
        Exit::TdpFault { gpa, write, fetch, .. } => match vcpu.vm.handle_tdp_fault(
            crate::smm::as_id(vcpu),
            gpa,
            crate::vm::Access { write, fetch },
            vcpu.shared.dirty_ring.as_ref(),
        )? {
            Resolved::Mapped => {
                crate::stats::pf_fixed(vcpu);
                Ok(Next::Guest)
            }
            // Raced with an invalidation of the host mapping: nothing was
            // mapped; the guest faults again.
            Resolved::Retry => Ok(Next::Guest),
            Resolved::Mmio => {
                crate::stats::pf_emulate(vcpu);
                emulate::emulate_mmio(vcpu, inner, gpa)
            }
        },
        Exit::Shutdown => {
            run.set_simple(uapi::KVM_EXIT_SHUTDOWN);
            Ok(Next::User)
        }
        Exit::HostInterrupt => Ok(Next::Guest),
        // The window opened: the pending interrupt goes in at the next entry, or
        // the run loop tells user space (KVM_EXIT_IRQ_WINDOW_OPEN).
        Exit::InterruptWindow => Ok(Next::Guest),
        Exit::DrAccess { dr, write } => emulate::mov_dr(vcpu, inner, dr, write),
        Exit::CrAccess { cr, op } => crate::cr::handle_cr_access(vcpu, inner, cr, op),
        Exit::Rsm => crate::smm::rsm(vcpu, inner),
        Exit::Iret => {
            inner.iret_seen = true;
            Ok(Next::Guest)
        }
        Exit::UndefinedOpcode => {
            inner.state.queue_exception(6, None);
            Ok(Next::Guest)
        }
        Exit::Nop => {
            skip_instruction(vcpu, inner, 3);
            Ok(Next::Guest)
        }
        Exit::FailEntry { hardware_reason } => {
            run.set_fail_entry(hardware_reason, cpu);
            Ok(Next::User)
        }
        Exit::Exception { vector: 6, .. } if inner.smm.in_smm => crate::smm::ud_in_smm(vcpu, inner),
        Exit::Exception { vector: 6, .. } => crate::forced_emulation::handle_ud(vcpu, inner),
        Exit::Exception { vector, .. } if crate::guest_debug::exception(vcpu, inner, vector) => {
            Ok(Next::User)
        }
        Exit::Exception { vector, error_code } => {
            run.set_internal_error(
                INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
                &[0x40 + vector as u64, error_code.unwrap_or(0) as u64, inner.state.rip, cpu as u64],
            );
            Ok(Next::User)
        }
        Exit::Unhandled { reason, info1, info2 } => {
            run.set_internal_error(INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[reason, info1, info2, cpu as u64]);
            Ok(Next::User)
        }
    }
}

fn handle_io(
    vcpu: &Arc<Vcpu>,
    inner: &mut VcpuInner,
    port: u16,
    size: u8,
    input: bool,
    string: bool,
    rep: bool,
) -> Result<Next> {
    if !matches!(size, 1 | 2 | 4) {
        vcpu.run.set_internal_error(INTERNAL_ERROR_EMULATION, &[port as u64, size as u64]);
        return Ok(Next::User);
    }
    if string {
        return emulate::string_io(vcpu, inner, port, size, input, rep);
    }
    let run = &vcpu.run;
    let value = inner.state.gprs[gpr::RAX] as u32;
    if !input {
        crate::trace::kvm_pio(true, port, size, 1, value & (u32::MAX >> (32 - 8 * size as u32)));
    }
    if !input && vcpu.vm.irq.ioeventfds.write(true, port as u64, size as u32, value as u64) {
        skip_instruction(vcpu, inner, 1);
        return Ok(Next::Guest);
    }
    if let Some(v) = crate::irq::chips::pio(&vcpu.vm, port, size, input, value) {
        if input {
            crate::trace::kvm_pio(false, port, size, 1, v);
            write_reg_sized(&mut inner.state, gpr::RAX, size, v as u64);
        }
        skip_instruction(vcpu, inner, 1);
        return Ok(Next::Guest);
    }
    if !input && vcpu.vm.coalesced.write(true, port as u64, &value.to_le_bytes()[..size as usize]) {
        skip_instruction(vcpu, inner, 1);
        return Ok(Next::Guest);
    }
    let next_rip = match inner.vendor.next_rip() {
        Some(n) => n,
        None => inner.state.rip.wrapping_add(emulate::instruction_length(vcpu, &inner.state).unwrap_or(1)),
    };
    let at = linear_rip(&inner.state);
    if input {
        run.set_io(true, size, port, 1);
        inner.pending = Pending::PioIn { size, at, next_rip };
    } else {
        let data = inner.state.gprs[gpr::RAX].to_le_bytes();
        // SAFETY: at most 4 bytes into the PIO page we own.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), run.pio_ptr(), size as usize) };
        run.set_io(false, size, port, 1);
        inner.pending = Pending::PioOut { at, next_rip };
    }
    Ok(Next::User)
}

/// Writes the low `size` bytes of a register as an instruction with that operand
/// size does: 32-bit results zero-extend, 8/16-bit ones merge.
pub(crate) fn write_reg_sized(s: &mut ArchState, reg: usize, size: u8, v: u64) {
    let old = s.gprs[reg];
    s.gprs[reg] = match size {
        1 => (old & !0xff) | (v & 0xff),
        2 => (old & !0xffff) | (v & 0xffff),
        4 => v & 0xffff_ffff,
        _ => v,
    };
}

/// Finishes the instruction of the last user-space exit with what user space
/// provided (upstream's complete_userspace_io).
fn complete_userspace_exit(vcpu: &Arc<Vcpu>, inner: &mut VcpuInner) -> Result<Next> {
    let pending = core::mem::replace(&mut inner.pending, Pending::None);
    match pending {
        Pending::None => Ok(Next::Guest),
        // User space moved RIP away (e.g. restored a snapshot): the I/O
        // instruction is not completed, as upstream.
        Pending::PioIn { at, .. } | Pending::PioOut { at, .. } if linear_rip(&inner.state) != at => Ok(Next::Guest),
        Pending::PioIn { size, next_rip, .. } => {
            let mut data = [0u8; 8];
            // SAFETY: at most 4 bytes from the PIO page we own.
            unsafe { core::ptr::copy_nonoverlapping(vcpu.run.pio_ptr(), data.as_mut_ptr(), size as usize) };
            crate::trace::kvm_pio(false, vcpu.run.io_port(), size, 1, u64::from_le_bytes(data) as u32);
            write_reg_sized(&mut inner.state, gpr::RAX, size, u64::from_le_bytes(data));
            finish_io_instruction(inner, next_rip);
            Ok(Next::Guest)
        }
        Pending::PioOut { next_rip, .. } => {
            finish_io_instruction(inner, next_rip);
            Ok(Next::Guest)
        }
        Pending::PioInString { size, count } => emulate::complete_string_in(vcpu, inner, size, count),
        Pending::PioOutString { size, count } => {
            emulate::complete_string_out(vcpu, inner, size, count);
            Ok(Next::Guest)
        }
        Pending::MmioRead { len } => emulate::complete_mmio_read(vcpu, inner, len),
        Pending::MmioWrite => emulate::complete_mmio_write(vcpu, inner),
        Pending::UserMsr { read, next_rip } => Ok(crate::user_msr::complete(vcpu, inner, read, next_rip)),
    }
}

fn finish_io_instruction(inner: &mut VcpuInner, next_rip: u64) {
    set_rip(&mut inner.state, next_rip);
    inner.state.interrupt_shadow = false;
    crate::guest_debug::instruction_completed(inner);
}

/// The linear address of RIP (upstream's kvm_get_linear_rip): CS.base + RIP
/// outside 64-bit mode, truncated to 32 bits.
fn linear_rip(s: &ArchState) -> u64 {
    if s.long_mode() && s.cs.l != 0 {
        s.rip
    } else {
        s.cs.base.wrapping_add(s.rip) & 0xffff_ffff
    }
}

/// What user space sees in kvm_run besides the exit (upstream's post_kvm_run_save).
fn post_run_save(vcpu: &Vcpu, inner: &VcpuInner) {
    let s = &inner.state;
    let run = &vcpu.run;
    run.set_if_flag((s.rflags & rflags::IF != 0) as u8);
    if vcpu.shared.irq.in_kernel {
        let apic = vcpu.shared.irq.apic.lock();
        run.set_cr8((apic.tpr() >> 4) as u64);
        run.set_apic_base(apic.base());
    } else {
        run.set_cr8(s.cr8);
        run.set_apic_base(inner.apic_base);
    }
    run.set_ready_for_interrupt_injection(ready_for_interrupt(vcpu, inner) as u8);
    run.set_flags(crate::smm::run_flags(inner));
}
