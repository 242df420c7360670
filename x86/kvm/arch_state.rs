// SPDX-License-Identifier: GPL-2.0
//! The architectural state of a vCPU as kvm.ko keeps it: what KVM_GET/SET_REGS,
//! SREGS, DEBUGREGS and MSRS read and write, what the exit handlers and the
//! instruction emulator work on. The vendor copies it into its hardware structure
//! (VMCB/VMCS) before each entry and back after each exit.

// Registers and fields carry the manuals' names; the module comment says what
// the structure is.
#![allow(missing_docs)]

use crate::uapi::{kvm_dtable, kvm_segment};

/// General-purpose register numbers in x86 encoding order.
pub mod gpr {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// An exception or interrupt to deliver at the next entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingEvent {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// A software interrupt/exception (INTn/INT3/INTO): RIP already points past it.
    pub soft: bool,
    /// An external interrupt (KVM_INTERRUPT) rather than an exception.
    pub external: bool,
}

/// The vCPU's architectural state.
#[derive(Clone, Copy, Default)]
pub struct ArchState {
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cs: kvm_segment,
    pub ds: kvm_segment,
    pub es: kvm_segment,
    pub fs: kvm_segment,
    pub gs: kvm_segment,
    pub ss: kvm_segment,
    pub tr: kvm_segment,
    pub ldt: kvm_segment,
    pub gdt: kvm_dtable,
    pub idt: kvm_dtable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    /// The PAE page-directory-pointer entries the CPU loaded with CR3 (VMX with
    /// EPT keeps them in the VMCS; used only in PAE paging outside long mode).
    pub pdptrs: [u64; 4],
    pub xcr0: u64,
    pub db: [u64; 4],
    pub dr6: u64,
    pub dr7: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub pat: u64,
    /// Guest TSC = host TSC + tsc_offset.
    pub tsc_offset: u64,
    /// STI/MOV SS shadow: the next instruction cannot be interrupted.
    pub interrupt_shadow: bool,
    /// NMIs blocked (an NMI handler runs until IRET).
    pub nmi_masked: bool,
    pub pending_event: Option<PendingEvent>,
}

/// RFLAGS bits used by the core.
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
}

/// `kvm_segment` attribute fields as the VMCB packs them (APM vol. 2, 15.5.1):
/// type[3:0], S[4], DPL[6:5], P[7], AVL[8], L[9], D/B[10], G[11].
pub fn seg_to_vmcb_attrib(s: &kvm_segment) -> u16 {
    if s.unusable != 0 {
        return 0;
    }
    (s.type_ as u16 & 0xf)
        | ((s.s as u16 & 1) << 4)
        | ((s.dpl as u16 & 3) << 5)
        | ((s.present as u16 & 1) << 7)
        | ((s.avl as u16 & 1) << 8)
        | ((s.l as u16 & 1) << 9)
        | ((s.db as u16 & 1) << 10)
        | ((s.g as u16 & 1) << 11)
}

/// The inverse of [`seg_to_vmcb_attrib`].
pub fn seg_from_vmcb_attrib(selector: u16, attrib: u16, limit: u32, base: u64) -> kvm_segment {
    kvm_segment {
        base,
        limit,
        selector,
        type_: (attrib & 0xf) as u8,
        s: ((attrib >> 4) & 1) as u8,
        dpl: ((attrib >> 5) & 3) as u8,
        present: ((attrib >> 7) & 1) as u8,
        avl: ((attrib >> 8) & 1) as u8,
        l: ((attrib >> 9) & 1) as u8,
        db: ((attrib >> 10) & 1) as u8,
        g: ((attrib >> 11) & 1) as u8,
        unusable: if (attrib >> 7) & 1 == 0 { 1 } else { 0 },
        padding: 0,
    }
}

impl ArchState {
    /// The state at power-on/RESET (SDM vol. 3 table 10-1; upstream's
    /// kvm_vcpu_reset + init_vmcb): real mode, CS:IP = f000:fff0 with CS base
    /// ffff0000.
    pub fn reset(cpuid_signature: u32) -> ArchState {
        let data = |sel| kvm_segment {
            base: 0,
            limit: 0xffff,
            selector: sel,
            type_: 3,
            present: 1,
            s: 1,
            ..Default::default()
        };
        let mut st = ArchState {
            rip: 0xfff0,
            rflags: rflags::FIXED,
            cs: kvm_segment { base: 0xffff_0000, selector: 0xf000, type_: 0xb, ..data(0xf000) },
            ds: data(0),
            es: data(0),
            fs: data(0),
            gs: data(0),
            ss: data(0),
            tr: kvm_segment { base: 0, limit: 0xffff, selector: 0, type_: 0xb, present: 1, ..Default::default() },
            ldt: kvm_segment { base: 0, limit: 0xffff, selector: 0, type_: 2, present: 1, ..Default::default() },
            gdt: kvm_dtable { base: 0, limit: 0xffff, ..Default::default() },
            idt: kvm_dtable { base: 0, limit: 0xffff, ..Default::default() },
            cr0: 0x6000_0010,
            xcr0: 1,
            dr6: 0xffff_0ff0,
            dr7: 0x400,
            pat: 0x0007_0406_0007_0406,
            ..Default::default()
        };
        st.gprs[gpr::RDX] = cpuid_signature as u64;
        st
    }

    /// Long mode active (EFER.LMA).
    pub fn long_mode(&self) -> bool {
        self.efer & crate::arch::regs::efer::LMA != 0
    }

    /// Paging with PAE outside long mode: the mode in which the CPU takes the four
    /// PDPTEs from memory when CR3 or a paging bit is loaded, not at each walk.
    pub fn pae_paging(&self) -> bool {
        use crate::arch::regs::{cr0, cr4, efer};
        self.cr0 & cr0::PG != 0 && self.cr4 & cr4::PAE != 0 && self.efer & efer::LMA == 0
    }

    /// The CPL (SS.DPL, as SVM and VMX keep it).
    pub fn cpl(&self) -> u8 {
        if self.cr0 & crate::arch::regs::cr0::PE == 0 {
            0
        } else if self.rflags & rflags::VM != 0 {
            3
        } else {
            self.ss.dpl
        }
    }

    /// Queues an exception for the next entry (the first one wins; a second one
    /// while one is pending becomes a double fault, and a third a triple fault,
    /// which the caller turns into a shutdown).
    pub fn queue_exception(&mut self, vector: u8, error_code: Option<u32>) {
        self.pending_event = Some(PendingEvent { vector, error_code, soft: false, external: false });
    }
}
