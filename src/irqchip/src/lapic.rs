//! The local APIC: upstream KVM's register semantics (arch/x86/kvm/lapic.c,
//! Linux 6.12) as a pure state machine.
//!
//! The model owns the register page (the layout of `struct kvm_lapic_state`),
//! the IA32_APIC_BASE MSR and the timer's bookkeeping. It never sleeps, never
//! allocates and never panics: every guest- or userspace-controlled value is
//! masked or checked before it is used as an index, and all time arithmetic is
//! saturating (no 128-bit arithmetic: kvm.ko has no 128-bit division).
//!
//! Time enters as `now_ns` (host monotonic nanoseconds). As upstream with the
//! default `apic_bus_cycle_ns`, one APIC bus cycle is one nanosecond, so a
//! timer period is TMICT * divisor ns. The model does not run timers itself:
//! after any call whose `WriteEffects::timer_changed` is set (and after
//! `reset`), the caller re-arms its host timer at `timer_deadline_ns()` (or, in
//! TSC-deadline mode, at the guest TSC value `tsc_deadline()`) and calls
//! `timer_expired` when it fires.
//!
//! Deliberate differences from upstream are few and noted where they occur:
//! - hardware-disabling the APIC (IA32_APIC_BASE.EN cleared) masks the LVTs and
//!   cancels the timer (SDM 11.4.3 allows the APIC to return to its power-up
//!   state; upstream leaves the hrtimer running but can no longer deliver it);
//! - `accept_irq` reports a vector already pending in IRR as coalesced
//!   (6.12 returns 1 regardless; the RTC coalescing logic needs to know);
//! - changing TDCR after a one-shot timer already expired does not fire it
//!   again (upstream recomputes a zero remaining time and re-fires);
//! - an ESR write sets ESR to 0, the SDM's "latch the errors detected since
//!   the last write" with no errors ever detected; upstream ignores the write,
//!   which differs only after KVM_SET_LAPIC loaded a non-zero ESR.
//!
//! Points where upstream (and so the model) is narrower than the SDM: APR
//! reads 0; LVTT one-shot <-> periodic switches keep the running count (only
//! moving in or out of TSC-deadline mode stops the timer); EOI writes do not
//! check the value; KVM raises no APIC errors.

use super::types::{DeliveryMode, DestMode, IrqRequest, Shorthand, TriggerMode};

pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
pub const MSR_IA32_APICBASE_BSP: u64 = 1 << 8;
/// EXTD: x2APIC mode.
pub const MSR_IA32_APICBASE_X2APIC: u64 = 1 << 10;
pub const MSR_IA32_APICBASE_ENABLE: u64 = 1 << 11;
/// The base address field of IA32_APIC_BASE (bits 12 and up; the upper limit is
/// MAXPHYADDR, enforced through `set_base`'s `reserved_mask`).
pub const MSR_IA32_APICBASE_BASE: u64 = !0xfff;
/// x2APIC registers are MSRs 0x800..=0x8ff (MSR = 0x800 + offset / 16).
pub const X2APIC_MSR_BASE: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// IA32_TSC_DEADLINE.
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
pub const LAPIC_STATE_SIZE: usize = 1024;
/// Size of the xAPIC MMIO page.
pub const LAPIC_MMIO_LENGTH: u64 = 0x1000;

// Register offsets in the APIC page (SDM vol. 3, table 11-1).
pub const APIC_ID: u32 = 0x20;
pub const APIC_LVR: u32 = 0x30;
pub const APIC_TASKPRI: u32 = 0x80;
pub const APIC_ARBPRI: u32 = 0x90;
pub const APIC_PROCPRI: u32 = 0xa0;
pub const APIC_EOI: u32 = 0xb0;
pub const APIC_RRR: u32 = 0xc0;
pub const APIC_LDR: u32 = 0xd0;
pub const APIC_DFR: u32 = 0xe0;
pub const APIC_SPIV: u32 = 0xf0;
pub const APIC_ISR: u32 = 0x100;
pub const APIC_TMR: u32 = 0x180;
pub const APIC_IRR: u32 = 0x200;
pub const APIC_ESR: u32 = 0x280;
pub const APIC_LVTCMCI: u32 = 0x2f0;
pub const APIC_ICR: u32 = 0x300;
pub const APIC_ICR2: u32 = 0x310;
pub const APIC_LVTT: u32 = 0x320;
pub const APIC_LVTTHMR: u32 = 0x330;
pub const APIC_LVTPC: u32 = 0x340;
pub const APIC_LVT0: u32 = 0x350;
pub const APIC_LVT1: u32 = 0x360;
pub const APIC_LVTERR: u32 = 0x370;
pub const APIC_TMICT: u32 = 0x380;
pub const APIC_TMCCT: u32 = 0x390;
pub const APIC_TDCR: u32 = 0x3e0;
pub const APIC_SELF_IPI: u32 = 0x3f0;

/// Version 0x14 (an integrated xAPIC, "Xeon and Pentium 4") with max LVT entry
/// 5: six LVTs (timer, thermal, perfmon, LINT0, LINT1, error), no CMCI since
/// the model's guest has no MCG_CMCI_P. No directed-EOI bit: the in-kernel
/// IOAPIC has no EOI register, so upstream never advertises it with one.
pub const APIC_VERSION_VALUE: u32 = 0x14 | (5 << 16);

// LVT / ICR bits.
pub const APIC_VECTOR_MASK: u32 = 0xff;
pub const APIC_MODE_MASK: u32 = 0x700;
pub const APIC_DEST_LOGICAL: u32 = 1 << 11;
pub const APIC_ICR_BUSY: u32 = 1 << 12;
pub const APIC_SEND_PENDING: u32 = 1 << 12;
pub const APIC_INPUT_POLARITY: u32 = 1 << 13;
pub const APIC_INT_ASSERT: u32 = 1 << 14;
pub const APIC_LVT_REMOTE_IRR: u32 = 1 << 14;
pub const APIC_INT_LEVELTRIG: u32 = 1 << 15;
pub const APIC_LVT_LEVEL_TRIGGER: u32 = 1 << 15;
pub const APIC_LVT_MASKED: u32 = 1 << 16;
pub const APIC_LVT_TIMER_PERIODIC: u32 = 1 << 17;
pub const APIC_LVT_TIMER_TSCDEADLINE: u32 = 2 << 17;
pub const APIC_SPIV_APIC_ENABLED: u32 = 1 << 8;
pub const APIC_DFR_FLAT: u32 = 0xffff_ffff;
pub const APIC_DFR_CLUSTER: u32 = 0x0fff_ffff;
pub const APIC_BROADCAST: u32 = 0xff;
pub const X2APIC_BROADCAST: u32 = 0xffff_ffff;

/// Upstream's default min_timer_period_us (200 us) in ns: a periodic timer is
/// never faster than this (see `set_min_timer_period_ns`), because host
/// hrtimers are not throttled by the scheduler.
pub const MIN_TIMER_PERIOD_NS: u64 = 200_000;

/// x2APIC ICR bits that must be zero (31:20, 17:16 and 13); the high half is
/// the 32-bit destination.
const X2APIC_ICR_RESERVED_BITS: u64 = 0xfff0_0000 | (3 << 16) | (1 << 13);

/// Bits of IA32_APIC_BASE that are always reserved: 0-7 and 9.
const APIC_BASE_ALWAYS_RESERVED: u64 = 0x2ff;

/// What every LVT keeps: vector, delivery status, mask.
const LVT_MASK: u32 = APIC_LVT_MASKED | APIC_SEND_PENDING | APIC_VECTOR_MASK;
/// LINT0/LINT1 additionally keep delivery mode, polarity, remote IRR, trigger.
const LINT_MASK: u32 = LVT_MASK
    | APIC_MODE_MASK
    | APIC_INPUT_POLARITY
    | APIC_LVT_REMOTE_IRR
    | APIC_LVT_LEVEL_TRIGGER;

/// The six LVT registers the model implements, with the bits each keeps on a
/// write (the timer's mode bits are added at runtime according to
/// `timer_mode_mask`).
const LVTS: [(u32, u32); 6] = [
    (APIC_LVTT, LVT_MASK),
    (APIC_LVTTHMR, LVT_MASK | APIC_MODE_MASK),
    (APIC_LVTPC, LVT_MASK | APIC_MODE_MASK),
    (APIC_LVT0, LINT_MASK),
    (APIC_LVT1, LINT_MASK),
    (APIC_LVTERR, LVT_MASK),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    Invalid,
}

/// What a register write asks the caller to do besides the model's own state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteEffects {
    /// An interrupt to route: an xAPIC ICR low write (destination from ICR2),
    /// an x2APIC ICR write, or an x2APIC SELF_IPI (SelfOnly, Fixed, Edge).
    pub ipi: Option<IrqRequest>,
    /// EOI of this vector; the bool is the vector's TMR bit (level-triggered:
    /// the caller notifies the IOAPIC).
    pub eoi: Option<(u8, bool)>,
    /// Re-arm or cancel the host timer per `timer_deadline_ns()` /
    /// `tsc_deadline()`.
    pub timer_changed: bool,
    /// LVT0, SVR or the base MSR changed: whether the PIC's INTR is accepted
    /// (`accept_pic_intr`) or LVT0's NMI mode (`lvt0_nmi_mode`) may differ.
    pub lvt0_changed: bool,
}

/// The LVTT timer mode (bits 18:17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

pub struct Lapic {
    vcpu_id: u32,
    /// IA32_APIC_BASE.
    base: u64,
    /// The register page as 32-bit words (`regs[offset / 4]`), the layout of
    /// `struct kvm_lapic_state`. Only the first word of each 16-byte slot is a
    /// register; the others are kept only so that get/set_state round-trip.
    /// In x2APIC mode the 64-bit ICR is held split, low half at ICR and high
    /// half at ICR2, which is also what userspace sees.
    regs: [u32; LAPIC_STATE_SIZE / 4],
    /// LVTT bits that select the timer mode: bit 17 only, or 18:17 when the
    /// guest has TSC-deadline (upstream's timer_mode_mask).
    timer_mode_mask: u32,
    /// The current timer mode bits (LVTT & timer_mode_mask). 3 << 17 is
    /// reserved: as upstream, such a timer is never started.
    timer_mode: u32,
    /// Divide configuration as a divisor (1..=128).
    divide_count: u32,
    /// One-shot/periodic: TMICT * divisor ns, clamped for periodic; 0 when no
    /// count is programmed.
    period_ns: u64,
    /// One-shot/periodic: absolute host ns of the next expiry; None when not
    /// running (never started, expired one-shot, cancelled).
    target_ns: Option<u64>,
    /// TSC-deadline mode: the armed IA32_TSC_DEADLINE value (0 = disarmed).
    tsc_deadline: u64,
    /// The shortest periodic period (kvm's `min_timer_period_us` in ns).
    min_period_ns: u64,
}

/// The register offset, if any, that an x2APIC MSR maps to.
fn x2apic_msr_to_reg(msr: u32) -> Option<u32> {
    if (X2APIC_MSR_BASE..=X2APIC_MSR_LAST).contains(&msr) {
        Some((msr - X2APIC_MSR_BASE) << 4)
    } else {
        None
    }
}

/// LDR in x2APIC mode is derived from the x2APIC ID: cluster (id >> 4) in the
/// upper 16 bits, one bit for the position (id & 0xf) in the lower 16 bits.
pub fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1u32 << (id & 0xf))
}

/// Decode a 32-bit ICR low word (plus the already extracted destination) into
/// the common request form (upstream kvm_apic_send_ipi).
fn icr_to_irq(low: u32, dest_id: u32) -> IrqRequest {
    IrqRequest {
        vector: (low & APIC_VECTOR_MASK) as u8,
        delivery_mode: DeliveryMode::from_bits(low >> 8),
        dest_mode: if low & APIC_DEST_LOGICAL != 0 {
            DestMode::Logical
        } else {
            DestMode::Physical
        },
        shorthand: match (low >> 18) & 3 {
            0 => Shorthand::None,
            1 => Shorthand::SelfOnly,
            2 => Shorthand::AllIncludingSelf,
            _ => Shorthand::AllExcludingSelf,
        },
        dest_id,
        trigger: if low & APIC_INT_LEVELTRIG != 0 {
            TriggerMode::Level
        } else {
            TriggerMode::Edge
        },
        level: low & APIC_INT_ASSERT != 0,
        msi_redir_hint: false,
    }
}

/// Registers readable through MMIO / RDMSR, as a bit per 16-byte slot
/// (upstream kvm_lapic_readable_reg_mask). EOI, RRR, SELF_IPI and the unused
/// slots read as invalid; ARBPRI, DFR and ICR2 do not exist in x2APIC mode.
fn readable(offset: u32, x2apic: bool) -> bool {
    let slot = offset >> 4;
    if slot >= 64 {
        return false;
    }
    let bit = |reg: u32| 1u64 << (reg >> 4);
    let range = |reg: u32, n: u32| ((1u64 << n) - 1) << (reg >> 4);
    let mut mask = bit(APIC_ID)
        | bit(APIC_LVR)
        | bit(APIC_TASKPRI)
        | bit(APIC_PROCPRI)
        | bit(APIC_LDR)
        | bit(APIC_SPIV)
        | range(APIC_ISR, 8)
        | range(APIC_TMR, 8)
        | range(APIC_IRR, 8)
        | bit(APIC_ESR)
        | bit(APIC_ICR)
        | bit(APIC_LVTT)
        | bit(APIC_LVTTHMR)
        | bit(APIC_LVTPC)
        | bit(APIC_LVT0)
        | bit(APIC_LVT1)
        | bit(APIC_LVTERR)
        | bit(APIC_TMICT)
        | bit(APIC_TMCCT)
        | bit(APIC_TDCR);
    if !x2apic {
        mask |= bit(APIC_ARBPRI) | bit(APIC_DFR) | bit(APIC_ICR2);
    }
    mask & (1u64 << slot) != 0
}

impl Lapic {
    /// Power-on state (upstream kvm_create_lapic + kvm_lapic_reset(false)).
    /// `bsp` sets the BSP flag in the base MSR (and, as upstream's
    /// LINT0_REENABLED quirk, leaves LVT0 unmasked in ExtINT mode).
    pub fn new(vcpu_id: u32, bsp: bool) -> Self {
        let mut apic = Lapic {
            vcpu_id,
            // kvm_create_lapic stuffs ENABLE so that the reset's base write
            // does not count as an enable transition; SVR starts at 0
            // (software-disabled).
            base: MSR_IA32_APICBASE_ENABLE,
            regs: [0; LAPIC_STATE_SIZE / 4],
            // Before CPUID says otherwise, only one-shot/periodic.
            // Upstream's mask is 0 until the guest's CPUID is set (its lapic is
            // zero-allocated and only kvm_vcpu_after_set_cpuid fills it in):
            // before KVM_SET_CPUID2 LVTT stays one-shot.
            timer_mode_mask: 0,
            timer_mode: 0,
            divide_count: 2,
            period_ns: 0,
            target_ns: None,
            tsc_deadline: 0,
            min_period_ns: MIN_TIMER_PERIOD_NS,
        };
        apic.reset(false, bsp);
        apic
    }

    // ---- register page helpers -------------------------------------------

    fn reg(&self, offset: u32) -> u32 {
        // The mask keeps any offset inside the 256-word page.
        self.regs[((offset >> 2) & 0xff) as usize]
    }

    fn set_reg(&mut self, offset: u32, val: u32) {
        self.regs[((offset >> 2) & 0xff) as usize] = val;
    }

    fn test_vec(&self, base: u32, vec: u8) -> bool {
        let word = self.reg(base + u32::from(vec >> 5) * 0x10);
        word & (1u32 << (vec & 31)) != 0
    }

    fn set_vec(&mut self, base: u32, vec: u8, on: bool) {
        let off = base + u32::from(vec >> 5) * 0x10;
        let bit = 1u32 << (vec & 31);
        let word = self.reg(off);
        self.set_reg(off, if on { word | bit } else { word & !bit });
    }

    /// The highest vector set in the 256-bit bitmap at `base` (IRR/ISR/TMR).
    fn highest_vec(&self, base: u32) -> Option<u8> {
        (0..8u32).rev().find_map(|i| {
            let word = self.reg(base + i * 0x10);
            if word == 0 {
                None
            } else {
                Some((i * 32 + (31 - word.leading_zeros())) as u8)
            }
        })
    }

    /// Raw read of a register slot of the page (no side effects, TMCCT as
    /// stored, i.e. 0). For debugging and the glue's introspection.
    pub fn read_reg(&self, offset: u32) -> u32 {
        if offset >= LAPIC_STATE_SIZE as u32 {
            return 0;
        }
        self.reg(offset & !3)
    }

    // ---- reset and identity ----------------------------------------------

    /// INIT (`init_event`: the base MSR and the APIC ID are kept, as upstream)
    /// or full reset (base = default address, enabled, BSP per `bsp`; xAPIC ID
    /// = vcpu_id). The timer is cancelled: the caller re-queries the deadline.
    pub fn reset(&mut self, init_event: bool, bsp: bool) {
        if !init_event {
            let mut value = APIC_DEFAULT_BASE | MSR_IA32_APICBASE_ENABLE;
            if bsp {
                value |= MSR_IA32_APICBASE_BSP;
            }
            self.write_base(value);
        }

        // Stop the timer in case this resets a running APIC.
        self.target_ns = None;

        // The xAPIC ID is set at RESET even if the APIC was already enabled.
        if !init_event {
            self.set_xapic_id(self.vcpu_id);
        }
        self.set_reg(APIC_LVR, APIC_VERSION_VALUE);

        for (off, _) in LVTS {
            self.set_reg(off, APIC_LVT_MASKED);
        }
        self.update_lvtt();
        // Upstream's KVM_X86_QUIRK_LINT0_REENABLED (on by default): the BSP's
        // LINT0 comes out of reset as an unmasked ExtINT so that the PIC
        // works without the guest programming the APIC.
        if bsp {
            self.set_reg(APIC_LVT0, 7 << 8);
        }

        self.set_reg(APIC_DFR, APIC_DFR_FLAT);
        self.set_reg(APIC_SPIV, 0xff);
        self.set_reg(APIC_TASKPRI, 0);
        if !self.x2apic_mode() {
            self.set_reg(APIC_LDR, 0);
        }
        self.set_reg(APIC_ESR, 0);
        self.set_reg(APIC_ICR, 0);
        self.set_reg(APIC_ICR2, 0);
        self.set_reg(APIC_TDCR, 0);
        self.set_reg(APIC_TMICT, 0);
        for i in 0..8 {
            self.set_reg(APIC_IRR + 0x10 * i, 0);
            self.set_reg(APIC_ISR + 0x10 * i, 0);
            self.set_reg(APIC_TMR + 0x10 * i, 0);
        }
        self.update_divide_count();
        self.period_ns = 0;
        self.tsc_deadline = 0;
        self.update_ppr();
    }

    pub fn vcpu_id(&self) -> u32 {
        self.vcpu_id
    }

    /// IA32_APIC_BASE.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The MMIO page's guest-physical address (base & bits 12 and up).
    pub fn base_address(&self) -> u64 {
        self.base & MSR_IA32_APICBASE_BASE
    }

    pub fn hw_enabled(&self) -> bool {
        self.base & MSR_IA32_APICBASE_ENABLE != 0
    }

    pub fn sw_enabled(&self) -> bool {
        self.reg(APIC_SPIV) & APIC_SPIV_APIC_ENABLED != 0
    }

    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.sw_enabled()
    }

    pub fn x2apic_mode(&self) -> bool {
        self.base & MSR_IA32_APICBASE_X2APIC != 0
    }

    /// The APIC ID: xAPIC, the ID register's bits 31:24; x2APIC, the 32-bit
    /// x2APIC ID (always the vcpu_id, as upstream).
    pub fn id(&self) -> u32 {
        if self.x2apic_mode() {
            self.reg(APIC_ID)
        } else {
            self.reg(APIC_ID) >> 24
        }
    }

    /// The xAPIC ID is 8 bits: upstream truncates the vcpu_id.
    fn set_xapic_id(&mut self, id: u32) {
        self.set_reg(APIC_ID, (id & 0xff) << 24);
    }

    fn set_x2apic_id(&mut self, id: u32) {
        self.set_reg(APIC_ID, id);
        self.set_reg(APIC_LDR, x2apic_ldr(id));
    }

    // ---- IA32_APIC_BASE ---------------------------------------------------

    /// WRMSR IA32_APIC_BASE / KVM_SET_SREGS (upstream kvm_apic_set_base).
    /// `reserved_mask` holds the bits above MAXPHYADDR; bits 0-7 and 9 are
    /// always reserved, bit 10 unless `x2apic_allowed`. EXTD without EN is
    /// invalid even for the host. Guest writes may not go from x2APIC to
    /// xAPIC nor from disabled straight to x2APIC (SDM 11.12.5, figure 11-27).
    pub fn set_base(
        &mut self,
        value: u64,
        host_initiated: bool,
        x2apic_allowed: bool,
        reserved_mask: u64,
    ) -> Result<WriteEffects, ApicError> {
        let mut reserved = reserved_mask | APIC_BASE_ALWAYS_RESERVED;
        if !x2apic_allowed {
            reserved |= MSR_IA32_APICBASE_X2APIC;
        }
        if value & reserved != 0 {
            return Err(ApicError::Invalid);
        }
        let mode_bits = MSR_IA32_APICBASE_ENABLE | MSR_IA32_APICBASE_X2APIC;
        let new_mode = value & mode_bits;
        let old_mode = self.base & mode_bits;
        if new_mode == MSR_IA32_APICBASE_X2APIC {
            return Err(ApicError::Invalid);
        }
        if !host_initiated {
            if old_mode == mode_bits && new_mode == MSR_IA32_APICBASE_ENABLE {
                return Err(ApicError::Invalid);
            }
            if old_mode == 0 && new_mode == mode_bits {
                return Err(ApicError::Invalid);
            }
        }
        Ok(self.write_base(value))
    }

    /// The state changes of a (valid) base write (upstream __kvm_apic_set_base).
    fn write_base(&mut self, value: u64) -> WriteEffects {
        let old = self.base;
        self.base = value;
        let changed = old ^ value;
        let mut fx = WriteEffects::default();

        if changed & MSR_IA32_APICBASE_ENABLE != 0 {
            if value & MSR_IA32_APICBASE_ENABLE != 0 {
                self.set_xapic_id(self.vcpu_id);
            } else {
                // Hardware-disabled: nothing can be delivered any more, so
                // mask the LVTs and stop the timer (SDM 11.4.3: the APIC may
                // return to its power-up state).
                for (off, _) in LVTS {
                    let v = self.reg(off);
                    self.set_reg(off, v | APIC_LVT_MASKED);
                }
                self.target_ns = None;
                self.tsc_deadline = 0;
            }
            fx.timer_changed = true;
        }
        if changed & MSR_IA32_APICBASE_X2APIC != 0 {
            if value & MSR_IA32_APICBASE_X2APIC != 0 {
                self.set_x2apic_id(self.vcpu_id);
            } else if value & MSR_IA32_APICBASE_ENABLE != 0 {
                self.set_xapic_id(self.vcpu_id);
            }
        }
        if changed != 0 {
            fx.lvt0_changed = true;
        }
        fx
    }

    /// Whether the xAPIC MMIO page is active at guest-physical `gpa`.
    pub fn mmio_covers(&self, gpa: u64) -> bool {
        let start = self.base_address();
        self.hw_enabled()
            && !self.x2apic_mode()
            && gpa >= start
            && gpa - start < LAPIC_MMIO_LENGTH
    }

    // ---- register reads ---------------------------------------------------

    /// A 32-bit register read with its side-effect-free computations
    /// (upstream __apic_read): APR reads 0 (KVM does not model arbitration
    /// priority), TMCCT is computed, PPR is kept current by every change.
    fn read_register(&self, offset: u32, now_ns: u64) -> u32 {
        match offset {
            APIC_ARBPRI => 0,
            APIC_TMCCT => self.tmcct(now_ns),
            _ => self.reg(offset),
        }
    }

    /// Upstream kvm_lapic_reg_read: `None` for an access that crosses a
    /// 4-byte boundary or a register that is not readable.
    fn reg_read(&self, offset: u32, len: u8, now_ns: u64) -> Option<u32> {
        let align = offset & 0xf;
        if align + u32::from(len) > 4 {
            return None;
        }
        if offset > APIC_SELF_IPI || !readable(offset, self.x2apic_mode()) {
            return None;
        }
        let val = self.read_register(offset & !0xf, now_ns);
        // A zero-length access at byte 4 passes the check above.
        let shifted = val.checked_shr(align * 8).unwrap_or(0);
        Some(match len {
            1 => shifted & 0xff,
            2 => shifted & 0xffff,
            4 => shifted,
            // Upstream leaves the buffer untouched for other sizes.
            _ => 0,
        })
    }

    /// xAPIC MMIO read of `len` bytes at page offset `offset`. Unreadable
    /// registers, unaligned accesses crossing a register and offsets past the
    /// register area read 0. When the page is inactive (hardware-disabled or
    /// x2APIC mode) reads return all-ones, as upstream's MMIO-hole quirk.
    pub fn mmio_read(&self, offset: u32, len: u8, now_ns: u64) -> u64 {
        if !self.hw_enabled() || self.x2apic_mode() {
            return match len {
                1..=7 => (1u64 << (u32::from(len) * 8)) - 1,
                _ => u64::MAX,
            };
        }
        if u64::from(offset) >= LAPIC_MMIO_LENGTH {
            return 0;
        }
        self.reg_read(offset, len, now_ns).map_or(0, u64::from)
    }

    /// RDMSR 0x800..=0x8ff in x2APIC mode (upstream kvm_x2apic_msr_read).
    /// `None` means #GP.
    pub fn msr_read(&self, msr: u32, now_ns: u64) -> Option<u64> {
        if !self.x2apic_mode() {
            return None;
        }
        let reg = x2apic_msr_to_reg(msr)?;
        if reg == APIC_ICR {
            return Some(self.x2apic_icr());
        }
        self.reg_read(reg, 4, now_ns).map(u64::from)
    }

    fn x2apic_icr(&self) -> u64 {
        u64::from(self.reg(APIC_ICR)) | (u64::from(self.reg(APIC_ICR2)) << 32)
    }

    // ---- register writes --------------------------------------------------

    /// xAPIC MMIO write. As upstream (SDM 11.4.1), only aligned 32-bit
    /// accesses do anything; read-only and unknown registers ignore writes,
    /// and the page ignores everything when inactive.
    pub fn mmio_write(&mut self, offset: u32, len: u8, val: u64, now_ns: u64) -> WriteEffects {
        if !self.hw_enabled() || self.x2apic_mode() {
            return WriteEffects::default();
        }
        if len != 4 || offset & 0xf != 0 || u64::from(offset) >= LAPIC_MMIO_LENGTH {
            return WriteEffects::default();
        }
        self.reg_write(offset, val as u32, now_ns).unwrap_or_default()
    }

    /// WRMSR 0x800..=0x8ff in x2APIC mode (upstream kvm_x2apic_msr_write).
    /// `None` means #GP.
    pub fn msr_write(&mut self, msr: u32, val: u64, now_ns: u64) -> Option<WriteEffects> {
        if !self.x2apic_mode() {
            return None;
        }
        let reg = x2apic_msr_to_reg(msr)?;
        if reg == APIC_ICR {
            return self.x2apic_icr_write(val);
        }
        // Every other x2APIC register is 32 bits: 63:32 are reserved.
        if val >> 32 != 0 {
            return None;
        }
        self.reg_write(reg, val as u32, now_ns)
    }

    /// The 64-bit x2APIC ICR: reserved bits #GP; the busy bit is reserved
    /// too but, as upstream, only cleared (Intel ignores it).
    fn x2apic_icr_write(&mut self, val: u64) -> Option<WriteEffects> {
        if val & X2APIC_ICR_RESERVED_BITS != 0 {
            return None;
        }
        let val = val & !u64::from(APIC_ICR_BUSY);
        let low = val as u32;
        let high = (val >> 32) as u32;
        self.set_reg(APIC_ICR, low);
        self.set_reg(APIC_ICR2, high);
        Some(WriteEffects {
            ipi: Some(icr_to_irq(low, high)),
            ..WriteEffects::default()
        })
    }

    /// One 32-bit register write (upstream kvm_lapic_reg_write). `None` is
    /// upstream's "ret = 1": #GP for an x2APIC MSR, ignored for MMIO.
    fn reg_write(&mut self, reg: u32, val: u32, now_ns: u64) -> Option<WriteEffects> {
        let mut fx = WriteEffects::default();
        let x2apic = self.x2apic_mode();
        match reg {
            APIC_ID => {
                // Writable in xAPIC mode (SDM: model specific; KVM allows
                // it); the x2APIC ID is read-only.
                if x2apic {
                    return None;
                }
                self.set_xapic_id(val >> 24);
            }
            APIC_TASKPRI => self.set_tpr((val & 0xff) as u8),
            APIC_EOI => fx.eoi = self.eoi(),
            APIC_LDR => {
                if x2apic {
                    return None;
                }
                self.set_reg(APIC_LDR, val & 0xff00_0000);
            }
            APIC_DFR => {
                if x2apic {
                    return None;
                }
                // Only the model bits (31:28) are writable; 27:0 read as 1s.
                self.set_reg(APIC_DFR, val | APIC_DFR_CLUSTER);
            }
            APIC_SPIV => {
                // Vector, software enable, focus-check disable; no directed
                // EOI since LVR does not advertise it.
                self.set_reg(APIC_SPIV, val & 0x3ff);
                if val & APIC_SPIV_APIC_ENABLED == 0 {
                    // Software disable masks every LVT (SDM 11.4.7.2).
                    for (off, _) in LVTS {
                        let v = self.reg(off);
                        self.set_reg(off, v | APIC_LVT_MASKED);
                    }
                    self.update_lvtt();
                }
                fx.lvt0_changed = true;
            }
            APIC_ICR => {
                // xAPIC only (x2APIC's ICR is handled as 64 bits). KVM sends
                // at once, so the delivery status (busy) bit always reads 0.
                // Reserved bits are stored as written.
                let low = val & !APIC_ICR_BUSY;
                let dest = self.reg(APIC_ICR2) >> 24;
                self.set_reg(APIC_ICR, low);
                fx.ipi = Some(icr_to_irq(low, dest));
            }
            APIC_ICR2 => {
                if x2apic {
                    return None;
                }
                self.set_reg(APIC_ICR2, val & 0xff00_0000);
            }
            APIC_LVTTHMR | APIC_LVTPC | APIC_LVT0 | APIC_LVT1 | APIC_LVTERR => {
                let mask = LVTS.iter().find(|(o, _)| *o == reg).map_or(LVT_MASK, |l| l.1);
                let mut v = val;
                if !self.sw_enabled() {
                    v |= APIC_LVT_MASKED;
                }
                self.set_reg(reg, v & mask);
                if reg == APIC_LVT0 {
                    fx.lvt0_changed = true;
                }
            }
            APIC_LVTT => {
                let mut v = val;
                if !self.sw_enabled() {
                    v |= APIC_LVT_MASKED;
                }
                self.set_reg(APIC_LVTT, v & (LVT_MASK | self.timer_mode_mask));
                fx.timer_changed = self.update_lvtt();
            }
            APIC_TMICT => {
                // The count is meaningless (and ignored) in TSC-deadline mode.
                if self.timer_mode != APIC_LVT_TIMER_TSCDEADLINE {
                    self.set_reg(APIC_TMICT, val);
                    self.start_timer(now_ns, None);
                    fx.timer_changed = true;
                }
            }
            APIC_TDCR => {
                let old_div = self.divide_count;
                self.set_reg(APIC_TDCR, val & 0xb);
                self.update_divide_count();
                if self.divide_count != old_div && self.period_ns != 0 {
                    self.rescale_timer(old_div, now_ns);
                    fx.timer_changed = true;
                }
            }
            APIC_ESR => {
                // A write latches the errors detected since the previous
                // write into ESR (SDM 11.5.3); KVM detects none, so ESR reads
                // 0 afterwards whatever was written. x2APIC requires 0.
                if x2apic && val != 0 {
                    return None;
                }
                self.set_reg(APIC_ESR, 0);
            }
            APIC_SELF_IPI => {
                // x2APIC only; bits 31:8 reserved.
                if !x2apic || val & !APIC_VECTOR_MASK != 0 {
                    return None;
                }
                fx.ipi = Some(icr_to_irq((1 << 18) | val, 0));
            }
            // Read-only (LVR, APR, PPR, RRR, ISR/TMR/IRR, TMCCT), LVTCMCI
            // (not implemented: no CMCI) and the reserved slots.
            _ => return None,
        }
        Some(fx)
    }

    // ---- priorities -------------------------------------------------------

    pub fn tpr(&self) -> u8 {
        (self.reg(APIC_TASKPRI) & 0xff) as u8
    }

    /// Set the task priority (the caller converts CR8: tpr = cr8 << 4, and
    /// cr8 = tpr >> 4) and recompute PPR.
    pub fn set_tpr(&mut self, tpr: u8) {
        self.set_reg(APIC_TASKPRI, u32::from(tpr));
        self.update_ppr();
    }

    /// CR8 as the guest reads it.
    pub fn cr8(&self) -> u8 {
        self.tpr() >> 4
    }

    pub fn ppr(&self) -> u8 {
        (self.reg(APIC_PROCPRI) & 0xff) as u8
    }

    /// PPR (SDM 11.8.3.1): TPR if its class is at least the highest in-service
    /// class, else that class with a zero sub-class.
    fn update_ppr(&mut self) {
        let tpr = self.reg(APIC_TASKPRI) & 0xff;
        let isrv = self.highest_vec(APIC_ISR).map_or(0, u32::from);
        let ppr = if (tpr & 0xf0) >= (isrv & 0xf0) { tpr } else { isrv & 0xf0 };
        self.set_reg(APIC_PROCPRI, ppr);
    }

    /// Highest vector in service, if any.
    pub fn highest_isr(&self) -> Option<u8> {
        self.highest_vec(APIC_ISR)
    }

    /// Highest vector requested, if any.
    pub fn highest_irr(&self) -> Option<u8> {
        self.highest_vec(APIC_IRR)
    }

    pub fn irr_set(&self, vector: u8) -> bool {
        self.test_vec(APIC_IRR, vector)
    }

    pub fn isr_set(&self, vector: u8) -> bool {
        self.test_vec(APIC_ISR, vector)
    }

    pub fn tmr_set(&self, vector: u8) -> bool {
        self.test_vec(APIC_TMR, vector)
    }

    /// Upstream kvm_apic_pending_eoi: the vector is requested or in service
    /// (RTC interrupt coalescing tracking).
    pub fn pending_eoi(&self, vector: u8) -> bool {
        self.irr_set(vector) || self.isr_set(vector)
    }

    // ---- interrupt acceptance --------------------------------------------

    /// Fixed/lowest-priority delivery into this APIC (upstream
    /// __apic_accept_irq): dropped when the APIC is hardware- or
    /// software-disabled, and for a level-triggered de-assert; TMR follows
    /// the trigger mode; `false` if the vector was already pending in IRR
    /// (coalesced). Other delivery modes are the caller's.
    pub fn accept_irq(&mut self, req: &IrqRequest) -> bool {
        match req.delivery_mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {}
            _ => return false,
        }
        let level = req.trigger == TriggerMode::Level;
        if level && !req.level {
            return false;
        }
        if !self.enabled() {
            return false;
        }
        self.set_vec(APIC_TMR, req.vector, level);
        if self.irr_set(req.vector) {
            return false;
        }
        self.set_vec(APIC_IRR, req.vector, true);
        true
    }

    /// The vector to inject now (upstream kvm_apic_has_interrupt): the
    /// highest IRR vector whose priority class is above PPR's. As upstream,
    /// only hardware enable is required: IRR bits accepted before a software
    /// disable are still delivered (SDM 11.4.7.2: pending interrupts are
    /// held and require handling).
    pub fn pending_interrupt(&self) -> Option<u8> {
        if !self.hw_enabled() {
            return None;
        }
        let irr = self.highest_vec(APIC_IRR)?;
        if u32::from(irr & 0xf0) <= u32::from(self.ppr()) {
            return None;
        }
        Some(irr)
    }

    /// The CPU took `vector` (upstream kvm_apic_ack_interrupt): IRR -> ISR,
    /// PPR raised.
    pub fn ack_interrupt(&mut self, vector: u8) {
        self.set_vec(APIC_IRR, vector, false);
        self.set_vec(APIC_ISR, vector, true);
        self.update_ppr();
    }

    /// EOI (upstream apic_set_eoi): retire the highest in-service vector.
    /// Returns it with its TMR bit, or None when nothing was in service (an
    /// EOI without ISR is harmless).
    pub fn eoi(&mut self) -> Option<(u8, bool)> {
        let vector = self.highest_vec(APIC_ISR)?;
        self.set_vec(APIC_ISR, vector, false);
        self.update_ppr();
        Some((vector, self.tmr_set(vector)))
    }

    /// Whether this APIC is a destination (upstream kvm_apic_match_dest).
    /// `dest_id` is the message destination address as the caller computed
    /// it (upstream's x2APIC broadcast quirk, kvm_apic_mda, is the caller's).
    pub fn matches_dest(
        &self,
        source_is_self: bool,
        shorthand: Shorthand,
        dest_id: u32,
        dest_mode: DestMode,
    ) -> bool {
        match shorthand {
            Shorthand::None => match dest_mode {
                DestMode::Physical => self.match_physical(dest_id),
                DestMode::Logical => self.match_logical(dest_id),
            },
            Shorthand::SelfOnly => source_is_self,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => !source_is_self,
        }
    }

    fn is_broadcast(&self, mda: u32) -> bool {
        mda == if self.x2apic_mode() { X2APIC_BROADCAST } else { APIC_BROADCAST }
    }

    fn match_physical(&self, mda: u32) -> bool {
        if self.is_broadcast(mda) {
            return true;
        }
        // Upstream's hotplug hack: a destination that cannot be an xAPIC ID
        // matches the x2APIC ID (vcpu_id) even in xAPIC mode.
        if self.x2apic_mode() || mda > 0xff {
            return mda == self.vcpu_id;
        }
        mda == self.reg(APIC_ID) >> 24
    }

    fn match_logical(&self, mda: u32) -> bool {
        if self.is_broadcast(mda) {
            return true;
        }
        let ldr = self.reg(APIC_LDR);
        if self.x2apic_mode() {
            // Cluster in 31:16, a bit per member in 15:0.
            return ldr >> 16 == mda >> 16 && ldr & mda & 0xffff != 0;
        }
        let logical_id = ldr >> 24;
        match self.reg(APIC_DFR) {
            APIC_DFR_FLAT => logical_id & mda != 0,
            APIC_DFR_CLUSTER => logical_id >> 4 == mda >> 4 && logical_id & mda & 0xf != 0,
            _ => false,
        }
    }

    /// Upstream kvm_apic_accept_pic_intr: the PIC's INTR reaches the CPU when
    /// the APIC is hardware-disabled or LVT0 is an unmasked ExtINT.
    pub fn accept_pic_intr(&self) -> bool {
        if !self.hw_enabled() {
            return true;
        }
        let lvt0 = self.reg(APIC_LVT0);
        lvt0 & APIC_LVT_MASKED == 0 && (lvt0 >> 8) & 7 == 7
    }

    /// LVT0 is an unmasked NMI (upstream apic_lvt_nmi_mode: the PIT's NMI
    /// watchdog routes through such APICs).
    pub fn lvt0_nmi_mode(&self) -> bool {
        self.reg(APIC_LVT0) & (APIC_MODE_MASK | APIC_LVT_MASKED) == 4 << 8
    }

    /// LINT0 (`lint` 0) or LINT1 (`lint` 1) as a request to this APIC (upstream
    /// kvm_apic_local_deliver): None if masked, hardware-disabled or `lint`
    /// is neither. The request carries the LVT's delivery mode, vector and
    /// trigger; the caller delivers it (Fixed through `accept_irq`, NMI as an
    /// NMI, ExtINT via the PIC).
    pub fn local_lvt(&self, lint: u8) -> Option<IrqRequest> {
        let off = match lint {
            0 => APIC_LVT0,
            1 => APIC_LVT1,
            _ => return None,
        };
        self.local_request(off)
    }

    fn local_request(&self, off: u32) -> Option<IrqRequest> {
        let lvt = self.reg(off);
        if !self.hw_enabled() || lvt & APIC_LVT_MASKED != 0 {
            return None;
        }
        Some(IrqRequest {
            vector: (lvt & APIC_VECTOR_MASK) as u8,
            delivery_mode: DeliveryMode::from_bits(lvt >> 8),
            dest_mode: DestMode::Physical,
            shorthand: Shorthand::SelfOnly,
            dest_id: self.id(),
            trigger: if lvt & APIC_LVT_LEVEL_TRIGGER != 0 {
                TriggerMode::Level
            } else {
                TriggerMode::Edge
            },
            level: true,
            msi_redir_hint: false,
        })
    }

    // ---- timer ------------------------------------------------------------

    /// The timer mode. LVTT's reserved mode 11b (possible only with
    /// TSC-deadline allowed) reports OneShot; as upstream such a timer is
    /// never started by TMICT.
    pub fn timer_mode(&self) -> TimerMode {
        match self.timer_mode {
            APIC_LVT_TIMER_PERIODIC => TimerMode::Periodic,
            APIC_LVT_TIMER_TSCDEADLINE => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    /// The guest's CPUID was set: LVTT may select periodic mode, and
    /// TSC-deadline mode if `allowed` (the CPUID has it). Like upstream's
    /// CPUID update, only later LVTT writes are affected.
    pub fn set_tsc_deadline_allowed(&mut self, allowed: bool) {
        self.timer_mode_mask = if allowed {
            APIC_LVT_TIMER_PERIODIC | APIC_LVT_TIMER_TSCDEADLINE
        } else {
            APIC_LVT_TIMER_PERIODIC
        };
    }

    /// TDCR bits 0, 1 and 3 select divide by 2, 4, ..., 128, or 1 (1011b).
    fn update_divide_count(&mut self) {
        let tdcr = self.reg(APIC_TDCR) & 0xf;
        let shift = ((tdcr & 3) | ((tdcr & 8) >> 1)) + 1;
        self.divide_count = 1 << (shift & 7);
    }

    /// The current divisor (1..=128).
    pub fn divide_count(&self) -> u32 {
        self.divide_count
    }

    /// The programmed period in ns (0 if none), after periodic clamping.
    pub fn timer_period_ns(&self) -> u64 {
        self.period_ns
    }

    fn count_to_ns(&self, count: u32) -> u64 {
        // At most 0xffff_ffff * 128, well inside u64.
        u64::from(count) * u64::from(self.divide_count)
    }

    /// Upstream's `min_timer_period_us` module parameter, in ns; applies when
    /// the timer is next programmed.
    pub fn set_min_timer_period_ns(&mut self, ns: u64) {
        self.min_period_ns = ns;
    }

    /// Upstream limit_periodic_timer_frequency.
    fn limit_period(&mut self) {
        if self.timer_mode == APIC_LVT_TIMER_PERIODIC
            && self.period_ns != 0
            && self.period_ns < self.min_period_ns
        {
            self.period_ns = self.min_period_ns;
        }
    }

    fn timer_counting_mode(&self) -> bool {
        self.timer_mode == 0 || self.timer_mode == APIC_LVT_TIMER_PERIODIC
    }

    /// Re-derive the mode from LVTT (upstream apic_update_lvtt). Switching
    /// into or out of TSC-deadline mode stops the timer and clears TMICT and
    /// the deadline; one-shot <-> periodic keeps the running count (the next
    /// expiry simply follows the new mode). Returns whether anything changed.
    fn update_lvtt(&mut self) -> bool {
        let mode = self.reg(APIC_LVTT) & self.timer_mode_mask;
        if mode == self.timer_mode {
            return false;
        }
        let was_tsc = self.timer_mode == APIC_LVT_TIMER_TSCDEADLINE;
        let is_tsc = mode == APIC_LVT_TIMER_TSCDEADLINE;
        if was_tsc != is_tsc {
            self.target_ns = None;
            self.set_reg(APIC_TMICT, 0);
            self.period_ns = 0;
            self.tsc_deadline = 0;
        }
        self.timer_mode = mode;
        self.limit_period();
        true
    }

    /// (Re)start a one-shot/periodic count from TMICT at `now_ns` (upstream
    /// __start_apic_timer / set_target_expiration). `restore_count` is the
    /// TMCCT of a restored state: the first expiry follows it rather than a
    /// full period.
    fn start_timer(&mut self, now_ns: u64, restore_count: Option<u32>) {
        self.target_ns = None;
        if !self.timer_counting_mode() {
            // TSC-deadline mode arms through IA32_TSC_DEADLINE; the reserved
            // mode never starts.
            return;
        }
        self.period_ns = self.count_to_ns(self.reg(APIC_TMICT));
        if self.period_ns == 0 {
            return;
        }
        self.limit_period();
        let mut first = self.period_ns;
        if let Some(count) = restore_count {
            let ns = self.count_to_ns(count);
            if ns == 0 {
                // An expired one-shot expires (again) at once; a periodic
                // timer starts a new period.
                first = if self.timer_mode == APIC_LVT_TIMER_PERIODIC { self.period_ns } else { 0 };
            } else if ns <= self.period_ns {
                first = ns;
            }
        }
        self.target_ns = Some(now_ns.saturating_add(first));
    }

    /// TDCR changed while counting (upstream update_target_expiration): the
    /// remaining time scales with the divisor.
    fn rescale_timer(&mut self, old_div: u32, now_ns: u64) {
        self.period_ns = self.count_to_ns(self.reg(APIC_TMICT));
        self.limit_period();
        if let Some(target) = self.target_ns {
            // No u128 here: kvm.ko has no 128-bit division (__udivti3).
            let remaining = target.saturating_sub(now_ns);
            let (new_div, old_div) = (u64::from(self.divide_count), u64::from(old_div.max(1)));
            let scaled = match remaining.checked_mul(new_div) {
                Some(p) => p / old_div,
                None => (remaining / old_div).saturating_mul(new_div),
            };
            self.target_ns = Some(now_ns.saturating_add(scaled));
        }
    }

    /// TMCCT at `now_ns` (upstream apic_get_tmcct): 0 in TSC-deadline mode,
    /// with no count, or once a one-shot expired; otherwise the remaining
    /// time, modulo the period (so a late periodic timer reads as wrapped),
    /// in bus cycles / divisor. A periodic timer is never stuck at 0 while its
    /// vCPU is out of KVM_RUN.
    fn tmcct(&self, now_ns: u64) -> u32 {
        if self.timer_mode == APIC_LVT_TIMER_TSCDEADLINE {
            return 0;
        }
        if self.reg(APIC_TMICT) == 0 || self.period_ns == 0 {
            return 0;
        }
        let remaining = match self.target_ns {
            // A periodic timer past its expiry that the vCPU has not re-armed
            // yet (it re-arms when it runs; upstream's hrtimer re-arms in its
            // callback at once) counts in the next period already.
            Some(t) if now_ns > t && self.timer_mode == APIC_LVT_TIMER_PERIODIC => {
                self.period_ns - (now_ns - t) % self.period_ns
            }
            Some(t) => t.saturating_sub(now_ns),
            None => 0,
        };
        let ns = remaining % self.period_ns;
        u32::try_from(ns / u64::from(self.divide_count.max(1))).unwrap_or(u32::MAX)
    }

    /// One-shot/periodic: absolute host ns of the next expiry; None if not
    /// running (TMICT 0, expired one-shot, APIC hardware-disabled,
    /// TSC-deadline mode). A count running when LVTT switched to the reserved
    /// mode 11b still expires once, as upstream's hrtimer would.
    pub fn timer_deadline_ns(&self) -> Option<u64> {
        if !self.hw_enabled() || self.timer_mode == APIC_LVT_TIMER_TSCDEADLINE {
            return None;
        }
        self.target_ns
    }

    /// TSC-deadline mode: the armed guest TSC deadline; None if disarmed,
    /// not in that mode or hardware-disabled.
    pub fn tsc_deadline(&self) -> Option<u64> {
        if !self.hw_enabled() || self.timer_mode != APIC_LVT_TIMER_TSCDEADLINE {
            return None;
        }
        if self.tsc_deadline == 0 {
            None
        } else {
            Some(self.tsc_deadline)
        }
    }

    /// RDMSR IA32_TSC_DEADLINE: 0 unless hardware-enabled in TSC-deadline
    /// mode.
    pub fn read_tsc_deadline(&self) -> u64 {
        if !self.hw_enabled() || self.timer_mode != APIC_LVT_TIMER_TSCDEADLINE {
            return 0;
        }
        self.tsc_deadline
    }

    /// WRMSR IA32_TSC_DEADLINE: ignored unless hardware-enabled in
    /// TSC-deadline mode; 0 disarms.
    pub fn write_tsc_deadline(&mut self, val: u64) -> WriteEffects {
        if !self.hw_enabled() || self.timer_mode != APIC_LVT_TIMER_TSCDEADLINE {
            return WriteEffects::default();
        }
        self.tsc_deadline = val;
        WriteEffects { timer_changed: true, ..WriteEffects::default() }
    }

    /// LVTT into IRR (upstream kvm_apic_local_deliver(APIC_LVTT)); the timer
    /// LVT keeps no delivery-mode or trigger bits, so it is a fixed edge
    /// interrupt.
    fn deliver_timer(&mut self) -> bool {
        let lvtt = self.reg(APIC_LVTT);
        if !self.hw_enabled() || lvtt & APIC_LVT_MASKED != 0 {
            return false;
        }
        let req = IrqRequest {
            vector: (lvtt & APIC_VECTOR_MASK) as u8,
            delivery_mode: DeliveryMode::Fixed,
            dest_mode: DestMode::Physical,
            shorthand: Shorthand::SelfOnly,
            dest_id: self.id(),
            trigger: TriggerMode::Edge,
            level: true,
            msi_redir_hint: false,
        };
        self.accept_irq(&req)
    }

    /// The host timer fired at `now_ns`. One-shot/periodic: ignored unless the
    /// timer runs and its deadline has passed (a stale callback); delivers
    /// LVTT (unless masked); periodic re-arms at the previous deadline plus a
    /// period, or at `now_ns` if that is already past (no catch-up: upstream
    /// delivers one interrupt however many periods were missed), one-shot
    /// stops. TSC-deadline: the caller fires it when the guest TSC reached the
    /// deadline; delivers and disarms. Returns whether a vector entered IRR.
    pub fn timer_expired(&mut self, now_ns: u64) -> bool {
        if self.timer_mode == APIC_LVT_TIMER_TSCDEADLINE {
            if self.tsc_deadline == 0 {
                return false;
            }
            self.tsc_deadline = 0;
            return self.deliver_timer();
        }
        let target = match self.target_ns {
            Some(t) if t <= now_ns => t,
            _ => return false,
        };
        let delivered = self.deliver_timer();
        if self.timer_mode == APIC_LVT_TIMER_PERIODIC && self.period_ns != 0 {
            let next = target.saturating_add(self.period_ns);
            self.target_ns = Some(if next < now_ns { now_ns } else { next });
        } else {
            self.target_ns = None;
        }
        delivered
    }

    // ---- KVM_GET_LAPIC / KVM_SET_LAPIC ------------------------------------

    /// The register page (struct kvm_lapic_state) with TMCCT computed at
    /// `now_ns`. In x2APIC mode without KVM_X2APIC_API_USE_32BIT_IDS the ID
    /// register reads id << 24 (upstream kvm_apic_state_fixup); the 64-bit
    /// ICR is returned split into ICR and ICR2.
    pub fn get_state(&self, x2apic_api_32bit_ids: bool, now_ns: u64) -> [u8; LAPIC_STATE_SIZE] {
        let mut words = self.regs;
        words[(APIC_TMCCT >> 2) as usize] = self.read_register(APIC_TMCCT, now_ns);
        if self.x2apic_mode() && !x2apic_api_32bit_ids {
            words[(APIC_ID >> 2) as usize] = self.vcpu_id << 24;
        }
        // Byte by byte: no slice copy whose length check could panic.
        let mut out = [0u8; LAPIC_STATE_SIZE];
        for (i, b) in out.iter_mut().enumerate() {
            let w = words.get(i / 4).copied().unwrap_or(0);
            *b = w.to_le_bytes()[i % 4];
        }
        out
    }

    /// Load a register page (upstream kvm_apic_set_state). In x2APIC mode the
    /// ID must equal vcpu_id with 32-bit IDs (else `Invalid`, nothing
    /// changed), and is otherwise ignored; LDR is re-derived. LVR is forced
    /// to the model's version, PPR recomputed, and the timer restarts at
    /// `now_ns` from the saved TMCCT (or TMICT if that is 0 or larger, as
    /// upstream). The base MSR is not part of the state; a TSC deadline
    /// survives unless the mode moves in or out of TSC-deadline.
    pub fn set_state(
        &mut self,
        regs: &[u8; LAPIC_STATE_SIZE],
        x2apic_api_32bit_ids: bool,
        now_ns: u64,
    ) -> Result<WriteEffects, ApicError> {
        let mut words = [0u32; LAPIC_STATE_SIZE / 4];
        for (i, w) in words.iter_mut().enumerate() {
            let b = |k: usize| regs.get(i * 4 + k).copied().unwrap_or(0);
            *w = u32::from_le_bytes([b(0), b(1), b(2), b(3)]);
        }
        if self.x2apic_mode() {
            let id_slot = (APIC_ID >> 2) as usize;
            if x2apic_api_32bit_ids {
                if words[id_slot] != self.vcpu_id {
                    return Err(ApicError::Invalid);
                }
            } else {
                words[id_slot] = self.vcpu_id;
            }
            words[(APIC_LDR >> 2) as usize] = x2apic_ldr(self.vcpu_id);
        }
        self.regs = words;
        self.set_reg(APIC_LVR, APIC_VERSION_VALUE);
        self.update_ppr();

        self.target_ns = None;
        self.update_lvtt();
        self.update_divide_count();
        let saved_count = self.reg(APIC_TMCCT);
        self.start_timer(now_ns, Some(saved_count));
        // TMCCT is always computed; the stored word stays 0.
        self.set_reg(APIC_TMCCT, 0);

        Ok(WriteEffects { timer_changed: true, lvt0_changed: true, ..WriteEffects::default() })
    }
}

#[cfg(test)]
#[path = "lapic_tests.rs"]
mod tests;
