use super::*;

fn irqchip(gsi: u32, chip: u32, pin: u32) -> Result<RouteEntry, RouteError> {
    parse_entry(gsi, ROUTING_IRQCHIP, 0, [chip, pin, 0, 0], false)
}

fn msi(gsi: u32, lo: u32, hi: u32, data: u32) -> RouteEntry {
    RouteEntry { gsi, route: Route::Msi { address_lo: lo, address_hi: hi, data } }
}

fn chip_entry(gsi: u32, chip: u32, pin: u32) -> RouteEntry {
    RouteEntry { gsi, route: Route::Irqchip { chip, pin } }
}

const INVALID: Result<RouteEntry, RouteError> = Err(RouteError::Invalid);

#[test]
fn uapi_constants() {
    assert_eq!(MAX_IRQ_ROUTES, 4096);
    assert_eq!((IRQCHIP_PIC_MASTER, IRQCHIP_PIC_SLAVE, IRQCHIP_IOAPIC), (0, 1, 2));
    assert_eq!((ROUTING_IRQCHIP, ROUTING_MSI), (1, 2));
    assert_eq!(MSI_VALID_DEVID, 1);
}

#[test]
fn irqchip_pins_accepted() {
    for pin in 0..8 {
        assert_eq!(irqchip(5, IRQCHIP_PIC_MASTER, pin), Ok(chip_entry(5, 0, pin)));
        // The slave's pins are stored after the master's.
        assert_eq!(irqchip(5, IRQCHIP_PIC_SLAVE, pin), Ok(chip_entry(5, 1, pin + 8)));
    }
    for pin in 0..24 {
        assert_eq!(irqchip(pin, IRQCHIP_IOAPIC, pin), Ok(chip_entry(pin, 2, pin)));
    }
    // The union's spare words are ignored.
    assert_eq!(
        parse_entry(1, ROUTING_IRQCHIP, 0, [2, 3, 0xdead, 0xbeef], false),
        Ok(chip_entry(1, 2, 3))
    );
}

#[test]
fn irqchip_refused() {
    assert_eq!(irqchip(0, IRQCHIP_PIC_MASTER, 8), INVALID);
    assert_eq!(irqchip(0, IRQCHIP_PIC_SLAVE, 8), INVALID);
    assert_eq!(irqchip(0, IRQCHIP_PIC_MASTER, u32::MAX), INVALID);
    assert_eq!(irqchip(0, IRQCHIP_PIC_SLAVE, u32::MAX), INVALID);
    assert_eq!(irqchip(0, IRQCHIP_IOAPIC, 24), INVALID);
    assert_eq!(irqchip(0, IRQCHIP_IOAPIC, u32::MAX), INVALID);
    assert_eq!(irqchip(0, 3, 0), INVALID);
    assert_eq!(irqchip(0, u32::MAX, 0), INVALID);
    // Split irqchip: no PIC or IOAPIC in the kernel.
    assert_eq!(parse_entry(0, ROUTING_IRQCHIP, 0, [2, 0, 0, 0], true), INVALID);
    // Any flag on a non-MSI entry, even the devid one.
    for flags in [MSI_VALID_DEVID, 2, 0x8000_0000, u32::MAX] {
        assert_eq!(parse_entry(0, ROUTING_IRQCHIP, flags, [2, 0, 0, 0], false), INVALID);
    }
}

#[test]
fn gsi_range() {
    assert!(irqchip(MAX_IRQ_ROUTES - 1, IRQCHIP_IOAPIC, 0).is_ok());
    assert_eq!(irqchip(MAX_IRQ_ROUTES, IRQCHIP_IOAPIC, 0), INVALID);
    assert_eq!(irqchip(u32::MAX, IRQCHIP_IOAPIC, 0), INVALID);
    assert_eq!(parse_entry(MAX_IRQ_ROUTES, ROUTING_MSI, 0, [0xfee0_0000, 0, 0, 0], false), INVALID);
    assert!(parse_entry(MAX_IRQ_ROUTES - 1, ROUTING_MSI, 0, [0xfee0_0000, 0, 0, 0], false).is_ok());
}

#[test]
fn unknown_types_refused() {
    // 0 is unused, 3 s390 adapter, 4 Hyper-V SynIC, 5 Xen event channel.
    for kind in [0, 3, 4, 5, 6, 0x100, u32::MAX] {
        assert_eq!(parse_entry(0, kind, 0, [2, 0, 0, 0], false), INVALID, "type {kind}");
        assert_eq!(parse_entry(0, kind, 0, [0, 0, 0, 0], true), INVALID, "type {kind}");
    }
}

#[test]
fn msi_entries() {
    let u = [0xfee0_1000, 0x1234_5600, 0x4031, 0x77];
    let e = msi(7, 0xfee0_1000, 0x1234_5600, 0x4031);
    assert_eq!(parse_entry(7, ROUTING_MSI, 0, u, false), Ok(e));
    // Device ID flag accepted (and the ID ignored), as upstream on x86.
    assert_eq!(parse_entry(7, ROUTING_MSI, MSI_VALID_DEVID, u, false), Ok(e));
    // MSI routes are fine with a split irqchip.
    assert_eq!(parse_entry(7, ROUTING_MSI, 0, u, true), Ok(e));
    for flags in [2, 3, 0x8000_0000, u32::MAX] {
        assert_eq!(parse_entry(7, ROUTING_MSI, flags, u, false), INVALID, "flags {flags:#x}");
    }
    // x2APIC format: address_hi bits 7:0 reserved.
    assert_eq!(parse_entry_x2apic(7, ROUTING_MSI, 0, u, false, true), Ok(e));
    let bad = [0xfee0_1000, 0x1234_5601, 0x31, 0];
    assert_eq!(parse_entry_x2apic(7, ROUTING_MSI, 0, bad, false, true), INVALID);
    assert!(parse_entry_x2apic(7, ROUTING_MSI, 0, bad, false, false).is_ok());
    assert!(parse_entry(7, ROUTING_MSI, 0, bad, false).is_ok());
    // The x2APIC setting does not affect irqchip entries.
    assert!(parse_entry_x2apic(7, ROUTING_IRQCHIP, 0, [2, 1, 0xff, 0xff], false, true).is_ok());
}

#[test]
fn msi_invalid_cases() {
    assert!(!msi_invalid(0, false));
    assert!(!msi_invalid(0xffff_ffff, false));
    assert!(!msi_invalid(0, true));
    assert!(!msi_invalid(0xffff_ff00, true));
    assert!(msi_invalid(1, true));
    assert!(msi_invalid(0x80, true));
    assert!(msi_invalid(0xffff_ffff, true));
}

#[test]
fn table_checks() {
    assert_eq!(check_table(&[]), Ok(()));
    // One GSI to several different irqchips.
    let t = [chip_entry(3, 0, 3), chip_entry(3, 1, 11), chip_entry(3, 2, 3)];
    assert_eq!(check_table(&t), Ok(()));
    // Same irqchip twice for a GSI, even on different pins.
    let t = [chip_entry(3, 2, 3), chip_entry(4, 2, 4), chip_entry(3, 2, 5)];
    assert_eq!(check_table(&t), Err(RouteError::Invalid));
    let t = [chip_entry(3, 0, 3), chip_entry(3, 0, 3)];
    assert_eq!(check_table(&t), Err(RouteError::Invalid));
    // MSI shares its GSI with nothing, in either order.
    let m = msi(3, 0xfee0_0000, 0, 0x30);
    assert_eq!(check_table(&[m, chip_entry(3, 2, 3)]), Err(RouteError::Invalid));
    assert_eq!(check_table(&[chip_entry(3, 2, 3), m]), Err(RouteError::Invalid));
    assert_eq!(check_table(&[m, m]), Err(RouteError::Invalid));
    assert_eq!(check_table(&[m, msi(4, 0xfee0_0000, 0, 0x30), chip_entry(5, 2, 3)]), Ok(()));
    // A GSI out of range in a hand-built entry.
    assert_eq!(check_table(&[chip_entry(MAX_IRQ_ROUTES, 2, 0)]), Err(RouteError::Invalid));
}

#[test]
fn table_size_limit() {
    let mut t = [msi(0, 0xfee0_0000, 0, 0); MAX_IRQ_ROUTES as usize + 1];
    for (i, e) in t.iter_mut().enumerate() {
        e.gsi = i as u32 % MAX_IRQ_ROUTES;
    }
    assert_eq!(check_table(&t[..MAX_IRQ_ROUTES as usize]), Ok(()));
    assert_eq!(check_table(&t), Err(RouteError::Invalid));
}

#[test]
fn default_routes() {
    let mut got = [chip_entry(0, 0, 0); 40];
    let mut n = 0;
    for_each_default_route(|e| {
        got[n] = e;
        n += 1;
    });
    assert_eq!(n, 40);
    let mut i = 0;
    for irq in 0..24u32 {
        // As the uapi entry upstream's default_routing table holds.
        assert_eq!(Ok(got[i]), irqchip(irq, IRQCHIP_IOAPIC, irq));
        i += 1;
        if irq < 16 {
            let chip = if irq < 8 { IRQCHIP_PIC_MASTER } else { IRQCHIP_PIC_SLAVE };
            assert_eq!(Ok(got[i]), irqchip(irq, chip, irq % 8));
            assert_eq!(got[i], chip_entry(irq, chip, irq));
            i += 1;
        }
    }
    assert_eq!(check_table(&got), Ok(()));
}

#[test]
fn msi_physical_fixed() {
    let r = msi_to_request(0xfee0_1000, 0, 0x0031, false, false);
    assert_eq!(
        r,
        IrqRequest {
            vector: 0x31,
            delivery_mode: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            shorthand: Shorthand::None,
            dest_id: 1,
            trigger: TriggerMode::Edge,
            level: true,
            msi_redir_hint: false,
        }
    );
    // Broadcast destination.
    assert_eq!(msi_to_request(0xfeef_f000, 0, 0x20, false, false).dest_id, 0xff);
}

#[test]
fn msi_logical_lowest_priority() {
    // Destination 3, logical (bit 2), redirection hint (bit 3).
    let r = msi_to_request(0xfee0_300c, 0, 0x0141, false, false);
    assert_eq!(r.vector, 0x41);
    assert_eq!(r.delivery_mode, DeliveryMode::LowestPriority);
    assert_eq!(r.dest_mode, DestMode::Logical);
    assert!(r.msi_redir_hint);
    assert_eq!(r.dest_id, 3);
    // Hint without logical mode.
    let r = msi_to_request(0xfee0_3008, 0, 0x0141, false, false);
    assert_eq!(r.dest_mode, DestMode::Physical);
    assert!(r.msi_redir_hint);
}

#[test]
fn msi_data_fields() {
    let modes = [
        (0, DeliveryMode::Fixed),
        (1, DeliveryMode::LowestPriority),
        (2, DeliveryMode::Smi),
        (3, DeliveryMode::Reserved),
        (4, DeliveryMode::Nmi),
        (5, DeliveryMode::Init),
        (6, DeliveryMode::StartUp),
        (7, DeliveryMode::ExtInt),
    ];
    for (bits, mode) in modes {
        assert_eq!(msi_to_request(0xfee0_0000, 0, bits << 8, false, false).delivery_mode, mode);
    }
    // Trigger from bit 15; bit 14 (assert) and bit 11 do not matter.
    let r = msi_to_request(0xfee0_0000, 0, 0x8000 | 0x22, false, false);
    assert_eq!((r.trigger, r.level, r.vector), (TriggerMode::Level, true, 0x22));
    let r = msi_to_request(0xfee0_0000, 0, 0xc800 | 0x22, false, false);
    assert_eq!((r.trigger, r.level, r.dest_mode), (TriggerMode::Level, true, DestMode::Physical));
    let r = msi_to_request(0xfee0_0000, 0, 0x4000, false, false);
    assert_eq!((r.trigger, r.level), (TriggerMode::Edge, true));
    // Bits above 15 are ignored.
    assert_eq!(
        msi_to_request(0xfee0_0000, 0, 0xffff_0031, false, false),
        msi_to_request(0xfee0_0000, 0, 0x31, false, false)
    );
}

#[test]
fn msi_x2apic_destination() {
    let lo = 0xfee7_8000;
    let hi = 0x1234_5600;
    assert_eq!(msi_to_request(lo, hi, 0x30, true, false).dest_id, 0x1234_5678);
    // Without the x2APIC format address_hi is ignored.
    assert_eq!(msi_to_request(lo, hi, 0x30, false, false).dest_id, 0x78);
    // Bits 7:0 of address_hi never reach the destination.
    assert_eq!(msi_dest_id(lo, 0xffff_ffff, true, false), 0xffff_ff78);
    assert_eq!(msi_dest_id(0xfeff_f000, 0xffff_ff00, true, false), 0xffff_ffff);
}

#[test]
fn msi_extended_destination_id() {
    // APIC ID 300 = 0x12c: bits 7:0 in address bits 19:12, bits 14:8 in 11:5.
    let lo = 0xfee0_0000 | (0x2c << 12) | (0x01 << 5);
    assert_eq!(msi_to_request(lo, 0, 0x30, false, true).dest_id, 300);
    assert_eq!(msi_to_request(lo, 0, 0x30, false, false).dest_id, 0x2c);
    // The highest: 32767.
    let lo = 0xfee0_0000 | (0xff << 12) | (0x7f << 5);
    assert_eq!(msi_dest_id(lo, 0, false, true), 0x7fff);
    // Bit 4 and bits 1:0 are not part of it; dest mode/hint unaffected.
    let lo = 0xfee0_0000 | (0x05 << 12) | (0x7f << 5) | 0x1f;
    let r = msi_to_request(lo, 0, 0x30, false, true);
    assert_eq!(r.dest_id, 0x7f05);
    assert_eq!(r.dest_mode, DestMode::Logical);
    assert!(r.msi_redir_hint);
    // Both formats: the fields are ORed.
    let lo = 0xfee0_0000 | (0x01 << 12) | (0x02 << 5);
    assert_eq!(msi_dest_id(lo, 0x0001_0000, true, true), 0x0001_0201);
}

use crate::test_rng::XorShift;

/// Small values most of the time, so the interesting edges get hit.
trait Words {
    fn word(&mut self) -> u32;
}

impl Words for XorShift {
    fn word(&mut self) -> u32 {
        let v = self.next();
        match v % 4 {
            0 => (v >> 8) as u32,
            1 => (v >> 8) as u32 % 32,
            2 => (v >> 8) as u32 % 5000,
            _ => (v >> 8) as u32 % 3,
        }
    }
}

#[test]
fn random_entries_never_panic() {
    let mut r = XorShift(0x2545_f491_4f6c_dd1d);
    let mut table = [chip_entry(0, 0, 0); 64];
    let mut n = 0;
    for _ in 0..100_000 {
        let gsi = r.word();
        let kind = r.word();
        let flags = if r.next() & 1 == 0 { 0 } else { r.word() };
        let u = [r.word(), r.word(), r.word(), r.word()];
        let split = r.next() & 1 == 0;
        let x2apic = r.next() & 1 == 0;
        let ext = r.next() & 1 == 0;
        match parse_entry_x2apic(gsi, kind, flags, u, split, x2apic) {
            Ok(e) => {
                assert!(e.gsi < MAX_IRQ_ROUTES);
                match e.route {
                    Route::Irqchip { chip, pin } => {
                        assert!(!split && flags == 0 && kind == ROUTING_IRQCHIP);
                        match chip {
                            0 => assert!(pin < 8),
                            1 => assert!((8..16).contains(&pin)),
                            2 => assert!(pin < 24),
                            _ => panic!("chip {chip}"),
                        }
                    }
                    Route::Msi { address_lo, address_hi, data } => {
                        assert!(kind == ROUTING_MSI && flags & !MSI_VALID_DEVID == 0);
                        assert!(!msi_invalid(address_hi, x2apic));
                        let _ = msi_to_request(address_lo, address_hi, data, x2apic, ext);
                    }
                }
                table[n % table.len()] = e;
                n += 1;
            }
            Err(RouteError::Invalid) => {}
        }
        let _ = msi_to_request(u[0], u[1], u[2], x2apic, ext);
        if n > 0 && r.next() & 63 == 0 {
            let len = (r.next() as usize % table.len()).min(n);
            let _ = check_table(&table[..len]);
        }
    }
}
