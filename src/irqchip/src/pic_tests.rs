use super::*;

const M_CMD: u16 = PIC_MASTER_CMD;
const M_DATA: u16 = PIC_MASTER_DATA;
const S_CMD: u16 = PIC_SLAVE_CMD;
const S_DATA: u16 = PIC_SLAVE_DATA;

/// Linux's init_8259A (arch/x86/kernel/i8259.c): vectors 0x30/0x38, cascade
/// on IR2, 8086 mode, optionally auto-EOI on the master; masks restored last.
fn linux_init(pic: &mut Pic, auto_eoi: bool, master_mask: u8, slave_mask: u8) {
    pic.port_write(M_DATA, 0xff);
    pic.port_write(S_DATA, 0xff);
    pic.port_write(M_CMD, 0x11);
    pic.port_write(M_DATA, 0x30);
    pic.port_write(M_DATA, 1 << 2);
    pic.port_write(M_DATA, if auto_eoi { 0x03 } else { 0x01 });
    pic.port_write(S_CMD, 0x11);
    pic.port_write(S_DATA, 0x38);
    pic.port_write(S_DATA, 2);
    pic.port_write(S_DATA, 0x01);
    pic.port_write(M_DATA, master_mask);
    pic.port_write(S_DATA, slave_mask);
}

/// Linux's mask_and_ack_8259A EOI: specific EOIs, slave first then cascade.
fn linux_eoi(pic: &mut Pic, irq: u8) {
    if irq >= 8 {
        pic.port_write(S_CMD, 0x60 + (irq & 7));
        pic.port_write(M_CMD, 0x60 + 2);
    } else {
        pic.port_write(M_CMD, 0x60 + irq);
    }
}

/// SeaBIOS's pic_setup: vectors 0x08/0x70, everything masked but cascade.
fn seabios_init(pic: &mut Pic) {
    pic.port_write(M_CMD, 0x11);
    pic.port_write(M_DATA, 0x08);
    pic.port_write(M_DATA, 0x04);
    pic.port_write(M_DATA, 0x01);
    pic.port_write(S_CMD, 0x11);
    pic.port_write(S_DATA, 0x70);
    pic.port_write(S_DATA, 0x02);
    pic.port_write(S_DATA, 0x01);
    pic.port_write(M_DATA, !0x04);
    pic.port_write(S_DATA, 0xff);
}

fn master(pic: &Pic) -> PicChipState {
    pic.chip_state(0).unwrap()
}

fn slave(pic: &Pic) -> PicChipState {
    pic.chip_state(1).unwrap()
}

fn pulse(pic: &mut Pic, irq: u32) {
    pic.set_irq(irq, true).unwrap();
    pic.set_irq(irq, false).unwrap();
}

#[test]
fn power_on_state() {
    let pic = Pic::new();
    let m = master(&pic);
    let s = slave(&pic);
    assert_eq!(m, PicChipState { elcr_mask: 0xf8, ..Default::default() });
    assert_eq!(s, PicChipState { elcr_mask: 0xde, ..Default::default() });
    assert!(!pic.output());
    assert_eq!(pic.chip_state(2), None);
    assert_eq!(Pic::default(), pic);
}

#[test]
fn port_ownership() {
    for p in [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1] {
        assert!(Pic::handles_port(p));
    }
    for p in [0x1f, 0x22, 0x9f, 0xa2, 0x4cf, 0x4d2, 0x40, 0] {
        assert!(!Pic::handles_port(p));
    }
    let mut pic = Pic::new();
    let before = pic.clone();
    pic.port_write(0x22, 0x11);
    pic.port_write(0x60, 0xff);
    assert_eq!(pic.port_read(0x22), 0xff);
    assert_eq!(pic.port_read(0x4d2), 0xff);
    assert_eq!(pic, before);
}

#[test]
fn linux_init_sequence() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0xfb, 0xff);
    let m = master(&pic);
    let s = slave(&pic);
    assert_eq!((m.irq_base, s.irq_base), (0x30, 0x38));
    assert_eq!((m.init_state, s.init_state), (0, 0));
    assert_eq!((m.init4, s.init4), (1, 1));
    assert_eq!((m.auto_eoi, s.auto_eoi), (0, 0));
    assert_eq!((m.imr, s.imr), (0xfb, 0xff));
    assert_eq!(pic.port_read(M_DATA), 0xfb);
    assert_eq!(pic.port_read(S_DATA), 0xff);

    let mut pic = Pic::new();
    linux_init(&mut pic, true, 0, 0);
    assert_eq!(master(&pic).auto_eoi, 1);
    assert_eq!(slave(&pic).auto_eoi, 0);
}

#[test]
fn seabios_init_and_eoi() {
    let mut pic = Pic::new();
    seabios_init(&mut pic);
    assert_eq!(master(&pic).irq_base, 0x08);
    assert_eq!(slave(&pic).irq_base, 0x70);
    // Everything but the cascade is masked.
    assert_eq!(pic.set_irq(0, true), Some(false));
    assert!(!pic.output());
    // BIOS unmasks the timer and the keyboard.
    pic.port_write(M_DATA, !0x07);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x08, Some(0)));
    pic.set_irq(0, false);
    pic.set_irq(1, true);
    // IRQ0 in service blocks IRQ1.
    assert!(!pic.output());
    pic.port_write(M_CMD, 0x20);
    assert_eq!(pic.take_acked_irqs(), 1);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x09, Some(1)));
    // The RTC on IRQ8: unmask and take it, EOI both chips as SeaBIOS does.
    pic.port_write(S_DATA, !0x01);
    pic.port_write(M_CMD, 0x20);
    pic.take_acked_irqs();
    pic.set_irq(8, true);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x70, Some(8)));
    pic.port_write(S_CMD, 0x20);
    pic.port_write(M_CMD, 0x20);
    assert_eq!(pic.take_acked_irqs(), (1 << 8) | (1 << 2));
    assert_eq!(master(&pic).isr, 0);
    assert_eq!(slave(&pic).isr, 0);
}

#[test]
fn edge_irq_cycle() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    assert_eq!(pic.set_irq(4, true), Some(true));
    assert!(pic.output());
    assert_eq!(master(&pic).irr, 0x10);
    assert_eq!(pic.read_irq(), (0x34, Some(4)));
    assert!(!pic.output());
    assert_eq!(master(&pic).irr, 0);
    assert_eq!(master(&pic).isr, 0x10);
    // Holding the line high raises nothing new.
    assert_eq!(pic.set_irq(4, true), Some(true));
    assert_eq!(master(&pic).irr, 0);
    pic.set_irq(4, false);
    linux_eoi(&mut pic, 4);
    assert_eq!(master(&pic).isr, 0);
    assert_eq!(pic.take_acked_irqs(), 1 << 4);
    assert_eq!(pic.take_acked_irqs(), 0);
    assert!(!pic.output());
}

#[test]
fn edge_coalescing_and_status() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    assert_eq!(pic.set_irq_status(3, true), Some(1));
    pic.set_irq(3, false);
    // A second edge before INTA is absorbed by the IRR bit.
    assert_eq!(pic.set_irq_status(3, true), Some(0));
    assert_eq!(pic.set_irq(3, false), Some(true));
    // Masked line: -1, but IRR still latches.
    pic.port_write(M_DATA, 1 << 5);
    assert_eq!(pic.set_irq_status(5, true), Some(-1));
    assert_eq!(pic.set_irq(5, false), Some(false));
    assert_eq!(master(&pic).irr, (1 << 3) | (1 << 5));
    assert_eq!(pic.set_irq(16, true), None);
    assert_eq!(pic.set_irq_status(u32::MAX, true), None);
}

#[test]
fn masking_defers_and_unmasking_raises() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0xff, 0xff);
    assert_eq!(pic.take_mask_changes(), 0xffff);
    pulse(&mut pic, 6);
    assert!(!pic.output());
    pic.port_write(M_DATA, !(1 << 6));
    assert_eq!(pic.take_mask_changes(), 1 << 6);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x36, Some(6)));
    // Masking a pending slave IRQ withdraws it from the cascade input.
    pic.port_write(M_DATA, !(1 << 2));
    pic.port_write(S_DATA, !(1 << 4));
    assert_eq!(pic.take_mask_changes(), (1 << 6) | (1 << 2) | (1 << 12));
    pulse(&mut pic, 12);
    assert!(pic.output());
    pic.port_write(S_DATA, 0xff);
    // The master's IR2 edge is latched: INTA finds the slave empty and the
    // slave answers its IR7 vector (spurious IRQ15).
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x3f, None));
    assert_eq!(master(&pic).isr & 4, 4);
    assert_eq!(slave(&pic).isr, 0);
}

#[test]
fn priority_and_nesting() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pulse(&mut pic, 3);
    assert_eq!(pic.read_irq().1, Some(3));
    // Lower priority waits behind IRQ3.
    pulse(&mut pic, 5);
    assert!(!pic.output());
    // Higher priority preempts.
    pulse(&mut pic, 1);
    assert!(pic.output());
    assert_eq!(pic.read_irq().1, Some(1));
    assert_eq!(master(&pic).isr, (1 << 1) | (1 << 3));
    // Non-specific EOI finishes the highest in service (IRQ1), then IRQ3.
    pic.port_write(M_CMD, 0x20);
    assert_eq!(master(&pic).isr, 1 << 3);
    assert!(!pic.output());
    pic.port_write(M_CMD, 0x20);
    assert!(pic.output());
    assert_eq!(pic.read_irq().1, Some(5));
    // Specific EOI for something not in service is harmless.
    pic.port_write(M_CMD, 0x67);
    assert_eq!(master(&pic).isr, 1 << 5);
    // OCW2 NOP (cmd 2) and EOI with nothing in service.
    pic.port_write(M_CMD, 0x40);
    pic.port_write(M_CMD, 0x65);
    pic.port_write(M_CMD, 0x20);
    assert_eq!(master(&pic).isr, 0);
}

#[test]
fn multiple_pending_lowest_number_first() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pulse(&mut pic, 7);
    pulse(&mut pic, 0);
    pulse(&mut pic, 4);
    assert_eq!(pic.read_irq().1, Some(0));
    pic.port_write(M_CMD, 0x20);
    assert_eq!(pic.read_irq().1, Some(4));
    pic.port_write(M_CMD, 0x20);
    assert_eq!(pic.read_irq().1, Some(7));
    pic.port_write(M_CMD, 0x20);
    assert!(!pic.output());
}

#[test]
fn cascade_through_irq2() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    assert_eq!(pic.set_irq(10, true), Some(true));
    assert!(pic.output());
    assert_eq!(master(&pic).irr, 1 << 2);
    assert_eq!(slave(&pic).irr, 1 << 2);
    assert_eq!(pic.read_irq(), (0x3a, Some(10)));
    assert_eq!(master(&pic).isr, 1 << 2);
    assert_eq!(slave(&pic).isr, 1 << 2);
    assert_eq!(master(&pic).irr, 0);
    assert_eq!(slave(&pic).irr, 0);
    // While the slave's IRQ is in service the master's IR2 is blocked, so a
    // lower slave IRQ waits, while master IRQ0/1 would not.
    pulse(&mut pic, 11);
    assert!(!pic.output());
    pulse(&mut pic, 1);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x31, Some(1)));
    linux_eoi(&mut pic, 1);
    linux_eoi(&mut pic, 10);
    assert_eq!(pic.take_acked_irqs(), (1 << 1) | (1 << 10) | (1 << 2));
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x3b, Some(11)));
    linux_eoi(&mut pic, 11);
    assert_eq!(master(&pic).isr | slave(&pic).isr, 0);
    assert!(!pic.output());
}

#[test]
fn special_fully_nested_mode() {
    // Without SFNM a higher-priority slave IRQ cannot preempt another slave
    // IRQ in service; with it on the master, it can.
    for sfnm in [false, true] {
        let mut pic = Pic::new();
        pic.port_write(M_CMD, 0x11);
        pic.port_write(M_DATA, 0x30);
        pic.port_write(M_DATA, 0x04);
        pic.port_write(M_DATA, if sfnm { 0x11 } else { 0x01 });
        pic.port_write(S_CMD, 0x11);
        pic.port_write(S_DATA, 0x38);
        pic.port_write(S_DATA, 0x02);
        pic.port_write(S_DATA, 0x01);
        assert_eq!(master(&pic).special_fully_nested_mode, u8::from(sfnm));
        pulse(&mut pic, 12);
        assert_eq!(pic.read_irq().1, Some(12));
        pulse(&mut pic, 9);
        assert_eq!(pic.output(), sfnm);
        if sfnm {
            assert_eq!(pic.read_irq(), (0x39, Some(9)));
            assert_eq!(slave(&pic).isr, (1 << 1) | (1 << 4));
        }
    }
}

#[test]
fn spurious_irq7_on_master() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    // Nothing pending at all.
    assert_eq!(pic.read_irq(), (0x37, None));
    assert_eq!(master(&pic).isr, 0);
    // A level request withdrawn before INTA.
    pic.port_write(PIC_ELCR_MASTER, 1 << 5);
    pic.set_irq(5, true);
    assert!(pic.output());
    pic.set_irq(5, false);
    assert!(!pic.output());
    assert_eq!(pic.read_irq(), (0x37, None));
    assert_eq!(master(&pic).isr, 0);
}

#[test]
fn level_vs_edge_with_elcr() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pic.port_write(PIC_ELCR_MASTER, 0xff);
    pic.port_write(PIC_ELCR_SLAVE, 0xff);
    assert_eq!(pic.port_read(PIC_ELCR_MASTER), 0xf8);
    assert_eq!(pic.port_read(PIC_ELCR_SLAVE), 0xde);
    // IRQ9 level, still high across EOI: raised again.
    assert_eq!(pic.set_irq(9, true), Some(true));
    assert_eq!(pic.set_irq(9, true), Some(false));
    assert_eq!(pic.read_irq(), (0x39, Some(9)));
    assert_eq!(slave(&pic).irr, 1 << 1);
    linux_eoi(&mut pic, 9);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x39, Some(9)));
    pic.set_irq(9, false);
    assert_eq!(slave(&pic).irr, 0);
    linux_eoi(&mut pic, 9);
    assert!(!pic.output());
    // IRQ8 cannot be made level: a held line gives one interrupt.
    pic.set_irq(8, true);
    assert_eq!(pic.read_irq(), (0x38, Some(8)));
    linux_eoi(&mut pic, 8);
    assert!(!pic.output());
    // Edge IRQ3 back to edge after clearing ELCR: one interrupt per rise.
    pic.port_write(PIC_ELCR_MASTER, 0);
    pic.set_irq(3, true);
    assert_eq!(pic.read_irq().1, Some(3));
    linux_eoi(&mut pic, 3);
    assert!(!pic.output());
}

#[test]
fn ocw3_register_select() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pulse(&mut pic, 2);
    pulse(&mut pic, 6);
    assert_eq!(pic.port_read(M_CMD), 0x44);
    pic.read_irq();
    pic.port_write(M_CMD, 0x0b);
    assert_eq!(pic.port_read(M_CMD), 0x04);
    assert_eq!(pic.port_read(M_CMD), 0x04);
    pic.port_write(M_CMD, 0x0a);
    assert_eq!(pic.port_read(M_CMD), 0x40);
    // RR clear: RIS ignored, selection kept.
    pic.port_write(M_CMD, 0x09);
    assert_eq!(pic.port_read(M_CMD), 0x40);
    // Special mask mode is recorded (and, as upstream, not used).
    pic.port_write(M_CMD, 0x68);
    assert_eq!(master(&pic).special_mask, 1);
    pic.port_write(M_CMD, 0x48);
    assert_eq!(master(&pic).special_mask, 0);
    // The data port reads IMR whatever OCW3 says.
    pic.port_write(M_DATA, 0x5a);
    pic.port_write(M_CMD, 0x0b);
    assert_eq!(pic.port_read(M_DATA), 0x5a);
}

#[test]
fn poll_mode() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pic.port_write(M_CMD, 0x0c);
    assert_eq!(master(&pic).poll, 1);
    assert_eq!(pic.port_read(M_CMD), 0x07);
    assert_eq!(master(&pic).poll, 0);
    pulse(&mut pic, 5);
    pic.port_write(M_CMD, 0x0c);
    assert_eq!(pic.port_read(M_DATA), 0x85);
    assert_eq!(master(&pic).irr, 0);
    assert_eq!(master(&pic).isr, 0);
    assert!(!pic.output());
    assert_eq!(pic.take_acked_irqs(), 1 << 5);
    // Polling the slave also consumes the master's cascade request.
    pulse(&mut pic, 13);
    assert_eq!(master(&pic).irr, 1 << 2);
    pic.port_write(S_CMD, 0x0c);
    assert_eq!(pic.port_read(S_CMD), 0x85);
    assert_eq!(master(&pic).irr, 0);
    assert_eq!(slave(&pic).irr, 0);
    assert!(!pic.output());
    assert_eq!(pic.take_acked_irqs(), 1 << 13);
    // Back to normal reads.
    assert_eq!(pic.port_read(S_CMD), 0);
}

#[test]
fn auto_eoi() {
    let mut pic = Pic::new();
    linux_init(&mut pic, true, 0, 0);
    pulse(&mut pic, 3);
    assert_eq!(pic.read_irq(), (0x33, Some(3)));
    assert_eq!(master(&pic).isr, 0);
    assert_eq!(pic.take_acked_irqs(), 1 << 3);
    // Nothing in service, so a lower priority IRQ comes straight in.
    pulse(&mut pic, 6);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x36, Some(6)));
    assert_eq!(master(&pic).priority_add, 0);
    // Rotate in auto-EOI mode: the served IRQ becomes lowest.
    pic.port_write(M_CMD, 0x80);
    assert_eq!(master(&pic).rotate_on_auto_eoi, 1);
    pulse(&mut pic, 4);
    pic.read_irq();
    assert_eq!(master(&pic).priority_add, 5);
    pulse(&mut pic, 1);
    pulse(&mut pic, 6);
    // Order now 5, 6, 7, 0, 1, ...: IRQ6 first.
    assert_eq!(pic.read_irq().1, Some(6));
    assert_eq!(pic.read_irq().1, Some(1));
    pic.port_write(M_CMD, 0x00);
    assert_eq!(master(&pic).rotate_on_auto_eoi, 0);
}

#[test]
fn rotation_commands() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    // Set priority: IRQ4 lowest, so IRQ5 highest.
    pic.port_write(M_CMD, 0xc4);
    assert_eq!(master(&pic).priority_add, 5);
    pulse(&mut pic, 1);
    pulse(&mut pic, 6);
    assert_eq!(pic.read_irq().1, Some(6));
    // Rotate on non-specific EOI: IRQ6 becomes lowest.
    pic.port_write(M_CMD, 0xa0);
    assert_eq!(master(&pic).priority_add, 7);
    assert_eq!(master(&pic).isr, 0);
    assert_eq!(pic.read_irq().1, Some(1));
    // Rotate on specific EOI.
    pic.port_write(M_CMD, 0xe1);
    assert_eq!(master(&pic).priority_add, 2);
    assert_eq!(master(&pic).isr, 0);
    assert_eq!(pic.take_acked_irqs(), (1 << 6) | (1 << 1));
}

#[test]
fn icw1_reinitialises() {
    let mut pic = Pic::new();
    linux_init(&mut pic, true, 0x12, 0);
    pic.port_write(PIC_ELCR_MASTER, 1 << 4);
    pic.port_write(M_DATA, 0xff);
    pic.set_irq(4, true);
    pulse(&mut pic, 3);
    pic.port_write(M_CMD, 0xc2);
    pic.port_write(M_CMD, 0x0b);
    pic.take_acked_irqs();
    // ICW1 without IC4: auto-EOI and SFNM are cleared, the level request
    // survives, the edge one is dropped (and acked), IMR cleared.
    pic.port_write(M_CMD, 0x10);
    let m = master(&pic);
    assert_eq!(m.init_state, 1);
    assert_eq!(m.init4, 0);
    assert_eq!(m.auto_eoi, 0);
    assert_eq!(m.irr, 1 << 4);
    assert_eq!(m.imr, 0);
    assert_eq!(m.priority_add, 0);
    assert_eq!(m.read_reg_select, 0);
    assert_eq!(pic.take_acked_irqs(), 1 << 3);
    pic.port_write(M_DATA, 0x47);
    assert_eq!(master(&pic).irq_base, 0x40);
    pic.port_write(M_DATA, 0x04);
    // No ICW4: operational, the next data write is OCW1.
    assert_eq!(master(&pic).init_state, 0);
    pic.port_write(M_DATA, 0xaa);
    assert_eq!(master(&pic).imr, 0xaa);

    // Without a vCPU taking PIC interrupts, nothing is acked.
    let mut pic = Pic::new();
    pic.set_cpu_accepts_pic_intr(false);
    pulse(&mut pic, 3);
    pic.port_write(M_CMD, 0x11);
    assert_eq!(master(&pic).irr, 0);
    assert_eq!(pic.take_acked_irqs(), 0);
}

#[test]
fn wakeup_follows_output() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0, 0);
    pic.take_wakeup();
    pulse(&mut pic, 1);
    assert!(pic.take_wakeup());
    assert!(!pic.take_wakeup());
    // Already high: no new wakeup.
    pulse(&mut pic, 0);
    assert!(!pic.take_wakeup());
}

#[test]
fn state_round_trip() {
    let mut pic = Pic::new();
    linux_init(&mut pic, false, 0x10, 0x20);
    pic.port_write(PIC_ELCR_SLAVE, 0x0c);
    pulse(&mut pic, 3);
    pic.set_irq(11, true);
    pic.read_irq();
    pic.port_write(S_CMD, 0x0b);
    let m = master(&pic);
    let s = slave(&pic);

    let mut other = Pic::new();
    assert!(other.set_chip_state(0, &m));
    assert!(other.set_chip_state(1, &s));
    assert!(!other.set_chip_state(2, &m));
    assert!(!other.set_chip_state(usize::MAX, &m));
    assert_eq!(master(&other), m);
    assert_eq!(slave(&other), s);
    assert_eq!(other.output(), pic.output());
    // Both continue identically.
    for p in [&mut pic, &mut other] {
        linux_eoi(p, 3);
    }
    assert_eq!(pic.read_irq(), other.read_irq());
    assert_eq!(pic.port_read(S_CMD), other.port_read(S_CMD));
    assert_eq!(master(&pic), master(&other));
    assert_eq!(slave(&pic), slave(&other));
}

#[test]
fn set_state_recomputes_output() {
    let mut pic = Pic::new();
    assert!(!pic.output());
    let st = PicChipState { irr: 1 << 5, irq_base: 0x20, elcr_mask: 0xf8, ..Default::default() };
    assert!(pic.set_chip_state(0, &st));
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x25, Some(5)));
    // A pending slave request in a restored state reaches the master.
    let mut pic = Pic::new();
    let st = PicChipState { irr: 1, irq_base: 0x70, elcr_mask: 0xde, ..Default::default() };
    pic.set_chip_state(1, &st);
    assert!(pic.output());
    assert_eq!(pic.read_irq(), (0x70, Some(8)));
    // Out-of-range fields are tolerated.
    let wild = PicChipState {
        last_irr: 0xff,
        irr: 0xff,
        imr: 0,
        isr: 0,
        priority_add: 0xff,
        irq_base: 0xff,
        read_reg_select: 7,
        poll: 9,
        special_mask: 3,
        init_state: 200,
        auto_eoi: 5,
        rotate_on_auto_eoi: 6,
        special_fully_nested_mode: 2,
        init4: 4,
        elcr: 0xff,
        elcr_mask: 0xff,
    };
    pic.set_chip_state(0, &wild);
    pic.set_chip_state(1, &wild);
    let (vector, _) = pic.read_irq();
    assert_eq!(vector, 0xff_u8.wrapping_add(7));
    pic.port_write(M_DATA, 0x12);
    assert_eq!(master(&pic).imr, 0, "init_state 200 ignores data writes");
    pic.port_read(M_CMD);
    pic.port_write(PIC_ELCR_MASTER, 0xff);
    assert_eq!(pic.port_read(PIC_ELCR_MASTER), 0xff);
}

#[test]
fn reset_restores_power_on() {
    let mut pic = Pic::new();
    linux_init(&mut pic, true, 0x55, 0xaa);
    pulse(&mut pic, 0);
    pic.reset();
    assert_eq!(pic, Pic::new());
}

use crate::test_rng::XorShift;

#[test]
fn random_operations_never_panic() {
    let ports = [0x20u16, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, 0x22, 0x4d2, 0xffff];
    for seed in [0x9e37_79b9_7f4a_7c15u64, 1, 0xdead_beef] {
        let mut rng = XorShift(seed);
        let mut pic = Pic::new();
        for _ in 0..100_000 {
            let r = rng.next();
            let port = ports[(r >> 8) as usize % ports.len()];
            let val = (r >> 24) as u8;
            match r % 8 {
                0 | 1 => pic.port_write(port, val),
                2 => {
                    pic.port_read(port);
                }
                3 => {
                    pic.set_irq((r >> 32) as u32 % 20, r & (1 << 40) != 0);
                }
                4 => {
                    let (_, irq) = pic.read_irq();
                    assert!(!matches!(irq, Some(i) if i >= 16 || i == 2));
                }
                5 => {
                    // Mostly sane ICW/OCW traffic on the command ports.
                    let cmd = [0x11u8, 0x10, 0x20, 0x60, 0xa0, 0xe0, 0xc0, 0x0a, 0x0b, 0x0c, 0x80][val as usize % 11];
                    pic.port_write(if r & (1 << 45) != 0 { 0xa0 } else { 0x20 }, cmd | (val & 7));
                }
                6 if r % 64 == 6 => {
                    let b = r.to_le_bytes();
                    let st = PicChipState {
                        last_irr: b[0],
                        irr: b[1],
                        imr: b[2],
                        isr: b[3],
                        priority_add: b[4],
                        irq_base: b[5],
                        read_reg_select: b[6],
                        poll: b[7] & 1,
                        special_mask: b[0] >> 4,
                        init_state: b[1] >> 4,
                        auto_eoi: b[2] >> 6,
                        rotate_on_auto_eoi: b[3] >> 6,
                        special_fully_nested_mode: b[4] >> 6,
                        init4: b[5] >> 6,
                        elcr: b[6],
                        elcr_mask: b[7],
                    };
                    pic.set_chip_state((r >> 50) as usize % 3, &st);
                }
                _ => {
                    pic.take_acked_irqs();
                    pic.take_mask_changes();
                    pic.take_wakeup();
                    let _ = pic.output();
                }
            }
            // The ELCR never holds bits its mask forbids after a port write.
            if port == PIC_ELCR_MASTER && r % 8 < 2 {
                let m = pic.chip_state(0).unwrap();
                assert_eq!(m.elcr & !m.elcr_mask, 0);
            }
        }
    }
}
