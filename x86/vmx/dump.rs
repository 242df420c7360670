// SPDX-License-Identifier: GPL-2.0
//! The VMCS of a VM entry that failed in the kernel log when kvm_intel's
//! dump_invalid_vmcs is set (upstream's dump_vmcs); otherwise a hint that
//! says how to get it.

use crate::vmcs::CurrentVmcs;
use crate::vmcs_config::fields::*;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;

/// How many hints are printed at most (a VMM can fail VM entry in a loop).
const MAX_HINTS: u32 = 10;

pub(crate) fn dump_vmcs(v: &CurrentVmcs<'_>) {
    if !crate::params::dump_invalid_vmcs() {
        static HINTS: AtomicU32 = AtomicU32::new(0);
        if HINTS.fetch_add(1, Ordering::Relaxed) < MAX_HINTS {
            pr_warn!("set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state.\n");
        }
        return;
    }
    pr_err!("VMCS of the failed VM entry (reason {:#x}, VM-instruction error {})\n", v.read(VM_EXIT_REASON), v.read(VM_INSTRUCTION_ERROR));
    pr_err!("*** Guest State ***\n");
    pr_err!("CR0: actual={:#018x}, shadow={:#018x}, gh_mask={:#018x}\n", v.read(GUEST_CR0), v.read(CR0_READ_SHADOW), v.read(CR0_GUEST_HOST_MASK));
    pr_err!("CR4: actual={:#018x}, shadow={:#018x}, gh_mask={:#018x}\n", v.read(GUEST_CR4), v.read(CR4_READ_SHADOW), v.read(CR4_GUEST_HOST_MASK));
    pr_err!("CR3 = {:#018x}\n", v.read(GUEST_CR3));
    pr_err!("PDPTR0 = {:#018x}  PDPTR1 = {:#018x}\n", v.read(GUEST_PDPTR0), v.read(GUEST_PDPTR1));
    pr_err!("PDPTR2 = {:#018x}  PDPTR3 = {:#018x}\n", v.read(GUEST_PDPTR2), v.read(GUEST_PDPTR3));
    pr_err!("RSP = {:#018x}  RIP = {:#018x}\n", v.read(GUEST_RSP), v.read(GUEST_RIP));
    pr_err!("RFLAGS={:#010x}         DR7 = {:#018x}\n", v.read(GUEST_RFLAGS), v.read(GUEST_DR7));
    pr_err!("Sysenter RSP={:#018x} CS:RIP={:04x}:{:#018x}\n", v.read(GUEST_SYSENTER_ESP), v.read(GUEST_SYSENTER_CS), v.read(GUEST_SYSENTER_EIP));
    for (name, s) in ["ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR"].iter().zip(GUEST_SEGMENTS.iter()) {
        pr_err!(
            "{:<4}: sel={:#06x}, attr={:#07x}, limit={:#010x}, base={:#018x}\n",
            name,
            v.read(s.selector),
            v.read(s.access_rights),
            v.read(s.limit),
            v.read(s.base)
        );
    }
    pr_err!("GDTR:                           limit={:#010x}, base={:#018x}\n", v.read(GUEST_GDTR_LIMIT), v.read(GUEST_GDTR_BASE));
    pr_err!("IDTR:                           limit={:#010x}, base={:#018x}\n", v.read(GUEST_IDTR_LIMIT), v.read(GUEST_IDTR_BASE));
    pr_err!("EFER= {:#018x}  PAT = {:#018x}\n", v.read(GUEST_IA32_EFER), v.read(GUEST_IA32_PAT));
    pr_err!("DebugCtl = {:#018x}  DebugExceptions = {:#018x}\n", v.read(GUEST_IA32_DEBUGCTL), v.read(GUEST_PENDING_DBG_EXCEPTIONS));
    pr_err!("Interruptibility = {:08x}  ActivityState = {:08x}\n", v.read(GUEST_INTERRUPTIBILITY_INFO), v.read(GUEST_ACTIVITY_STATE));
    pr_err!("VMCS link pointer = {:#018x}\n", v.read(VMCS_LINK_POINTER));
    pr_err!("*** Control State ***\n");
    pr_err!(
        "CPUBased={:#010x} SecondaryExec={:#010x} PinBased={:#010x}\n",
        v.read(CPU_BASED_VM_EXEC_CONTROL),
        v.read(SECONDARY_VM_EXEC_CONTROL),
        v.read(PIN_BASED_VM_EXEC_CONTROL)
    );
    pr_err!("EntryControls={:08x} ExitControls={:08x}\n", v.read(VM_ENTRY_CONTROLS), v.read(VM_EXIT_CONTROLS));
    pr_err!("ExceptionBitmap={:08x}\n", v.read(EXCEPTION_BITMAP));
    pr_err!(
        "VMEntry: intr_info={:08x} errcode={:08x} ilen={:08x}\n",
        v.read(VM_ENTRY_INTR_INFO_FIELD),
        v.read(VM_ENTRY_EXCEPTION_ERROR_CODE),
        v.read(VM_ENTRY_INSTRUCTION_LEN)
    );
    pr_err!("TSC Offset = {:#018x}\n", v.read(TSC_OFFSET));
    pr_err!("EPT pointer = {:#018x}\n", v.read(EPT_POINTER));
    pr_err!("Virtual processor ID = {:#06x}\n", v.read(VIRTUAL_PROCESSOR_ID));
}
