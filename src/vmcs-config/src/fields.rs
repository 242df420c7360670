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
    // 16-bit control, guest and host fields.
    VIRTUAL_PROCESSOR_ID: u16, Rw, W16 = 0x0000;
    GUEST_ES_SELECTOR: u16, Rw, W16 = 0x0800;
    GUEST_CS_SELECTOR: u16, Rw, W16 = 0x0802;
    GUEST_SS_SELECTOR: u16, Rw, W16 = 0x0804;
    GUEST_DS_SELECTOR: u16, Rw, W16 = 0x0806;
    GUEST_FS_SELECTOR: u16, Rw, W16 = 0x0808;
    GUEST_GS_SELECTOR: u16, Rw, W16 = 0x080a;
    GUEST_LDTR_SELECTOR: u16, Rw, W16 = 0x080c;
    GUEST_TR_SELECTOR: u16, Rw, W16 = 0x080e;
    HOST_ES_SELECTOR: u16, Rw, W16 = 0x0c00;
    HOST_CS_SELECTOR: u16, Rw, W16 = 0x0c02;
    HOST_SS_SELECTOR: u16, Rw, W16 = 0x0c04;
    HOST_DS_SELECTOR: u16, Rw, W16 = 0x0c06;
    HOST_FS_SELECTOR: u16, Rw, W16 = 0x0c08;
    HOST_GS_SELECTOR: u16, Rw, W16 = 0x0c0a;
    HOST_TR_SELECTOR: u16, Rw, W16 = 0x0c0c;
    // 64-bit fields.
    MSR_BITMAP: u64, Rw, W64 = 0x2004;
    TSC_OFFSET: u64, Rw, W64 = 0x2010;
    EPT_POINTER: u64, Rw, W64 = 0x201a;
    GUEST_PHYSICAL_ADDRESS: u64, Ro, W64 = 0x2400;
    VMCS_LINK_POINTER: u64, Rw, W64 = 0x2800;
    GUEST_IA32_DEBUGCTL: u64, Rw, W64 = 0x2802;
    GUEST_IA32_PAT: u64, Rw, W64 = 0x2804;
    GUEST_IA32_EFER: u64, Rw, W64 = 0x2806;
    GUEST_PDPTR0: u64, Rw, W64 = 0x280a;
    GUEST_PDPTR1: u64, Rw, W64 = 0x280c;
    GUEST_PDPTR2: u64, Rw, W64 = 0x280e;
    GUEST_PDPTR3: u64, Rw, W64 = 0x2810;
    HOST_IA32_PAT: u64, Rw, W64 = 0x2c00;
    HOST_IA32_EFER: u64, Rw, W64 = 0x2c02;
    // 32-bit fields.
    PIN_BASED_VM_EXEC_CONTROL: u32, Rw, W32 = 0x4000;
    CPU_BASED_VM_EXEC_CONTROL: u32, Rw, W32 = 0x4002;
    EXCEPTION_BITMAP: u32, Rw, W32 = 0x4004;
    CR3_TARGET_COUNT: u32, Rw, W32 = 0x400a;
    VM_EXIT_CONTROLS: u32, Rw, W32 = 0x400c;
    VM_ENTRY_CONTROLS: u32, Rw, W32 = 0x4012;
    VM_ENTRY_INTR_INFO_FIELD: u32, Rw, W32 = 0x4016;
    VM_ENTRY_EXCEPTION_ERROR_CODE: u32, Rw, W32 = 0x4018;
    VM_ENTRY_INSTRUCTION_LEN: u32, Rw, W32 = 0x401a;
    SECONDARY_VM_EXEC_CONTROL: u32, Rw, W32 = 0x401e;
    VM_INSTRUCTION_ERROR: u32, Ro, W32 = 0x4400;
    VM_EXIT_REASON: u32, Ro, W32 = 0x4402;
    VM_EXIT_INTR_INFO: u32, Ro, W32 = 0x4404;
    VM_EXIT_INTR_ERROR_CODE: u32, Ro, W32 = 0x4406;
    IDT_VECTORING_INFO_FIELD: u32, Ro, W32 = 0x4408;
    IDT_VECTORING_ERROR_CODE: u32, Ro, W32 = 0x440a;
    VM_EXIT_INSTRUCTION_LEN: u32, Ro, W32 = 0x440c;
    GUEST_ES_LIMIT: u32, Rw, W32 = 0x4800;
    GUEST_CS_LIMIT: u32, Rw, W32 = 0x4802;
    GUEST_SS_LIMIT: u32, Rw, W32 = 0x4804;
    GUEST_DS_LIMIT: u32, Rw, W32 = 0x4806;
    GUEST_FS_LIMIT: u32, Rw, W32 = 0x4808;
    GUEST_GS_LIMIT: u32, Rw, W32 = 0x480a;
    GUEST_LDTR_LIMIT: u32, Rw, W32 = 0x480c;
    GUEST_TR_LIMIT: u32, Rw, W32 = 0x480e;
    GUEST_GDTR_LIMIT: u32, Rw, W32 = 0x4810;
    GUEST_IDTR_LIMIT: u32, Rw, W32 = 0x4812;
    GUEST_ES_AR_BYTES: u32, Rw, W32 = 0x4814;
    GUEST_CS_AR_BYTES: u32, Rw, W32 = 0x4816;
    GUEST_SS_AR_BYTES: u32, Rw, W32 = 0x4818;
    GUEST_DS_AR_BYTES: u32, Rw, W32 = 0x481a;
    GUEST_FS_AR_BYTES: u32, Rw, W32 = 0x481c;
    GUEST_GS_AR_BYTES: u32, Rw, W32 = 0x481e;
    GUEST_LDTR_AR_BYTES: u32, Rw, W32 = 0x4820;
    GUEST_TR_AR_BYTES: u32, Rw, W32 = 0x4822;
    GUEST_INTERRUPTIBILITY_INFO: u32, Rw, W32 = 0x4824;
    GUEST_ACTIVITY_STATE: u32, Rw, W32 = 0x4826;
    GUEST_SYSENTER_CS: u32, Rw, W32 = 0x482a;
    HOST_IA32_SYSENTER_CS: u32, Rw, W32 = 0x4c00;
    // Natural-width fields.
    CR0_GUEST_HOST_MASK: u64, Rw, Natural = 0x6000;
    CR4_GUEST_HOST_MASK: u64, Rw, Natural = 0x6002;
    CR0_READ_SHADOW: u64, Rw, Natural = 0x6004;
    CR4_READ_SHADOW: u64, Rw, Natural = 0x6006;
    EXIT_QUALIFICATION: u64, Ro, Natural = 0x6400;
    GUEST_LINEAR_ADDRESS: u64, Ro, Natural = 0x640a;
    GUEST_CR0: u64, Rw, Natural = 0x6800;
    GUEST_CR3: u64, Rw, Natural = 0x6802;
    GUEST_CR4: u64, Rw, Natural = 0x6804;
    GUEST_ES_BASE: u64, Rw, Natural = 0x6806;
    GUEST_CS_BASE: u64, Rw, Natural = 0x6808;
    GUEST_SS_BASE: u64, Rw, Natural = 0x680a;
    GUEST_DS_BASE: u64, Rw, Natural = 0x680c;
    GUEST_FS_BASE: u64, Rw, Natural = 0x680e;
    GUEST_GS_BASE: u64, Rw, Natural = 0x6810;
    GUEST_LDTR_BASE: u64, Rw, Natural = 0x6812;
    GUEST_TR_BASE: u64, Rw, Natural = 0x6814;
    GUEST_GDTR_BASE: u64, Rw, Natural = 0x6816;
    GUEST_IDTR_BASE: u64, Rw, Natural = 0x6818;
    GUEST_DR7: u64, Rw, Natural = 0x681a;
    GUEST_RSP: u64, Rw, Natural = 0x681c;
    GUEST_RIP: u64, Rw, Natural = 0x681e;
    GUEST_RFLAGS: u64, Rw, Natural = 0x6820;
    GUEST_PENDING_DBG_EXCEPTIONS: u64, Rw, Natural = 0x6822;
    GUEST_SYSENTER_ESP: u64, Rw, Natural = 0x6824;
    GUEST_SYSENTER_EIP: u64, Rw, Natural = 0x6826;
    HOST_CR0: u64, Rw, Natural = 0x6c00;
    HOST_CR3: u64, Rw, Natural = 0x6c02;
    HOST_CR4: u64, Rw, Natural = 0x6c04;
    HOST_FS_BASE: u64, Rw, Natural = 0x6c06;
    HOST_GS_BASE: u64, Rw, Natural = 0x6c08;
    HOST_TR_BASE: u64, Rw, Natural = 0x6c0a;
    HOST_GDTR_BASE: u64, Rw, Natural = 0x6c0c;
    HOST_IDTR_BASE: u64, Rw, Natural = 0x6c0e;
    HOST_IA32_SYSENTER_ESP: u64, Rw, Natural = 0x6c10;
    HOST_IA32_SYSENTER_EIP: u64, Rw, Natural = 0x6c12;
    HOST_RSP: u64, Rw, Natural = 0x6c14;
    HOST_RIP: u64, Rw, Natural = 0x6c16;
}

/// The guest segment registers' fields, in `kvm_segment` order ES, CS, SS, DS,
/// FS, GS, LDTR, TR (the order of their encodings).
pub struct SegmentFields {
    pub selector: Field<u16, Rw>,
    pub limit: Field<u32, Rw>,
    pub access_rights: Field<u32, Rw>,
    pub base: Field<u64, Rw>,
}

macro_rules! segment_fields {
    ($($sel:ident $lim:ident $ar:ident $base:ident),*) => {
        [$(SegmentFields { selector: $sel, limit: $lim, access_rights: $ar, base: $base }),*]
    };
}

pub const GUEST_SEGMENTS: [SegmentFields; 8] = segment_fields![
    GUEST_ES_SELECTOR GUEST_ES_LIMIT GUEST_ES_AR_BYTES GUEST_ES_BASE,
    GUEST_CS_SELECTOR GUEST_CS_LIMIT GUEST_CS_AR_BYTES GUEST_CS_BASE,
    GUEST_SS_SELECTOR GUEST_SS_LIMIT GUEST_SS_AR_BYTES GUEST_SS_BASE,
    GUEST_DS_SELECTOR GUEST_DS_LIMIT GUEST_DS_AR_BYTES GUEST_DS_BASE,
    GUEST_FS_SELECTOR GUEST_FS_LIMIT GUEST_FS_AR_BYTES GUEST_FS_BASE,
    GUEST_GS_SELECTOR GUEST_GS_LIMIT GUEST_GS_AR_BYTES GUEST_GS_BASE,
    GUEST_LDTR_SELECTOR GUEST_LDTR_LIMIT GUEST_LDTR_AR_BYTES GUEST_LDTR_BASE,
    GUEST_TR_SELECTOR GUEST_TR_LIMIT GUEST_TR_AR_BYTES GUEST_TR_BASE
];

pub const GUEST_PDPTRS: [Field<u64, Rw>; 4] = [GUEST_PDPTR0, GUEST_PDPTR1, GUEST_PDPTR2, GUEST_PDPTR3];

/// A value a field holds: VMREAD/VMWRITE move 64 bits, the field keeps its width.
pub trait FieldValue: Copy {
    fn to_raw(self) -> u64;
    /// Truncates to the field's width (VMREAD zero-extends).
    fn from_raw(raw: u64) -> Self;
}

impl FieldValue for u16 {
    fn to_raw(self) -> u64 {
        self as u64
    }
    fn from_raw(raw: u64) -> Self {
        raw as u16
    }
}

impl FieldValue for u32 {
    fn to_raw(self) -> u64 {
        self as u64
    }
    fn from_raw(raw: u64) -> Self {
        raw as u32
    }
}

impl FieldValue for u64 {
    fn to_raw(self) -> u64 {
        self
    }
    fn from_raw(raw: u64) -> Self {
        raw
    }
}

/// VMWRITE failed (VMfailValid/VMfailInvalid) for this field encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteFailed(pub u32);

/// The current VMCS, accessed by raw encoding (VMREAD/VMWRITE in kvm-intel, a
/// table in host tests), with the typed accessors on top:
///
/// ```
/// use vmcs_config::fields::*;
/// fn f(v: &mut impl Vmcs) -> u32 {
///     let _ = v.write(GUEST_CS_SELECTOR, 8u16);
///     v.read(VM_EXIT_REASON)
/// }
/// ```
///
/// `write` takes only [`Rw`] fields, so a read-only field cannot be written:
///
/// ```compile_fail
/// use vmcs_config::fields::*;
/// fn f(v: &mut impl Vmcs) {
///     let _ = v.write(VM_EXIT_REASON, 0u32);
/// }
/// ```
///
/// and a value of the wrong width does not fit:
///
/// ```compile_fail
/// use vmcs_config::fields::*;
/// fn f(v: &mut impl Vmcs) {
///     let _ = v.write(GUEST_CS_SELECTOR, 0u64);
/// }
/// ```
pub trait Vmcs {
    fn read_raw(&self, encoding: u32) -> u64;
    fn write_raw(&mut self, encoding: u32, value: u64) -> Result<(), WriteFailed>;

    fn read<T: FieldValue, A>(&self, field: Field<T, A>) -> T {
        T::from_raw(self.read_raw(field.encoding))
    }

    fn write<T: FieldValue>(&mut self, field: Field<T, Rw>, value: T) -> Result<(), WriteFailed> {
        self.write_raw(field.encoding, value.to_raw())
    }
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

    extern crate std;

    /// A VMCS as a table of encodings, for the typed layer.
    struct Table(std::collections::BTreeMap<u32, u64>);

    impl Vmcs for Table {
        fn read_raw(&self, encoding: u32) -> u64 {
            self.0.get(&encoding).copied().unwrap_or(0)
        }
        fn write_raw(&mut self, encoding: u32, value: u64) -> Result<(), WriteFailed> {
            self.0.insert(encoding, value);
            Ok(())
        }
    }

    #[test]
    fn typed_access_truncates_to_the_field_width() {
        let mut t = Table(Default::default());
        t.write(GUEST_CS_SELECTOR, 0x10u16).unwrap();
        t.0.insert(VM_EXIT_REASON.encoding, 0xdead_0000_0000_0030);
        assert_eq!(t.read(GUEST_CS_SELECTOR), 0x10u16);
        assert_eq!(t.read(VM_EXIT_REASON), 0x30u32);
        t.write(GUEST_RIP, 0xffff_8000_0000_1000).unwrap();
        assert_eq!(t.read(GUEST_RIP), 0xffff_8000_0000_1000);
    }

    #[test]
    fn segment_table_follows_the_encodings() {
        // kvm_segment order: ES, CS, SS, DS, FS, GS, LDTR, TR (encodings step by 2).
        for (i, s) in GUEST_SEGMENTS.iter().enumerate() {
            let i = i as u32;
            assert_eq!(s.selector.encoding, 0x800 + 2 * i);
            assert_eq!(s.limit.encoding, 0x4800 + 2 * i);
            assert_eq!(s.access_rights.encoding, 0x4814 + 2 * i);
            assert_eq!(s.base.encoding, 0x6806 + 2 * i);
        }
        assert_eq!(GUEST_PDPTRS.map(|f| f.encoding), [0x280a, 0x280c, 0x280e, 0x2810]);
    }

    #[test]
    fn every_field_kind_and_width_is_decoded() {
        assert_eq!(kind_of(HOST_IA32_SYSENTER_CS.encoding), Kind::Host);
        assert_eq!(width_of(HOST_IA32_SYSENTER_CS.encoding), Width::W32);
        assert_eq!(kind_of(IDT_VECTORING_ERROR_CODE.encoding), Kind::ExitInfo);
        assert_eq!(kind_of(CR0_GUEST_HOST_MASK.encoding), Kind::Control);
        assert_eq!(width_of(CR0_GUEST_HOST_MASK.encoding), Width::Natural);
        assert_eq!(kind_of(GUEST_PDPTR3.encoding), Kind::Guest);
        assert_eq!(width_of(GUEST_PDPTR3.encoding), Width::W64);
    }

    #[test]
    fn instruction_errors() {
        assert_eq!(VmInstructionError::decode(7), VmInstructionError::EntryInvalidControlFields);
        assert_eq!(VmInstructionError::decode(13), VmInstructionError::WriteToReadOnlyField);
        assert_eq!(VmInstructionError::decode(99), VmInstructionError::Unknown(99));
    }
}
