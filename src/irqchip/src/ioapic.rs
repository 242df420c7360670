//! The 82093AA I/O APIC with 24 pins, as upstream KVM models it
//! (arch/x86/kvm/ioapic.c).
//!
//! Two MMIO registers: IOREGSEL at base+0x00 selects an indirect register,
//! IOWIN at base+0x10 reads or writes it. Indirect registers: ID (0x00), VER
//! (0x01), ARB (0x02) and the redirection table, entry n at 0x10 + 2n (low
//! half) and 0x11 + 2n (high half).
//!
//! Upstream semantics kept:
//! - IRR latches an asserted line whatever the mask; an edge pin keeps its IRR
//!   bit until the line drops, so re-asserting a high line is coalesced, and
//!   unmasking an edge pin does not deliver what was latched while masked;
//! - a level pin's delivery sets remote IRR, blocking further deliveries until
//!   the EOI of its vector; at that EOI the pin is re-delivered if its line is
//!   still high (and unmasked); unmasking a level pin with IRR set and remote
//!   IRR clear delivers it (or lets an irqfd resampler decide);
//! - rewriting an entry as edge-triggered clears remote IRR (what Linux and
//!   Xen use as an EOI on I/O APICs without an EOI register);
//! - an EOI storm (10000 back-to-back re-deliveries of one pin) defers the
//!   next re-delivery, so a guest that never quiets its device still runs.
//!
//! Not modelled here (they need vCPU state; the glue can add them): the RTC
//! (GSI 8) EOI tracking for KVM_IRQ_LINE_STATUS, and the AVIC lazy EOI
//! update. Delivery counts come from the local APICs: a delivery here is
//! reported as status 1, and the glue substitutes the real count.

use super::types::{DeliveryMode, DestMode, IrqRequest, Shorthand, TriggerMode};

pub const IOAPIC_NUM_PINS: usize = 24;
pub const IOAPIC_DEFAULT_BASE: u64 = 0xfec0_0000;
pub const IOAPIC_MMIO_LEN: u64 = 0x100;

/// MMIO offsets.
pub const IOAPIC_REG_SELECT: u64 = 0x00;
pub const IOAPIC_REG_WINDOW: u64 = 0x10;

/// Indirect registers.
pub const IOAPIC_REG_ID: u32 = 0x00;
pub const IOAPIC_REG_VERSION: u32 = 0x01;
pub const IOAPIC_REG_ARB: u32 = 0x02;
pub const IOAPIC_REG_REDIR_BASE: u32 = 0x10;

/// The 82093AA's version.
pub const IOAPIC_VERSION_ID: u32 = 0x11;
/// VER register: maximum redirection entry in 23:16, version in 7:0.
pub const IOAPIC_VERSION_REG: u32 = ((IOAPIC_NUM_PINS as u32 - 1) << 16) | IOAPIC_VERSION_ID;

/// Redirection entry fields.
pub const REDIR_VECTOR_MASK: u64 = 0xff;
pub const REDIR_DEST_LOGICAL: u64 = 1 << 11;
pub const REDIR_DELIVERY_STATUS: u64 = 1 << 12;
pub const REDIR_POLARITY_LOW: u64 = 1 << 13;
pub const REDIR_REMOTE_IRR: u64 = 1 << 14;
pub const REDIR_LEVEL: u64 = 1 << 15;
pub const REDIR_MASKED: u64 = 1 << 16;
pub const REDIR_DEST_SHIFT: u32 = 56;

/// Re-deliveries of one pin at consecutive EOIs after which the next one is
/// deferred (upstream IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT).
pub const IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT: u32 = 10000;
/// How long upstream defers it: HZ / 100.
pub const IOAPIC_EOI_STORM_DELAY_NS: u64 = 10_000_000;

/// As struct kvm_ioapic_state (KVM_GET/SET_IRQCHIP chip 2), without its pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoapicState {
    pub base_address: u64,
    pub ioregsel: u32,
    pub id: u32,
    pub irr: u32,
    pub redirtbl: [u64; IOAPIC_NUM_PINS],
}

impl Default for IoapicState {
    fn default() -> Self {
        IoapicState {
            base_address: 0,
            ioregsel: 0,
            id: 0,
            irr: 0,
            redirtbl: [0; IOAPIC_NUM_PINS],
        }
    }
}

/// What a line change asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetIrq {
    /// The interrupt to deliver now, if any.
    pub delivered: Option<IrqRequest>,
    /// Upstream's ioapic_set_irq value: 1 delivered or line lowered, 0
    /// coalesced (edge pin whose IRR was already set), -1 not delivered
    /// (masked, remote IRR pending, bad pin). When `delivered` is Some the
    /// glue should replace the 1 by the local APICs' answer, as upstream
    /// returns kvm_irq_delivery_to_apic's.
    pub status: i32,
}

/// What an EOI broadcast did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EoiResult {
    /// Pins programmed with the EOIed vector: upstream runs the ack notifiers
    /// (irqfd resamplers, PIT reinjection) for each of them, level or edge.
    pub acked_pins: u32,
    /// Level pins whose remote IRR was cleared and whose line is still
    /// asserted and unmasked: after running the ack notifiers (which may
    /// lower the line), the glue calls [`Ioapic::service`] for each.
    pub redeliver_pins: u32,
    /// Pins caught in an EOI storm: the glue calls [`Ioapic::service`] for
    /// them after [`IOAPIC_EOI_STORM_DELAY_NS`] instead (upstream's
    /// eoi_inject work, see [`Ioapic::delayed_inject_pins`]).
    pub delayed_pins: u32,
}

/// Side effects of an MMIO write beyond the register itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioWriteEffects {
    /// Delivery the write triggered (a level pin unmasked with IRR set).
    pub delivered: Option<IrqRequest>,
    /// A redirection entry was written: its pin. Upstream then rescans the
    /// vectors the local APICs must report EOIs of (KVM_REQ_SCAN_IOAPIC).
    pub redir_pin: Option<u8>,
    /// The mask bit of `redir_pin` flipped: the new mask state, for the mask
    /// notifiers.
    pub mask_changed: Option<bool>,
    /// A level pin unmasked with a pending IRR was handed to its irqfd
    /// resampler instead of being delivered: the glue notifies it.
    pub resample_pin: Option<u8>,
}

/// The interrupt a redirection entry describes (upstream only uses the
/// 8-bit xAPIC destination field; bits 55:17 are ignored).
pub fn redirection_request(entry: u64) -> IrqRequest {
    IrqRequest {
        vector: (entry & REDIR_VECTOR_MASK) as u8,
        delivery_mode: DeliveryMode::from_bits(((entry >> 8) & 7) as u32),
        dest_mode: if entry & REDIR_DEST_LOGICAL != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        },
        shorthand: Shorthand::None,
        dest_id: (entry >> REDIR_DEST_SHIFT) as u32,
        trigger: if entry & REDIR_LEVEL != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        },
        level: true,
        msi_redir_hint: false,
    }
}

/// A pin number the model accepts, as an index.
fn pin_index(pin: u32) -> Option<usize> {
    let i = usize::try_from(pin).ok()?;
    (i < IOAPIC_NUM_PINS).then_some(i)
}

fn is_level(entry: u64) -> bool {
    entry & REDIR_LEVEL != 0
}

fn is_masked(entry: u64) -> bool {
    entry & REDIR_MASKED != 0
}

/// The I/O APIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ioapic {
    base_address: u64,
    ioregsel: u32,
    id: u32,
    /// Lines asserted (latched for edge pins until the line drops).
    irr: u32,
    redirtbl: [u64; IOAPIC_NUM_PINS],
    /// Edge pins delivered since their line last rose: hidden from the IRR
    /// userspace reads, so a restore does not deliver them a second time.
    irr_delivered: u32,
    /// Consecutive EOI re-deliveries per pin, for storm detection.
    irq_eoi: [u32; IOAPIC_NUM_PINS],
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// A reset I/O APIC: every entry masked, base 0xfec00000, ID 0.
    pub fn new() -> Self {
        let mut ioapic = Ioapic {
            base_address: IOAPIC_DEFAULT_BASE,
            ioregsel: 0,
            id: 0,
            irr: 0,
            redirtbl: [0; IOAPIC_NUM_PINS],
            irr_delivered: 0,
            irq_eoi: [0; IOAPIC_NUM_PINS],
        };
        ioapic.reset();
        ioapic
    }

    /// Upstream kvm_ioapic_reset: masks every entry (their other bits stay),
    /// forgets pending lines and storm counts, base and ID back to default.
    pub fn reset(&mut self) {
        for e in self.redirtbl.iter_mut() {
            *e |= REDIR_MASKED;
        }
        self.base_address = IOAPIC_DEFAULT_BASE;
        self.ioregsel = 0;
        self.irr = 0;
        self.irr_delivered = 0;
        self.id = 0;
        self.irq_eoi = [0; IOAPIC_NUM_PINS];
    }

    pub fn base_address(&self) -> u64 {
        self.base_address
    }

    /// The raw redirection entry of `pin`.
    pub fn entry(&self, pin: u32) -> Option<u64> {
        pin_index(pin).map(|i| self.redirtbl[i])
    }

    /// The lines currently latched (bit n: pin n).
    pub fn irr(&self) -> u32 {
        self.irr
    }

    /// Pin `pin` (0..24) at `level` (upstream ioapic_set_irq; the OR of the
    /// line's sources is the caller's).
    pub fn set_irq(&mut self, pin: u32, level: bool) -> SetIrq {
        let Some(i) = pin_index(pin) else {
            return SetIrq { delivered: None, status: -1 };
        };
        let mask = 1u32 << i;
        if !level {
            self.irr &= !mask;
            return SetIrq { delivered: None, status: 1 };
        }
        let old_irr = self.irr;
        self.irr |= mask;
        if !is_level(self.redirtbl[i]) {
            // A new edge: whatever was delivered before is history.
            self.irr_delivered &= !mask;
            if old_irr & mask != 0 {
                // The line was already high (e.g. latched while masked).
                return SetIrq { delivered: None, status: 0 };
            }
        }
        match self.service_pin(i) {
            Some(req) => SetIrq { delivered: Some(req), status: 1 },
            None => SetIrq { delivered: None, status: -1 },
        }
    }

    /// MMIO read at `offset` (gpa - base) of `len` bytes (1, 2, 4 or 8).
    /// IOREGSEL and IOWIN read 32 bits, zero-extended for 8-byte reads and
    /// truncated for 1- and 2-byte ones; other offsets and lengths read 0.
    pub fn mmio_read(&self, offset: u64, len: u8) -> u64 {
        let result = match offset {
            IOAPIC_REG_SELECT => self.ioregsel,
            IOAPIC_REG_WINDOW => self.read_indirect(),
            _ => 0,
        };
        match len {
            1 => u64::from(result & 0xff),
            2 => u64::from(result & 0xffff),
            4 | 8 => u64::from(result),
            _ => 0,
        }
    }

    /// MMIO write; returns the delivery a redirection-entry write may trigger
    /// (a level pin with IRR set and remote IRR clear once unmasked). Upstream
    /// would instead hand such a pin to its irqfd resampler if it has one: see
    /// [`Ioapic::mmio_write_ex`].
    pub fn mmio_write(&mut self, offset: u64, len: u8, val: u64) -> Option<IrqRequest> {
        self.mmio_write_ex(offset, len, val, &|_| false).delivered
    }

    /// MMIO write with all of upstream's side effects. `has_resampler(pin)`
    /// tells whether an irqfd resampler is registered for the pin
    /// (kvm_notify_irqfd_resampler's answer).
    pub fn mmio_write_ex(
        &mut self,
        offset: u64,
        len: u8,
        val: u64,
        has_resampler: &dyn Fn(u32) -> bool,
    ) -> MmioWriteEffects {
        // 8-byte writes only write the low dword, as upstream.
        let data = match len {
            1 => (val & 0xff) as u32,
            2 => (val & 0xffff) as u32,
            4 | 8 => val as u32,
            _ => return MmioWriteEffects::default(),
        };
        match offset {
            // IOREGSEL is an 8-bit register.
            IOAPIC_REG_SELECT => {
                self.ioregsel = data & 0xff;
                MmioWriteEffects::default()
            }
            IOAPIC_REG_WINDOW => self.write_indirect(data, has_resampler),
            _ => MmioWriteEffects::default(),
        }
    }

    /// A local APIC EOIed `vector` that it had accepted level-triggered
    /// (without directed EOI). See [`Ioapic::update_eoi`].
    pub fn eoi(&mut self, vector: u8) -> EoiResult {
        self.update_eoi(vector, true, false)
    }

    /// Upstream kvm_ioapic_update_eoi: an EOI of `vector`, which the local
    /// APIC had as level-triggered (TMR) or not, with or without directed EOI
    /// (SPIV bit 12: the guest then clears remote IRR through the entries).
    /// Every pin with that vector gets its ack notifiers; remote IRR is only
    /// cleared for a non-directed level EOI.
    pub fn update_eoi(&mut self, vector: u8, level: bool, directed_eoi: bool) -> EoiResult {
        let mut res = EoiResult::default();
        for i in 0..IOAPIC_NUM_PINS {
            let e = self.redirtbl[i];
            if (e & REDIR_VECTOR_MASK) as u8 != vector {
                continue;
            }
            let bit = 1u32 << i;
            res.acked_pins |= bit;
            if !level || directed_eoi {
                continue;
            }
            self.redirtbl[i] = e & !REDIR_REMOTE_IRR;
            if !is_masked(e) && self.irr & bit != 0 {
                self.irq_eoi[i] = self.irq_eoi[i].saturating_add(1);
                if self.irq_eoi[i] >= IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT {
                    // Real hardware takes a while to re-deliver at EOI; a
                    // guest whose handler never quiets the device would
                    // otherwise do nothing but take this interrupt.
                    self.irq_eoi[i] = 0;
                    res.delayed_pins |= bit;
                } else {
                    res.redeliver_pins |= bit;
                }
            } else {
                self.irq_eoi[i] = 0;
            }
        }
        res
    }

    /// Builds the delivery for `pin` if it must be delivered now (IRR set,
    /// unmasked, and for level pins remote IRR clear), setting remote IRR for
    /// a level pin and marking an edge pin delivered, as ioapic_service does.
    pub fn service(&mut self, pin: u32) -> Option<IrqRequest> {
        let i = pin_index(pin)?;
        if self.irr & (1 << i) == 0 {
            return None;
        }
        self.service_pin(i)
    }

    /// Upstream only sets remote IRR when kvm_irq_delivery_to_apic returned
    /// non-zero: a glue whose delivery of a level pin was accepted by no local
    /// APIC although some matched (a 0 count) calls this to clear it again.
    pub fn delivery_unaccepted(&mut self, pin: u32) {
        if let Some(i) = pin_index(pin) {
            if is_level(self.redirtbl[i]) {
                self.redirtbl[i] &= !REDIR_REMOTE_IRR;
            }
        }
    }

    /// Level pins upstream's deferred EOI-storm work re-services: IRR set and
    /// remote IRR clear ([`Ioapic::service`] then checks the mask).
    pub fn delayed_inject_pins(&self) -> u32 {
        (0..IOAPIC_NUM_PINS)
            .filter(|&i| {
                let e = self.redirtbl[i];
                is_level(e) && e & REDIR_REMOTE_IRR == 0 && self.irr & (1 << i) != 0
            })
            .fold(0, |acc, i| acc | 1 << i)
    }

    /// KVM_GET_IRQCHIP. Delivered edge pins are left out of IRR so that a
    /// restore does not deliver them again.
    pub fn state(&self) -> IoapicState {
        IoapicState {
            base_address: self.base_address,
            ioregsel: self.ioregsel,
            id: self.id,
            irr: self.irr & !self.irr_delivered,
            redirtbl: self.redirtbl,
        }
    }

    /// KVM_SET_IRQCHIP (upstream kvm_set_ioapic): the registers are taken
    /// verbatim and each pin in `s.irr` is re-asserted. Upstream delivers
    /// those right away; here the glue does it, calling [`Ioapic::service`]
    /// for each pin of [`Ioapic::pending_pins`].
    pub fn set_state(&mut self, s: &IoapicState) {
        self.base_address = s.base_address;
        self.ioregsel = s.ioregsel;
        self.id = s.id;
        self.redirtbl = s.redirtbl;
        self.irr_delivered = 0;
        // IRR was empty before the re-assertion, so none of it coalesces.
        self.irr = s.irr & Self::all_pins();
    }

    /// Pins that are latched, unmasked and not yet delivered: edge pins not
    /// delivered since their line rose, level pins without remote IRR.
    pub fn pending_pins(&self) -> u32 {
        (0..IOAPIC_NUM_PINS)
            .filter(|&i| {
                let bit = 1u32 << i;
                let e = self.redirtbl[i];
                self.irr & bit != 0
                    && !is_masked(e)
                    && if is_level(e) {
                        e & REDIR_REMOTE_IRR == 0
                    } else {
                        self.irr_delivered & bit == 0
                    }
            })
            .fold(0, |acc, i| acc | 1 << i)
    }

    fn all_pins() -> u32 {
        (1u32 << IOAPIC_NUM_PINS) - 1
    }

    /// Upstream ioapic_service (its callers have checked IRR).
    fn service_pin(&mut self, i: usize) -> Option<IrqRequest> {
        let e = *self.redirtbl.get(i)?;
        if is_masked(e) || (is_level(e) && e & REDIR_REMOTE_IRR != 0) {
            return None;
        }
        if is_level(e) {
            // Until the EOI of this vector, the line may stay high without
            // another delivery.
            self.redirtbl[i] = e | REDIR_REMOTE_IRR;
        } else {
            self.irr_delivered |= 1 << i;
        }
        Some(redirection_request(e))
    }

    fn read_indirect(&self) -> u32 {
        match self.ioregsel {
            IOAPIC_REG_VERSION => IOAPIC_VERSION_REG,
            // Upstream answers the ID for ARB too: the arbitration ID is
            // loaded from the APIC ID.
            IOAPIC_REG_ID | IOAPIC_REG_ARB => (self.id & 0xf) << 24,
            sel => {
                // Registers 0x03..0x0f wrap to a huge index and read as the
                // nonexistent entries beyond 23 do: all ones.
                let index = sel.wrapping_sub(IOAPIC_REG_REDIR_BASE) >> 1;
                let entry = usize::try_from(index)
                    .ok()
                    .and_then(|i| self.redirtbl.get(i).copied())
                    .unwrap_or(!0);
                if sel & 1 != 0 {
                    (entry >> 32) as u32
                } else {
                    entry as u32
                }
            }
        }
    }

    fn write_indirect(&mut self, val: u32, has_resampler: &dyn Fn(u32) -> bool) -> MmioWriteEffects {
        let mut fx = MmioWriteEffects::default();
        match self.ioregsel {
            IOAPIC_REG_VERSION | IOAPIC_REG_ARB => {}
            IOAPIC_REG_ID => self.id = (val >> 24) & 0xf,
            sel => {
                let index = sel.wrapping_sub(IOAPIC_REG_REDIR_BASE) >> 1;
                let Some(i) = usize::try_from(index).ok().filter(|&i| i < IOAPIC_NUM_PINS) else {
                    return fx;
                };
                let old = self.redirtbl[i];
                let mut e = if sel & 1 != 0 {
                    (old & 0xffff_ffff) | (u64::from(val) << 32)
                } else {
                    (old & !0xffff_ffff) | u64::from(val)
                };
                // Remote IRR and delivery status belong to the I/O APIC.
                let ro = REDIR_REMOTE_IRR | REDIR_DELIVERY_STATUS;
                e = (e & !ro) | (old & ro);
                // Switching to edge clears remote IRR: the EOI of I/O APICs
                // without an EOI register, which Linux and Xen rely on.
                if !is_level(e) {
                    e &= !REDIR_REMOTE_IRR;
                }
                self.redirtbl[i] = e;
                fx.redir_pin = Some(i as u8);
                if is_masked(old) != is_masked(e) {
                    fx.mask_changed = Some(is_masked(e));
                }
                if is_level(e) && self.irr & (1 << i) != 0 && !is_masked(e) && e & REDIR_REMOTE_IRR == 0 {
                    // The IRR bit may be stale: the device may have dropped
                    // the line while the pin was masked (a oneshot handler
                    // acks the device after EOI, before unmasking). With a
                    // resampler, drop IRR and let the resampler re-assert
                    // the line if it is really still high; without one,
                    // deliver and risk one spurious interrupt rather than
                    // lose one.
                    if has_resampler(i as u32) {
                        self.irr &= !(1 << i);
                        fx.resample_pin = Some(i as u8);
                    } else {
                        fx.delivered = self.service_pin(i);
                    }
                }
            }
        }
        fx
    }
}

#[cfg(test)]
#[path = "ioapic_tests.rs"]
mod tests;
