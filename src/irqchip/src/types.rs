//! What travels between the interrupt controllers: an interrupt request as an
//! IOAPIC redirection entry, an MSI or an ICR write describes it (SDM vol. 3,
//! 11.6 and 11.11), the common form of upstream's `struct kvm_lapic_irq`.

/// The delivery mode field (ICR bits 10:8, redirection entry bits 10:8, MSI data
/// bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
    /// 011b: reserved (upstream ignores such an interrupt).
    Reserved,
}

impl DeliveryMode {
    /// From the 3-bit field.
    pub fn from_bits(v: u32) -> Self {
        match v & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            7 => Self::ExtInt,
            _ => Self::Reserved,
        }
    }

    /// The 3-bit field.
    pub fn bits(self) -> u32 {
        match self {
            Self::Fixed => 0,
            Self::LowestPriority => 1,
            Self::Smi => 2,
            Self::Reserved => 3,
            Self::Nmi => 4,
            Self::Init => 5,
            Self::StartUp => 6,
            Self::ExtInt => 7,
        }
    }
}

/// Physical (an APIC ID) or logical (matched against LDR/DFR) destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestMode {
    Physical,
    Logical,
}

/// ICR destination shorthand (bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    Edge,
    Level,
}

/// An interrupt on its way to one or more local APICs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqRequest {
    pub vector: u8,
    pub delivery_mode: DeliveryMode,
    pub dest_mode: DestMode,
    pub shorthand: Shorthand,
    /// Destination APIC ID or logical mask: 8 bits in xAPIC mode (0xff is
    /// broadcast), 32 bits in x2APIC mode (0xffff_ffff is broadcast).
    pub dest_id: u32,
    pub trigger: TriggerMode,
    /// Level: assert (true) or de-assert (only meaningful for level-triggered
    /// INIT de-assert, which upstream ignores).
    pub level: bool,
    /// MSI redirection hint (address bit 3): lowest-priority among the
    /// destinations.
    pub msi_redir_hint: bool,
}
