// SPDX-License-Identifier: GPL-2.0
//! The VMX half of a vCPU: its VMCS, the state copies between kvm.ko's ArchState
//! and the VMCS, VM entry (vmenter.S), event injection and the decoding of VM
//! exits into kvm.ko's `Exit`.
//!
//! The VMCS is VMCLEARed after every run, so it is never active on a CPU the vCPU
//! has left: moving between CPUs needs no cross-CPU VMCLEAR (at the cost of a
//! VMPTRLD + VMLAUNCH per entry).

use crate::vmcs_config::controls::*;
use crate::vmx::Vmx;
use crate::vmx_insn::{vmclear, vmptrld, vmread, vmwrite};
use kernel::page::Page;
use kernel::prelude::*;
use kvm::arch::msr;
use kvm::arch::regs::{cr0, cr4, efer};
use kvm::arch_state::{gpr, seg_from_vmcb_attrib, seg_to_vmcb_attrib, PendingEvent};
use kvm::uapi::{kvm_dtable, kvm_segment};
use kvm::{cpu, ArchState, EntryParams, Exit, VendorVcpu};

extern "C" {
    fn kvm_rs_vmx_vcpu_run(gprs: *mut u64) -> i32;
}

// VMCS field encodings (Intel SDM vol. 3, appendix B).
mod f {
    pub(super) const GUEST_SEL: [u32; 8] = [0x800, 0x802, 0x804, 0x806, 0x808, 0x80a, 0x80c, 0x80e];
    pub(super) const GUEST_LIMIT: [u32; 8] = [0x4800, 0x4802, 0x4804, 0x4806, 0x4808, 0x480a, 0x480c, 0x480e];
    pub(super) const GUEST_AR: [u32; 8] = [0x4814, 0x4816, 0x4818, 0x481a, 0x481c, 0x481e, 0x4820, 0x4822];
    pub(super) const GUEST_BASE: [u32; 8] = [0x6806, 0x6808, 0x680a, 0x680c, 0x680e, 0x6810, 0x6812, 0x6814];
    pub(super) const HOST_ES: u32 = 0xc00;
    pub(super) const HOST_CS: u32 = 0xc02;
    pub(super) const HOST_SS: u32 = 0xc04;
    pub(super) const HOST_DS: u32 = 0xc06;
    pub(super) const HOST_FS: u32 = 0xc08;
    pub(super) const HOST_GS: u32 = 0xc0a;
    pub(super) const HOST_TR: u32 = 0xc0c;
    pub(super) const TSC_OFFSET: u32 = 0x2010;
    pub(super) const EPT_POINTER: u32 = 0x201a;
    pub(super) const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    pub(super) const VMCS_LINK_POINTER: u32 = 0x2800;
    pub(super) const GUEST_DEBUGCTL: u32 = 0x2802;
    pub(super) const GUEST_PAT: u32 = 0x2804;
    pub(super) const GUEST_EFER: u32 = 0x2806;
    pub(super) const HOST_PAT: u32 = 0x2c00;
    pub(super) const HOST_EFER: u32 = 0x2c02;
    pub(super) const PIN: u32 = 0x4000;
    pub(super) const CPU: u32 = 0x4002;
    pub(super) const EXCEPTION_BITMAP: u32 = 0x4004;
    pub(super) const CR3_TARGET_COUNT: u32 = 0x400a;
    pub(super) const EXIT_CONTROLS: u32 = 0x400c;
    pub(super) const ENTRY_CONTROLS: u32 = 0x4012;
    pub(super) const ENTRY_INTR_INFO: u32 = 0x4016;
    pub(super) const ENTRY_EXCEPTION_EC: u32 = 0x4018;
    pub(super) const SECONDARY: u32 = 0x401e;
    pub(super) const VM_INSTRUCTION_ERROR: u32 = 0x4400;
    pub(super) const EXIT_REASON: u32 = 0x4402;
    pub(super) const EXIT_INTR_INFO: u32 = 0x4404;
    pub(super) const EXIT_INTR_EC: u32 = 0x4406;
    pub(super) const IDT_VECTORING_INFO: u32 = 0x4408;
    pub(super) const IDT_VECTORING_EC: u32 = 0x440a;
    pub(super) const EXIT_INSTRUCTION_LEN: u32 = 0x440c;
    pub(super) const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub(super) const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub(super) const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub(super) const GUEST_ACTIVITY: u32 = 0x4826;
    pub(super) const GUEST_SYSENTER_CS: u32 = 0x482a;
    pub(super) const HOST_SYSENTER_CS: u32 = 0x4c00;
    pub(super) const CR0_MASK: u32 = 0x6000;
    pub(super) const CR4_MASK: u32 = 0x6002;
    pub(super) const CR0_SHADOW: u32 = 0x6004;
    pub(super) const CR4_SHADOW: u32 = 0x6006;
    pub(super) const EXIT_QUALIFICATION: u32 = 0x6400;
    pub(super) const GUEST_CR0: u32 = 0x6800;
    pub(super) const GUEST_CR3: u32 = 0x6802;
    pub(super) const GUEST_CR4: u32 = 0x6804;
    pub(super) const GUEST_GDTR_BASE: u32 = 0x6816;
    pub(super) const GUEST_IDTR_BASE: u32 = 0x6818;
    pub(super) const GUEST_DR7: u32 = 0x681a;
    pub(super) const GUEST_RSP: u32 = 0x681c;
    pub(super) const GUEST_RIP: u32 = 0x681e;
    pub(super) const GUEST_RFLAGS: u32 = 0x6820;
    pub(super) const GUEST_PENDING_DBG: u32 = 0x6822;
    pub(super) const GUEST_SYSENTER_ESP: u32 = 0x6824;
    pub(super) const GUEST_SYSENTER_EIP: u32 = 0x6826;
    pub(super) const HOST_CR0: u32 = 0x6c00;
    pub(super) const HOST_CR3: u32 = 0x6c02;
    pub(super) const HOST_CR4: u32 = 0x6c04;
    pub(super) const HOST_FS_BASE: u32 = 0x6c06;
    pub(super) const HOST_GS_BASE: u32 = 0x6c08;
    pub(super) const HOST_TR_BASE: u32 = 0x6c0a;
    pub(super) const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub(super) const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub(super) const HOST_SYSENTER_ESP: u32 = 0x6c10;
    pub(super) const HOST_SYSENTER_EIP: u32 = 0x6c12;
}

/// Access rights as the VMCS packs them: the VMCB's attribute layout with
/// AVL/L/D-B/G moved from bits 8-11 to 12-15, and "unusable" in bit 16.
fn seg_to_ar(s: &kvm_segment) -> u32 {
    if s.unusable != 0 || s.present == 0 {
        return 1 << 16;
    }
    let a = seg_to_vmcb_attrib(s) as u32;
    (a & 0xff) | ((a & 0xf00) << 4)
}

fn seg_from_ar(selector: u16, ar: u32, limit: u32, base: u64) -> kvm_segment {
    let attrib = ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16;
    let mut s = seg_from_vmcb_attrib(selector, attrib, limit, base);
    s.unusable = ((ar >> 16) & 1) as u8;
    s
}

/// Event types of VM-entry interruption information.
const TYPE_EXT_INT: u32 = 0;
const TYPE_NMI: u32 = 2;
const TYPE_HW_EXCEPTION: u32 = 3;
const INTR_INFO_VALID: u32 = 1 << 31;
const INTR_INFO_EC_VALID: u32 = 1 << 11;

pub(crate) struct VmxVcpu {
    vmx: &'static Vmx,
    /// The VMCS region (owned; the hardware uses it through vmcs_pa).
    _vmcs: Page,
    vmcs_pa: u64,
    last_cpu: Option<u32>,
    /// RIP and instruction length of the last exit (for next_rip).
    exit_rip: u64,
    exit_len: u32,
}

// SAFETY: the VMCS page is only touched by the thread holding the vCPU.
unsafe impl Send for VmxVcpu {}

fn read_seg_selectors() -> [u16; 7] {
    let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
    // SAFETY: reading segment registers has no side effects.
    unsafe {
        core::arch::asm!("mov {:x}, cs", out(reg) cs, options(nomem, nostack));
        core::arch::asm!("mov {:x}, ss", out(reg) ss, options(nomem, nostack));
        core::arch::asm!("mov {:x}, ds", out(reg) ds, options(nomem, nostack));
        core::arch::asm!("mov {:x}, es", out(reg) es, options(nomem, nostack));
        core::arch::asm!("mov {:x}, fs", out(reg) fs, options(nomem, nostack));
        core::arch::asm!("mov {:x}, gs", out(reg) gs, options(nomem, nostack));
        core::arch::asm!("str {:x}", out(reg) tr, options(nomem, nostack));
    }
    [cs, ss, ds, es, fs, gs, tr]
}

/// SGDT/SIDT: the 10-byte pseudo-descriptors.
fn read_dt() -> ([u8; 10], [u8; 10]) {
    let mut g = [0u8; 10];
    let mut i = [0u8; 10];
    // SAFETY: stores 10 bytes each into our buffers.
    unsafe {
        core::arch::asm!("sgdt [{}]", in(reg) g.as_mut_ptr(), options(nostack));
        core::arch::asm!("sidt [{}]", in(reg) i.as_mut_ptr(), options(nostack));
    }
    (g, i)
}

fn dt_base(d: &[u8; 10]) -> u64 {
    u64::from_le_bytes([d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9]])
}


fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) };
    v
}

/// Writes a VMCS field of the current VMCS, remembering the first failure.
struct Writer {
    failed: Option<u32>,
}

impl Writer {
    fn w(&mut self, field: u32, v: u64) {
        // SAFETY: the vCPU's VMCS is current (VMPTRLD before the writer is used).
        if unsafe { vmwrite(field, v) }.is_err() && self.failed.is_none() {
            self.failed = Some(field);
        }
    }
}

fn rd(field: u32) -> u64 {
    // SAFETY: the vCPU's VMCS is current while exits are decoded.
    unsafe { vmread(field) }
}

impl VmxVcpu {
    pub(crate) fn new(vmx: &'static Vmx) -> Result<Self> {
        let vmcs = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        let rev = vmx.config().revision_id.to_le_bytes();
        // SAFETY: 4 bytes at offset 0 of our page.
        unsafe { vmcs.write_raw(rev.as_ptr(), 0, 4)? };
        let vmcs_pa = cpu::page_phys(&vmcs);
        Ok(VmxVcpu { vmx, _vmcs: vmcs, vmcs_pa, last_cpu: None, exit_rip: 0, exit_len: 0 })
    }

    fn write_all(&self, st: &ArchState, p: &EntryParams, w: &mut Writer) {
        let c = self.vmx.config();
        let t = self.vmx.true_procbased_must1();
        // Controls. With EPT the CR3 and INVLPG exits are not needed (if the TRUE
        // MSR lets them be 0); MSRs exit without a bitmap; no VPID, so entries and
        // exits flush the guest's linear mappings; no RDTSCP (not offered).
        let mut cpu_based = (c.cpu_based
            & !(CPU_BASED_CR3_LOAD_EXITING | CPU_BASED_CR3_STORE_EXITING | CPU_BASED_INVLPG_EXITING
                | CPU_BASED_USE_MSR_BITMAPS | CPU_BASED_NMI_WINDOW_EXITING | CPU_BASED_INTR_WINDOW_EXITING))
            | t;
        if p.request_interrupt_window {
            cpu_based |= CPU_BASED_INTR_WINDOW_EXITING;
        }
        let vnmi = c.pin_based & PIN_BASED_VIRTUAL_NMIS != 0;
        if p.intercept_iret && vnmi {
            cpu_based |= CPU_BASED_NMI_WINDOW_EXITING;
        }
        w.w(f::PIN, c.pin_based as u64);
        w.w(f::CPU, cpu_based as u64);
        w.w(f::SECONDARY, (c.cpu_based_2nd & !(SECONDARY_EXEC_ENABLE_VPID | SECONDARY_EXEC_ENABLE_RDTSCP)) as u64);
        // No acknowledge-on-exit: a host interrupt stays pending in the local APIC
        // and is taken when interrupts are enabled again.
        w.w(f::EXIT_CONTROLS, (c.vmexit & !VM_EXIT_ACK_INTR_ON_EXIT) as u64);
        let mut entry = c.vmentry & !VM_ENTRY_IA32E_MODE;
        if st.efer & efer::LMA != 0 {
            entry |= VM_ENTRY_IA32E_MODE;
        }
        w.w(f::ENTRY_CONTROLS, entry as u64);
        w.w(f::EXCEPTION_BITMAP, 1 << 18);
        w.w(f::CR3_TARGET_COUNT, 0);
        w.w(f::EPT_POINTER, p.tdp_root | (3 << 3) | 6);
        w.w(f::VMCS_LINK_POINTER, u64::MAX);
        w.w(f::TSC_OFFSET, st.tsc_offset);

        // Host state.
        let [cs, ss, _ds, _es, _fs, _gs, tr] = read_seg_selectors();
        let (gdt, idt) = read_dt();
        let gdt_base = dt_base(&gdt);
        w.w(f::HOST_CR0, cpu::read_cr0());
        w.w(f::HOST_CR3, read_cr3());
        w.w(f::HOST_CR4, cpu::read_cr4());
        w.w(f::HOST_CS, cs as u64);
        w.w(f::HOST_SS, ss as u64);
        for sel in [f::HOST_DS, f::HOST_ES, f::HOST_FS, f::HOST_GS] {
            w.w(sel, 0);
        }
        w.w(f::HOST_TR, tr as u64);
        w.w(f::HOST_FS_BASE, cpu::rdmsr_safe(msr::FS_BASE).unwrap_or(0));
        w.w(f::HOST_GS_BASE, cpu::rdmsr_safe(msr::GS_BASE).unwrap_or(0));
        // SAFETY: the TSS descriptor (16 bytes) lies in the host GDT.
        let trd = unsafe { core::slice::from_raw_parts((gdt_base + (tr as u64 & !7)) as *const u8, 16) };
        let tr_base = (trd[2] as u64) | (trd[3] as u64) << 8 | (trd[4] as u64) << 16 | (trd[7] as u64) << 24
            | (u32::from_le_bytes([trd[8], trd[9], trd[10], trd[11]]) as u64) << 32;
        w.w(f::HOST_TR_BASE, tr_base);
        w.w(f::HOST_GDTR_BASE, gdt_base);
        w.w(f::HOST_IDTR_BASE, dt_base(&idt));
        w.w(f::HOST_SYSENTER_CS, cpu::rdmsr_safe(msr::IA32_SYSENTER_CS).unwrap_or(0));
        w.w(f::HOST_SYSENTER_ESP, cpu::rdmsr_safe(msr::IA32_SYSENTER_ESP).unwrap_or(0));
        w.w(f::HOST_SYSENTER_EIP, cpu::rdmsr_safe(msr::IA32_SYSENTER_EIP).unwrap_or(0));
        w.w(f::HOST_EFER, cpu::rdmsr_safe(msr::EFER).unwrap_or(0));
        w.w(f::HOST_PAT, cpu::rdmsr_safe(msr::IA32_PAT).unwrap_or(0));

        // Guest state. CR0.NE and CR4.VMXE must be 1 in VMX operation: they are
        // owned by the host (mask) and the guest reads its own values (shadow).
        let caps = self.vmx.caps();
        let cr0_fixed = caps.cr0_fixed0 & !(cr0::PE | cr0::PG);
        w.w(f::CR0_MASK, cr0_fixed | cr0::NE);
        w.w(f::CR0_SHADOW, st.cr0);
        w.w(f::GUEST_CR0, st.cr0 | cr0_fixed);
        w.w(f::CR4_MASK, caps.cr4_fixed0 | cr4::VMXE);
        w.w(f::CR4_SHADOW, st.cr4);
        w.w(f::GUEST_CR4, st.cr4 | caps.cr4_fixed0);
        w.w(f::GUEST_CR3, st.cr3);
        let segs = [&st.es, &st.cs, &st.ss, &st.ds, &st.fs, &st.gs, &st.ldt, &st.tr];
        for (i, s) in segs.iter().enumerate() {
            w.w(f::GUEST_SEL[i], s.selector as u64);
            w.w(f::GUEST_LIMIT[i], s.limit as u64);
            w.w(f::GUEST_AR[i], seg_to_ar(s) as u64);
            w.w(f::GUEST_BASE[i], s.base);
        }
        w.w(f::GUEST_GDTR_BASE, st.gdt.base);
        w.w(f::GUEST_GDTR_LIMIT, st.gdt.limit as u64);
        w.w(f::GUEST_IDTR_BASE, st.idt.base);
        w.w(f::GUEST_IDTR_LIMIT, st.idt.limit as u64);
        w.w(f::GUEST_DR7, st.dr7);
        w.w(f::GUEST_RSP, st.gprs[gpr::RSP]);
        w.w(f::GUEST_RIP, st.rip);
        w.w(f::GUEST_RFLAGS, st.rflags);
        w.w(f::GUEST_SYSENTER_CS, st.sysenter_cs);
        w.w(f::GUEST_SYSENTER_ESP, st.sysenter_esp);
        w.w(f::GUEST_SYSENTER_EIP, st.sysenter_eip);
        w.w(f::GUEST_EFER, st.efer);
        w.w(f::GUEST_PAT, st.pat);
        w.w(f::GUEST_DEBUGCTL, 0);
        w.w(f::GUEST_PENDING_DBG, 0);
        w.w(f::GUEST_ACTIVITY, 0);
        let sti_block = st.interrupt_shadow && st.rflags & kvm::arch_state::rflags::IF != 0;
        let mut intr = if sti_block { 1 } else { 0 };
        if vnmi && st.nmi_masked {
            intr |= 1 << 3;
        }
        w.w(f::GUEST_INTERRUPTIBILITY, intr);

        // Event injection.
        let mut info = 0u32;
        if let Some(ev) = st.pending_event {
            let ty = if ev.external {
                TYPE_EXT_INT
            } else if ev.vector == 2 {
                TYPE_NMI
            } else {
                TYPE_HW_EXCEPTION
            };
            info = INTR_INFO_VALID | (ty << 8) | ev.vector as u32;
            // Real mode delivers no error code.
            if let (Some(e), true) = (ev.error_code, st.cr0 & cr0::PE != 0) {
                info |= INTR_INFO_EC_VALID;
                w.w(f::ENTRY_EXCEPTION_EC, e as u64);
            }
        }
        w.w(f::ENTRY_INTR_INFO, info as u64);
    }

    fn save_state(&mut self, st: &mut ArchState) {
        let segs: [&mut kvm_segment; 8] = {
            let ArchState { es, cs, ss, ds, fs, gs, ldt, tr, .. } = st;
            [es, cs, ss, ds, fs, gs, ldt, tr]
        };
        for (i, s) in segs.into_iter().enumerate() {
            *s = seg_from_ar(rd(f::GUEST_SEL[i]) as u16, rd(f::GUEST_AR[i]) as u32, rd(f::GUEST_LIMIT[i]) as u32, rd(f::GUEST_BASE[i]));
        }
        st.gdt = kvm_dtable { base: rd(f::GUEST_GDTR_BASE), limit: rd(f::GUEST_GDTR_LIMIT) as u16, ..Default::default() };
        st.idt = kvm_dtable { base: rd(f::GUEST_IDTR_BASE), limit: rd(f::GUEST_IDTR_LIMIT) as u16, ..Default::default() };
        // The guest's own CR0/CR4: its bits outside the mask, the shadow inside.
        let m0 = rd(f::CR0_MASK);
        st.cr0 = (rd(f::GUEST_CR0) & !m0) | (rd(f::CR0_SHADOW) & m0);
        let m4 = rd(f::CR4_MASK);
        st.cr4 = (rd(f::GUEST_CR4) & !m4) | (rd(f::CR4_SHADOW) & m4);
        st.cr3 = rd(f::GUEST_CR3);
        st.dr7 = rd(f::GUEST_DR7);
        st.gprs[gpr::RSP] = rd(f::GUEST_RSP);
        st.rip = rd(f::GUEST_RIP);
        st.rflags = rd(f::GUEST_RFLAGS);
        st.sysenter_cs = rd(f::GUEST_SYSENTER_CS);
        st.sysenter_esp = rd(f::GUEST_SYSENTER_ESP);
        st.sysenter_eip = rd(f::GUEST_SYSENTER_EIP);
        st.efer = rd(f::GUEST_EFER);
        st.pat = rd(f::GUEST_PAT);
        let intr = rd(f::GUEST_INTERRUPTIBILITY);
        st.interrupt_shadow = intr & 3 != 0;
        if self.vmx.config().pin_based & PIN_BASED_VIRTUAL_NMIS != 0 {
            st.nmi_masked = intr & (1 << 3) != 0;
        }
        // An event whose delivery was interrupted by the exit is injected again.
        st.pending_event = None;
        let idt = rd(f::IDT_VECTORING_INFO) as u32;
        if idt & INTR_INFO_VALID != 0 {
            let ty = (idt >> 8) & 7;
            st.pending_event = Some(PendingEvent {
                vector: idt as u8,
                error_code: if idt & INTR_INFO_EC_VALID != 0 { Some(rd(f::IDT_VECTORING_EC) as u32) } else { None },
                soft: false,
                external: ty == TYPE_EXT_INT,
            });
        }
        self.exit_rip = st.rip;
        self.exit_len = rd(f::EXIT_INSTRUCTION_LEN) as u32;
    }

    fn decode_exit(&self) -> Exit {
        let reason = rd(f::EXIT_REASON);
        let q = rd(f::EXIT_QUALIFICATION);
        if reason & (1 << 31) != 0 {
            return Exit::FailEntry { hardware_reason: reason };
        }
        match reason & 0xffff {
            0 => {
                let info = rd(f::EXIT_INTR_INFO) as u32;
                if (info >> 8) & 7 == TYPE_NMI {
                    // A host NMI ended the guest: hand it to the host's handler.
                    // SAFETY: interrupts are off; INT 2 runs the kernel's NMI entry
                    // as upstream's kvm-intel does after such an exit.
                    unsafe { core::arch::asm!("int 2") };
                    return Exit::HostInterrupt;
                }
                Exit::Exception {
                    vector: info as u8,
                    error_code: if info & INTR_INFO_EC_VALID != 0 { Some(rd(f::EXIT_INTR_EC) as u32) } else { None },
                }
            }
            1 => Exit::HostInterrupt,
            2 => Exit::Shutdown,
            7 => Exit::InterruptWindow,
            8 => Exit::Iret,
            10 => Exit::Cpuid,
            12 => Exit::Hlt,
            13 | 36 | 39 | 54 => Exit::Nop,
            18 => Exit::Hypercall,
            19..=27 | 50 | 51 | 53 => Exit::UndefinedOpcode,
            29 => Exit::DrAccess { dr: (q & 7) as u8, write: q & (1 << 4) == 0 },
            30 => Exit::Io {
                port: (q >> 16) as u16,
                size: ((q & 7) + 1) as u8,
                input: q & 8 != 0,
                string: q & 16 != 0,
                rep: q & 32 != 0,
            },
            31 => Exit::Rdmsr,
            32 => Exit::Wrmsr,
            48 => Exit::TdpFault { gpa: rd(f::GUEST_PHYSICAL_ADDRESS), write: q & 2 != 0, fetch: q & 4 != 0, present: q & 0x38 != 0 },
            55 => Exit::Xsetbv,
            r => Exit::Unhandled { reason: r, info1: q, info2: rd(f::GUEST_PHYSICAL_ADDRESS) },
        }
    }
}

impl VendorVcpu for VmxVcpu {
    fn run(&mut self, st: &mut ArchState, p: &EntryParams) -> Exit {
        let cpu_id = cpu::smp_processor_id();
        // SAFETY: VMX operation is on (enabled on every CPU while loaded); the
        // VMCS page is ours and carries the revision ID.
        if unsafe { vmclear(self.vmcs_pa).and_then(|_| vmptrld(self.vmcs_pa)) }.is_err() {
            return Exit::FailEntry { hardware_reason: u64::MAX };
        }
        if p.flush_tlb || self.last_cpu != Some(cpu_id) {
            // SAFETY: INVEPT is supported (checked by the VMCS configuration).
            unsafe { crate::vmx_insn::invept_all() };
            self.last_cpu = Some(cpu_id);
        }
        let mut w = Writer { failed: None };
        self.write_all(st, p, &mut w);
        if let Some(field) = w.failed {
            // SAFETY: the VMCS is current.
            let _ = unsafe { vmclear(self.vmcs_pa) };
            return Exit::FailEntry { hardware_reason: 0x1_0000_0000 | field as u64 };
        }
        // The syscall MSRs and KernelGsBase are not switched by VM entry/exit.
        let switched = [msr::STAR, msr::LSTAR, msr::CSTAR, msr::SYSCALL_MASK, msr::KERNEL_GS_BASE];
        let guest = [st.star, st.lstar, st.cstar, st.sfmask, st.kernel_gs_base];
        let mut host = [0u64; 5];
        for (i, m) in switched.iter().enumerate() {
            host[i] = cpu::rdmsr_safe(*m).unwrap_or(0);
        }
        let (gdt, idt) = read_dt();
        let failed;
        // SAFETY: interrupts are off (caller); the guest's values go in and the
        // host's come back before anything runs that uses them; GDTR/IDTR limits,
        // which VM exit sets to 0xffff, are restored from the saved descriptors.
        unsafe {
            for (i, m) in switched.iter().enumerate() {
                cpu::wrmsr(*m, guest[i]);
            }
            failed = kvm_rs_vmx_vcpu_run(st.gprs.as_mut_ptr());
            st.kernel_gs_base = cpu::rdmsr_safe(msr::KERNEL_GS_BASE).unwrap_or(st.kernel_gs_base);
            for (i, m) in switched.iter().enumerate() {
                cpu::wrmsr(*m, host[i]);
            }
            core::arch::asm!("lgdt [{}]", in(reg) gdt.as_ptr(), options(nostack));
            core::arch::asm!("lidt [{}]", in(reg) idt.as_ptr(), options(nostack));
        }
        let exit = if failed != 0 {
            Exit::FailEntry { hardware_reason: 0x8000_0000_0000_0000 | rd(f::VM_INSTRUCTION_ERROR) }
        } else {
            self.save_state(st);
            self.decode_exit()
        };
        // SAFETY: the VMCS is current; clearing it makes it safe to load on any CPU.
        let _ = unsafe { vmclear(self.vmcs_pa) };
        exit
    }

    fn next_rip(&self) -> Option<u64> {
        if (1..=15).contains(&self.exit_len) {
            Some(self.exit_rip.wrapping_add(self.exit_len as u64))
        } else {
            None
        }
    }
}
