// SPDX-License-Identifier: GPL-2.0
//! Where statistics change: one call from each place an event happens (the
//! places upstream counts it), plus the trace events that belong to the same
//! spot. vCPU counters are bumped by the vCPU's own thread only.

use crate::arch_state::PendingEvent;
use crate::exit::Exit;
use crate::stats_desc::{vcpu as w, vm as vmw, log_hist_bucket, HALT_POLL_HIST_COUNT};
use crate::trace;
use crate::vcpu::{Vcpu, VcpuInner};
use crate::vm::Vm;
use crate::x86_ops::EntryParams;
use core::sync::atomic::Ordering::Relaxed;

/// Just before the guest runs (interrupts off): TLB flushes and injections
/// this entry performs (upstream counts them in kvm_vcpu_flush_tlb_* and the
/// vendors' inject_irq/inject_nmi), and kvm:kvm_entry.
pub(crate) fn on_entry(vcpu: &Vcpu, inner: &VcpuInner, p: &EntryParams) {
    let s = &vcpu.shared.stats;
    let c = &s.c;
    let pid = kernel::current!().pid();
    if s.pid.load(Relaxed) != pid {
        s.pid.store(pid, Relaxed);
    }
    s.tsc_offset.store(inner.state.tsc_offset, Relaxed);
    if p.flush_tlb || p.flush_guest_tlb {
        c.inc(w::TLB_FLUSH);
    }
    match inner.state.pending_event {
        Some(PendingEvent { vector, external: true, soft, .. }) => {
            c.inc(w::IRQ_INJECTIONS);
            trace::kvm_inj_virq(vector, soft, false);
        }
        Some(PendingEvent { vector: 2, external: false, soft: false, error_code: None }) => c.inc(w::NMI_INJECTIONS),
        _ => {}
    }
    trace::kvm_entry(vcpu.shared.id, inner.state.rip);
}

/// Right after the guest stopped (interrupts still off, so the vendor's
/// exit information is current): `exits` and the counter of the exit's kind
/// (upstream's vendor exit handlers), kvm:kvm_exit and kvm:kvm_page_fault.
pub(crate) fn on_exit(vcpu: &Vcpu, inner: &VcpuInner, exit: &Exit) {
    let c = &vcpu.shared.stats.c;
    let (id, rip) = (vcpu.shared.id, inner.state.rip);
    trace::kvm_exit(id, rip, || inner.vendor.exit_info());
    c.inc(w::EXITS);
    match exit {
        Exit::Io { .. } => c.inc(w::IO_EXITS),
        Exit::Hlt => c.inc(w::HALT_EXITS),
        Exit::HostInterrupt => c.inc(w::IRQ_EXITS),
        Exit::InterruptWindow => c.inc(w::IRQ_WINDOW_EXITS),
        // The IRET intercept is how NMI windows open (upstream's
        // iret_interception counts nmi_window_exits).
        Exit::Iret => c.inc(w::NMI_WINDOW_EXITS),
        Exit::Hypercall => c.inc(w::HYPERCALLS),
        Exit::TdpFault { gpa, .. } => {
            c.inc(w::PF_TAKEN);
            trace::kvm_page_fault(id, rip, *gpa, || inner.vendor.exit_info().info1);
        }
        _ => {}
    }
}

/// The nested page fault mapped guest memory (RET_PF_FIXED).
pub(crate) fn pf_fixed(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::PF_FIXED);
}

/// The nested page fault hit MMIO and goes to the emulator (RET_PF_EMULATE).
pub(crate) fn pf_emulate(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::PF_EMULATE);
}

/// KVM_RUN returns for a pending signal (KVM_EXIT_INTR).
pub(crate) fn signal_exit(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::SIGNAL_EXITS);
}

/// KVM_RUN returns KVM_EXIT_IRQ_WINDOW_OPEN.
pub(crate) fn request_irq_exit(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::REQUEST_IRQ_EXITS);
}

/// The vCPU blocks (halted or waiting for SIPI): returns the start time.
pub(crate) fn block_begin(vcpu: &Vcpu) -> u64 {
    vcpu.shared.stats.c.set(w::BLOCKING, 1);
    crate::irq::sys::now_ns()
}

/// The vCPU stopped blocking (`woke`: runnable again, not a signal):
/// halt_wait_ns and its histogram, halt_wakeup (upstream's kvm_vcpu_halt).
pub(crate) fn block_end(vcpu: &Vcpu, start_ns: u64, woke: bool) {
    let c = &vcpu.shared.stats.c;
    let ns = crate::irq::sys::now_ns().saturating_sub(start_ns);
    c.set(w::BLOCKING, 0);
    c.add(w::HALT_WAIT_NS, ns);
    c.inc(w::HALT_WAIT_HIST + log_hist_bucket(ns, HALT_POLL_HIST_COUNT));
    if woke {
        c.inc(w::HALT_WAKEUP);
    }
}

/// An instruction goes through the emulator (upstream's x86_emulate_instruction).
pub(crate) fn insn_emulation(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::INSN_EMULATION);
}

/// The emulator could not handle it (KVM_INTERNAL_ERROR_EMULATION).
pub(crate) fn insn_emulation_fail(vcpu: &Vcpu) {
    vcpu.shared.stats.c.inc(w::INSN_EMULATION_FAIL);
}

/// An MMIO access goes to user space (KVM_EXIT_MMIO).
pub(crate) fn mmio_exit(vcpu: &Vcpu, gpa: u64, len: u32, write: bool, data: [u8; 8]) {
    vcpu.shared.stats.c.inc(w::MMIO_EXITS);
    let ty = if write { trace::MMIO_WRITE } else { trace::MMIO_READ_UNSATISFIED };
    trace::kvm_mmio(ty, len, gpa, if write { u64::from_le_bytes(data) } else { 0 });
}

/// User space answered an MMIO read.
pub(crate) fn mmio_read_done(gpa: u64, len: u32, data: [u8; 8]) {
    trace::kvm_mmio(trace::MMIO_READ, len, gpa, u64::from_le_bytes(data));
}

/// kvm_flush_remote_tlbs: every call is a request; it counts as a flush when
/// a vCPU running the guest had to be kicked (upstream: when
/// kvm_make_all_cpus_request sent an IPI).
pub(crate) fn remote_tlb_flush(vm: &Vm, kicked: bool) {
    vm.stats.c.add_shared(vmw::REMOTE_TLB_FLUSH_REQUESTS, 1);
    if kicked {
        vm.stats.c.add_shared(vmw::REMOTE_TLB_FLUSH, 1);
    }
}

/// Leaves added to (positive) or removed from the nested page tables, per
/// page size (upstream's kvm_update_page_stats: pages_4k, pages_2m, pages_1g).
pub(crate) fn pages(vm: &Vm, delta: crate::tdp_mmu::LeafDelta) {
    let [d4k, d2m, d1g] = delta.0;
    for (stat, d) in [(vmw::PAGES_4K, d4k), (vmw::PAGES_2M, d2m), (vmw::PAGES_1G, d1g)] {
        if d != 0 {
            vm.stats.c.add_shared(stat, d as u64);
        }
    }
}
