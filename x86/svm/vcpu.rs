// SPDX-License-Identifier: GPL-2.0
//! The SVM half of a vCPU: its VMCB (set up as upstream's init_vmcb), the state
//! copies between kvm.ko's ArchState and the VMCB, VMRUN, ASIDs, event injection
//! and the decoding of #VMEXITs.

use crate::svm::{PerCpu, Svm};
use kernel::page::Page;
use kernel::prelude::*;
use kvm::arch::vmcb::{self, exit_code as ec, intercept, Vmcb, VmcbSeg};
use kvm::arch::regs::efer;
use kvm::arch_state::{gpr, seg_from_vmcb_attrib, seg_to_vmcb_attrib, PendingEvent};
use kvm::uapi::{kvm_dtable, kvm_segment};
use kvm::{ArchState, CrOp, EntryParams, Exit, VendorVcpu};

extern "C" {
    fn kvm_rs_svm_vcpu_run(vmcb_pa: u64, gprs: *mut u64, host_save_pa: u64);
}

/// How many times [`SvmVcpu::host_image_loaded`] fired, for its dmesg lines.
static HOST_IMAGE_LOADS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

pub(crate) struct SvmVcpu {
    svm: &'static Svm,
    vmcb_page: Page,
    vmcb_pa: u64,
    asid: u32,
    asid_generation: u64,
    last_cpu: Option<u32>,
    nrips: bool,
    /// The last VMRUN loaded the host's state (see `host_image_loaded`): the
    /// next one flushes the ASID, and a second one in a row is not retried.
    host_image_retried: bool,
}

// SAFETY: the VMCB page is only touched by the thread holding the vCPU.
unsafe impl Send for SvmVcpu {}

impl SvmVcpu {
    pub(crate) fn new(svm: &'static Svm) -> Result<Self> {
        let vmcb_page = Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?;
        let vmcb_pa = kvm::cpu::page_phys(&vmcb_page);
        let mut v = SvmVcpu {
            svm,
            vmcb_page,
            vmcb_pa,
            asid: 0,
            asid_generation: 0,
            last_cpu: None,
            nrips: svm.nrips,
            host_image_retried: false,
        };
        v.init_vmcb();
        Ok(v)
    }

    fn vmcb(&mut self) -> &mut Vmcb {
        // SAFETY: the page is ours, page-aligned and sized for a Vmcb; the CPU only
        // writes it during VMRUN, which runs with `&mut self` held.
        unsafe { &mut *kvm::mm::page_ptr::<Vmcb>(&self.vmcb_page) }
    }

    fn vmcb_ref(&self) -> &Vmcb {
        // SAFETY: as above.
        unsafe { &*kvm::mm::page_ptr::<Vmcb>(&self.vmcb_page) }
    }

    /// The control area (upstream's init_vmcb, for NPT and no nested SVM).
    fn init_vmcb(&mut self) {
        let (iopm, msrpm) = (self.svm.iopm_pa, self.svm.msrpm_pa);
        let c = &mut self.vmcb().control;
        // Every read and write of DR0-DR7 exits (kvm.ko keeps the guest's values
        // and switches DR0-3 around VMRUN when the guest enables breakpoints).
        c.intercept_dr = 0x00ff_00ff;
        // As upstream's: CR0 writes that change more than TS/MP (SELECTIVE_CR0
        // below) and CR4 writes exit, so kvm.ko checks them and keeps the paging
        // mode and CR4.OSXSAVE exact; CR8 writes exit, since the TPR belongs to
        // user space without an in-kernel LAPIC, which must hear when the guest
        // lowers it.
        c.intercept_cr = (1 << (16 + 4)) | (1 << (16 + 8));
        c.intercept_exceptions = 1 << 18; // #MC goes to the host
        c.intercept_misc1 = intercept::INTR
            | intercept::NMI
            | intercept::SMI
            | intercept::INIT
            | intercept::SELECTIVE_CR0
            | intercept::CPUID
            | intercept::RSM
            | intercept::INVD
            | intercept::HLT
            | intercept::INVLPGA
            | intercept::IOIO_PROT
            | intercept::MSR_PROT
            | intercept::TASK_SWITCH
            | intercept::FERR_FREEZE
            | intercept::SHUTDOWN;
        c.intercept_misc2 = intercept::VMRUN
            | intercept::VMMCALL
            | intercept::VMLOAD
            | intercept::VMSAVE
            | intercept::STGI
            | intercept::CLGI
            | intercept::SKINIT
            | intercept::RDTSCP
            | intercept::WBINVD
            | intercept::MONITOR
            | intercept::MWAIT
            | intercept::XSETBV
            | intercept::RDPRU;
        c.iopm_base_pa = iopm;
        c.msrpm_base_pa = msrpm;
        c.int_ctl = vmcb::V_INTR_MASKING;
        c.nested_ctl = vmcb::NP_ENABLE;
    }

    /// Picks an ASID for this CPU (upstream's pre_svm_run/new_asid): a vCPU that
    /// moved, or whose ASID belongs to an older generation of this CPU, gets a new
    /// one; running out flushes every ASID of the CPU.
    fn assign_asid(&mut self, cpu: u32, pc: &mut PerCpu) -> u8 {
        let mut tlb = vmcb::TLB_CONTROL_DO_NOTHING;
        if self.last_cpu != Some(cpu) || self.asid_generation != pc.asid_generation {
            if pc.next_asid > pc.max_asid {
                pc.asid_generation += 1;
                pc.next_asid = 1;
                tlb = vmcb::TLB_CONTROL_FLUSH_ALL_ASID;
            }
            self.asid = pc.next_asid;
            pc.next_asid += 1;
            self.asid_generation = pc.asid_generation;
            self.last_cpu = Some(cpu);
        }
        tlb
    }

    fn load_state(&mut self, st: &ArchState) {
        let seg = |s: &kvm_segment| VmcbSeg { selector: s.selector, attrib: seg_to_vmcb_attrib(s), limit: s.limit, base: s.base };
        let dt = |d: &kvm_dtable| VmcbSeg { selector: 0, attrib: 0, limit: d.limit as u32, base: d.base };
        let cpl = st.cpl();
        let s = &mut self.vmcb().save;
        s.es = seg(&st.es);
        s.cs = seg(&st.cs);
        s.ss = seg(&st.ss);
        s.ds = seg(&st.ds);
        s.fs = seg(&st.fs);
        s.gs = seg(&st.gs);
        s.ldtr = seg(&st.ldt);
        s.tr = seg(&st.tr);
        s.gdtr = dt(&st.gdt);
        s.idtr = dt(&st.idt);
        s.cpl = cpl;
        // The VMCB's EFER must have SVME; the guest never sees it.
        s.efer = st.efer | efer::SVME;
        s.cr0 = st.cr0;
        s.cr2 = st.cr2;
        s.cr3 = st.cr3;
        s.cr4 = st.cr4;
        s.dr6 = st.dr6;
        s.dr7 = st.dr7;
        s.rflags = st.rflags;
        s.rip = st.rip;
        s.rsp = st.gprs[gpr::RSP];
        s.rax = st.gprs[gpr::RAX];
        s.star = st.star;
        s.lstar = st.lstar;
        s.cstar = st.cstar;
        s.sfmask = st.sfmask;
        s.kernel_gs_base = st.kernel_gs_base;
        s.sysenter_cs = st.sysenter_cs;
        s.sysenter_esp = st.sysenter_esp;
        s.sysenter_eip = st.sysenter_eip;
        s.g_pat = st.pat;
        let c = &mut self.vmcb().control;
        c.tsc_offset = st.tsc_offset;
        // The guest's TPR (CR8) is V_TPR while V_INTR_MASKING is on.
        c.int_ctl = (c.int_ctl & !0xff) | (st.cr8 as u32 & 0xf);
        c.int_state = st.interrupt_shadow as u32;
        c.event_inj = 0;
        c.event_inj_err = 0;
        if let Some(ev) = st.pending_event {
            let ty = if ev.external {
                vmcb::EVTINJ_TYPE_INTR
            } else if ev.vector == 2 {
                vmcb::EVTINJ_TYPE_NMI
            } else if ev.soft {
                vmcb::EVTINJ_TYPE_SOFT
            } else {
                vmcb::EVTINJ_TYPE_EXEPT
            };
            let mut inj = vmcb::EVTINJ_VALID | ty | ev.vector as u32;
            if let Some(e) = ev.error_code {
                inj |= vmcb::EVTINJ_VALID_ERR;
                c.event_inj_err = e;
            }
            c.event_inj = inj;
        }
    }

    fn save_state(&self, st: &mut ArchState) {
        let v = self.vmcb_ref();
        let s = &v.save;
        let seg = |x: &VmcbSeg| seg_from_vmcb_attrib(x.selector, x.attrib, x.limit, x.base);
        // Attributes of a null selector loaded in long mode may read as not
        // present; keep what the VMCB says (upstream does the same).
        st.es = seg(&s.es);
        st.cs = seg(&s.cs);
        st.ss = seg(&s.ss);
        st.ds = seg(&s.ds);
        st.fs = seg(&s.fs);
        st.gs = seg(&s.gs);
        st.ldt = seg(&s.ldtr);
        st.tr = seg(&s.tr);
        st.gdt = kvm_dtable { base: s.gdtr.base, limit: s.gdtr.limit as u16, ..Default::default() };
        st.idt = kvm_dtable { base: s.idtr.base, limit: s.idtr.limit as u16, ..Default::default() };
        st.efer = s.efer & !efer::SVME;
        st.cr0 = s.cr0;
        st.cr2 = s.cr2;
        st.cr3 = s.cr3;
        st.cr4 = s.cr4;
        st.dr6 = s.dr6;
        st.dr7 = s.dr7;
        st.rflags = s.rflags;
        st.rip = s.rip;
        st.gprs[gpr::RSP] = s.rsp;
        st.gprs[gpr::RAX] = s.rax;
        st.star = s.star;
        st.lstar = s.lstar;
        st.cstar = s.cstar;
        st.sfmask = s.sfmask;
        st.kernel_gs_base = s.kernel_gs_base;
        st.sysenter_cs = s.sysenter_cs;
        st.sysenter_esp = s.sysenter_esp;
        st.sysenter_eip = s.sysenter_eip;
        st.pat = s.g_pat;
        let c = &v.control;
        st.interrupt_shadow = c.int_state & 1 != 0;
        st.cr8 = (c.int_ctl & 0xf) as u64;
        // The injected event was delivered, unless delivery itself exited: then
        // EXITINTINFO holds it and it is injected again.
        st.pending_event = None;
        let info = c.exit_int_info;
        if info & vmcb::EVTINJ_VALID != 0 {
            let ty = info & vmcb::EVTINJ_TYPE_MASK;
            st.pending_event = Some(PendingEvent {
                vector: info as u8,
                error_code: if info & vmcb::EVTINJ_VALID_ERR != 0 { Some(c.exit_int_info_err) } else { None },
                soft: ty == vmcb::EVTINJ_TYPE_SOFT,
                external: ty == vmcb::EVTINJ_TYPE_INTR,
            });
        }
    }

    /// Whether the guest state in the VMCB after this #VMEXIT is the host state
    /// that VMRUN saved: a RIP inside kvm_rs_svm_vcpu_run (right after its
    /// VMRUN), this thread's CR3, and RAX = the VMCB's address (the operand of
    /// VMRUN). That means VMRUN loaded the host's state as the guest's, which
    /// hardware never does. It happens in the test VM (QEMU TCG's SVM: about
    /// one nested Linux boot in ten, and VMMs whose vCPUs exit at a very high
    /// rate; not seen with upstream's modules). Its cause is not understood
    /// (README, Status); the guard turns a guest crash into one more entry. A
    /// guest cannot produce all three values by chance, and a second hit in a
    /// row is not retried.
    fn host_image_loaded(&self) -> bool {
        let save = &self.vmcb_ref().save;
        // The function is 0xf1 bytes long (nm -S kvm-amd.ko).
        let in_vmenter = save.rip.wrapping_sub(kvm_rs_svm_vcpu_run as *const () as u64) < 0x100;
        in_vmenter && save.rax == self.vmcb_pa && save.cr3 == kvm::cpu::read_cr3()
    }

    fn decode_exit(&self) -> Exit {
        let c = &self.vmcb_ref().control;
        let (code, i1, i2) = (c.exit_code, c.exit_info_1, c.exit_info_2);
        match code {
            ec::INTR | ec::NMI | ec::SMI | ec::INIT => Exit::HostInterrupt,
            ec::VINTR => Exit::InterruptWindow,
            // With decode assists, bit 63 of EXITINFO1 says bits 3:0 name the GPR.
            // Bit 63 is set for MOV CR (bits 3:0 the GPR), clear for LMSW.
            ec::CR0_SEL_WRITE => Exit::CrAccess {
                cr: 0,
                op: CrOp::Write { gpr: if i1 & (1 << 63) != 0 { Some((i1 & 0xf) as u8) } else { None } },
            },
            ec::WRITE_CR4 | ec::WRITE_CR8 => Exit::CrAccess {
                cr: (code - 0x10) as u8,
                op: CrOp::Write { gpr: if i1 & (1 << 63) != 0 { Some((i1 & 0xf) as u8) } else { None } },
            },
            0x20..=0x27 => Exit::DrAccess { dr: (code - 0x20) as u8, write: false },
            0x30..=0x37 => Exit::DrAccess { dr: (code - 0x30) as u8, write: true },
            ec::IRET => Exit::Iret,
            ec::RSM => Exit::Rsm,
            ec::CPUID => Exit::Cpuid,
            ec::HLT => Exit::Hlt,
            ec::MSR => if i1 & 1 != 0 { Exit::Wrmsr } else { Exit::Rdmsr },
            ec::IOIO => Exit::Io {
                port: (i1 >> 16) as u16,
                size: ((i1 >> 4) & 7) as u8,
                input: i1 & 1 != 0,
                string: i1 & 4 != 0,
                rep: i1 & 8 != 0,
            },
            ec::SHUTDOWN => Exit::Shutdown,
            ec::VMMCALL => Exit::Hypercall,
            ec::XSETBV => Exit::Xsetbv,
            ec::VMRUN | ec::VMLOAD | ec::VMSAVE | ec::STGI | ec::CLGI | ec::SKINIT | ec::INVLPGA
            | ec::RDTSCP | ec::RDPRU => Exit::UndefinedOpcode,
            ec::INVD | ec::WBINVD | ec::MONITOR | ec::MWAIT | ec::MWAIT_COND => Exit::Nop,
            ec::NPF => Exit::TdpFault { gpa: i2, write: i1 & 2 != 0, fetch: i1 & 16 != 0, present: i1 & 1 != 0 },
            // VMEXIT_INVALID is -1; upstream reads EXITCODE as 32 bits (QEMU's
            // TCG writes 0xffffffff) and reports that as the failure reason.
            c if c as u32 == ec::INVALID as u32 => Exit::FailEntry { hardware_reason: u32::MAX as u64 },
            c if (ec::EXCP_BASE..ec::EXCP_BASE + 32).contains(&c) => Exit::Exception {
                vector: (c - ec::EXCP_BASE) as u8,
                error_code: Some(i1 as u32),
            },
            _ => Exit::Unhandled { reason: code, info1: i1, info2: i2 },
        }
    }
}

impl VendorVcpu for SvmVcpu {
    fn run(&mut self, st: &mut ArchState, p: &EntryParams) -> Exit {
        let cpu = kvm::cpu::smp_processor_id();
        let svm = self.svm;
        // SAFETY: interrupts are off (the caller's contract), so this CPU's data
        // is ours until VMRUN returns.
        let pc = unsafe { svm.per_cpu(cpu) };
        let Some(pc) = pc else {
            return Exit::Unhandled { reason: u64::MAX - 1, info1: cpu as u64, info2: 0 };
        };
        let mut tlb = self.assign_asid(cpu, pc);
        if (p.flush_tlb || p.flush_guest_tlb || self.host_image_retried) && tlb == vmcb::TLB_CONTROL_DO_NOTHING {
            tlb = if svm.flush_by_asid { vmcb::TLB_CONTROL_FLUSH_ASID } else { vmcb::TLB_CONTROL_FLUSH_ALL_ASID };
        }
        let host_save = pc.host_save_pa;
        self.load_state(st);
        let asid = self.asid;
        {
            let c = &mut self.vmcb().control;
            c.asid = asid;
            c.tlb_ctl = tlb;
            c.nested_cr3 = p.tdp_root;
            c.clean = 0;
            c.intercept_exceptions = (1 << 18) | p.intercept_exceptions;
            if p.intercept_hlt {
                c.intercept_misc1 |= intercept::HLT;
            } else {
                c.intercept_misc1 &= !intercept::HLT;
            }
            if p.intercept_iret {
                c.intercept_misc1 |= intercept::IRET;
            } else {
                c.intercept_misc1 &= !intercept::IRET;
            }
            if p.request_interrupt_window {
                c.intercept_misc1 |= intercept::VINTR;
                c.int_ctl |= vmcb::V_IRQ | vmcb::V_IGN_TPR;
            } else {
                c.intercept_misc1 &= !intercept::VINTR;
                c.int_ctl &= !(vmcb::V_IRQ | vmcb::V_IGN_TPR);
            }
        }
        let gprs = st.gprs.as_mut_ptr();
        // SAFETY: CLGI holds off interrupts and NMIs while the host runs with guest
        // segment state inside kvm_rs_svm_vcpu_run; STI before VMRUN lets a host
        // interrupt end the guest (it is taken after STGI). The VMCB, the host save
        // area and `gprs` are valid and owned for the duration; SVM is enabled on
        // this CPU (virtualization is on everywhere while the module is loaded).
        unsafe {
            core::arch::asm!("clgi", "sti", options(nostack));
            kvm_rs_svm_vcpu_run(self.vmcb_pa, gprs, host_save);
            core::arch::asm!("cli", "stgi", options(nostack));
        }
        if self.host_image_loaded() && !self.host_image_retried {
            // `st` still holds the state this entry was meant to load, and the
            // guest did not execute anything: enter again with it.
            self.host_image_retried = true;
            let n = HOST_IMAGE_LOADS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            if n < 10 {
                pr_warn!(
                    "VMRUN on CPU {} ran the guest with the host state it had just saved (VMCB {:#x}, exit {:#x}); entering again with the guest's state\n",
                    cpu, self.vmcb_pa, self.vmcb_ref().control.exit_code
                );
            }
            return Exit::HostInterrupt;
        }
        self.host_image_retried = false;
        self.save_state(st);
        let exit = self.decode_exit();
        if let Exit::FailEntry { .. } = exit {
            crate::dump::dump_vmcb(self.vmcb_ref(), cpu);
        }
        exit
    }

    /// Upstream's svm_get_exit_info.
    fn exit_info(&self) -> kvm::x86_ops::ExitInfo {
        let c = &self.vmcb_ref().control;
        kvm::x86_ops::ExitInfo {
            isa: kvm::x86_ops::ISA_SVM,
            reason: c.exit_code as u32,
            info1: c.exit_info_1,
            info2: c.exit_info_2,
            intr_info: c.exit_int_info,
            error_code: if c.exit_int_info & vmcb::EVTINJ_VALID_ERR != 0 { c.exit_int_info_err } else { 0 },
        }
    }

    fn next_rip(&self) -> Option<u64> {
        let c = &self.vmcb_ref().control;
        if c.exit_code == ec::IOIO {
            Some(c.exit_info_2)
        } else if self.nrips && c.next_rip != 0 {
            Some(c.next_rip)
        } else {
            None
        }
    }
}
