//! The SMRAM state-save area KVM writes on SMI and reads back on RSM
//! (upstream's arch/x86/kvm/smm.h: `union kvm_smram`).
//!
//! The area is the 512 bytes at SMBASE + 0xFE00. A guest whose CPUID has long
//! mode gets the AMD64 layout (revision 0x20064), others the 32-bit layout
//! based on the Intel P6 one (revision 0x20000). Both are KVM's, not a real
//! CPU's: SMM code that reads or edits the area (SeaBIOS relocating SMBASE,
//! OVMF) relies on these offsets, so they are checked by the tests below
//! against upstream's CHECK_SMRAM32/64_OFFSET lists.
//!
//! Pure encoding and decoding; the caller (kvm.ko's smm.rs) reads and writes
//! guest memory and applies the loaded state with its checks.

/// Offset of the state-save area from SMBASE.
pub const SAVE_AREA: u64 = 0xfe00;
/// Offset of the SMI handler's first instruction from SMBASE (also the RIP
/// in SMM's CS, whose base is SMBASE).
pub const HANDLER: u64 = 0x8000;
/// Bytes in the state-save area.
pub const SIZE: usize = 512;
/// SMBASE after RESET (upstream's kvm_vcpu_reset).
pub const DEFAULT_SMBASE: u64 = 0x30000;
/// SMM revision identifiers KVM reports (bit 17: SMBASE relocation).
pub const REVISION_32: u32 = 0x0002_0000;
pub const REVISION_64: u32 = 0x0002_0064;

/// A segment as the state-save area keeps it. `flags` is in the 32-bit
/// layout's format (type in bits 11:8, S 12, DPL 14:13, P 15, AVL 20, L 21,
/// D/B 22, G 23); the 64-bit layout stores `flags >> 8` as 16 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seg {
    pub selector: u16,
    pub flags: u32,
    pub limit: u32,
    pub base: u64,
}

/// Segment attributes, the fields of a `kvm_segment` besides selector, base
/// and limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegAttrs {
    pub type_: u8,
    pub s: u8,
    pub dpl: u8,
    pub present: u8,
    pub avl: u8,
    pub l: u8,
    pub db: u8,
    pub g: u8,
}

/// Upstream's enter_smm_get_segment_flags.
pub fn seg_flags(a: &SegAttrs) -> u32 {
    (a.g as u32 & 1) << 23
        | (a.db as u32 & 1) << 22
        | (a.l as u32 & 1) << 21
        | (a.avl as u32 & 1) << 20
        | (a.present as u32 & 1) << 15
        | (a.dpl as u32 & 3) << 13
        | (a.s as u32 & 1) << 12
        | (a.type_ as u32 & 15) << 8
}

/// Upstream's rsm_set_desc_flags (the segment is unusable when not present).
pub fn seg_attrs(flags: u32) -> SegAttrs {
    SegAttrs {
        g: ((flags >> 23) & 1) as u8,
        db: ((flags >> 22) & 1) as u8,
        l: ((flags >> 21) & 1) as u8,
        avl: ((flags >> 20) & 1) as u8,
        present: ((flags >> 15) & 1) as u8,
        dpl: ((flags >> 13) & 3) as u8,
        s: ((flags >> 12) & 1) as u8,
        type_: ((flags >> 8) & 15) as u8,
    }
}

/// The CPU state the area holds (both layouts; the 32-bit one keeps only the
/// low halves and no EFER).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// In x86 encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub dr6: u64,
    pub dr7: u64,
    pub es: Seg,
    pub cs: Seg,
    pub ss: Seg,
    pub ds: Seg,
    pub fs: Seg,
    pub gs: Seg,
    pub ldtr: Seg,
    pub tr: Seg,
    /// GDTR and IDTR: base and limit only.
    pub gdtr: Seg,
    pub idtr: Seg,
    pub smbase: u32,
    pub revision: u32,
    /// KVM's extension: the STI/MOV SS shadow at the SMI.
    pub int_shadow: u8,
    /// 64-bit layout: non-zero if the SMI arrived while an SVM guest (L2) ran.
    pub svm_guest_flag: u64,
    pub svm_guest_vmcb_gpa: u64,
}

fn put16(b: &mut [u8; SIZE], o: usize, v: u16) {
    b[o..o + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8; SIZE], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8; SIZE], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}
fn get16(b: &[u8; SIZE], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn get32(b: &[u8; SIZE], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn get64(b: &[u8; SIZE], o: usize) -> u64 {
    get32(b, o) as u64 | (get32(b, o + 4) as u64) << 32
}

/// Offsets in the 64-bit (AMD64) layout, relative to SMBASE + 0xFE00.
pub mod off64 {
    pub const ES: usize = 0x00;
    pub const CS: usize = 0x10;
    pub const SS: usize = 0x20;
    pub const DS: usize = 0x30;
    pub const FS: usize = 0x40;
    pub const GS: usize = 0x50;
    pub const GDTR: usize = 0x60;
    pub const LDTR: usize = 0x70;
    pub const IDTR: usize = 0x80;
    pub const TR: usize = 0x90;
    pub const INT_SHADOW: usize = 0xcb;
    pub const EFER: usize = 0xd0;
    pub const SVM_GUEST_FLAG: usize = 0xd8;
    pub const SVM_GUEST_VMCB_GPA: usize = 0xe0;
    pub const REVISION: usize = 0xfc;
    pub const SMBASE: usize = 0x100;
    pub const CR4: usize = 0x148;
    pub const CR3: usize = 0x150;
    pub const CR0: usize = 0x158;
    pub const DR7: usize = 0x160;
    pub const DR6: usize = 0x168;
    pub const RFLAGS: usize = 0x170;
    pub const RIP: usize = 0x178;
    /// R15 first, RAX last.
    pub const GPRS: usize = 0x180;
}

/// Offsets in the 32-bit layout, relative to SMBASE + 0xFE00.
pub mod off32 {
    pub const SMBASE: usize = 0xf8;
    pub const REVISION: usize = 0xfc;
    pub const CR4: usize = 0x114;
    pub const INT_SHADOW: usize = 0x11a;
    /// Descriptor parts (flags, limit, base; 12 bytes each).
    pub const DS: usize = 0x12c;
    pub const FS: usize = 0x138;
    pub const GS: usize = 0x144;
    pub const IDTR: usize = 0x150;
    pub const TR: usize = 0x15c;
    pub const GDTR: usize = 0x16c;
    pub const LDTR: usize = 0x178;
    pub const ES: usize = 0x184;
    pub const CS: usize = 0x190;
    pub const SS: usize = 0x19c;
    /// Selectors, 4 bytes each, in this order.
    pub const ES_SEL: usize = 0x1a8;
    pub const CS_SEL: usize = 0x1ac;
    pub const SS_SEL: usize = 0x1b0;
    pub const DS_SEL: usize = 0x1b4;
    pub const FS_SEL: usize = 0x1b8;
    pub const GS_SEL: usize = 0x1bc;
    pub const LDTR_SEL: usize = 0x1c0;
    pub const TR_SEL: usize = 0x1c4;
    pub const DR7: usize = 0x1c8;
    pub const DR6: usize = 0x1cc;
    /// EAX first (natural order).
    pub const GPRS: usize = 0x1d0;
    pub const EIP: usize = 0x1f0;
    pub const EFLAGS: usize = 0x1f4;
    pub const CR3: usize = 0x1f8;
    pub const CR0: usize = 0x1fc;
}

fn put_seg64(b: &mut [u8; SIZE], o: usize, s: &Seg) {
    put16(b, o, s.selector);
    put16(b, o + 2, (s.flags >> 8) as u16);
    put32(b, o + 4, s.limit);
    put64(b, o + 8, s.base);
}

fn get_seg64(b: &[u8; SIZE], o: usize) -> Seg {
    Seg { selector: get16(b, o), flags: (get16(b, o + 2) as u32) << 8, limit: get32(b, o + 4), base: get64(b, o + 8) }
}

fn put_seg32(b: &mut [u8; SIZE], o: usize, sel_off: Option<usize>, s: &Seg) {
    put32(b, o, s.flags);
    put32(b, o + 4, s.limit);
    put32(b, o + 8, s.base as u32);
    if let Some(so) = sel_off {
        put32(b, so, s.selector as u32);
    }
}

fn get_seg32(b: &[u8; SIZE], o: usize, sel_off: Option<usize>) -> Seg {
    Seg {
        selector: sel_off.map_or(0, |so| get32(b, so) as u16),
        flags: get32(b, o),
        limit: get32(b, o + 4),
        base: get32(b, o + 8) as u64,
    }
}

/// Upstream's enter_smm_save_state_64 layout (the revision is always
/// 0x20064). Fills all of `b` (an out-parameter: kvm.ko keeps it off its
/// deep run-loop stack).
pub fn encode_64(s: &State, b: &mut [u8; SIZE]) {
    use off64::*;
    b.fill(0);
    for i in 0..16 {
        put64(b, GPRS + 8 * (15 - i), s.gprs[i]);
    }
    put64(b, RIP, s.rip);
    put64(b, RFLAGS, s.rflags);
    put64(b, DR6, s.dr6);
    put64(b, DR7, s.dr7);
    put64(b, CR0, s.cr0);
    put64(b, CR3, s.cr3);
    put64(b, CR4, s.cr4);
    put32(b, SMBASE, s.smbase);
    put32(b, REVISION, REVISION_64);
    put64(b, EFER, s.efer);
    put64(b, SVM_GUEST_FLAG, s.svm_guest_flag);
    put64(b, SVM_GUEST_VMCB_GPA, s.svm_guest_vmcb_gpa);
    for (o, seg) in [(ES, &s.es), (CS, &s.cs), (SS, &s.ss), (DS, &s.ds), (FS, &s.fs), (GS, &s.gs), (LDTR, &s.ldtr), (TR, &s.tr)] {
        put_seg64(b, o, seg);
    }
    // GDTR/IDTR: limit and base only.
    for (o, seg) in [(GDTR, &s.gdtr), (IDTR, &s.idtr)] {
        put32(b, o + 4, seg.limit);
        put64(b, o + 8, seg.base);
    }
    b[INT_SHADOW] = s.int_shadow;
}

/// Reads the 64-bit layout (what rsm_load_state_64 takes from it).
pub fn decode_64(b: &[u8; SIZE]) -> State {
    use off64::*;
    let mut s = State::default();
    for i in 0..16 {
        s.gprs[i] = get64(b, GPRS + 8 * (15 - i));
    }
    s.rip = get64(b, RIP);
    s.rflags = get64(b, RFLAGS);
    s.dr6 = get64(b, DR6);
    s.dr7 = get64(b, DR7);
    s.cr0 = get64(b, CR0);
    s.cr3 = get64(b, CR3);
    s.cr4 = get64(b, CR4);
    s.smbase = get32(b, SMBASE);
    s.revision = get32(b, REVISION);
    s.efer = get64(b, EFER);
    s.svm_guest_flag = get64(b, SVM_GUEST_FLAG);
    s.svm_guest_vmcb_gpa = get64(b, SVM_GUEST_VMCB_GPA);
    s.es = get_seg64(b, ES);
    s.cs = get_seg64(b, CS);
    s.ss = get_seg64(b, SS);
    s.ds = get_seg64(b, DS);
    s.fs = get_seg64(b, FS);
    s.gs = get_seg64(b, GS);
    s.ldtr = get_seg64(b, LDTR);
    s.tr = get_seg64(b, TR);
    s.gdtr = Seg { limit: get32(b, GDTR + 4), base: get64(b, GDTR + 8), ..Default::default() };
    s.idtr = Seg { limit: get32(b, IDTR + 4), base: get64(b, IDTR + 8), ..Default::default() };
    s.int_shadow = b[INT_SHADOW];
    s
}

/// Upstream's enter_smm_save_state_32 layout (the revision is always
/// 0x20000; registers are truncated to 32 bits). Fills all of `b`.
pub fn encode_32(s: &State, b: &mut [u8; SIZE]) {
    use off32::*;
    b.fill(0);
    put32(b, CR0, s.cr0 as u32);
    put32(b, CR3, s.cr3 as u32);
    put32(b, EFLAGS, s.rflags as u32);
    put32(b, EIP, s.rip as u32);
    for i in 0..8 {
        put32(b, GPRS + 4 * i, s.gprs[i] as u32);
    }
    put32(b, DR6, s.dr6 as u32);
    put32(b, DR7, s.dr7 as u32);
    put_seg32(b, TR, Some(TR_SEL), &s.tr);
    put_seg32(b, LDTR, Some(LDTR_SEL), &s.ldtr);
    put_seg32(b, GDTR, None, &Seg { flags: 0, ..s.gdtr });
    put_seg32(b, IDTR, None, &Seg { flags: 0, ..s.idtr });
    put_seg32(b, ES, Some(ES_SEL), &s.es);
    put_seg32(b, CS, Some(CS_SEL), &s.cs);
    put_seg32(b, SS, Some(SS_SEL), &s.ss);
    put_seg32(b, DS, Some(DS_SEL), &s.ds);
    put_seg32(b, FS, Some(FS_SEL), &s.fs);
    put_seg32(b, GS, Some(GS_SEL), &s.gs);
    put32(b, CR4, s.cr4 as u32);
    put32(b, REVISION, REVISION_32);
    put32(b, SMBASE, s.smbase);
    b[INT_SHADOW] = s.int_shadow;
}

/// Reads the 32-bit layout (what rsm_load_state_32 takes from it).
pub fn decode_32(b: &[u8; SIZE]) -> State {
    use off32::*;
    let mut s = State {
        cr0: get32(b, CR0) as u64,
        cr3: get32(b, CR3) as u64,
        rflags: get32(b, EFLAGS) as u64,
        rip: get32(b, EIP) as u64,
        dr6: get32(b, DR6) as u64,
        dr7: get32(b, DR7) as u64,
        tr: get_seg32(b, TR, Some(TR_SEL)),
        ldtr: get_seg32(b, LDTR, Some(LDTR_SEL)),
        gdtr: get_seg32(b, GDTR, None),
        idtr: get_seg32(b, IDTR, None),
        es: get_seg32(b, ES, Some(ES_SEL)),
        cs: get_seg32(b, CS, Some(CS_SEL)),
        ss: get_seg32(b, SS, Some(SS_SEL)),
        ds: get_seg32(b, DS, Some(DS_SEL)),
        fs: get_seg32(b, FS, Some(FS_SEL)),
        gs: get_seg32(b, GS, Some(GS_SEL)),
        cr4: get32(b, CR4) as u64,
        revision: get32(b, REVISION),
        smbase: get32(b, SMBASE),
        int_shadow: b[INT_SHADOW],
        ..Default::default()
    };
    for i in 0..8 {
        s.gprs[i] = get32(b, GPRS + 4 * i) as u64;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::default();
        for i in 0..16 {
            s.gprs[i] = 0x0101_0000_0000_0000u64.wrapping_mul(i as u64 + 1) + i as u64 + 0x8000_0000;
        }
        s.rip = 0xffff_ffff_8100_1234;
        s.rflags = 0x246;
        s.cr0 = 0x8005_0033;
        s.cr3 = 0x1234_5000;
        s.cr4 = 0x20;
        s.efer = 0x500;
        s.dr6 = 0xffff_0ff0;
        s.dr7 = 0x400;
        let code = SegAttrs { type_: 0xb, s: 1, present: 1, l: 1, g: 1, ..Default::default() };
        let data = SegAttrs { type_: 3, s: 1, present: 1, db: 1, g: 1, ..Default::default() };
        s.cs = Seg { selector: 0x10, flags: seg_flags(&code), limit: 0xffff_ffff, base: 0 };
        s.ss = Seg { selector: 0x18, flags: seg_flags(&data), limit: 0xffff_ffff, base: 0x1000 };
        s.ds = Seg { selector: 0x18, flags: seg_flags(&data), limit: 0xffff_ffff, base: 0x2000 };
        s.es = s.ds;
        s.fs = Seg { base: 0x7fff_0000_1000, ..s.ds };
        s.gs = Seg { base: 0xffff_8880_0000_0000, ..s.ds };
        s.tr = Seg { selector: 0x40, flags: seg_flags(&SegAttrs { type_: 0xb, present: 1, ..Default::default() }), limit: 0x67, base: 0x5000 };
        s.ldtr = Seg { selector: 0, flags: seg_flags(&SegAttrs { type_: 2, present: 1, ..Default::default() }), limit: 0xffff, base: 0 };
        s.gdtr = Seg { limit: 0x7f, base: 0xffff_fe00_0000_1000, ..Default::default() };
        s.idtr = Seg { limit: 0xfff, base: 0xffff_fe00_0000_0000, ..Default::default() };
        s.smbase = 0x100_0000;
        s.int_shadow = 1;
        s
    }

    #[test]
    fn flags_round_trip() {
        let a = SegAttrs { type_: 0xb, s: 1, dpl: 3, present: 1, avl: 1, l: 1, db: 0, g: 1 };
        let f = seg_flags(&a);
        assert_eq!(f, 0xb << 8 | 1 << 12 | 3 << 13 | 1 << 15 | 1 << 20 | 1 << 21 | 1 << 23);
        assert_eq!(seg_attrs(f), a);
        // The 64-bit layout keeps bits 23:8 as 16 bits: nothing is lost.
        assert_eq!(seg_attrs(((f >> 8) as u16 as u32) << 8), a);
    }

    /// Upstream's CHECK_SMRAM64_OFFSET values, minus 0xFE00.
    #[test]
    fn layout_64_offsets() {
        let s = sample();
        let mut b = [0u8; SIZE];
        encode_64(&s, &mut b);
        let at = |o: usize| get64(&b, o - 0xfe00);
        assert_eq!(get16(&b, 0xfe10 - 0xfe00), 0x10, "cs selector");
        assert_eq!(at(0xfe28), 0x1000, "ss base");
        assert_eq!(get32(&b, 0xfe64 - 0xfe00), 0x7f, "gdtr limit");
        assert_eq!(at(0xfe68), 0xffff_fe00_0000_1000, "gdtr base");
        assert_eq!(at(0xfe88), 0xffff_fe00_0000_0000, "idtr base");
        assert_eq!(get16(&b, 0xfe90 - 0xfe00), 0x40, "tr selector");
        assert_eq!(b[0xfecb - 0xfe00], 1, "int_shadow");
        assert_eq!(at(0xfed0), 0x500, "efer");
        assert_eq!(get32(&b, 0xfefc - 0xfe00), REVISION_64);
        assert_eq!(get32(&b, 0xff00 - 0xfe00), 0x100_0000, "smbase");
        assert_eq!(at(0xff48), 0x20, "cr4");
        assert_eq!(at(0xff50), 0x1234_5000, "cr3");
        assert_eq!(at(0xff58), 0x8005_0033, "cr0");
        assert_eq!(at(0xff60), 0x400, "dr7");
        assert_eq!(at(0xff68), 0xffff_0ff0, "dr6");
        assert_eq!(at(0xff70), 0x246, "rflags");
        assert_eq!(at(0xff78), 0xffff_ffff_8100_1234, "rip");
        assert_eq!(at(0xff80), s.gprs[15], "r15 first");
        assert_eq!(at(0xfff8), s.gprs[0], "rax last");
        // CS attributes: type b, S, P, L, G as bits 3:0, 4, 7, 13, 15.
        assert_eq!(get16(&b, 0xfe12 - 0xfe00), 0xb | 1 << 4 | 1 << 7 | 1 << 13 | 1 << 15);
    }

    #[test]
    fn layout_64_round_trip() {
        let s = sample();
        let mut b = [0xaau8; SIZE];
        encode_64(&s, &mut b);
        let mut d = decode_64(&b);
        assert_eq!(d.revision, REVISION_64);
        d.revision = 0;
        assert_eq!(d, s);
    }

    /// Upstream's CHECK_SMRAM32_OFFSET values, minus 0xFE00.
    #[test]
    fn layout_32_offsets() {
        let s = sample();
        let mut b = [0u8; SIZE];
        encode_32(&s, &mut b);
        let at = |o: usize| get32(&b, o - 0xfe00);
        assert_eq!(at(0xfef8), 0x100_0000, "smbase");
        assert_eq!(at(0xfefc), REVISION_32);
        assert_eq!(at(0xff14), 0x20, "cr4");
        assert_eq!(b[0xff1a - 0xfe00], 1, "int_shadow");
        assert_eq!(at(0xff2c + 8), 0x2000, "ds base");
        assert_eq!(at(0xff38 + 8), 0x1000, "fs base truncated");
        assert_eq!(at(0xff50 + 4), 0xfff, "idtr limit");
        assert_eq!(at(0xff5c + 4), 0x67, "tr limit");
        assert_eq!(at(0xff6c + 4), 0x7f, "gdtr limit");
        assert_eq!(at(0xff90), s.cs.flags, "cs flags");
        assert_eq!(at(0xff9c + 8), 0x1000, "ss base");
        assert_eq!(at(0xffac), 0x10, "cs selector");
        assert_eq!(at(0xffc4), 0x40, "tr selector");
        assert_eq!(at(0xffc8), 0x400, "dr7");
        assert_eq!(at(0xffcc), 0xffff_0ff0, "dr6");
        assert_eq!(at(0xffd0), s.gprs[0] as u32, "eax first");
        assert_eq!(at(0xffec), s.gprs[7] as u32, "edi last");
        assert_eq!(at(0xfff0), 0x8100_1234, "eip");
        assert_eq!(at(0xfff4), 0x246, "eflags");
        assert_eq!(at(0xfff8), 0x1234_5000, "cr3");
        assert_eq!(at(0xfffc), 0x8005_0033, "cr0");
    }

    #[test]
    fn layout_32_round_trip_keeps_low_halves() {
        let s = sample();
        let mut b = [0xaau8; SIZE];
        encode_32(&s, &mut b);
        let d = decode_32(&b);
        assert_eq!(d.revision, REVISION_32);
        for i in 0..8 {
            assert_eq!(d.gprs[i], s.gprs[i] & 0xffff_ffff);
        }
        assert_eq!(d.gprs[8], 0, "no R8-R15");
        assert_eq!(d.efer, 0, "no EFER");
        assert_eq!(d.cs, s.cs);
        assert_eq!(d.ss, s.ss);
        assert_eq!(d.fs.base, s.fs.base & 0xffff_ffff);
        assert_eq!((d.gdtr.base, d.gdtr.limit), (s.gdtr.base & 0xffff_ffff, s.gdtr.limit));
        assert_eq!(d.rip, s.rip & 0xffff_ffff);
        assert_eq!(d.smbase, s.smbase);
        assert_eq!(d.int_shadow, 1);
    }

    #[test]
    fn decode_never_panics_on_any_bytes() {
        let mut b = [0u8; SIZE];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let _ = decode_64(&b);
        let _ = decode_32(&b);
        let b = [0xffu8; SIZE];
        assert_eq!(decode_64(&b).smbase, 0xffff_ffff);
        assert_eq!(decode_32(&b).rip, 0xffff_ffff);
    }
}
