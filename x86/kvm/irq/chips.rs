// SPDX-License-Identifier: GPL-2.0
//! The VM's interrupt controllers (upstream's kvm->arch.vpic, vioapic and
//! irq_routing, and kvm_set_irq): the dual 8259 PIC and the IOAPIC behind their
//! locks, the GSI routing table, and the dispatch of guest port I/O and MMIO to
//! them. Deliveries to local APICs are made after the chip's lock is dropped,
//! so the only lock order is chip lock -> (nothing); VM mutex -> APIC lock.

use super::delivery;
use super::ioeventfd::Ioeventfds;
use super::irqfd::IrqfdList;
use super::pit::PitDevice;
use crate::irqchip::ioapic::{Ioapic, IOAPIC_MMIO_LEN};
use crate::irqchip::pic::Pic;
use crate::irqchip::routing::{self, Route, RouteEntry};
use crate::vm::Vm;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use kernel::prelude::*;
use kernel::sync::{Mutex, SpinLock};
use kernel::{new_mutex, new_spinlock};

/// Which interrupt controllers the kernel emulates for this VM.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IrqchipMode {
    /// All in user space (no KVM_CREATE_IRQCHIP).
    None = 0,
    /// PIC, IOAPIC and local APICs in the kernel (KVM_CREATE_IRQCHIP).
    Kernel = 1,
    /// Local APICs in the kernel, PIC and IOAPIC in user space
    /// (KVM_CAP_SPLIT_IRQCHIP).
    Split = 2,
}

/// `KVM_X2APIC_API_USE_32BIT_IDS`, `KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK`.
pub(crate) const X2APIC_API_USE_32BIT_IDS: u64 = 1 << 0;
pub(crate) const X2APIC_API_DISABLE_BROADCAST_QUIRK: u64 = 1 << 1;

/// A GSI maps to at most this many chips (PIC + IOAPIC, or one MSI).
const MAX_ROUTES_PER_GSI: usize = 4;

#[pin_data]
pub(crate) struct VmIrq {
    /// The 8254 PIT (its timer and work are cancelled first on drop).
    #[pin]
    pub(crate) pit: PitDevice,
    /// Assigned irqfds (their inject work uses the fields below, so they are
    /// dropped before them). Nothing but the routing table and chip locks is
    /// taken under this mutex.
    #[pin]
    pub(crate) irqfds: Mutex<IrqfdList>,
    #[pin]
    pub(crate) ioeventfds: Ioeventfds,
    mode: AtomicU8,
    /// KVM_SET_BOOT_CPU_ID (default 0).
    bsp_id: AtomicU32,
    /// KVM_CAP_X2APIC_API flags.
    x2apic_api: AtomicU64,
    /// The 8259 pair. Taken from vCPU threads (port I/O, INTA) and from
    /// whoever raises a GSI; process context only; nothing taken under it.
    #[pin]
    pic: SpinLock<Pic>,
    /// The IOAPIC; same rules as the PIC.
    #[pin]
    ioapic: SpinLock<Ioapic>,
    /// The GSI routing table (replaced whole by KVM_SET_GSI_ROUTING; read by
    /// kvm_set_irq, which copies a GSI's entries out before delivering).
    #[pin]
    routes: Mutex<KVec<RouteEntry>>,
}

impl VmIrq {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(VmIrq {
            pit <- PitDevice::new(),
            irqfds <- new_mutex!(KVec::new(), "VmIrq::irqfds"),
            ioeventfds <- Ioeventfds::new(),
            mode: AtomicU8::new(IrqchipMode::None as u8),
            bsp_id: AtomicU32::new(0),
            x2apic_api: AtomicU64::new(0),
            pic <- new_spinlock!(Pic::new(), "VmIrq::pic"),
            ioapic <- new_spinlock!(Ioapic::new(), "VmIrq::ioapic"),
            routes <- new_mutex!(KVec::new(), "VmIrq::routes"),
        })
    }

    pub(crate) fn mode(&self) -> IrqchipMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => IrqchipMode::Kernel,
            2 => IrqchipMode::Split,
            _ => IrqchipMode::None,
        }
    }

    /// Whether local APICs are emulated in the kernel (full or split).
    pub(crate) fn lapic_in_kernel(&self) -> bool {
        self.mode() != IrqchipMode::None
    }

    /// Whether the PIC and IOAPIC are emulated in the kernel.
    pub(crate) fn pic_in_kernel(&self) -> bool {
        self.mode() == IrqchipMode::Kernel
    }

    /// The boot vCPU's id (KVM_SET_BOOT_CPU_ID; 0 by default).
    pub(crate) fn bsp_id(&self) -> u32 {
        self.bsp_id.load(Ordering::SeqCst)
    }

    pub(crate) fn is_bsp(&self, vcpu_id: u32) -> bool {
        vcpu_id == self.bsp_id.load(Ordering::SeqCst)
    }

    pub(crate) fn set_bsp_id(&self, id: u32) {
        self.bsp_id.store(id, Ordering::SeqCst);
    }

    pub(crate) fn x2apic_api(&self) -> u64 {
        self.x2apic_api.load(Ordering::SeqCst)
    }

    pub(crate) fn set_x2apic_api(&self, flags: u64) {
        self.x2apic_api.store(flags, Ordering::SeqCst);
    }

    pub(crate) fn x2apic_32bit_ids(&self) -> bool {
        self.x2apic_api() & X2APIC_API_USE_32BIT_IDS != 0
    }

    /// Switches the irqchip mode once (KVM_CREATE_IRQCHIP or split): the
    /// default routes come with the full irqchip.
    pub(crate) fn set_mode(&self, mode: IrqchipMode) -> Result {
        if mode == IrqchipMode::Kernel {
            let mut table = KVec::new();
            let mut err = Ok(());
            routing::for_each_default_route(|e| {
                if err.is_ok() {
                    err = table.push(e, GFP_KERNEL).map_err(|_| ENOMEM);
                }
            });
            err?;
            *self.routes.lock() = table;
        }
        self.mode.store(mode as u8, Ordering::SeqCst);
        Ok(())
    }

    /// Replaces the routing table (KVM_SET_GSI_ROUTING, already validated).
    pub(crate) fn set_routes(&self, table: KVec<RouteEntry>) {
        let old = core::mem::replace(&mut *self.routes.lock(), table);
        drop(old);
    }

    /// The routes of `gsi` (a copy: at most a few entries).
    pub(crate) fn gsi_routes(&self, gsi: u32) -> [Option<Route>; MAX_ROUTES_PER_GSI] {
        let mut found = [None; MAX_ROUTES_PER_GSI];
        let routes = self.routes.lock();
        for (slot, e) in found.iter_mut().zip(routes.iter().filter(|e| e.gsi == gsi)) {
            *slot = Some(e.route);
        }
        found
    }

    /// The PIC's INT output.
    pub(crate) fn pic_output(&self) -> bool {
        self.pic_in_kernel() && self.pic.lock().output()
    }

    /// The INTA cycle: the vector of the PIC's highest-priority request, and
    /// the IRQs acknowledged by it (auto-EOI).
    fn pic_inta(&self) -> Option<(u8, u16)> {
        if !self.pic_in_kernel() {
            return None;
        }
        let mut pic = self.pic.lock();
        let vector = pic.read_irq().0;
        Some((vector, pic.take_acked_irqs()))
    }

    pub(crate) fn pic(&self) -> &SpinLock<Pic> {
        &self.pic
    }

    pub(crate) fn ioapic(&self) -> &SpinLock<Ioapic> {
        &self.ioapic
    }
}

/// The INTA cycle for the vCPU taking the PIC's interrupt.
pub(crate) fn pic_read_irq(vm: &Vm) -> Option<u8> {
    let (vector, acked) = vm.irq.pic_inta()?;
    pic_acked(vm, acked);
    Some(vector)
}

/// The PIC cleared in-service bits `acked` (bit n: IRQ n): run the ack
/// notifiers of the GSIs routed there (upstream kvm_notify_acked_irq).
fn pic_acked(vm: &Vm, acked: u16) {
    for irq in 0..16u32 {
        if acked & (1 << irq) != 0 {
            let chip = if irq < 8 { routing::IRQCHIP_PIC_MASTER } else { routing::IRQCHIP_PIC_SLAVE };
            irq_acked(vm, chip, irq);
        }
    }
}

/// Ack notifiers for irqchip input (chip, pin): the PIT's reinjection for
/// GSI 0 (resampling irqfds are handled with the IOAPIC's EOI).
fn irq_acked(vm: &Vm, chip: u32, pin: u32) {
    let gsi0 = vm.irq.gsi_routes(0);
    if gsi0.iter().flatten().any(|r| *r == Route::Irqchip { chip, pin }) {
        vm.irq.pit.acked();
    }
}

/// Sets PIC input `irq` (0..16) and kicks the vCPUs behind LINT0 if the PIC's
/// output is up afterwards. Returns upstream's status (1 new, 0 coalesced).
fn pic_set_irq(vm: &Vm, irq: u32, level: bool) -> i32 {
    let (status, output) = {
        let mut pic = vm.irq.pic.lock();
        let status = pic.set_irq(irq, level);
        (status, pic.output())
    };
    if output {
        delivery::kick_pic_targets(vm);
    }
    match status {
        Some(true) => 1,
        Some(false) => 0,
        None => -1,
    }
}

/// Sets IOAPIC pin `pin` and delivers what it sends.
fn ioapic_set_irq(vm: &Vm, pin: u32, level: bool) -> i32 {
    let r = vm.irq.ioapic.lock().set_irq(pin, level);
    if let Some(req) = r.delivered {
        delivery::deliver(vm, None, &req);
    }
    r.status
}

/// Raises or lowers GSI `gsi` through the routing table (upstream kvm_set_irq).
/// Returns -1 if nothing took it, else the sum of the chips' statuses.
pub(crate) fn kvm_set_irq(vm: &Vm, gsi: u32, level: bool) -> i32 {
    let found = vm.irq.gsi_routes(gsi);
    let x2apic_format = vm.irq.x2apic_api() & X2APIC_API_USE_32BIT_IDS != 0;
    let mut ret = -1;
    for route in found.iter().flatten() {
        let r = match *route {
            Route::Irqchip { chip: routing::IRQCHIP_PIC_MASTER, pin } => pic_set_irq(vm, pin, level),
            Route::Irqchip { chip: routing::IRQCHIP_PIC_SLAVE, pin } => pic_set_irq(vm, pin, level),
            Route::Irqchip { chip: _, pin } => ioapic_set_irq(vm, pin, level),
            // An MSI fires on the rising edge only.
            Route::Msi { address_lo, address_hi, data } if level => {
                let req = routing::msi_to_request(address_lo, address_hi, data, x2apic_format, false);
                delivery::deliver(vm, None, &req)
            }
            Route::Msi { .. } => -1,
        };
        if r >= 0 {
            ret = r + ret.max(0);
        }
    }
    ret
}

/// KVM_SIGNAL_MSI and MSI writes (upstream kvm_send_userspace_msi).
pub(crate) fn signal_msi(vm: &Vm, address_lo: u32, address_hi: u32, data: u32) -> Result<i32> {
    let x2apic_format = vm.irq.x2apic_api() & X2APIC_API_USE_32BIT_IDS != 0;
    if routing::msi_invalid(address_hi, x2apic_format) {
        return Err(EINVAL);
    }
    let req = routing::msi_to_request(address_lo, address_hi, data, x2apic_format, false);
    Ok(delivery::deliver(vm, None, &req))
}

/// A local APIC EOIed a level-triggered `vector`: the IOAPIC clears remote IRR
/// and re-delivers lines still asserted (upstream kvm_ioapic_update_eoi).
pub(crate) fn ioapic_eoi(vm: &Vm, vector: u8) {
    if !vm.irq.pic_in_kernel() {
        return;
    }
    let r = vm.irq.ioapic.lock().eoi(vector);
    // Ack notifiers first (a resampling irqfd lowers its line), then the pins
    // still asserted are delivered again (upstream's order).
    super::irqfd::notify_acked(vm, r.acked_pins);
    let mut acked = r.acked_pins;
    while acked != 0 {
        let pin = acked.trailing_zeros();
        acked &= acked - 1;
        irq_acked(vm, routing::IRQCHIP_IOAPIC, pin);
    }
    let mut pins = r.redeliver_pins;
    while pins != 0 {
        let pin = pins.trailing_zeros();
        pins &= pins - 1;
        let req = vm.irq.ioapic.lock().service(pin);
        if let Some(req) = req {
            delivery::deliver(vm, None, &req);
        }
    }
}

/// Guest MMIO to the IOAPIC: read. `None` if `gpa` is not the IOAPIC's.
pub(crate) fn ioapic_mmio_read(vm: &Vm, gpa: u64, len: u8) -> Option<u64> {
    if !vm.irq.pic_in_kernel() {
        return None;
    }
    let ioapic = vm.irq.ioapic.lock();
    let base = ioapic.base_address();
    if gpa < base || gpa - base >= IOAPIC_MMIO_LEN {
        return None;
    }
    Some(ioapic.mmio_read(gpa - base, len))
}

/// Guest MMIO to the IOAPIC: write. Returns whether it was the IOAPIC's.
pub(crate) fn ioapic_mmio_write(vm: &Vm, gpa: u64, len: u8, val: u64) -> bool {
    if !vm.irq.pic_in_kernel() {
        return false;
    }
    let deliver = {
        let mut ioapic = vm.irq.ioapic.lock();
        let base = ioapic.base_address();
        if gpa < base || gpa - base >= IOAPIC_MMIO_LEN {
            return false;
        }
        ioapic.mmio_write(gpa - base, len, val)
    };
    if let Some(req) = deliver {
        delivery::deliver(vm, None, &req);
    }
    true
}

/// Whether `port` belongs to the in-kernel PIC (incl. ELCR).
fn pic_port(port: u16) -> bool {
    matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1)
}

/// Guest port I/O to the in-kernel PIC or PIT. For an IN, returns the value
/// read; for an OUT, `Some(0)`. `None`: not a kernel device's port (user space
/// gets the exit).
pub(crate) fn pio(vm: &Vm, port: u16, size: u8, input: bool, value: u32) -> Option<u32> {
    if vm.irq.pic_in_kernel() && pic_port(port) {
        // Upstream's PIC answers non-byte accesses itself: reads as 0,
        // writes ignored.
        if size != 1 {
            return Some(0);
        }
        let (read, output, acked) = {
            let mut pic = vm.irq.pic.lock();
            let read = if input {
                pic.port_read(port) as u32
            } else {
                pic.port_write(port, value as u8);
                0
            };
            (read, pic.output(), pic.take_acked_irqs())
        };
        pic_acked(vm, acked);
        if output {
            delivery::kick_pic_targets(vm);
        }
        return Some(read);
    }
    super::pit::pio(vm, port, size, input, value)
}
