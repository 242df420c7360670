// SPDX-License-Identifier: GPL-2.0
//! The VMCB of a VMRUN that failed (VMEXIT_INVALID) in the kernel log when
//! kvm_amd's dump_invalid_vmcb is set (upstream's dump_vmcb); otherwise a hint
//! that says how to get it. The guest state a VMM handed in is what usually
//! makes VMRUN fail, so this is how such a state is found.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kvm::arch::vmcb::{Vmcb, VmcbSeg};

/// How many hints are printed at most (a VMM can fail VMRUN in a loop).
const MAX_HINTS: u32 = 10;

pub(crate) fn dump_vmcb(v: &Vmcb, cpu: u32) {
    if !crate::params::dump_invalid_vmcb() {
        static HINTS: AtomicU32 = AtomicU32::new(0);
        if HINTS.fetch_add(1, Ordering::Relaxed) < MAX_HINTS {
            pr_warn!("set kvm_amd.dump_invalid_vmcb=1 to dump internal KVM state.\n");
        }
        return;
    }
    let c = &v.control;
    pr_err!("VMCB of the failed VMRUN on CPU {}\n", cpu);
    pr_err!("VMCB Control Area:\n");
    pr_err!("{:<20}{:#06x}/{:#06x}\n", "cr_read/write:", c.intercept_cr & 0xffff, c.intercept_cr >> 16);
    pr_err!("{:<20}{:#06x}/{:#06x}\n", "dr_read/write:", c.intercept_dr & 0xffff, c.intercept_dr >> 16);
    pr_err!("{:<20}{:#010x}\n", "exceptions:", c.intercept_exceptions);
    pr_err!("{:<20}{:#010x} {:#010x} {:#010x}\n", "intercepts:", c.intercept_misc1, c.intercept_misc2, c.intercept_misc3);
    pr_err!("{:<20}{}/{}\n", "pause filter:", c.pause_filter_count, c.pause_filter_thresh);
    pr_err!("{:<20}{:#018x}\n", "iopm_base_pa:", c.iopm_base_pa);
    pr_err!("{:<20}{:#018x}\n", "msrpm_base_pa:", c.msrpm_base_pa);
    pr_err!("{:<20}{:#018x}\n", "tsc_offset:", c.tsc_offset);
    pr_err!("{:<20}{}\n", "asid:", c.asid);
    pr_err!("{:<20}{}\n", "tlb_ctl:", c.tlb_ctl);
    pr_err!("{:<20}{:#010x}\n", "int_ctl:", c.int_ctl);
    pr_err!("{:<20}{:#010x}\n", "int_vector:", c.int_vector);
    pr_err!("{:<20}{:#010x}\n", "int_state:", c.int_state);
    pr_err!("{:<20}{:#018x}\n", "exit_code:", c.exit_code);
    pr_err!("{:<20}{:#018x}\n", "exit_info1:", c.exit_info_1);
    pr_err!("{:<20}{:#018x}\n", "exit_info2:", c.exit_info_2);
    pr_err!("{:<20}{:#010x}\n", "exit_int_info:", c.exit_int_info);
    pr_err!("{:<20}{:#010x}\n", "exit_int_info_err:", c.exit_int_info_err);
    pr_err!("{:<20}{:#018x}\n", "nested_ctl:", c.nested_ctl);
    pr_err!("{:<20}{:#018x}\n", "nested_cr3:", c.nested_cr3);
    pr_err!("{:<20}{:#010x}\n", "event_inj:", c.event_inj);
    pr_err!("{:<20}{:#010x}\n", "event_inj_err:", c.event_inj_err);
    pr_err!("{:<20}{:#018x}\n", "virt_ext:", c.virt_ext);
    pr_err!("{:<20}{:#018x}\n", "next_rip:", c.next_rip);
    let s = &v.save;
    pr_err!("VMCB State Save Area:\n");
    let seg = |name: &str, x: &VmcbSeg| {
        pr_err!("{:<5} s: {:#06x} a: {:#06x} l: {:#010x} b: {:#018x}\n", name, x.selector, x.attrib, x.limit, x.base);
    };
    for (name, x) in [("es:", &s.es), ("cs:", &s.cs), ("ss:", &s.ss), ("ds:", &s.ds), ("fs:", &s.fs), ("gs:", &s.gs)] {
        seg(name, x);
    }
    for (name, x) in [("gdtr:", &s.gdtr), ("ldtr:", &s.ldtr), ("idtr:", &s.idtr), ("tr:", &s.tr)] {
        seg(name, x);
    }
    pr_err!("vmpl: {}   cpl:  {}               efer:          {:#018x}\n", s.vmpl, s.cpl, s.efer);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "cr0:", s.cr0, "cr2:", s.cr2);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "cr3:", s.cr3, "cr4:", s.cr4);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "dr6:", s.dr6, "dr7:", s.dr7);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "rip:", s.rip, "rflags:", s.rflags);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "rsp:", s.rsp, "rax:", s.rax);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "star:", s.star, "lstar:", s.lstar);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "cstar:", s.cstar, "sfmask:", s.sfmask);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "kernel_gs_base:", s.kernel_gs_base, "sysenter_cs:", s.sysenter_cs);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "sysenter_esp:", s.sysenter_esp, "sysenter_eip:", s.sysenter_eip);
    pr_err!("{:<15} {:#018x} {:<13} {:#018x}\n", "gpat:", s.g_pat, "dbgctl:", s.dbgctl);
}
