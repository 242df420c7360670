// SPDX-License-Identifier: GPL-2.0
//! The VMX half of a vCPU: its VMCS, the state copies between kvm.ko's ArchState
//! and the VMCS, VM entry (vmenter.S), event injection and the decoding of VM
//! exits into kvm.ko's `Exit`.
//!
//! The VMCS stays current on the CPU the vCPU last ran on (loaded_vmcs.rs), so
//! the next entry there is a VMRESUME; a vCPU that moved has its old CPU VMCLEAR
//! it first. kvm.ko's ArchState is the one copy of the guest state: an exit reads
//! it all back, and an entry writes the fields whose value differs from the
//! state the VMCS was last known to hold (comparing memory is much cheaper than
//! a VMWRITE), so an exit handled in the kernel rewrites little more than RIP.

use crate::loaded_vmcs::LoadedVmcs;
use crate::vmcs::CurrentVmcs;
use crate::vmcs_config::controls::*;
use crate::vmcs_config::fields::*;
use crate::vmx::Vmx;
use crate::vmx_insn::{self, InvvpidType};
use kernel::prelude::*;
use kvm::arch::msr;
use kvm::arch::regs::{cr0, cr4, efer};
use kvm::arch_state::{gpr, seg_from_vmcb_attrib, seg_to_vmcb_attrib, PendingEvent};
use kvm::uapi::{kvm_dtable, kvm_segment};
use kvm::{cpu, ArchState, CrOp, EntryParams, Exit, VendorVcpu};

extern "C" {
    fn kvm_rs_vmx_vcpu_run(gprs: *mut u64, resume: i32) -> i32;
}

/// CR0 bits the guest writes without an exit (upstream's
/// KVM_POSSIBLE_CR0_GUEST_BITS with EPT); every other bit is host-owned, so
/// kvm.ko sees (and checks) each change of PE, PG, CD, NW, NE...
const CR0_GUEST_OWNED: u64 = cr0::TS | cr0::WP;
/// CR4 bits the guest writes without an exit (KVM_POSSIBLE_CR4_GUEST_BITS):
/// none of them changes the paging mode or what CPUID reports.
const CR4_GUEST_OWNED: u64 = cr4::PVI | cr4::DE | cr4::PCE | cr4::OSFXSR | cr4::OSXMMEXCPT | cr4::PGE
    | cr4::TSD | cr4::FSGSBASE;
/// CR0 bits kept clear in the hardware CR0 while the guest runs (upstream's
/// KVM_VM_CR0_ALWAYS_OFF): guest memory stays cacheable; the guest reads its own
/// CD/NW from the shadow.
const CR0_ALWAYS_OFF: u64 = cr0::CD | cr0::NW;

/// Exit reasons (SDM vol. 3, appendix C).
mod reason {
    pub(super) const EXCEPTION_NMI: u32 = 0;
    pub(super) const EXTERNAL_INTERRUPT: u32 = 1;
    pub(super) const TRIPLE_FAULT: u32 = 2;
    pub(super) const INTERRUPT_WINDOW: u32 = 7;
    pub(super) const NMI_WINDOW: u32 = 8;
    pub(super) const CPUID: u32 = 10;
    pub(super) const HLT: u32 = 12;
    pub(super) const INVD: u32 = 13;
    pub(super) const VMCALL: u32 = 18;
    pub(super) const VMCLEAR: u32 = 19;
    pub(super) const VMXON: u32 = 27;
    pub(super) const CR_ACCESS: u32 = 28;
    pub(super) const DR_ACCESS: u32 = 29;
    pub(super) const IO_INSTRUCTION: u32 = 30;
    pub(super) const MSR_READ: u32 = 31;
    pub(super) const MSR_WRITE: u32 = 32;
    pub(super) const MWAIT: u32 = 36;
    pub(super) const MONITOR: u32 = 39;
    pub(super) const EPT_VIOLATION: u32 = 48;
    pub(super) const INVEPT: u32 = 50;
    pub(super) const RDTSCP: u32 = 51;
    pub(super) const INVVPID: u32 = 53;
    pub(super) const WBINVD: u32 = 54;
    pub(super) const XSETBV: u32 = 55;
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

/// Guest interruptibility state bits.
const BLOCKING_BY_STI: u32 = 1 << 0;
const BLOCKING_BY_MOV_SS: u32 = 1 << 1;
const BLOCKING_BY_NMI: u32 = 1 << 3;

pub(crate) struct VmxVcpu {
    vmx: &'static Vmx,
    vmcs: KBox<LoadedVmcs>,
    /// This vCPU's VPID, or 0 if none was free (then VPID is not enabled).
    vpid: u16,
    last_cpu: Option<u32>,
    /// RIP and instruction length of the last exit (for next_rip).
    exit_rip: u64,
    exit_len: u32,
    /// The last exit's reason and qualification (kvm:kvm_exit's exit_reason
    /// and info1; the other words are not read on every exit and stay 0).
    exit_info: kvm::x86_ops::ExitInfo,
    /// What the VMCS holds (`None`: unknown, write everything), so an entry
    /// writes only the fields that changed since: kvm.ko's state as of the last
    /// exit, the controls and the host state last written.
    guest_in_vmcs: Option<ArchState>,
    controls_in_vmcs: Option<Controls>,
    host_in_vmcs: Option<HostState>,
}

/// The per-entry control fields (the constant ones are written with the first).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Controls {
    cpu_based: u32,
    exception_bitmap: u32,
    entry: u32,
    ept_pointer: u64,
    tsc_offset: u64,
    /// The MSR bitmap in use (0 without MSR bitmaps: every access exits).
    msr_bitmap: u64,
}

/// The host state of the VMCS and the syscall MSRs the host runs with: all but
/// CR0/CR3/CR4 and the FS base are per-CPU constants, read when the CPU changes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct HostState {
    cpu: u32,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    fs_base: u64,
    /// STAR, LSTAR, CSTAR, SFMASK: the same on every CPU after boot.
    syscall_msrs: [u64; 4],
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        // VMCLEAR on the CPU where the VMCS is active before its page goes.
        self.vmx.owners().release(&self.vmcs);
        self.vmx.vpids().free(self.vpid);
    }
}

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

/// Writes fields of the current VMCS, remembering the first that failed (so a
/// sequence of writes is checked once).
struct Writer<'v, 'a> {
    vmcs: &'v mut CurrentVmcs<'a>,
    failed: Option<WriteFailed>,
}

impl Writer<'_, '_> {
    fn w<T: FieldValue>(&mut self, field: Field<T, Rw>, value: T) {
        if let Err(e) = self.vmcs.write(field, value) {
            self.failed.get_or_insert(e);
        }
    }

    /// Writes `value` unless the VMCS is known to hold it (`old`).
    fn changed<T: FieldValue + PartialEq>(&mut self, field: Field<T, Rw>, value: T, old: Option<T>) {
        if old != Some(value) {
            self.w(field, value);
        }
    }
}

/// The TSS base of the host from its descriptor in the host GDT.
fn host_tr_base(gdt_base: u64, tr: u16) -> u64 {
    // SAFETY: the TSS descriptor (16 bytes) of the running CPU lies in its GDT.
    let d = unsafe { core::slice::from_raw_parts((gdt_base + (tr as u64 & !7)) as *const u8, 16) };
    (d[2] as u64) | (d[3] as u64) << 8 | (d[4] as u64) << 16 | (d[7] as u64) << 24
        | (u32::from_le_bytes([d[8], d[9], d[10], d[11]]) as u64) << 32
}

impl VmxVcpu {
    pub(crate) fn new(vmx: &'static Vmx) -> Result<Self> {
        let vmcs = LoadedVmcs::new(vmx.config().revision_id)?;
        let vpid = if vmx.config().vpid { vmx.vpids().alloc().unwrap_or(0) } else { 0 };
        Ok(VmxVcpu {
            vmx,
            vmcs,
            vpid,
            last_cpu: None,
            exit_rip: 0,
            exit_len: 0,
            exit_info: Default::default(),
            guest_in_vmcs: None,
            controls_in_vmcs: None,
            host_in_vmcs: None,
        })
    }

    /// The control fields: the constant ones when the VMCS is new to us, the
    /// per-entry ones when they changed.
    fn write_controls(&self, st: &ArchState, p: &EntryParams, w: &mut Writer<'_, '_>) -> Controls {
        let c = self.vmx.config();
        let old = self.controls_in_vmcs;
        if old.is_none() {
            let mut secondary = c.cpu_based_2nd & !SECONDARY_EXEC_ENABLE_RDTSCP; // RDTSCP not offered
            if self.vpid == 0 {
                secondary &= !SECONDARY_EXEC_ENABLE_VPID;
            }
            w.w(PIN_BASED_VM_EXEC_CONTROL, c.pin_based);
            w.w(SECONDARY_VM_EXEC_CONTROL, secondary);
            if secondary & SECONDARY_EXEC_ENABLE_VPID != 0 {
                w.w(VIRTUAL_PROCESSOR_ID, self.vpid);
            }
            // No acknowledge-on-exit: a host interrupt stays pending in the local
            // APIC and is taken when interrupts are enabled again.
            w.w(VM_EXIT_CONTROLS, c.vmexit & !VM_EXIT_ACK_INTR_ON_EXIT);
            w.w(CR3_TARGET_COUNT, 0);
            w.w(VMCS_LINK_POINTER, u64::MAX);
            // CR0/CR4: the host owns every bit the guest does not; the guest reads
            // its own values of those from the shadows.
            w.w(CR0_GUEST_HOST_MASK, !CR0_GUEST_OWNED);
            w.w(CR4_GUEST_HOST_MASK, !CR4_GUEST_OWNED);
        }
        let mut entry = c.vmentry & !VM_ENTRY_IA32E_MODE;
        if st.efer & efer::LMA != 0 {
            entry |= VM_ENTRY_IA32E_MODE;
        }
        let now = Controls {
            // With EPT the CR3 and INVLPG exits are not needed (if the TRUE MSR
            // lets them be 0); the window exits only on request.
            cpu_based: {
                let must1 = self.vmx.true_procbased_must1();
                let ctl = crate::vmcs_config::entry_cpu_based(c, must1, p.request_interrupt_window, p.intercept_iret);
                // HLT exits off (KVM_CAP_X86_DISABLE_EXITS), if the CPU allows.
                if p.intercept_hlt { ctl } else { (ctl & !CPU_BASED_HLT_EXITING) | (must1 & CPU_BASED_HLT_EXITING) }
            },
            // #MC goes to the host; #DB/#BP while user space debugs the guest.
            exception_bitmap: (1 << 18) | p.intercept_exceptions,
            entry,
            // 4-level walk (3 << 3), write-back paging structures (6).
            ept_pointer: p.tdp_root | (3 << 3) | 6,
            tsc_offset: st.tsc_offset,
            msr_bitmap: if c.cpu_based & CPU_BASED_USE_MSR_BITMAPS != 0 {
                self.vmx.msr_bitmap_pa(p.intercept_all_msrs)
            } else {
                0
            },
        };
        w.changed(CPU_BASED_VM_EXEC_CONTROL, now.cpu_based, old.map(|o| o.cpu_based));
        w.changed(EXCEPTION_BITMAP, now.exception_bitmap, old.map(|o| o.exception_bitmap));
        w.changed(VM_ENTRY_CONTROLS, now.entry, old.map(|o| o.entry));
        w.changed(EPT_POINTER, now.ept_pointer, old.map(|o| o.ept_pointer));
        w.changed(TSC_OFFSET, now.tsc_offset, old.map(|o| o.tsc_offset));
        if now.msr_bitmap != 0 {
            w.changed(MSR_BITMAP, now.msr_bitmap, old.map(|o| o.msr_bitmap));
        }
        now
    }

    /// The host state: the per-CPU part when the VMCS last got it on another CPU,
    /// CR0/CR3/CR4 and the FS base (the vCPU thread's) when they changed.
    fn write_host_state(&self, cpu_id: u32, w: &mut Writer<'_, '_>) -> HostState {
        let rdmsr = |m| cpu::rdmsr_safe(m).unwrap_or(0);
        let old = self.host_in_vmcs.filter(|h| h.cpu == cpu_id);
        let syscall_msrs = match old {
            Some(h) => h.syscall_msrs,
            None => {
                let [cs, ss, _ds, _es, _fs, _gs, tr] = read_seg_selectors();
                let (gdt, idt) = read_dt();
                let gdt_base = dt_base(&gdt);
                w.w(HOST_CS_SELECTOR, cs);
                w.w(HOST_SS_SELECTOR, ss);
                for sel in [HOST_DS_SELECTOR, HOST_ES_SELECTOR, HOST_FS_SELECTOR, HOST_GS_SELECTOR] {
                    w.w(sel, 0);
                }
                w.w(HOST_TR_SELECTOR, tr);
                w.w(HOST_GS_BASE, rdmsr(msr::GS_BASE));
                w.w(HOST_TR_BASE, host_tr_base(gdt_base, tr));
                w.w(HOST_GDTR_BASE, gdt_base);
                w.w(HOST_IDTR_BASE, dt_base(&idt));
                w.w(HOST_IA32_SYSENTER_CS, rdmsr(msr::IA32_SYSENTER_CS) as u32);
                w.w(HOST_IA32_SYSENTER_ESP, rdmsr(msr::IA32_SYSENTER_ESP));
                w.w(HOST_IA32_SYSENTER_EIP, rdmsr(msr::IA32_SYSENTER_EIP));
                w.w(HOST_IA32_EFER, rdmsr(msr::EFER));
                w.w(HOST_IA32_PAT, rdmsr(msr::IA32_PAT));
                [rdmsr(msr::STAR), rdmsr(msr::LSTAR), rdmsr(msr::CSTAR), rdmsr(msr::SYSCALL_MASK)]
            }
        };
        let now = HostState {
            cpu: cpu_id,
            cr0: cpu::read_cr0(),
            cr3: kvm::cpu::read_cr3(),
            cr4: cpu::read_cr4(),
            fs_base: rdmsr(msr::FS_BASE),
            syscall_msrs,
        };
        w.changed(HOST_CR0, now.cr0, old.map(|h| h.cr0));
        w.changed(HOST_CR3, now.cr3, old.map(|h| h.cr3));
        w.changed(HOST_CR4, now.cr4, old.map(|h| h.cr4));
        w.changed(HOST_FS_BASE, now.fs_base, old.map(|h| h.fs_base));
        now
    }

    /// CR0 as the guest runs with it: CR0.NE (and whatever else FIXED0 demands
    /// but PE/PG, which unrestricted guest lets go) set, CD/NW clear.
    fn hardware_cr0(&self, st: &ArchState) -> u64 {
        let cr0_fixed = self.vmx.caps().cr0_fixed0 & !(cr0::PE | cr0::PG);
        (st.cr0 & !CR0_ALWAYS_OFF) | cr0_fixed
    }

    /// CR4 as the guest runs with it: CR4.VMXE set, as VMX operation requires.
    fn hardware_cr4(&self, st: &ArchState) -> u64 {
        st.cr4 | self.vmx.caps().cr4_fixed0
    }

    fn interruptibility(&self, st: &ArchState) -> u32 {
        let vnmi = self.vmx.config().pin_based & PIN_BASED_VIRTUAL_NMIS != 0;
        let sti_block = st.interrupt_shadow && st.rflags & kvm::arch_state::rflags::IF != 0;
        let mut intr = if sti_block { BLOCKING_BY_STI } else { 0 };
        if vnmi && st.nmi_masked {
            intr |= BLOCKING_BY_NMI;
        }
        intr
    }

    /// The guest state that differs from what the VMCS holds, and the event to
    /// inject.
    fn write_guest_state(&self, st: &ArchState, w: &mut Writer<'_, '_>) {
        let old = self.guest_in_vmcs.as_ref();
        if old.is_none() {
            w.w(GUEST_IA32_DEBUGCTL, 0);
            w.w(GUEST_PENDING_DBG_EXCEPTIONS, 0);
            w.w(GUEST_ACTIVITY_STATE, 0);
        }
        w.changed(GUEST_CR0, self.hardware_cr0(st), old.map(|o| self.hardware_cr0(o)));
        w.changed(CR0_READ_SHADOW, st.cr0, old.map(|o| o.cr0));
        w.changed(GUEST_CR4, self.hardware_cr4(st), old.map(|o| self.hardware_cr4(o)));
        w.changed(CR4_READ_SHADOW, st.cr4, old.map(|o| o.cr4));
        w.changed(GUEST_CR3, st.cr3, old.map(|o| o.cr3));
        // With EPT, PAE paging takes its PDPTEs from the VMCS at entry.
        if st.pae_paging() {
            let known = old.filter(|o| o.pae_paging());
            for (i, f) in GUEST_PDPTRS.iter().enumerate() {
                w.changed(*f, st.pdptrs[i], known.map(|o| o.pdptrs[i]));
            }
        }
        let segs = |s: &ArchState| [s.es, s.cs, s.ss, s.ds, s.fs, s.gs, s.ldt, s.tr];
        let old_segs = old.map(segs);
        for (i, (f, s)) in GUEST_SEGMENTS.iter().zip(segs(st)).enumerate() {
            let o = old_segs.as_ref().map(|o| &o[i]);
            w.changed(f.selector, s.selector, o.map(|o| o.selector));
            w.changed(f.limit, s.limit, o.map(|o| o.limit));
            w.changed(f.access_rights, seg_to_ar(&s), o.map(seg_to_ar));
            w.changed(f.base, s.base, o.map(|o| o.base));
        }
        w.changed(GUEST_GDTR_BASE, st.gdt.base, old.map(|o| o.gdt.base));
        w.changed(GUEST_GDTR_LIMIT, st.gdt.limit as u32, old.map(|o| o.gdt.limit as u32));
        w.changed(GUEST_IDTR_BASE, st.idt.base, old.map(|o| o.idt.base));
        w.changed(GUEST_IDTR_LIMIT, st.idt.limit as u32, old.map(|o| o.idt.limit as u32));
        w.changed(GUEST_DR7, st.dr7, old.map(|o| o.dr7));
        w.changed(GUEST_RSP, st.gprs[gpr::RSP], old.map(|o| o.gprs[gpr::RSP]));
        w.changed(GUEST_RIP, st.rip, old.map(|o| o.rip));
        w.changed(GUEST_RFLAGS, st.rflags, old.map(|o| o.rflags));
        w.changed(GUEST_SYSENTER_CS, st.sysenter_cs as u32, old.map(|o| o.sysenter_cs as u32));
        w.changed(GUEST_SYSENTER_ESP, st.sysenter_esp, old.map(|o| o.sysenter_esp));
        w.changed(GUEST_SYSENTER_EIP, st.sysenter_eip, old.map(|o| o.sysenter_eip));
        w.changed(GUEST_IA32_EFER, st.efer, old.map(|o| o.efer));
        w.changed(GUEST_IA32_PAT, st.pat, old.map(|o| o.pat));
        // Always written: ArchState folds STI and MOV SS blocking into one flag, so
        // it cannot tell which of them the VMCS holds.
        w.w(GUEST_INTERRUPTIBILITY_INFO, self.interruptibility(st));

        // Event injection: always written (VM exit clears the valid bit, a failed
        // VMLAUNCH/VMRESUME does not).
        let mut info = 0u32;
        if let Some(ev) = st.pending_event {
            // A guest halted without an HLT exit wakes for the event (upstream's
            // vmx_clear_hlt; RIP is past the HLT already).
            w.w(GUEST_ACTIVITY_STATE, 0);
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
                w.w(VM_ENTRY_EXCEPTION_ERROR_CODE, e);
            }
        }
        w.w(VM_ENTRY_INTR_INFO_FIELD, info);
    }

    /// Copies the guest state back into `st`.
    fn save_state(&self, v: &CurrentVmcs<'_>, st: &mut ArchState) {
        let segs: [&mut kvm_segment; 8] = {
            let ArchState { es, cs, ss, ds, fs, gs, ldt, tr, .. } = st;
            [es, cs, ss, ds, fs, gs, ldt, tr]
        };
        for (f, s) in GUEST_SEGMENTS.iter().zip(segs) {
            *s = seg_from_ar(v.read(f.selector), v.read(f.access_rights), v.read(f.limit), v.read(f.base));
        }
        st.gdt = kvm_dtable { base: v.read(GUEST_GDTR_BASE), limit: v.read(GUEST_GDTR_LIMIT) as u16, ..Default::default() };
        st.idt = kvm_dtable { base: v.read(GUEST_IDTR_BASE), limit: v.read(GUEST_IDTR_LIMIT) as u16, ..Default::default() };
        // The guest's own CR0/CR4: the bits it owns from the hardware register,
        // the others from the shadow (they only change through kvm.ko).
        st.cr0 = (v.read(GUEST_CR0) & CR0_GUEST_OWNED) | (v.read(CR0_READ_SHADOW) & !CR0_GUEST_OWNED);
        st.cr4 = (v.read(GUEST_CR4) & CR4_GUEST_OWNED) | (v.read(CR4_READ_SHADOW) & !CR4_GUEST_OWNED);
        st.cr3 = v.read(GUEST_CR3);
        if st.pae_paging() {
            // The guest may have loaded CR3 (and so new PDPTEs) without an exit.
            for (i, f) in GUEST_PDPTRS.iter().enumerate() {
                st.pdptrs[i] = v.read(*f);
            }
        }
        st.dr7 = v.read(GUEST_DR7);
        // A #DB exit: DR6 as the exception sets it (the VMCS holds no DR6; the
        // exit qualification has its B0-B3, BD and BS bits).
        if v.read(VM_EXIT_REASON) & 0xffff == reason::EXCEPTION_NMI {
            let info = v.read(VM_EXIT_INTR_INFO);
            if info & INTR_INFO_VALID != 0 && info & 0xff == 1 && (info >> 8) & 7 == TYPE_HW_EXCEPTION {
                st.dr6 = v.read(EXIT_QUALIFICATION) | 0xffff_0ff0;
            }
        }
        st.gprs[gpr::RSP] = v.read(GUEST_RSP);
        st.rip = v.read(GUEST_RIP);
        st.rflags = v.read(GUEST_RFLAGS);
        st.sysenter_cs = v.read(GUEST_SYSENTER_CS) as u64;
        st.sysenter_esp = v.read(GUEST_SYSENTER_ESP);
        st.sysenter_eip = v.read(GUEST_SYSENTER_EIP);
        st.efer = v.read(GUEST_IA32_EFER);
        st.pat = v.read(GUEST_IA32_PAT);
        let intr = v.read(GUEST_INTERRUPTIBILITY_INFO);
        st.interrupt_shadow = intr & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0;
        if self.vmx.config().pin_based & PIN_BASED_VIRTUAL_NMIS != 0 {
            // Blocking by NMI only starts with the delivery of an NMI, and the
            // guest gets only the one injected at this entry: if NMIs were open
            // at entry and none was injected, they are still open, whatever the
            // field says (upstream's nmi_known_unmasked has the same effect;
            // Bochs 2.7 keeps reporting the blocking after kvm.ko lifted it in
            // the field, as RSM does).
            let nmi_injected = matches!(st.pending_event, Some(e) if e.vector == 2 && !e.external && !e.soft);
            st.nmi_masked = (st.nmi_masked || nmi_injected) && intr & BLOCKING_BY_NMI != 0;
        }
        // An event whose delivery was interrupted by the exit is injected again.
        st.pending_event = None;
        let idt = v.read(IDT_VECTORING_INFO_FIELD);
        if idt & INTR_INFO_VALID != 0 {
            let ty = (idt >> 8) & 7;
            st.pending_event = Some(PendingEvent {
                vector: idt as u8,
                error_code: if idt & INTR_INFO_EC_VALID != 0 { Some(v.read(IDT_VECTORING_ERROR_CODE)) } else { None },
                soft: false,
                external: ty == TYPE_EXT_INT,
            });
        }
    }

    fn decode_exit(&self, v: &CurrentVmcs<'_>) -> Exit {
        let full = v.read(VM_EXIT_REASON);
        let q = v.read(EXIT_QUALIFICATION);
        if full & (1 << 31) != 0 {
            // VM-entry failure: invalid guest state (33), MSR loading (34), machine
            // check (41). The whole field goes to user space, as upstream's.
            return Exit::FailEntry { hardware_reason: full as u64 };
        }
        match full & 0xffff {
            reason::EXCEPTION_NMI => {
                let info = v.read(VM_EXIT_INTR_INFO);
                if (info >> 8) & 7 == TYPE_NMI {
                    // A host NMI ended the guest: hand it to the host's handler.
                    // SAFETY: interrupts are off; INT 2 runs the kernel's NMI entry
                    // as upstream's kvm-intel does after such an exit.
                    unsafe { core::arch::asm!("int 2") };
                    return Exit::HostInterrupt;
                }
                Exit::Exception {
                    vector: info as u8,
                    error_code: if info & INTR_INFO_EC_VALID != 0 { Some(v.read(VM_EXIT_INTR_ERROR_CODE)) } else { None },
                }
            }
            reason::EXTERNAL_INTERRUPT => Exit::HostInterrupt,
            reason::TRIPLE_FAULT => Exit::Shutdown,
            reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
            reason::NMI_WINDOW => Exit::Iret,
            reason::CPUID => Exit::Cpuid,
            reason::HLT => Exit::Hlt,
            reason::INVD | reason::MWAIT | reason::MONITOR | reason::WBINVD => Exit::Nop,
            reason::VMCALL => Exit::Hypercall,
            reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::RDTSCP | reason::INVVPID => Exit::UndefinedOpcode,
            reason::CR_ACCESS => {
                // Bits 3:0 the CR, 5:4 the access type, 11:8 the GPR, 31:16 LMSW's data.
                let gpr = Some(((q >> 8) & 0xf) as u8);
                let op = match (q >> 4) & 3 {
                    0 => CrOp::Write { gpr },
                    1 => CrOp::Read { gpr },
                    2 => CrOp::Clts,
                    _ => CrOp::Lmsw { msw: (q >> 16) as u16 },
                };
                Exit::CrAccess { cr: (q & 0xf) as u8, op }
            }
            reason::DR_ACCESS => Exit::DrAccess { dr: (q & 7) as u8, write: q & (1 << 4) == 0 },
            reason::IO_INSTRUCTION => Exit::Io {
                port: (q >> 16) as u16,
                size: ((q & 7) + 1) as u8,
                input: q & 8 != 0,
                string: q & 16 != 0,
                rep: q & 32 != 0,
            },
            reason::MSR_READ => Exit::Rdmsr,
            reason::MSR_WRITE => Exit::Wrmsr,
            reason::EPT_VIOLATION => Exit::TdpFault {
                gpa: v.read(GUEST_PHYSICAL_ADDRESS),
                write: q & 2 != 0,
                fetch: q & 4 != 0,
                present: q & 0x38 != 0,
            },
            reason::XSETBV => Exit::Xsetbv,
            r => Exit::Unhandled { reason: r as u64, info1: q, info2: v.read(GUEST_PHYSICAL_ADDRESS) },
        }
    }

    /// The TLB maintenance this entry needs (upstream's KVM_REQ_TLB_FLUSH and
    /// KVM_REQ_TLB_FLUSH_GUEST, vmx_flush_tlb_all/_guest).
    fn flush_tlb(&mut self, cpu_id: u32, p: &EntryParams) {
        let moved = self.last_cpu != Some(cpu_id);
        self.last_cpu = Some(cpu_id);
        if p.flush_tlb || moved {
            // Guest-physical mappings changed, or this CPU may hold stale ones of
            // this vCPU (or of an EPT root whose page was reused): INVEPT drops
            // every mapping derived from any EPT root.
            // SAFETY: INVEPT all-context is supported (checked by the VMCS
            // configuration) and VMX operation is on.
            unsafe { vmx_insn::invept_all() };
        }
        if self.vpid != 0 && (moved || p.flush_guest_tlb) {
            // The guest's linear mappings tagged with this VPID survive VM entry
            // and exit: drop them when the guest changed its paging mode in a way
            // kvm.ko carried out, or when they may be stale on this CPU.
            let ty = if self.vmx.config().ept_vpid_cap & VPID_CAP_INVVPID_SINGLE != 0 {
                InvvpidType::SingleContext
            } else {
                InvvpidType::AllContexts
            };
            // SAFETY: INVVPID of this type is supported (the configuration enables
            // VPID only if one is) and VMX operation is on.
            unsafe { vmx_insn::invvpid(ty, self.vpid) };
        }
    }
}

impl VendorVcpu for VmxVcpu {
    fn vcpu_load(&mut self, cpu_id: u32) {
        self.vmx.owners().migrate(cpu_id, &self.vmcs);
    }

    fn run(&mut self, st: &mut ArchState, p: &EntryParams) -> Exit {
        let cpu_id = cpu::smp_processor_id();
        self.flush_tlb(cpu_id, p);
        self.exit_len = 0;
        // SAFETY: VMX operation is on (enabled on every CPU while loaded);
        // interrupts are off (the caller's contract) for the whole entry;
        // vcpu_load ran on this CPU (preemption has been off since), so the VMCS
        // is not active on another CPU.
        let Ok(mut vmcs) = (unsafe { self.vmx.owners().load(cpu_id, &self.vmcs) }) else {
            pr_err!("VMPTRLD of a vCPU's VMCS failed on CPU {}\n", cpu_id);
            return Exit::FailEntry { hardware_reason: u64::MAX };
        };
        let mut w = Writer { vmcs: &mut vmcs, failed: None };
        let controls = self.write_controls(st, p, &mut w);
        let host = self.write_host_state(cpu_id, &mut w);
        self.write_guest_state(st, &mut w);
        if let Some(WriteFailed(field)) = w.failed {
            pr_err!("VMWRITE of field {:#x} failed\n", field);
            (self.controls_in_vmcs, self.host_in_vmcs, self.guest_in_vmcs) = (None, None, None);
            return Exit::FailEntry { hardware_reason: 0x1_0000_0000 | field as u64 };
        }
        self.controls_in_vmcs = Some(controls);
        self.host_in_vmcs = Some(host);
        // The syscall MSRs and KernelGsBase are not switched by VM entry/exit: the
        // guest's go in where they differ from the host's, and back out after.
        let switched = [msr::STAR, msr::LSTAR, msr::CSTAR, msr::SYSCALL_MASK];
        let guest = [st.star, st.lstar, st.cstar, st.sfmask];
        let host_kernel_gs_base = cpu::rdmsr_safe(msr::KERNEL_GS_BASE).unwrap_or(0);
        let (gdt, idt) = read_dt();
        let failed;
        // SAFETY: interrupts are off (caller); the guest's values go in and the
        // host's come back before anything runs that uses them; GDTR/IDTR limits,
        // which VM exit sets to 0xffff, are restored from the saved descriptors.
        unsafe {
            for (i, m) in switched.iter().enumerate() {
                if guest[i] != host.syscall_msrs[i] {
                    cpu::wrmsr(*m, guest[i]);
                }
            }
            cpu::wrmsr(msr::KERNEL_GS_BASE, st.kernel_gs_base);
            failed = kvm_rs_vmx_vcpu_run(st.gprs.as_mut_ptr(), self.vmcs.launched() as i32);
            st.kernel_gs_base = cpu::rdmsr_safe(msr::KERNEL_GS_BASE).unwrap_or(st.kernel_gs_base);
            cpu::wrmsr(msr::KERNEL_GS_BASE, host_kernel_gs_base);
            for (i, m) in switched.iter().enumerate() {
                if guest[i] != host.syscall_msrs[i] {
                    cpu::wrmsr(*m, host.syscall_msrs[i]);
                }
            }
            core::arch::asm!("lgdt [{}]", in(reg) gdt.as_ptr(), options(nostack));
            core::arch::asm!("lidt [{}]", in(reg) idt.as_ptr(), options(nostack));
        }
        let exit = if failed != 0 {
            // VMfailValid: the controls or the host state were refused.
            let err = vmcs.read(VM_INSTRUCTION_ERROR);
            pr_err!("VMLAUNCH failed: VM-instruction error {} ({:?})\n", err, VmInstructionError::decode(err));
            Exit::FailEntry { hardware_reason: 0x8000_0000_0000_0000 | err as u64 }
        } else {
            // A VM exit (even a failed VM entry, after which the VMCS keeps its
            // launch state) leaves the VMCS launched if the entry got that far.
            let reason = vmcs.read(VM_EXIT_REASON);
            self.exit_info = kvm::x86_ops::ExitInfo {
                isa: kvm::x86_ops::ISA_VMX,
                reason,
                info1: vmcs.read(EXIT_QUALIFICATION),
                ..Default::default()
            };
            if reason & (1 << 31) == 0 {
                self.vmcs.set_launched();
            }
            self.save_state(&vmcs, st);
            let len = vmcs.read(VM_EXIT_INSTRUCTION_LEN);
            let exit = self.decode_exit(&vmcs);
            self.exit_rip = st.rip;
            self.exit_len = len;
            exit
        };
        if let Exit::FailEntry { .. } = exit {
            crate::dump::dump_vmcs(&vmcs);
        }
        // The VMCS now holds `st`: what was written if the entry failed, what the
        // exit saved (and save_state read back) otherwise.
        self.guest_in_vmcs = Some(*st);
        exit
    }

    fn exit_info(&self) -> kvm::x86_ops::ExitInfo {
        self.exit_info
    }

    fn next_rip(&self) -> Option<u64> {
        if (1..=15).contains(&self.exit_len) {
            Some(self.exit_rip.wrapping_add(self.exit_len as u64))
        } else {
            None
        }
    }
}
