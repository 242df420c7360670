//! VMCS field encodings (Intel SDM vol. 3, appendix B) with their width and
//! read-only-ness in the type: a [`Field`] knows the Rust type of its value, and
//! only fields of access [`Rw`] can be written, so writing a VM-exit information
//! field (read-only) does not compile.
//!
//! An encoding is: bit 0 access (full/high), bits 9:1 index, bits 11:10 type
//! (0 control, 1 VM-exit information, 2 guest state, 3 host state), bits 14:13
//! width (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width).

use core::marker::PhantomData;

/// Writable field (control, guest-state and host-state fields).
#[derive(Clone, Copy, Debug)]
pub struct Rw;
/// Read-only field (VM-exit information).
#[derive(Clone, Copy, Debug)]
pub struct Ro;

/// A VMCS field whose value is a `T` (u16, u32 or u64).
#[derive(Clone, Copy, Debug)]
pub struct Field<T, A> {
    pub encoding: u32,
    _p: PhantomData<(T, A)>,
}

/// The width encoded in a field (bits 14:13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    W16,
    W64,
    W32,
    Natural,
}

/// The type encoded in a field (bits 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Control,
    ExitInfo,
    Guest,
    Host,
}

pub const fn width_of(encoding: u32) -> Width {
    match (encoding >> 13) & 3 {
        0 => Width::W16,
        1 => Width::W64,
        2 => Width::W32,
        _ => Width::Natural,
    }
}

pub const fn kind_of(encoding: u32) -> Kind {
    match (encoding >> 10) & 3 {
        0 => Kind::Control,
        1 => Kind::ExitInfo,
        2 => Kind::Guest,
        _ => Kind::Host,
    }
}

const fn check(encoding: u32, width: Width, writable: bool) -> u32 {
    // Evaluated at compile time for every constant below: a field declared with
    // the wrong width or access fails the build.
    let w = width_of(encoding);
    assert!(w as u8 == width as u8, "field width does not match its type");
    let ro = matches!(kind_of(encoding), Kind::ExitInfo);
    assert!(ro != writable, "field access does not match its type");
    encoding
}

macro_rules! fields {
    ($($name:ident: $t:ty, $a:ident, $w:ident = $enc:expr;)*) => {$(
        pub const $name: Field<$t, $a> = Field {
            encoding: check($enc, Width::$w, matches!(stringify!($a).as_bytes(), b"Rw")),
            _p: PhantomData,
        };
    )*};
}

fields! {
    VIRTUAL_PROCESSOR_ID: u16, Rw, W16 = 0x0000;
    GUEST_ES_SELECTOR: u16, Rw, W16 = 0x0800;
    GUEST_CS_SELECTOR: u16, Rw, W16 = 0x0802;
    GUEST_TR_SELECTOR: u16, Rw, W16 = 0x080e;
    HOST_CS_SELECTOR: u16, Rw, W16 = 0x0c02;
    HOST_TR_SELECTOR: u16, Rw, W16 = 0x0c0c;
    VMCS_LINK_POINTER: u64, Rw, W64 = 0x2800;
    EPT_POINTER: u64, Rw, W64 = 0x201a;
    TSC_OFFSET: u64, Rw, W64 = 0x2010;
    GUEST_PHYSICAL_ADDRESS: u64, Ro, W64 = 0x2400;
    GUEST_IA32_EFER: u64, Rw, W64 = 0x2806;
    HOST_IA32_EFER: u64, Rw, W64 = 0x2c02;
    PIN_BASED_VM_EXEC_CONTROL: u32, Rw, W32 = 0x4000;
    CPU_BASED_VM_EXEC_CONTROL: u32, Rw, W32 = 0x4002;
    EXCEPTION_BITMAP: u32, Rw, W32 = 0x4004;
    VM_EXIT_CONTROLS: u32, Rw, W32 = 0x400c;
    VM_ENTRY_CONTROLS: u32, Rw, W32 = 0x4012;
    VM_ENTRY_INTR_INFO_FIELD: u32, Rw, W32 = 0x4016;
    SECONDARY_VM_EXEC_CONTROL: u32, Rw, W32 = 0x401e;
    VM_INSTRUCTION_ERROR: u32, Ro, W32 = 0x4400;
    VM_EXIT_REASON: u32, Ro, W32 = 0x4402;
    VM_EXIT_INTR_INFO: u32, Ro, W32 = 0x4404;
    IDT_VECTORING_INFO_FIELD: u32, Ro, W32 = 0x4408;
    VM_EXIT_INSTRUCTION_LEN: u32, Ro, W32 = 0x440c;
    GUEST_ES_LIMIT: u32, Rw, W32 = 0x4800;
    GUEST_ES_AR_BYTES: u32, Rw, W32 = 0x4814;
    GUEST_INTERRUPTIBILITY_INFO: u32, Rw, W32 = 0x4824;
    GUEST_ACTIVITY_STATE: u32, Rw, W32 = 0x4826;
    EXIT_QUALIFICATION: u64, Ro, Natural = 0x6400;
    GUEST_LINEAR_ADDRESS: u64, Ro, Natural = 0x640a;
    GUEST_CR0: u64, Rw, Natural = 0x6800;
    GUEST_CR3: u64, Rw, Natural = 0x6802;
    GUEST_CR4: u64, Rw, Natural = 0x6804;
    GUEST_RSP: u64, Rw, Natural = 0x681c;
    GUEST_RIP: u64, Rw, Natural = 0x681e;
    GUEST_RFLAGS: u64, Rw, Natural = 0x6820;
    HOST_CR0: u64, Rw, Natural = 0x6c00;
    HOST_CR3: u64, Rw, Natural = 0x6c02;
    HOST_CR4: u64, Rw, Natural = 0x6c04;
    HOST_RSP: u64, Rw, Natural = 0x6c14;
    HOST_RIP: u64, Rw, Natural = 0x6c16;
}

/// Decoded VM-instruction error numbers (SDM vol. 3, 31.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmInstructionError {
    VmcallInRoot,
    VmclearInvalidAddress,
    VmclearVmxonPointer,
    VmlaunchNonClearVmcs,
    VmresumeNonLaunchedVmcs,
    VmresumeAfterVmxoff,
    EntryInvalidControlFields,
    EntryInvalidHostState,
    VmptrldInvalidAddress,
    VmptrldVmxonPointer,
    VmptrldWrongRevision,
    UnsupportedField,
    WriteToReadOnlyField,
    VmxonInRoot,
    EntryEventsBlockedByMovSs,
    InvalidInveptInvvpidOperand,
    Unknown(u32),
}

impl VmInstructionError {
    pub fn decode(n: u32) -> Self {
        use VmInstructionError::*;
        match n {
            1 => VmcallInRoot,
            2 => VmclearInvalidAddress,
            3 => VmclearVmxonPointer,
            4 => VmlaunchNonClearVmcs,
            5 => VmresumeNonLaunchedVmcs,
            6 => VmresumeAfterVmxoff,
            7 => EntryInvalidControlFields,
            8 => EntryInvalidHostState,
            9 => VmptrldInvalidAddress,
            10 => VmptrldVmxonPointer,
            11 => VmptrldWrongRevision,
            12 => UnsupportedField,
            13 => WriteToReadOnlyField,
            15 => VmxonInRoot,
            26 => EntryEventsBlockedByMovSs,
            28 => InvalidInveptInvvpidOperand,
            other => Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_carry_width_and_kind() {
        assert_eq!(width_of(GUEST_RIP.encoding), Width::Natural);
        assert_eq!(kind_of(GUEST_RIP.encoding), Kind::Guest);
        assert_eq!(width_of(VM_EXIT_REASON.encoding), Width::W32);
        assert_eq!(kind_of(VM_EXIT_REASON.encoding), Kind::ExitInfo);
        assert_eq!(width_of(EPT_POINTER.encoding), Width::W64);
        assert_eq!(kind_of(EPT_POINTER.encoding), Kind::Control);
        assert_eq!(kind_of(HOST_RSP.encoding), Kind::Host);
        assert_eq!(width_of(GUEST_TR_SELECTOR.encoding), Width::W16);
    }

    #[test]
    fn instruction_errors() {
        assert_eq!(VmInstructionError::decode(7), VmInstructionError::EntryInvalidControlFields);
        assert_eq!(VmInstructionError::decode(13), VmInstructionError::WriteToReadOnlyField);
        assert_eq!(VmInstructionError::decode(99), VmInstructionError::Unknown(99));
    }
}
