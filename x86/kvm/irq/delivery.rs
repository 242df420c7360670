// SPDX-License-Identifier: GPL-2.0
//! Interrupt delivery to local APICs (upstream kvm_irq_delivery_to_apic and
//! __apic_accept_irq's non-register part): finds the destination vCPUs of a
//! request, posts the interrupt, and kicks each target so it notices: out of
//! guest mode with a reschedule IPI, out of HLT through its wait queue.

use crate::irqchip::{DeliveryMode, IrqRequest, Shorthand, TriggerMode};
use crate::vcpu::VcpuShared;
use crate::vm::Vm;
use core::sync::atomic::Ordering;

/// Whether `target` is a destination of `req` sent by `source`.
fn is_destination(target: &VcpuShared, source: Option<&VcpuShared>, req: &IrqRequest) -> bool {
    let apic = target.irq.apic.lock();
    if !apic.hw_enabled() {
        return false;
    }
    let from_self = source.map_or(false, |s| core::ptr::eq(s, target));
    apic.matches_dest(from_self, req.shorthand, req.dest_id, req.dest_mode)
}

/// Posts `req` to one APIC. Returns whether it was accepted (not coalesced).
fn post(target: &VcpuShared, req: &IrqRequest) -> bool {
    let irq = &target.irq;
    let accepted = match req.delivery_mode {
        DeliveryMode::Fixed | DeliveryMode::LowestPriority => irq.apic.lock().accept_irq(req),
        DeliveryMode::Nmi => {
            irq.nmi_queued.fetch_add(1, Ordering::SeqCst);
            true
        }
        // A level-triggered INIT de-assert does nothing (upstream).
        DeliveryMode::Init if req.trigger == TriggerMode::Level && !req.level => false,
        DeliveryMode::Init => {
            irq.post_init();
            true
        }
        DeliveryMode::StartUp => {
            irq.post_sipi(req.vector);
            true
        }
        // Taken at the target's next entry (x86/kvm/smm.rs); dropped by a
        // vendor without SMM.
        DeliveryMode::Smi if crate::smm::vendor_supports() => {
            irq.smi_queued.store(true, Ordering::SeqCst);
            true
        }
        // ExtINT only reaches a CPU through LINT0 (the PIC path): dropped
        // here, as upstream drops it.
        DeliveryMode::ExtInt | DeliveryMode::Smi | DeliveryMode::Reserved => return false,
    };
    target.kick();
    accepted
}

/// The xAPIC and x2APIC broadcast destinations.
fn is_broadcast(dest_id: u32) -> bool {
    dest_id == 0xff || dest_id == 0xffff_ffff
}

/// Delivers `req` (upstream kvm_irq_delivery_to_apic). Returns -1 if no APIC
/// was a destination, else the number of APICs that accepted it.
pub(crate) fn deliver(vm: &Vm, source: Option<&VcpuShared>, req: &IrqRequest) -> i32 {
    let vcpus = vm.inner.lock();
    let targets = || vcpus.vcpus.iter().filter(|t| is_destination(t, source, req));
    let lowest = req.delivery_mode == DeliveryMode::LowestPriority || req.msi_redir_hint;
    if lowest {
        // One destination among the candidates, chosen by vector hashing as
        // upstream does by default (kvm.vector_hashing).
        let n = targets().count();
        if n == 0 {
            return if req.shorthand == Shorthand::None && !is_broadcast(req.dest_id) { 0 } else { -1 };
        }
        let pick = req.vector as usize % n;
        return match targets().nth(pick) {
            Some(t) => post(t, req) as i32,
            None => -1,
        };
    }
    let mut found = false;
    let mut accepted = 0;
    for t in targets() {
        found = true;
        accepted += post(t, req) as i32;
    }
    if found {
        accepted
    } else if req.shorthand == Shorthand::None && !is_broadcast(req.dest_id) {
        // Upstream's fast path (the APIC map) answers 0 for a destination no
        // APIC has; only the slow path (shorthands, broadcasts) says -1.
        0
    } else {
        -1
    }
}

/// Kicks every vCPU whose APIC takes the PIC's output (LINT0 in ExtINT mode,
/// or a hardware-disabled APIC): the PIC raised its INT line.
pub(crate) fn kick_pic_targets(vm: &Vm) {
    let vcpus = vm.inner.lock();
    for t in vcpus.vcpus.iter() {
        if t.irq.apic.lock().accept_pic_intr() {
            t.kick();
        }
    }
}
