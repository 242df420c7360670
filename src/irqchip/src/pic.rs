//! The PC/AT dual 8259A programmable interrupt controller, as upstream KVM
//! models it (arch/x86/kvm/i8259.c, itself QEMU's model).
//!
//! Two chips: the master at ports 0x20/0x21 and the slave at 0xa0/0xa1, the
//! slave's INT output wired to the master's IR2. The PIIX edge/level control
//! registers (ELCR) sit at 0x4d0 (master) and 0x4d1 (slave); IRQ0, 1, 2, 8
//! and 13 are hard-wired edge on the PIIX, hence the ELCR masks 0xf8 and 0xde.
//!
//! Deliberate upstream behaviours kept for migration compatibility:
//! - special mask mode (OCW3) is recorded but does not affect priority;
//! - single mode and ICW1's level-triggered mode are ignored (ELCR decides);
//! - ICW3 is accepted and ignored, the cascade is always on master IR2;
//! - a poll read clears the ISR bit of the polled IRQ (upstream's "poll is an
//!   INTA plus EOI").
//!
//! What upstream does outside its lock (ack notifiers when an ISR bit clears,
//! mask notifiers when an IMR bit flips, kicking a vCPU when the output rose)
//! is accumulated here and handed out by [`Pic::take_acked_irqs`],
//! [`Pic::take_mask_changes`] and [`Pic::take_wakeup`].

/// One chip's state, field for field as `struct kvm_pic_state` in linux/kvm.h
/// (KVM_GET/SET_IRQCHIP chip 0/1). The flag fields are 0/1 when the model
/// writes them; any non-zero value restored by userspace counts as set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicChipState {
    /// Line levels last seen, for edge detection.
    pub last_irr: u8,
    pub irr: u8,
    pub imr: u8,
    pub isr: u8,
    /// The IRQ with the highest priority (rotation); only its low 3 bits count.
    pub priority_add: u8,
    /// ICW2: the vector of IR0 (low three bits zero).
    pub irq_base: u8,
    /// OCW3 RR/RIS: reading the command port returns ISR (1) or IRR (0).
    pub read_reg_select: u8,
    /// OCW3 P: the next read of either port is a poll.
    pub poll: u8,
    pub special_mask: u8,
    /// 0: operational, 1: expecting ICW2, 2: ICW3, 3: ICW4.
    pub init_state: u8,
    pub auto_eoi: u8,
    pub rotate_on_auto_eoi: u8,
    pub special_fully_nested_mode: u8,
    /// ICW1 IC4: an ICW4 follows.
    pub init4: u8,
    pub elcr: u8,
    pub elcr_mask: u8,
}

pub const PIC_MASTER_CMD: u16 = 0x20;
pub const PIC_MASTER_DATA: u16 = 0x21;
pub const PIC_SLAVE_CMD: u16 = 0xa0;
pub const PIC_SLAVE_DATA: u16 = 0xa1;
pub const PIC_ELCR_MASTER: u16 = 0x4d0;
pub const PIC_ELCR_SLAVE: u16 = 0x4d1;
/// IRQ lines across both chips.
pub const PIC_NUM_PINS: u32 = 16;

/// The PIIX ELCR bits that can be set: IRQ0-2 and IRQ8/13 are always edge.
const ELCR_MASK_MASTER: u8 = 0xf8;
const ELCR_MASK_SLAVE: u8 = 0xde;

const MASTER: usize = 0;
const SLAVE: usize = 1;
/// The master input the slave's INT drives.
const CASCADE_IRQ: u8 = 2;
/// What get_priority answers for "nothing": lower than any real priority.
const NO_PRIORITY: u8 = 8;

/// Priority order is IR(priority_add), IR(priority_add + 1), ... modulo 8.
/// Returns the rank (0 highest) of the best request in `mask`, or
/// `NO_PRIORITY`.
fn get_priority(s: &PicChipState, mask: u8) -> u8 {
    (0u8..8)
        .find(|p| mask & (1 << (p.wrapping_add(s.priority_add) & 7)) != 0)
        .unwrap_or(NO_PRIORITY)
}

/// Drives line `irq` (0..8) of one chip to `level`. Returns upstream's
/// pic_set_irq1 status: -1 when the line is masked in IMR, 0 when an IRR bit
/// already set absorbed the request (coalesced), 1 otherwise.
fn set_irq1(s: &mut PicChipState, irq: u8, level: bool) -> i32 {
    let mask = 1u8 << (irq & 7);
    let mut ret = 1;
    if s.elcr & mask != 0 {
        // Level: IRR follows the line.
        if level {
            ret = i32::from(s.irr & mask == 0);
            s.irr |= mask;
            s.last_irr |= mask;
        } else {
            s.irr &= !mask;
            s.last_irr &= !mask;
        }
    } else if level {
        // Edge: only a low-to-high transition latches IRR; IRR stays set
        // after the line drops, until INTA.
        if s.last_irr & mask == 0 {
            ret = i32::from(s.irr & mask == 0);
            s.irr |= mask;
        }
        s.last_irr |= mask;
    } else {
        s.last_irr &= !mask;
    }
    if s.imr & mask != 0 {
        -1
    } else {
        ret
    }
}

/// The dual 8259A.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pic {
    chips: [PicChipState; 2],
    /// The master's INT pin.
    output: bool,
    /// IRQs (0..16) whose ISR bit cleared since the last take: upstream runs
    /// the ack notifiers (PIT reinjection, assigned devices) at that point.
    acked: u16,
    /// IRQs (0..16) whose IMR bit changed since the last take.
    mask_changed: u16,
    /// Upstream's wakeup_needed.
    wakeup: bool,
    /// Whether some vCPU accepts PIC interrupts (kvm_apic_accept_pic_intr);
    /// only ICW1 looks at it.
    cpu_accepts: bool,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// A PIC as upstream's kvm_pic_init leaves it: all state zero (so
    /// operational, nothing masked, vector base 0) except the ELCR masks.
    pub fn new() -> Self {
        let mut pic = Pic {
            chips: [PicChipState::default(); 2],
            output: false,
            acked: 0,
            mask_changed: 0,
            wakeup: false,
            cpu_accepts: true,
        };
        pic.reset();
        pic
    }

    /// Back to the power-on state of [`Pic::new`]. Pending notifications are
    /// dropped; the cpu-accepts setting is kept.
    pub fn reset(&mut self) {
        self.chips = [PicChipState::default(); 2];
        self.chips[MASTER].elcr_mask = ELCR_MASK_MASTER;
        self.chips[SLAVE].elcr_mask = ELCR_MASK_SLAVE;
        self.output = false;
        self.acked = 0;
        self.mask_changed = 0;
        self.wakeup = false;
    }

    /// Tells the model whether any vCPU currently accepts PIC interrupts
    /// (upstream kvm_apic_accept_pic_intr: LAPIC hardware-disabled or LVT0
    /// unmasked ExtINT). Defaults to true, as for the BSP after reset. Only
    /// ICW1 consults it: upstream acknowledges pending edge IRQs then.
    pub fn set_cpu_accepts_pic_intr(&mut self, accepts: bool) {
        self.cpu_accepts = accepts;
    }

    /// Whether `port` belongs to the PIC (command/data of both chips, ELCR).
    pub fn handles_port(port: u16) -> bool {
        matches!(
            port,
            PIC_MASTER_CMD
                | PIC_MASTER_DATA
                | PIC_SLAVE_CMD
                | PIC_SLAVE_DATA
                | PIC_ELCR_MASTER
                | PIC_ELCR_SLAVE
        )
    }

    /// Line `irq` (0..16) at `level`. Some(true) if the request newly set
    /// IRR, or lowered the line (upstream answers 1 for that too); Some(false)
    /// if it was coalesced or the line is masked; None for irq >= 16.
    pub fn set_irq(&mut self, irq: u32, level: bool) -> Option<bool> {
        self.set_irq_status(irq, level).map(|r| r > 0)
    }

    /// As [`Pic::set_irq`] with upstream's exact kvm_pic_set_irq value:
    /// -1 masked, 0 coalesced, 1 delivered (KVM_IRQ_LINE_STATUS sums these).
    pub fn set_irq_status(&mut self, irq: u32, level: bool) -> Option<i32> {
        if irq >= PIC_NUM_PINS {
            return None;
        }
        let chip = (irq >> 3) as usize & 1;
        let ret = set_irq1(&mut self.chips[chip], (irq & 7) as u8, level);
        self.update_irq();
        Some(ret)
    }

    /// The master's INT output (the line into the BSP's LINT0).
    pub fn output(&self) -> bool {
        self.output
    }

    /// INTA: the vector the CPU receives and the IRQ (0..16) moved into ISR,
    /// None for a spurious interrupt (IRQ7 of the master, or IRQ15 when the
    /// slave withdrew its request; those vectors are still returned).
    ///
    /// Ack notifiers are not due here but when ISR clears (EOI, or right away
    /// in auto-EOI mode): see [`Pic::take_acked_irqs`].
    pub fn read_irq(&mut self) -> (u8, Option<u8>) {
        // Upstream drops the output first, so the recomputation below counts
        // as a fresh rise (and wakes a vCPU) if an interrupt is still pending.
        self.output = false;
        let (vector, acked) = match self.get_irq(MASTER) {
            Some(CASCADE_IRQ) => {
                self.intack(MASTER, CASCADE_IRQ);
                match self.get_irq(SLAVE) {
                    Some(irq2) => {
                        self.intack(SLAVE, irq2);
                        (self.chips[SLAVE].irq_base.wrapping_add(irq2), Some(irq2 + 8))
                    }
                    // The slave's request went away between its INT and the
                    // INTA cycle: it answers with its IR7 vector.
                    None => (self.chips[SLAVE].irq_base.wrapping_add(7), None),
                }
            }
            Some(irq) => {
                self.intack(MASTER, irq);
                (self.chips[MASTER].irq_base.wrapping_add(irq), Some(irq))
            }
            // Nothing pending (or only lower priority than in service): the
            // master answers with its IR7 vector.
            None => (self.chips[MASTER].irq_base.wrapping_add(7), None),
        };
        self.update_irq();
        (vector, acked)
    }

    /// Port read; ports the PIC does not own read 0xff.
    pub fn port_read(&mut self, port: u16) -> u8 {
        match port {
            PIC_MASTER_CMD | PIC_MASTER_DATA => self.ioport_read(MASTER, port),
            PIC_SLAVE_CMD | PIC_SLAVE_DATA => self.ioport_read(SLAVE, port),
            PIC_ELCR_MASTER => self.chips[MASTER].elcr,
            PIC_ELCR_SLAVE => self.chips[SLAVE].elcr,
            _ => 0xff,
        }
    }

    /// Port write; ports the PIC does not own are ignored.
    pub fn port_write(&mut self, port: u16, val: u8) {
        match port {
            PIC_MASTER_CMD | PIC_MASTER_DATA => self.ioport_write(MASTER, port, val),
            PIC_SLAVE_CMD | PIC_SLAVE_DATA => self.ioport_write(SLAVE, port, val),
            PIC_ELCR_MASTER | PIC_ELCR_SLAVE => {
                let s = &mut self.chips[usize::from(port & 1)];
                s.elcr = val & s.elcr_mask;
            }
            _ => {}
        }
    }

    /// KVM_GET_IRQCHIP: chip 0 master, 1 slave.
    pub fn chip_state(&self, chip: usize) -> Option<PicChipState> {
        self.chips.get(chip).copied()
    }

    /// KVM_SET_IRQCHIP: the state is taken verbatim (elcr_mask included, as
    /// upstream's memcpy does), then the output is recomputed. False for a
    /// bad chip index, leaving everything untouched.
    pub fn set_chip_state(&mut self, chip: usize, s: &PicChipState) -> bool {
        match self.chips.get_mut(chip) {
            Some(c) => {
                *c = *s;
                self.update_irq();
                true
            }
            None => false,
        }
    }

    /// IRQs (bit n: IRQ n, 0..16) whose ISR bit was cleared since the last
    /// call: the glue runs the ack notifiers for them (upstream
    /// kvm_notify_acked_irq from pic_clear_isr).
    pub fn take_acked_irqs(&mut self) -> u16 {
        core::mem::take(&mut self.acked)
    }

    /// IRQs (bit n: IRQ n) whose IMR bit changed through a data-port write
    /// since the last call: the glue fires the mask notifiers with the current
    /// mask state (see [`Pic::chip_state`]).
    pub fn take_mask_changes(&mut self) -> u16 {
        core::mem::take(&mut self.mask_changed)
    }

    /// Whether the output was recomputed while low since the last call
    /// (upstream's wakeup_needed): the glue kicks a vCPU that accepts PIC
    /// interrupts.
    pub fn take_wakeup(&mut self) -> bool {
        core::mem::take(&mut self.wakeup)
    }

    /// The IRQ a chip asks for, if it outranks everything in service.
    fn get_irq(&self, chip: usize) -> Option<u8> {
        let s = &self.chips[chip];
        let priority = get_priority(s, s.irr & !s.imr);
        if priority == NO_PRIORITY {
            return None;
        }
        // In special fully nested mode the master lets a slave IRQ interrupt
        // another one from the same slave, so the in-service cascade input
        // does not block.
        let mut in_service = s.isr;
        if s.special_fully_nested_mode != 0 && chip == MASTER {
            in_service &= !(1 << CASCADE_IRQ);
        }
        if priority < get_priority(s, in_service) {
            Some(priority.wrapping_add(s.priority_add) & 7)
        } else {
            None
        }
    }

    /// Propagates the slave's INT to master IR2 and recomputes the master's
    /// INT. Must run whenever what either chip would answer may change.
    fn update_irq(&mut self) {
        if self.get_irq(SLAVE).is_some() {
            // IR2 is always edge (ELCR mask), so a pulse latches IRR2 and
            // leaves last_irr ready for the next one.
            set_irq1(&mut self.chips[MASTER], CASCADE_IRQ, true);
            set_irq1(&mut self.chips[MASTER], CASCADE_IRQ, false);
        }
        let level = self.get_irq(MASTER).is_some();
        if !self.output {
            self.wakeup = true;
        }
        self.output = level;
    }

    fn clear_isr(&mut self, chip: usize, irq: u8) {
        let irq = irq & 7;
        self.chips[chip].isr &= !(1 << irq);
        self.acked |= 1 << (u16::from(irq) + 8 * chip as u16);
    }

    /// The INTA cycle on one chip for `irq`.
    fn intack(&mut self, chip: usize, irq: u8) {
        let irq = irq & 7;
        let bit = 1u8 << irq;
        let s = &mut self.chips[chip];
        s.isr |= bit;
        // A level request stays in IRR as long as the line is high.
        if s.elcr & bit == 0 {
            s.irr &= !bit;
        }
        if s.auto_eoi != 0 {
            if s.rotate_on_auto_eoi != 0 {
                s.priority_add = (irq + 1) & 7;
            }
            self.clear_isr(chip, irq);
        }
    }

    /// ICW1: upstream's kvm_pic_reset of one chip.
    fn init_chip(&mut self, chip: usize) {
        let s = &mut self.chips[chip];
        let edge_irr = s.irr & !s.elcr;
        s.last_irr = 0;
        // Level requests survive; their lines are still high.
        s.irr &= s.elcr;
        s.imr = 0;
        s.priority_add = 0;
        s.special_mask = 0;
        s.read_reg_select = 0;
        if s.init4 == 0 {
            s.special_fully_nested_mode = 0;
            s.auto_eoi = 0;
        }
        s.init_state = 1;
        // Upstream acknowledges the edge requests it just dropped, so that
        // ack-driven sources (the PIT's reinjection) do not wait forever for
        // an EOI that cannot come; only when some vCPU takes PIC interrupts.
        if self.cpu_accepts {
            for irq in (0u8..8).filter(|i| edge_irr & (1 << i) != 0) {
                self.clear_isr(chip, irq);
            }
        }
    }

    fn ioport_write(&mut self, chip: usize, port: u16, val: u8) {
        if port & 1 == 0 {
            if val & 0x10 != 0 {
                // ICW1. SNGL (bit 1) and LTIM (bit 3) are not modelled.
                self.chips[chip].init4 = val & 1;
                self.init_chip(chip);
            } else if val & 0x08 != 0 {
                self.ocw3(chip, val);
            } else {
                self.ocw2(chip, val);
            }
        } else {
            self.data_write(chip, val);
        }
    }

    fn ocw3(&mut self, chip: usize, val: u8) {
        let s = &mut self.chips[chip];
        if val & 0x04 != 0 {
            s.poll = 1;
        }
        if val & 0x02 != 0 {
            s.read_reg_select = val & 1;
        }
        if val & 0x40 != 0 {
            s.special_mask = (val >> 5) & 1;
        }
    }

    /// OCW2: R (bit 7), SL (bit 6), EOI (bit 5), level L2-L0.
    fn ocw2(&mut self, chip: usize, val: u8) {
        let cmd = val >> 5;
        match cmd {
            // Clear / set rotate in automatic EOI mode.
            0 | 4 => self.chips[chip].rotate_on_auto_eoi = cmd >> 2,
            // Non-specific EOI (5: and rotate): the highest-priority IRQ in
            // service is the one being finished.
            1 | 5 => {
                let s = &mut self.chips[chip];
                let priority = get_priority(s, s.isr);
                if priority != NO_PRIORITY {
                    let irq = priority.wrapping_add(s.priority_add) & 7;
                    if cmd == 5 {
                        s.priority_add = (irq + 1) & 7;
                    }
                    self.clear_isr(chip, irq);
                    self.update_irq();
                }
            }
            // Specific EOI.
            3 => {
                self.clear_isr(chip, val & 7);
                self.update_irq();
            }
            // Set priority: IRQ L becomes the lowest.
            6 => {
                self.chips[chip].priority_add = (val + 1) & 7;
                self.update_irq();
            }
            // Rotate on specific EOI.
            7 => {
                let irq = val & 7;
                self.chips[chip].priority_add = (irq + 1) & 7;
                self.clear_isr(chip, irq);
                self.update_irq();
            }
            // 2: no operation.
            _ => {}
        }
    }

    fn data_write(&mut self, chip: usize, val: u8) {
        let s = &mut self.chips[chip];
        match s.init_state {
            0 => {
                // OCW1.
                let diff = s.imr ^ val;
                s.imr = val;
                self.mask_changed |= u16::from(diff) << (8 * chip);
                self.update_irq();
            }
            1 => {
                // ICW2: the low three bits of the vector come from the IRQ.
                s.irq_base = val & 0xf8;
                s.init_state = 2;
            }
            2 => {
                // ICW3 (cascade wiring) is fixed in this model.
                s.init_state = if s.init4 != 0 { 3 } else { 0 };
            }
            3 => {
                // ICW4: SFNM bit 4, AEOI bit 1 (8086 mode and buffering are
                // irrelevant here).
                s.special_fully_nested_mode = (val >> 4) & 1;
                s.auto_eoi = (val >> 1) & 1;
                s.init_state = 0;
            }
            // Only a restored state can hold anything else; upstream then
            // ignores data writes until the next ICW1.
            _ => {}
        }
    }

    /// Poll mode read: answers like an INTA but on the data bus, 0x80 | irq,
    /// or 0x07 when nothing is pending (upstream's value).
    fn poll_read(&mut self, chip: usize) -> u8 {
        match self.get_irq(chip) {
            Some(irq) => {
                if chip == SLAVE {
                    // The master's cascade input is consumed by this poll
                    // too.
                    let m = &mut self.chips[MASTER];
                    m.isr &= !(1 << CASCADE_IRQ);
                    m.irr &= !(1 << CASCADE_IRQ);
                }
                self.chips[chip].irr &= !(1 << irq);
                self.clear_isr(chip, irq);
                if chip == SLAVE || irq != CASCADE_IRQ {
                    self.update_irq();
                }
                0x80 | irq
            }
            None => {
                self.update_irq();
                0x07
            }
        }
    }

    fn ioport_read(&mut self, chip: usize, port: u16) -> u8 {
        if self.chips[chip].poll != 0 {
            let ret = self.poll_read(chip);
            self.chips[chip].poll = 0;
            return ret;
        }
        let s = &self.chips[chip];
        if port & 1 == 0 {
            if s.read_reg_select != 0 {
                s.isr
            } else {
                s.irr
            }
        } else {
            s.imr
        }
    }
}

#[cfg(test)]
#[path = "pic_tests.rs"]
mod tests;
