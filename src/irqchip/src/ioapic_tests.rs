use super::*;

fn select(io: &mut Ioapic, reg: u32) {
    assert_eq!(io.mmio_write(IOAPIC_REG_SELECT, 4, u64::from(reg)), None);
}

fn read_reg(io: &mut Ioapic, reg: u32) -> u32 {
    select(io, reg);
    io.mmio_read(IOAPIC_REG_WINDOW, 4) as u32
}

fn write_reg(io: &mut Ioapic, reg: u32, val: u32) -> Option<IrqRequest> {
    select(io, reg);
    io.mmio_write(IOAPIC_REG_WINDOW, 4, u64::from(val))
}

/// Programs an entry the way Linux does: high half first, then low.
fn program(io: &mut Ioapic, pin: u32, entry: u64) -> Option<IrqRequest> {
    let a = write_reg(io, 0x10 + 2 * pin + 1, (entry >> 32) as u32);
    let b = write_reg(io, 0x10 + 2 * pin, entry as u32);
    a.or(b)
}

fn read_entry(io: &mut Ioapic, pin: u32) -> u64 {
    let lo = read_reg(io, 0x10 + 2 * pin);
    let hi = read_reg(io, 0x10 + 2 * pin + 1);
    u64::from(hi) << 32 | u64::from(lo)
}

fn edge(vector: u8, dest: u8) -> u64 {
    u64::from(vector) | u64::from(dest) << 56
}

fn level(vector: u8, dest: u8) -> u64 {
    edge(vector, dest) | REDIR_LEVEL
}

fn fixed(vector: u8, dest: u32, trigger: TriggerMode) -> IrqRequest {
    IrqRequest {
        vector,
        delivery_mode: DeliveryMode::Fixed,
        dest_mode: DestMode::Physical,
        shorthand: Shorthand::None,
        dest_id: dest,
        trigger,
        level: true,
        msi_redir_hint: false,
    }
}

#[test]
fn reset_state() {
    let mut io = Ioapic::new();
    assert_eq!(io.base_address(), 0xfec0_0000);
    let st = io.state();
    assert_eq!(st.base_address, IOAPIC_DEFAULT_BASE);
    assert_eq!((st.ioregsel, st.id, st.irr), (0, 0, 0));
    assert!(st.redirtbl.iter().all(|&e| e == REDIR_MASKED));
    for pin in 0..24 {
        assert_eq!(read_entry(&mut io, pin), 0x1_0000);
    }
    assert_eq!(Ioapic::default().state(), Ioapic::new().state());
    // Reset only sets the mask bits of what was programmed.
    program(&mut io, 3, level(0x40, 2));
    io.mmio_write(0, 4, 0x12);
    io.reset();
    assert_eq!(io.entry(3), Some(level(0x40, 2) | REDIR_MASKED));
    assert_eq!(io.state().ioregsel, 0);
}

#[test]
fn id_version_arbitration() {
    let mut io = Ioapic::new();
    assert_eq!(read_reg(&mut io, IOAPIC_REG_VERSION), 0x0017_0011);
    write_reg(&mut io, IOAPIC_REG_VERSION, 0xffff_ffff);
    assert_eq!(read_reg(&mut io, IOAPIC_REG_VERSION), 0x0017_0011);
    write_reg(&mut io, IOAPIC_REG_ID, 0xffff_ffff);
    assert_eq!(read_reg(&mut io, IOAPIC_REG_ID), 0x0f00_0000);
    assert_eq!(io.state().id, 0xf);
    write_reg(&mut io, IOAPIC_REG_ID, 0x0200_0000);
    assert_eq!(read_reg(&mut io, IOAPIC_REG_ID), 0x0200_0000);
    // ARB reads the ID, ignores writes.
    assert_eq!(read_reg(&mut io, IOAPIC_REG_ARB), 0x0200_0000);
    write_reg(&mut io, IOAPIC_REG_ARB, 0x0500_0000);
    assert_eq!(read_reg(&mut io, IOAPIC_REG_ID), 0x0200_0000);
}

#[test]
fn index_and_data_access_widths() {
    let mut io = Ioapic::new();
    // IOREGSEL is 8 bits wide.
    io.mmio_write(IOAPIC_REG_SELECT, 4, 0xdead_be01);
    assert_eq!(io.mmio_read(IOAPIC_REG_SELECT, 4), 0x01);
    assert_eq!(io.state().ioregsel, 0x01);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 4), 0x0017_0011);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 8), 0x0017_0011);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 2), 0x0011);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 1), 0x11);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 3), 0);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 0), 0);
    // Other offsets read as zero and ignore writes.
    for off in [0x04, 0x08, 0x0c, 0x14, 0x20, 0x40, 0xfc, 0x01, 0x11, 0x100, u64::MAX] {
        assert_eq!(io.mmio_read(off, 4), 0);
        assert_eq!(io.mmio_write(off, 4, 0x10), None);
    }
    assert_eq!(io.mmio_read(IOAPIC_REG_SELECT, 4), 0x01);
    // Byte and word writes zero-extend into the register.
    io.mmio_write(IOAPIC_REG_SELECT, 1, 0x1_12);
    assert_eq!(io.mmio_read(IOAPIC_REG_SELECT, 4), 0x12);
    io.mmio_write(IOAPIC_REG_WINDOW, 4, 0xffff_ffff);
    io.mmio_write(IOAPIC_REG_WINDOW, 2, 0x1234_2678);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 4), 0x2678);
    io.mmio_write(IOAPIC_REG_WINDOW, 1, 0xab);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 4), 0xab);
    // 8-byte writes only take the low dword.
    io.mmio_write(IOAPIC_REG_WINDOW, 8, 0xffff_ffff_0000_00cd);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 4), 0xcd);
    // Bad lengths are ignored.
    io.mmio_write(IOAPIC_REG_WINDOW, 3, 0x77);
    io.mmio_write(IOAPIC_REG_SELECT, 16, 0x77);
    assert_eq!(io.mmio_read(IOAPIC_REG_SELECT, 4), 0x12);
    assert_eq!(io.mmio_read(IOAPIC_REG_WINDOW, 4), 0xcd);
}

#[test]
fn redirection_table_halves_and_read_only_bits() {
    let mut io = Ioapic::new();
    for pin in 0..24u32 {
        let e = 0xa500_0000_0000_0000 | u64::from(pin) << 56 | 0x1_a930 | u64::from(pin);
        program(&mut io, pin, e);
        // Delivery status (12) and remote IRR (14) are not writable.
        assert_eq!(read_entry(&mut io, pin), e & !(REDIR_DELIVERY_STATUS | REDIR_REMOTE_IRR));
    }
    // Halves are independent.
    write_reg(&mut io, 0x11, 0x0300_0000);
    assert_eq!(read_entry(&mut io, 0) >> 32, 0x0300_0000);
    assert_eq!(read_entry(&mut io, 0) as u32, 0x1_a930 & !0x5000);
    // Reserved bits are stored as written (upstream keeps the raw entry).
    write_reg(&mut io, 0x13, 0x00ff_ffff);
    assert_eq!(read_reg(&mut io, 0x13), 0x00ff_ffff);
    // Beyond the table: all ones, writes dropped.
    for reg in [0x03, 0x0f, 0x40, 0x41, 0xfe, 0xff] {
        let before = io.state();
        assert_eq!(read_reg(&mut io, reg), 0xffff_ffff, "reg {reg:#x}");
        write_reg(&mut io, reg, 0);
        let mut after = io.state();
        after.ioregsel = before.ioregsel;
        assert_eq!(after, before);
    }
}

#[test]
fn request_fields() {
    let e = 0x12u64 << 56
        | 0x00ab_cdef_0000_0000
        | 0x00fe_0000
        | REDIR_MASKED
        | REDIR_LEVEL
        | REDIR_POLARITY_LOW
        | REDIR_DEST_LOGICAL
        | 2 << 8
        | 0xc0;
    let r = redirection_request(e);
    assert_eq!(r.vector, 0xc0);
    assert_eq!(r.delivery_mode, DeliveryMode::Smi);
    assert_eq!(r.dest_mode, DestMode::Logical);
    assert_eq!(r.dest_id, 0x12, "bits 55:17 are ignored");
    assert_eq!(r.trigger, TriggerMode::Level);
    assert_eq!((r.shorthand, r.level, r.msi_redir_hint), (Shorthand::None, true, false));
    assert_eq!(redirection_request(1 << 8).delivery_mode, DeliveryMode::LowestPriority);
    assert_eq!(redirection_request(4 << 8).delivery_mode, DeliveryMode::Nmi);
    assert_eq!(redirection_request(5 << 8).delivery_mode, DeliveryMode::Init);
    assert_eq!(redirection_request(7 << 8).delivery_mode, DeliveryMode::ExtInt);
    assert_eq!(redirection_request(0xff << 56).dest_id, 0xff);
    assert_eq!(redirection_request(0).trigger, TriggerMode::Edge);
    assert_eq!(redirection_request(0).dest_mode, DestMode::Physical);
}

#[test]
fn edge_delivery() {
    let mut io = Ioapic::new();
    assert_eq!(program(&mut io, 4, edge(0x34, 1)), None);
    let r = io.set_irq(4, true);
    assert_eq!(r, SetIrq { delivered: Some(fixed(0x34, 1, TriggerMode::Edge)), status: 1 });
    // No remote IRR for edge pins.
    assert_eq!(read_entry(&mut io, 4) & REDIR_REMOTE_IRR, 0);
    // Delivered edges are hidden from the saved IRR.
    assert_eq!(io.irr(), 1 << 4);
    assert_eq!(io.state().irr, 0);
    // Still high: coalesced. Like upstream, any assertion of an edge pin
    // forgets that it was delivered, so it shows in the saved IRR again.
    assert_eq!(io.set_irq(4, true), SetIrq { delivered: None, status: 0 });
    assert_eq!(io.state().irr, 1 << 4);
    assert_eq!(io.pending_pins(), 1 << 4);
    assert_eq!(io.set_irq(4, false), SetIrq { delivered: None, status: 1 });
    assert_eq!(io.irr(), 0);
    assert!(io.set_irq(4, true).delivered.is_some());
    io.set_irq(4, false);
    // An EOI of an edge vector only runs the ack notifiers.
    let eoi = io.update_eoi(0x34, false, false);
    assert_eq!(eoi, EoiResult { acked_pins: 1 << 4, ..Default::default() });
}

#[test]
fn level_remote_irr_and_eoi_redelivery() {
    let mut io = Ioapic::new();
    program(&mut io, 10, level(0x5a, 3));
    program(&mut io, 11, level(0x5a, 3) | REDIR_MASKED);
    let want = fixed(0x5a, 3, TriggerMode::Level);
    assert_eq!(io.set_irq(10, true), SetIrq { delivered: Some(want), status: 1 });
    assert_ne!(read_entry(&mut io, 10) & REDIR_REMOTE_IRR, 0);
    // Remote IRR pending: no second delivery.
    assert_eq!(io.set_irq(10, true), SetIrq { delivered: None, status: -1 });
    assert_eq!(io.service(10), None);
    assert_eq!(io.pending_pins(), 0);
    // Directed EOI leaves remote IRR alone.
    let eoi = io.update_eoi(0x5a, true, true);
    assert_eq!(eoi, EoiResult { acked_pins: 3 << 10, ..Default::default() });
    assert_ne!(read_entry(&mut io, 10) & REDIR_REMOTE_IRR, 0);
    // Some other vector: nothing.
    assert_eq!(io.eoi(0x5b), EoiResult::default());
    // EOI with the line still high: re-delivery.
    let eoi = io.eoi(0x5a);
    assert_eq!(eoi, EoiResult { acked_pins: 3 << 10, redeliver_pins: 1 << 10, delayed_pins: 0 });
    assert_eq!(read_entry(&mut io, 10) & REDIR_REMOTE_IRR, 0);
    assert_eq!(io.pending_pins(), 1 << 10);
    assert_eq!(io.service(10), Some(want));
    assert_ne!(read_entry(&mut io, 10) & REDIR_REMOTE_IRR, 0);
    // The ack notifier lowered the line before the glue re-serviced: nothing.
    let eoi = io.eoi(0x5a);
    assert_eq!(eoi.redeliver_pins, 1 << 10);
    io.set_irq(10, false);
    assert_eq!(io.service(10), None);
    assert_eq!(read_entry(&mut io, 10) & REDIR_REMOTE_IRR, 0);
    // Line low at EOI: no re-delivery, next rise delivers.
    assert!(io.set_irq(10, true).delivered.is_some());
    io.set_irq(10, false);
    assert_eq!(io.eoi(0x5a).redeliver_pins, 0);
    assert_eq!(io.set_irq(10, true).delivered, Some(want));
}

#[test]
fn eoi_storm_defers() {
    let mut io = Ioapic::new();
    program(&mut io, 9, level(0x61, 0));
    assert!(io.set_irq(9, true).delivered.is_some());
    for n in 1..IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT {
        let eoi = io.eoi(0x61);
        assert_eq!(eoi.redeliver_pins, 1 << 9, "eoi {n}");
        assert!(io.service(9).is_some());
    }
    let eoi = io.eoi(0x61);
    assert_eq!((eoi.redeliver_pins, eoi.delayed_pins), (0, 1 << 9));
    assert_eq!(io.delayed_inject_pins(), 1 << 9);
    assert!(io.service(9).is_some());
    assert_eq!(io.delayed_inject_pins(), 0);
    // Counting started over.
    assert_eq!(io.eoi(0x61).redeliver_pins, 1 << 9);
}

#[test]
fn masked_then_unmasked() {
    let mut io = Ioapic::new();
    // Level pin: latched while masked, delivered at unmask.
    program(&mut io, 5, level(0x45, 1) | REDIR_MASKED);
    assert_eq!(io.set_irq(5, true), SetIrq { delivered: None, status: -1 });
    assert_eq!(io.irr(), 1 << 5);
    assert_eq!(io.pending_pins(), 0);
    let got = write_reg(&mut io, 0x10 + 10, level(0x45, 1) as u32);
    assert_eq!(got, Some(fixed(0x45, 1, TriggerMode::Level)));
    assert_ne!(read_entry(&mut io, 5) & REDIR_REMOTE_IRR, 0);

    // Edge pin: the latched edge is not delivered at unmask (upstream), and
    // re-asserting the still-high line is coalesced.
    program(&mut io, 6, edge(0x46, 1) | REDIR_MASKED);
    assert_eq!(io.set_irq(6, true).status, -1);
    assert_eq!(program(&mut io, 6, edge(0x46, 1)), None);
    assert_eq!(io.pending_pins(), 1 << 6);
    assert_eq!(io.set_irq(6, true), SetIrq { delivered: None, status: 0 });
    io.set_irq(6, false);
    assert!(io.set_irq(6, true).delivered.is_some());

    // With a resampler the stale IRR is dropped and the resampler notified.
    let mut io = Ioapic::new();
    program(&mut io, 7, level(0x47, 1) | REDIR_MASKED);
    io.set_irq(7, true);
    select(&mut io, 0x10 + 14);
    let fx = io.mmio_write_ex(IOAPIC_REG_WINDOW, 4, level(0x47, 1), &|pin| pin == 7);
    assert_eq!(
        fx,
        MmioWriteEffects { delivered: None, redir_pin: Some(7), mask_changed: Some(false), resample_pin: Some(7) }
    );
    assert_eq!(io.irr(), 0);
    // Masking again reports the flip; an unchanged mask reports none.
    let fx = io.mmio_write_ex(IOAPIC_REG_WINDOW, 4, level(0x47, 1) | REDIR_MASKED, &|_| true);
    assert_eq!(fx.mask_changed, Some(true));
    let fx = io.mmio_write_ex(IOAPIC_REG_WINDOW, 4, level(0x48, 1) | REDIR_MASKED, &|_| true);
    assert_eq!((fx.redir_pin, fx.mask_changed), (Some(7), None));
    // Non-redirection writes report nothing.
    select(&mut io, IOAPIC_REG_ID);
    assert_eq!(io.mmio_write_ex(IOAPIC_REG_WINDOW, 4, 0, &|_| true), MmioWriteEffects::default());
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = Ioapic::new();
    program(&mut io, 2, level(0x30, 0));
    io.set_irq(2, true);
    assert_ne!(read_entry(&mut io, 2) & REDIR_REMOTE_IRR, 0);
    // Rewriting as level (e.g. the high half, or a new vector) keeps it.
    program(&mut io, 2, level(0x31, 0) | REDIR_MASKED);
    assert_ne!(read_entry(&mut io, 2) & REDIR_REMOTE_IRR, 0);
    // Linux's EOI for I/O APICs without an EOI register: mask, edge, level.
    write_reg(&mut io, 0x14, (edge(0x31, 0) | REDIR_MASKED) as u32);
    assert_eq!(read_entry(&mut io, 2) & REDIR_REMOTE_IRR, 0);
    // Back to level and unmasked with the line still high: delivered.
    assert!(write_reg(&mut io, 0x14, level(0x31, 0) as u32).is_some());
}

#[test]
fn delivery_unaccepted_clears_remote_irr() {
    let mut io = Ioapic::new();
    program(&mut io, 1, level(0x21, 9));
    assert!(io.set_irq(1, true).delivered.is_some());
    io.delivery_unaccepted(1);
    assert_eq!(read_entry(&mut io, 1) & REDIR_REMOTE_IRR, 0);
    io.delivery_unaccepted(99);
    assert_eq!(io.service(1), Some(fixed(0x21, 9, TriggerMode::Level)));
}

#[test]
fn bad_pins() {
    let mut io = Ioapic::new();
    let before = io.state();
    for pin in [24, 31, 32, 1000, u32::MAX] {
        assert_eq!(io.set_irq(pin, true), SetIrq { delivered: None, status: -1 });
        assert_eq!(io.service(pin), None);
        assert_eq!(io.entry(pin), None);
    }
    assert_eq!(io.state(), before);
}

#[test]
fn state_round_trip() {
    let mut io = Ioapic::new();
    write_reg(&mut io, IOAPIC_REG_ID, 0x0300_0000);
    program(&mut io, 1, edge(0x31, 0));
    program(&mut io, 3, level(0x33, 1));
    program(&mut io, 4, level(0x34, 1) | REDIR_MASKED);
    program(&mut io, 8, edge(0x38, 0) | REDIR_MASKED);
    io.set_irq(1, true);
    io.set_irq(3, true);
    io.set_irq(4, true);
    io.set_irq(8, true);
    select(&mut io, 0x17);
    let st = io.state();
    assert_eq!(st.irr, (1 << 3) | (1 << 4) | (1 << 8));
    assert_eq!(st.ioregsel, 0x17);
    assert_eq!(st.id, 3);

    let mut other = Ioapic::new();
    other.set_state(&st);
    assert_eq!(other.state(), st);
    // Remote IRR pending on 3, 4 and 8 masked: nothing to deliver.
    assert_eq!(other.pending_pins(), 0);
    assert_eq!(other.mmio_read(IOAPIC_REG_WINDOW, 4), io.mmio_read(IOAPIC_REG_WINDOW, 4));
    // Both behave the same from here.
    assert_eq!(io.eoi(0x33), other.eoi(0x33));
    assert_eq!(io.service(3), other.service(3));
    assert_eq!(io.state(), other.state());

    // A restored pending edge and an idle level pin are delivered once each.
    let mut st2 = st;
    st2.redirtbl[3] &= !REDIR_REMOTE_IRR;
    st2.redirtbl[8] &= !REDIR_MASKED;
    st2.irr |= 0xff00_0000;
    let mut io3 = Ioapic::new();
    io3.set_state(&st2);
    assert_eq!(io3.irr(), (1 << 3) | (1 << 4) | (1 << 8));
    assert_eq!(io3.pending_pins(), (1 << 3) | (1 << 8));
    assert_eq!(io3.service(3), Some(fixed(0x33, 1, TriggerMode::Level)));
    assert_eq!(io3.service(8), Some(fixed(0x38, 0, TriggerMode::Edge)));
    assert_eq!(io3.pending_pins(), 0);
    assert_eq!(io3.state().irr, (1 << 3) | (1 << 4));

    // Odd values are tolerated.
    let wild = IoapicState {
        base_address: u64::MAX,
        ioregsel: u32::MAX,
        id: u32::MAX,
        irr: u32::MAX,
        redirtbl: [u64::MAX; IOAPIC_NUM_PINS],
    };
    io3.set_state(&wild);
    assert_eq!(io3.base_address(), u64::MAX);
    assert_eq!(io3.mmio_read(IOAPIC_REG_SELECT, 4), 0xffff_ffff);
    assert_eq!(io3.mmio_read(IOAPIC_REG_WINDOW, 4), 0xffff_ffff);
    io3.mmio_write(IOAPIC_REG_WINDOW, 4, 0);
    assert_eq!(io3.pending_pins(), 0);
}

use crate::test_rng::XorShift;

#[test]
fn random_operations_never_panic() {
    let offsets = [0x00u64, 0x10, 0x04, 0x20, 0xff, 0x100, u64::MAX];
    let lens = [1u8, 2, 4, 8, 0, 3, 255];
    for seed in [0x2545_f491_4f6c_dd1du64, 7, 0x1234_5678_9abc_def0] {
        let mut rng = XorShift(seed);
        let mut io = Ioapic::new();
        for _ in 0..100_000 {
            let r = rng.next();
            let v = rng.next();
            let off = offsets[(r >> 8) as usize % offsets.len()];
            let len = lens[(r >> 16) as usize % lens.len()];
            match r % 10 {
                0 => {
                    io.mmio_read(off, len);
                }
                1 => {
                    io.mmio_write(off, len, v);
                }
                2 => {
                    // Mostly valid register selections.
                    io.mmio_write(0, 4, v % 0x48);
                }
                3 => {
                    io.mmio_write_ex(0x10, 4, v, &|p| p % 2 == 0);
                }
                4 => {
                    let st = io.set_irq((v % 30) as u32, v & (1 << 40) != 0);
                    assert!((-1..=1).contains(&st.status));
                }
                5 => {
                    let res = io.update_eoi(v as u8, v & (1 << 33) != 0, v & (1 << 34) != 0);
                    assert_eq!(res.redeliver_pins & res.delayed_pins, 0);
                    assert_eq!((res.redeliver_pins | res.delayed_pins) & !res.acked_pins, 0);
                    for pin in 0..24 {
                        if res.redeliver_pins & (1 << pin) != 0 {
                            io.service(pin);
                        }
                    }
                }
                6 => {
                    io.service((v % 30) as u32);
                }
                7 if v & 127 == 0 => {
                    let mut st = io.state();
                    st.irr = rng.next() as u32;
                    st.ioregsel = rng.next() as u32;
                    st.id = rng.next() as u32;
                    st.redirtbl[(v >> 8) as usize % 24] = rng.next();
                    io.set_state(&st);
                    let pending = io.pending_pins();
                    for pin in 0..24 {
                        if pending & (1 << pin) != 0 {
                            assert!(io.service(pin).is_some());
                        }
                    }
                    assert_eq!(io.pending_pins(), 0);
                }
                8 => {
                    io.delivery_unaccepted((v % 30) as u32);
                    let _ = io.delayed_inject_pins();
                }
                _ => {
                    let st = io.state();
                    assert_eq!(st.irr >> 24, 0);
                }
            }
        }
    }
}
