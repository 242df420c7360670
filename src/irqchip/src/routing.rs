//! GSI routing: the entries of KVM_SET_GSI_ROUTING as upstream validates them
//! (virt/kvm/irqchip.c kvm_set_irq_routing and setup_routing_entry, x86
//! irq_comm.c kvm_set_routing_entry), the default table KVM_CREATE_IRQCHIP
//! installs, and the decoding of an MSI message into an interrupt request
//! (kvm_set_msi_irq).
//!
//! Only the irqchip and MSI route types exist here; Hyper-V SynIC and Xen
//! event channel routes (types 4 and 5 upstream, each behind its own config
//! option) are refused like any unknown type.

use super::types::{DeliveryMode, DestMode, IrqRequest, Shorthand, TriggerMode};

/// KVM_MAX_IRQ_ROUTES: also the highest GSI + 1
pub const MAX_IRQ_ROUTES: u32 = 4096;

/// KVM_IRQCHIP_PIC_MASTER
pub const IRQCHIP_PIC_MASTER: u32 = 0;
/// KVM_IRQCHIP_PIC_SLAVE
pub const IRQCHIP_PIC_SLAVE: u32 = 1;
/// KVM_IRQCHIP_IOAPIC
pub const IRQCHIP_IOAPIC: u32 = 2;

/// KVM_IRQ_ROUTING_IRQCHIP
pub const ROUTING_IRQCHIP: u32 = 1;
/// KVM_IRQ_ROUTING_MSI
pub const ROUTING_MSI: u32 = 2;

/// KVM_MSI_VALID_DEVID
pub const MSI_VALID_DEVID: u32 = 1 << 0;

/// Pins of one 8259 (PIC_NUM_PINS / 2 upstream).
pub const PIC_PINS: u32 = 8;
/// KVM_IOAPIC_NUM_PINS
pub const IOAPIC_PINS: u32 = 24;

/// Where a GSI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// An input of the PIC pair or of the IOAPIC. `pin` is the chip's input as upstream stores it: for the slave PIC
    /// that is the uapi pin + 8, i.e. the pin of the PIC pair (IRQ 8-15).
    Irqchip { chip: u32, pin: u32 },
    /// A message, decoded at delivery by [`msi_to_request`].
    Msi { address_lo: u32, address_hi: u32, data: u32 },
}

/// One validated entry of the routing table; a GSI may have several.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub gsi: u32,
    pub route: Route,
}

/// EINVAL
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// EINVAL
    Invalid,
}

/// One entry of KVM_SET_GSI_ROUTING as raw uapi words: gsi, type, flags and
/// the union's first four u32 words (irqchip: `[irqchip, pin, _, _]`; MSI:
/// `[address_lo, address_hi, data, devid]`).
///
/// Checks as upstream: gsi < MAX_IRQ_ROUTES; flags only KVM_MSI_VALID_DEVID
/// and only on an MSI entry (x86 accepts the flag and ignores the device
/// ID); irqchip entries refused with a split irqchip (no PIC/IOAPIC in the
/// kernel); chip < 3, PIC pin < 8, IOAPIC pin < 24; unknown type refused.
///
/// With KVM_X2APIC_API_USE_32BIT_IDS enabled upstream also refuses an MSI
/// whose address_hi has bits 7:0 set: use [`parse_entry_x2apic`] or check
/// [`msi_invalid`] too.
pub fn parse_entry(gsi: u32, kind: u32, flags: u32, u: [u32; 4], split_irqchip: bool) -> Result<RouteEntry, RouteError> {
    parse_entry_x2apic(gsi, kind, flags, u, split_irqchip, false)
}

/// [`parse_entry`] with the VM's x2APIC MSI format setting
/// (`kvm->arch.x2apic_format`), which upstream's kvm_set_routing_entry also
/// checks for MSI entries.
pub fn parse_entry_x2apic(
    gsi: u32,
    kind: u32,
    flags: u32,
    u: [u32; 4],
    split_irqchip: bool,
    x2apic_format: bool,
) -> Result<RouteEntry, RouteError> {
    if gsi >= MAX_IRQ_ROUTES {
        return Err(RouteError::Invalid);
    }
    // Flags are checked before the type (kvm_set_irq_routing), but every
    // failure is EINVAL so the order is not visible.
    let allowed_flags = if kind == ROUTING_MSI { MSI_VALID_DEVID } else { 0 };
    if flags & !allowed_flags != 0 {
        return Err(RouteError::Invalid);
    }
    let route = match kind {
        ROUTING_IRQCHIP => {
            if split_irqchip {
                return Err(RouteError::Invalid);
            }
            let [chip, pin, ..] = u;
            let pin = match chip {
                IRQCHIP_PIC_MASTER if pin < PIC_PINS => pin,
                // The slave's inputs follow the master's in the PIC pair.
                IRQCHIP_PIC_SLAVE if pin < PIC_PINS => pin + PIC_PINS,
                IRQCHIP_IOAPIC if pin < IOAPIC_PINS => pin,
                _ => return Err(RouteError::Invalid),
            };
            Route::Irqchip { chip, pin }
        }
        ROUTING_MSI => {
            let [address_lo, address_hi, data, _devid] = u;
            if msi_invalid(address_hi, x2apic_format) {
                return Err(RouteError::Invalid);
            }
            Route::Msi { address_lo, address_hi, data }
        }
        _ => return Err(RouteError::Invalid),
    };
    Ok(RouteEntry { gsi, route })
}

/// Whole-table checks of setup_routing_entry: a GSI may fan out to several
/// irqchips but to each at most once, and an MSI GSI has exactly one entry.
/// Also refuses more than MAX_IRQ_ROUTES entries (the ioctl's `nr` check)
/// and, for entries not built by [`parse_entry`], a GSI out of range.
pub fn check_table(entries: &[RouteEntry]) -> Result<(), RouteError> {
    if entries.len() > MAX_IRQ_ROUTES as usize {
        return Err(RouteError::Invalid);
    }
    // Quadratic, but bounded by 4096^2 / 2 comparisons, and needs no
    // allocation or large stack table.
    for (i, e) in entries.iter().enumerate() {
        if e.gsi >= MAX_IRQ_ROUTES {
            return Err(RouteError::Invalid);
        }
        for prev in entries.iter().take(i).filter(|p| p.gsi == e.gsi) {
            let compatible = match (prev.route, e.route) {
                (Route::Irqchip { chip: a, .. }, Route::Irqchip { chip: b, .. }) => a != b,
                _ => false,
            };
            if !compatible {
                return Err(RouteError::Invalid);
            }
        }
    }
    Ok(())
}

/// The default routing upstream installs at KVM_CREATE_IRQCHIP, in
/// upstream's order: GSI 0-15 to the IOAPIC pin of the same number and then
/// to the PIC (master for 0-7, slave for 8-15), GSI 16-23 to the IOAPIC
/// only. Entries are as [`parse_entry`] returns them (slave pins 8-15).
pub fn for_each_default_route(mut f: impl FnMut(RouteEntry)) {
    for irq in 0..IOAPIC_PINS {
        f(RouteEntry { gsi: irq, route: Route::Irqchip { chip: IRQCHIP_IOAPIC, pin: irq } });
        if irq < 2 * PIC_PINS {
            let chip = if irq < PIC_PINS { IRQCHIP_PIC_MASTER } else { IRQCHIP_PIC_SLAVE };
            f(RouteEntry { gsi: irq, route: Route::Irqchip { chip, pin: irq } });
        }
    }
}

/// The destination of an MSI (x86_msi_msg_get_destid, plus the extended
/// destination ID).
///
/// - address_lo bits 19:12: destination bits 7:0;
/// - `x2apic_format` (KVM_X2APIC_API_USE_32BIT_IDS): address_hi bits 31:8
///   are destination bits 31:8;
/// - `ext_dest_id` (the guest was offered KVM_FEATURE_MSI_EXT_DEST_ID):
///   address_lo bits 11:5, otherwise reserved, are destination bits 14:8.
///   Upstream leaves this translation to the VMM; it is done here so a VM
///   with in-kernel routing can address up to 32768 APIC IDs without an
///   IOMMU.
pub fn msi_dest_id(address_lo: u32, address_hi: u32, x2apic_format: bool, ext_dest_id: bool) -> u32 {
    let mut dest = (address_lo >> 12) & 0xff;
    if x2apic_format {
        dest |= address_hi & 0xffff_ff00;
    }
    if ext_dest_id {
        dest |= ((address_lo >> 5) & 0x7f) << 8;
    }
    dest
}

/// MSI message -> the request it delivers (upstream kvm_set_msi_irq).
///
/// Data bits 7:0 vector, 10:8 delivery mode, bit 15 trigger mode; address
/// bit 2 logical destination, bit 3 redirection hint. Data bit 14 (level
/// assert) is ignored and the request always asserts, as upstream: an MSI
/// is a write, there is no de-assert to deliver. Data bit 11 is ignored
/// too; the destination mode comes from the address.
pub fn msi_to_request(address_lo: u32, address_hi: u32, data: u32, x2apic_format: bool, ext_dest_id: bool) -> IrqRequest {
    IrqRequest {
        vector: (data & 0xff) as u8,
        delivery_mode: DeliveryMode::from_bits(data >> 8),
        dest_mode: if address_lo & (1 << 2) != 0 { DestMode::Logical } else { DestMode::Physical },
        shorthand: Shorthand::None,
        dest_id: msi_dest_id(address_lo, address_hi, x2apic_format, ext_dest_id),
        trigger: if data & (1 << 15) != 0 { TriggerMode::Level } else { TriggerMode::Edge },
        level: true,
        msi_redir_hint: address_lo & (1 << 3) != 0,
    }
}

/// Upstream kvm_msi_route_invalid: with the x2APIC MSI format enabled,
/// address_hi bits 7:0 are reserved and an MSI setting them is refused
/// (the route cannot be set, KVM_SIGNAL_MSI returns EINVAL). Without it,
/// address_hi is ignored.
pub fn msi_invalid(address_hi: u32, x2apic_format: bool) -> bool {
    x2apic_format && address_hi & 0xff != 0
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
