// SPDX-License-Identifier: GPL-2.0
//! The VM ioctls of the in-kernel irqchip (upstream's kvm_arch_vm_ioctl cases
//! and kvm_vm_ioctl's routing/MSI ones): KVM_CREATE_IRQCHIP, KVM_IRQ_LINE(_STATUS),
//! KVM_GET/SET_IRQCHIP, KVM_SET_GSI_ROUTING, KVM_SIGNAL_MSI, KVM_CREATE_PIT2,
//! KVM_GET/SET_PIT(2), KVM_REINJECT_CONTROL, KVM_SET_BOOT_CPU_ID and the
//! irqchip capabilities of KVM_ENABLE_CAP. Every argument is copied in and
//! checked before any state changes.

use super::chips::{self, IrqchipMode, X2APIC_API_DISABLE_BROADCAST_QUIRK, X2APIC_API_USE_32BIT_IDS};
use super::sys;
use crate::irqchip::ioapic::{IoapicState, IOAPIC_NUM_PINS};
use crate::irqchip::pic::PicChipState;
use crate::irqchip::pit::{PitChannelState, PitState};
use crate::irqchip::routing::{self, RouteEntry};
use crate::uapi::{self, ioctl};
use crate::user;
use crate::vm::Vm;
use kernel::prelude::*;

/// Upstream's MAX_NR_RESERVED_IOAPIC_PINS (split irqchip's args[0] bound:
/// KVM_MAX_IRQ_ROUTES in 6.12).
const MAX_NR_RESERVED_IOAPIC_PINS: u64 = routing::MAX_IRQ_ROUTES as u64;
/// `KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON`: PIT2 flags kept.
const PIT_STATE2_FLAGS: u32 = 1 | 2;

/// Handles `cmd` if it is an irqchip ioctl; `None` otherwise.
pub(crate) fn vm_ioctl(vm: &Vm, cmd: u32, arg: usize) -> Option<Result<isize>> {
    Some(match cmd {
        ioctl::KVM_CREATE_IRQCHIP => create_irqchip(vm).map(|_| 0),
        ioctl::KVM_IRQ_LINE => irq_line(vm, arg, false),
        ioctl::KVM_IRQ_LINE_STATUS => irq_line(vm, arg, true),
        ioctl::KVM_GET_IRQCHIP => get_irqchip(vm, arg).map(|_| 0),
        ioctl::KVM_SET_IRQCHIP => set_irqchip(vm, arg).map(|_| 0),
        ioctl::KVM_SET_GSI_ROUTING => set_gsi_routing(vm, arg).map(|_| 0),
        ioctl::KVM_SIGNAL_MSI => signal_msi(vm, arg),
        ioctl::KVM_CREATE_PIT2 => create_pit2(vm, arg).map(|_| 0),
        ioctl::KVM_CREATE_PIT => create_pit(vm, 0).map(|_| 0),
        ioctl::KVM_GET_PIT => get_pit(vm, arg, false).map(|_| 0),
        ioctl::KVM_SET_PIT => set_pit(vm, arg, false).map(|_| 0),
        ioctl::KVM_GET_PIT2 => get_pit(vm, arg, true).map(|_| 0),
        ioctl::KVM_SET_PIT2 => set_pit(vm, arg, true).map(|_| 0),
        ioctl::KVM_REINJECT_CONTROL => reinject_control(vm, arg).map(|_| 0),
        ioctl::KVM_SET_BOOT_CPU_ID => set_boot_cpu_id(vm, arg).map(|_| 0),
        ioctl::KVM_IRQFD => super::irqfd::kvm_irqfd(vm, arg).map(|_| 0),
        ioctl::KVM_IOEVENTFD => super::ioeventfd::kvm_ioeventfd(vm, arg).map(|_| 0),
        _ => return None,
    })
}

/// KVM_ENABLE_CAP on the VM for the irqchip capabilities; `None` for others.
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Option<Result> {
    Some(match cap.cap {
        uapi::KVM_CAP_SPLIT_IRQCHIP => {
            if cap.args[0] > MAX_NR_RESERVED_IOAPIC_PINS {
                return Some(Err(EINVAL));
            }
            let inner = vm.inner.lock();
            if vm.irq.mode() != IrqchipMode::None || inner.created_vcpus != 0 {
                Err(EEXIST)
            } else {
                vm.irq.set_mode(IrqchipMode::Split)
            }
        }
        uapi::KVM_CAP_X2APIC_API => {
            let valid = X2APIC_API_USE_32BIT_IDS | X2APIC_API_DISABLE_BROADCAST_QUIRK;
            if cap.args[0] & !valid != 0 {
                return Some(Err(EINVAL));
            }
            vm.irq.set_x2apic_api(cap.args[0]);
            Ok(())
        }
        _ => return None,
    })
}

/// KVM_CREATE_IRQCHIP: before any vCPU (upstream), once.
fn create_irqchip(vm: &Vm) -> Result {
    let inner = vm.inner.lock();
    if vm.irq.mode() != IrqchipMode::None {
        return Err(EEXIST);
    }
    if inner.created_vcpus != 0 {
        return Err(EINVAL);
    }
    vm.irq.set_mode(IrqchipMode::Kernel)
}

/// KVM_IRQ_LINE / KVM_IRQ_LINE_STATUS: a GSI from user space.
fn irq_line(vm: &Vm, arg: usize, with_status: bool) -> Result<isize> {
    let mut l: uapi::kvm_irq_level = user::read(arg)?;
    if !vm.irq.lapic_in_kernel() {
        return Err(ENXIO);
    }
    // SAFETY: both union members are plain integers of the same size.
    let gsi = unsafe { l.__bindgen_anon_1.irq };
    let status = chips::kvm_set_irq(vm, gsi, l.level != 0);
    if with_status {
        l.__bindgen_anon_1.status = status;
        user::write(arg, &l)?;
    }
    Ok(0)
}

/// The kvm_irqchip header (chip_id, pad); the chip's state follows at +8.
const CHIP_OFFSET: usize = 8;

fn pic_to_uapi(s: &PicChipState) -> [u8; 16] {
    [
        s.last_irr, s.irr, s.imr, s.isr, s.priority_add, s.irq_base, s.read_reg_select, s.poll,
        s.special_mask, s.init_state, s.auto_eoi, s.rotate_on_auto_eoi, s.special_fully_nested_mode,
        s.init4, s.elcr, s.elcr_mask,
    ]
}

fn pic_from_uapi(b: &[u8; 16]) -> PicChipState {
    PicChipState {
        last_irr: b[0], irr: b[1], imr: b[2], isr: b[3], priority_add: b[4], irq_base: b[5],
        read_reg_select: b[6], poll: b[7], special_mask: b[8], init_state: b[9], auto_eoi: b[10],
        rotate_on_auto_eoi: b[11], special_fully_nested_mode: b[12], init4: b[13], elcr: b[14],
        elcr_mask: b[15],
    }
}

/// kvm_ioapic_state as 27 quadwords: base, ioregsel|id, irr|pad, redirtbl[24].
fn ioapic_to_uapi(s: &IoapicState) -> [u64; 27] {
    let mut q = [0u64; 27];
    q[0] = s.base_address;
    q[1] = s.ioregsel as u64 | (s.id as u64) << 32;
    q[2] = s.irr as u64;
    for (d, e) in q[3..].iter_mut().zip(s.redirtbl.iter()) {
        *d = *e;
    }
    q
}

fn ioapic_from_uapi(q: &[u64; 27]) -> IoapicState {
    let mut redirtbl = [0u64; IOAPIC_NUM_PINS];
    for (d, e) in redirtbl.iter_mut().zip(q[3..].iter()) {
        *d = *e;
    }
    IoapicState { base_address: q[0], ioregsel: q[1] as u32, id: (q[1] >> 32) as u32, irr: q[2] as u32, redirtbl }
}

/// KVM_GET_IRQCHIP (upstream: ENXIO without a full in-kernel irqchip).
fn get_irqchip(vm: &Vm, arg: usize) -> Result {
    let hdr: [u32; 2] = user::read(arg)?;
    if !vm.irq.pic_in_kernel() {
        return Err(ENXIO);
    }
    match hdr[0] {
        0 | 1 => {
            let s = vm.irq.pic().lock().chip_state(hdr[0] as usize).ok_or(EINVAL)?;
            user::write(arg + CHIP_OFFSET, &pic_to_uapi(&s))
        }
        2 => {
            let s = vm.irq.ioapic().lock().state();
            user::write(arg + CHIP_OFFSET, &ioapic_to_uapi(&s))
        }
        _ => Err(EINVAL),
    }
}

/// KVM_SET_IRQCHIP.
fn set_irqchip(vm: &Vm, arg: usize) -> Result {
    let hdr: [u32; 2] = user::read(arg)?;
    if !vm.irq.pic_in_kernel() {
        return Err(ENXIO);
    }
    match hdr[0] {
        0 | 1 => {
            let b: [u8; 16] = user::read(arg + CHIP_OFFSET)?;
            let output = {
                let mut pic = vm.irq.pic().lock();
                pic.set_chip_state(hdr[0] as usize, &pic_from_uapi(&b));
                pic.output()
            };
            if output {
                super::delivery::kick_pic_targets(vm);
            }
            Ok(())
        }
        2 => {
            let q: [u64; 27] = user::read(arg + CHIP_OFFSET)?;
            let pending = {
                let mut io = vm.irq.ioapic().lock();
                io.set_state(&ioapic_from_uapi(&q));
                io.pending_pins()
            };
            let mut pins = pending;
            while pins != 0 {
                let pin = pins.trailing_zeros();
                pins &= pins - 1;
                let req = vm.irq.ioapic().lock().service(pin);
                if let Some(req) = req {
                    super::delivery::deliver(vm, None, &req);
                }
            }
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// KVM_SET_GSI_ROUTING: the whole table is read and checked before it
/// replaces the old one.
fn set_gsi_routing(vm: &Vm, arg: usize) -> Result {
    let hdr: [u32; 2] = user::read(arg)?;
    let (nr, flags) = (hdr[0], hdr[1]);
    if !vm.irq.lapic_in_kernel() {
        return Err(EINVAL);
    }
    if nr > routing::MAX_IRQ_ROUTES || flags != 0 {
        return Err(EINVAL);
    }
    let split = vm.irq.mode() == IrqchipMode::Split;
    let x2apic_format = vm.irq.x2apic_32bit_ids();
    let mut table = KVec::with_capacity(nr as usize, GFP_KERNEL)?;
    const ENTRY_SIZE: usize = 48;
    for i in 0..nr as usize {
        let w: [u32; 12] = user::read(arg + 8 + i * ENTRY_SIZE)?;
        let u = [w[4], w[5], w[6], w[7]];
        let e: RouteEntry = routing::parse_entry_x2apic(w[0], w[1], w[2], u, split, x2apic_format).map_err(|_| EINVAL)?;
        table.push(e, GFP_KERNEL)?;
    }
    routing::check_table(&table).map_err(|_| EINVAL)?;
    vm.irq.set_routes(table);
    Ok(())
}

/// KVM_SIGNAL_MSI: >0 delivered, 0 coalesced/blocked, -1 (EPERM) no target.
fn signal_msi(vm: &Vm, arg: usize) -> Result<isize> {
    let m: uapi::kvm_msi = user::read(arg)?;
    // KVM_MSI_VALID_DEVID is accepted (and the device id unused on x86).
    if !vm.irq.lapic_in_kernel() || m.flags & !1 != 0 {
        return Err(EINVAL);
    }
    let r = chips::signal_msi(vm, m.address_lo, m.address_hi, m.data)?;
    Ok(r as isize)
}

/// KVM_CREATE_PIT2: needs the full irqchip (ENOENT), once (EEXIST).
fn create_pit2(vm: &Vm, arg: usize) -> Result {
    let cfg: uapi::kvm_pit_config = user::read(arg)?;
    create_pit(vm, cfg.flags)
}

/// KVM_CREATE_PIT (the first version: no flags) and KVM_CREATE_PIT2.
fn create_pit(vm: &Vm, flags: u32) -> Result {
    let _inner = vm.inner.lock();
    if vm.irq.pit.created() {
        return Err(EEXIST);
    }
    if !vm.irq.pic_in_kernel() {
        return Err(ENOENT);
    }
    vm.irq.pit.create(flags);
    Ok(())
}

/// Builds a `$to` from `$from`'s fields of the same names: the PIT channel
/// state has the same fields in linux/kvm.h and in the model.
macro_rules! pit_channel_as {
    ($to:path, $from:expr) => {{
        let c = $from;
        $to {
            count: c.count,
            latched_count: c.latched_count,
            count_latched: c.count_latched,
            status_latched: c.status_latched,
            status: c.status,
            read_state: c.read_state,
            write_state: c.write_state,
            write_latch: c.write_latch,
            rw_mode: c.rw_mode,
            mode: c.mode,
            bcd: c.bcd,
            gate: c.gate,
            count_load_time: c.count_load_time,
        }
    }};
}

fn channel_to_uapi(c: &PitChannelState) -> uapi::kvm_pit_channel_state {
    pit_channel_as!(uapi::kvm_pit_channel_state, c)
}

fn channel_from_uapi(c: &uapi::kvm_pit_channel_state) -> PitChannelState {
    pit_channel_as!(PitChannelState, c)
}

/// KVM_GET_PIT / KVM_GET_PIT2 (ENXIO without a PIT).
fn get_pit(vm: &Vm, arg: usize, v2: bool) -> Result {
    if !vm.irq.pit.created() {
        return Err(ENXIO);
    }
    let s = vm.irq.pit.model.lock().state();
    let mut out = uapi::kvm_pit_state2::default();
    for (o, c) in out.channels.iter_mut().zip(s.channels.iter()) {
        *o = channel_to_uapi(c);
    }
    if v2 {
        out.flags = s.flags;
        user::write(arg, &out)
    } else {
        user::write(arg, &uapi::kvm_pit_state { channels: out.channels })
    }
}

/// KVM_SET_PIT / KVM_SET_PIT2.
fn set_pit(vm: &Vm, arg: usize, v2: bool) -> Result {
    let (channels, flags) = if v2 {
        let s: uapi::kvm_pit_state2 = user::read(arg)?;
        (s.channels, s.flags & PIT_STATE2_FLAGS)
    } else {
        let s: uapi::kvm_pit_state = user::read(arg)?;
        (s.channels, vm.irq.pit.model.lock().state().flags)
    };
    if !vm.irq.pit.created() {
        return Err(ENXIO);
    }
    let mut st = PitState { channels: [PitChannelState::default(); 3], flags };
    for (d, c) in st.channels.iter_mut().zip(channels.iter()) {
        *d = channel_from_uapi(c);
    }
    let rearm = {
        let mut m = vm.irq.pit.model.lock();
        m.set_min_timer_period_ns(crate::params::min_timer_period_ns());
        m.set_state(&st, sys::now_ns())
    };
    if rearm {
        vm.irq.pit.rearm();
    }
    Ok(())
}

/// KVM_REINJECT_CONTROL.
fn reinject_control(vm: &Vm, arg: usize) -> Result {
    let c: uapi::kvm_reinject_control = user::read(arg)?;
    if !vm.irq.pit.created() {
        return Err(ENXIO);
    }
    vm.irq.pit.set_reinject(c.pit_reinject != 0);
    Ok(())
}

/// KVM_SET_BOOT_CPU_ID: before any vCPU (EBUSY), a valid vCPU id.
fn set_boot_cpu_id(vm: &Vm, arg: usize) -> Result {
    let inner = vm.inner.lock();
    if inner.created_vcpus != 0 {
        return Err(EBUSY);
    }
    if arg as u64 > crate::vm::MAX_VCPU_ID as u64 || (inner.max_vcpu_ids != 0 && arg as u64 > inner.max_vcpu_ids as u64) {
        return Err(EINVAL);
    }
    vm.irq.set_bsp_id(arg as u32);
    Ok(())
}
