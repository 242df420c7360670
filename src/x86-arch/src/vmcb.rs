//! The SVM Virtual Machine Control Block (AMD APM vol. 2, appendix B): control
//! area at 0x000, state save area at 0x400, one 4K page.

/// A segment in the save area: selector, attributes (packed as in
/// `seg_to_vmcb_attrib`), limit, base.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VmcbSeg {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

#[repr(C)]
pub struct VmcbControl {
    pub intercept_cr: u32,
    pub intercept_dr: u32,
    pub intercept_exceptions: u32,
    pub intercept_misc1: u32,
    pub intercept_misc2: u32,
    pub intercept_misc3: u32,
    pub reserved_1: [u32; 9],
    pub pause_filter_thresh: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub asid: u32,
    pub tlb_ctl: u8,
    pub reserved_2: [u8; 3],
    pub int_ctl: u32,
    pub int_vector: u32,
    pub int_state: u32,
    pub reserved_3: [u8; 4],
    pub exit_code: u64,
    pub exit_info_1: u64,
    pub exit_info_2: u64,
    pub exit_int_info: u32,
    pub exit_int_info_err: u32,
    pub nested_ctl: u64,
    pub avic_vapic_bar: u64,
    pub ghcb_gpa: u64,
    pub event_inj: u32,
    pub event_inj_err: u32,
    pub nested_cr3: u64,
    pub virt_ext: u64,
    pub clean: u32,
    pub reserved_5: u32,
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    pub reserved_6: [u8; 0x400 - 0xe0],
}

#[repr(C)]
pub struct VmcbSave {
    pub es: VmcbSeg,
    pub cs: VmcbSeg,
    pub ss: VmcbSeg,
    pub ds: VmcbSeg,
    pub fs: VmcbSeg,
    pub gs: VmcbSeg,
    pub gdtr: VmcbSeg,
    pub ldtr: VmcbSeg,
    pub idtr: VmcbSeg,
    pub tr: VmcbSeg,
    pub reserved_0xa0: [u8; 42],
    pub vmpl: u8,
    pub cpl: u8,
    pub reserved_0xcc: [u8; 4],
    pub efer: u64,
    pub reserved_0xd8: [u8; 112],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    pub reserved_0x180: [u8; 88],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    pub reserved_0x248: [u8; 32],
    pub g_pat: u64,
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub last_excp_from: u64,
    pub last_excp_to: u64,
    pub reserved_rest: [u8; 0xc00 - 0x298],
}

#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: VmcbControl,
    pub save: VmcbSave,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<VmcbSeg>() == 16);
    assert!(size_of::<VmcbControl>() == 0x400);
    assert!(size_of::<Vmcb>() == 4096);
    assert!(offset_of!(VmcbControl, pause_filter_thresh) == 0x3c);
    assert!(offset_of!(VmcbControl, iopm_base_pa) == 0x40);
    assert!(offset_of!(VmcbControl, asid) == 0x58);
    assert!(offset_of!(VmcbControl, tlb_ctl) == 0x5c);
    assert!(offset_of!(VmcbControl, int_ctl) == 0x60);
    assert!(offset_of!(VmcbControl, exit_code) == 0x70);
    assert!(offset_of!(VmcbControl, exit_int_info) == 0x88);
    assert!(offset_of!(VmcbControl, nested_ctl) == 0x90);
    assert!(offset_of!(VmcbControl, event_inj) == 0xa8);
    assert!(offset_of!(VmcbControl, nested_cr3) == 0xb0);
    assert!(offset_of!(VmcbControl, clean) == 0xc0);
    assert!(offset_of!(VmcbControl, next_rip) == 0xc8);
    assert!(offset_of!(VmcbControl, insn_len) == 0xd0);
    assert!(offset_of!(Vmcb, save) == 0x400);
    assert!(offset_of!(VmcbSave, cpl) == 0xcb);
    assert!(offset_of!(VmcbSave, efer) == 0xd0);
    assert!(offset_of!(VmcbSave, cr4) == 0x148);
    assert!(offset_of!(VmcbSave, rip) == 0x178);
    assert!(offset_of!(VmcbSave, rsp) == 0x1d8);
    assert!(offset_of!(VmcbSave, rax) == 0x1f8);
    assert!(offset_of!(VmcbSave, star) == 0x200);
    assert!(offset_of!(VmcbSave, cr2) == 0x240);
    assert!(offset_of!(VmcbSave, g_pat) == 0x268);
};

// Intercept bits (APM vol. 2, table B-1).
pub mod intercept {
    // Word 3 (offset 0x0c).
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const SMI: u32 = 1 << 2;
    pub const INIT: u32 = 1 << 3;
    pub const VINTR: u32 = 1 << 4;
    /// Writes to CR0 that change bits other than TS and MP.
    pub const SELECTIVE_CR0: u32 = 1 << 5;
    pub const CPUID: u32 = 1 << 18;
    pub const RSM: u32 = 1 << 19;
    pub const IRET: u32 = 1 << 20;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const INVLPGA: u32 = 1 << 26;
    pub const IOIO_PROT: u32 = 1 << 27;
    pub const MSR_PROT: u32 = 1 << 28;
    pub const TASK_SWITCH: u32 = 1 << 29;
    pub const FERR_FREEZE: u32 = 1 << 30;
    pub const SHUTDOWN: u32 = 1 << 31;
    // Word 4 (offset 0x10).
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
    pub const RDTSCP: u32 = 1 << 7;
    pub const WBINVD: u32 = 1 << 9;
    pub const MONITOR: u32 = 1 << 10;
    pub const MWAIT: u32 = 1 << 11;
    pub const XSETBV: u32 = 1 << 13;
    pub const RDPRU: u32 = 1 << 14;
}

// Exit codes (APM vol. 2, appendix C).
pub mod exit_code {
    pub const WRITE_CR4: u64 = 0x014;
    pub const WRITE_CR8: u64 = 0x018;
    pub const EXCP_BASE: u64 = 0x040;
    pub const INTR: u64 = 0x060;
    pub const NMI: u64 = 0x061;
    pub const SMI: u64 = 0x062;
    pub const INIT: u64 = 0x063;
    pub const VINTR: u64 = 0x064;
    pub const CR0_SEL_WRITE: u64 = 0x065;
    pub const CPUID: u64 = 0x072;
    pub const RSM: u64 = 0x073;
    pub const IRET: u64 = 0x074;
    pub const INVD: u64 = 0x076;
    pub const HLT: u64 = 0x078;
    pub const INVLPGA: u64 = 0x07a;
    pub const IOIO: u64 = 0x07b;
    pub const MSR: u64 = 0x07c;
    pub const SHUTDOWN: u64 = 0x07f;
    pub const VMRUN: u64 = 0x080;
    pub const VMMCALL: u64 = 0x081;
    pub const VMLOAD: u64 = 0x082;
    pub const VMSAVE: u64 = 0x083;
    pub const STGI: u64 = 0x084;
    pub const CLGI: u64 = 0x085;
    pub const SKINIT: u64 = 0x086;
    pub const RDTSCP: u64 = 0x087;
    pub const WBINVD: u64 = 0x089;
    pub const MONITOR: u64 = 0x08a;
    pub const MWAIT: u64 = 0x08b;
    pub const MWAIT_COND: u64 = 0x08c;
    pub const XSETBV: u64 = 0x08d;
    pub const RDPRU: u64 = 0x08e;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

/// int_ctl bits.
pub const V_IRQ: u32 = 1 << 8;
pub const V_IGN_TPR: u32 = 1 << 20;
pub const V_INTR_MASKING: u32 = 1 << 24;
/// nested_ctl: nested paging.
pub const NP_ENABLE: u64 = 1 << 0;
/// tlb_ctl values.
pub const TLB_CONTROL_DO_NOTHING: u8 = 0;
pub const TLB_CONTROL_FLUSH_ALL_ASID: u8 = 1;
pub const TLB_CONTROL_FLUSH_ASID: u8 = 3;
/// EVENTINJ / EXITINTINFO fields.
pub const EVTINJ_VALID: u32 = 1 << 31;
pub const EVTINJ_VALID_ERR: u32 = 1 << 11;
pub const EVTINJ_TYPE_INTR: u32 = 0 << 8;
pub const EVTINJ_TYPE_NMI: u32 = 2 << 8;
pub const EVTINJ_TYPE_EXEPT: u32 = 3 << 8;
pub const EVTINJ_TYPE_SOFT: u32 = 4 << 8;
pub const EVTINJ_TYPE_MASK: u32 = 7 << 8;
