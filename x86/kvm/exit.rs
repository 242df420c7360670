// SPDX-License-Identifier: GPL-2.0
//! Why the guest stopped: the vendor decodes its hardware exit (SVM exit code,
//! VMX exit reason) into this common form and kvm.ko handles it.

#![allow(missing_docs)] // variant fields are the hardware's exit information

/// A decoded exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// IN/OUT/INS/OUTS.
    Io { port: u16, size: u8, input: bool, string: bool, rep: bool },
    Hlt,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Xsetbv,
    /// VMMCALL/VMCALL: a hypercall.
    Hypercall,
    /// A guest-physical access the nested/extended page tables do not allow.
    TdpFault { gpa: u64, write: bool, fetch: bool, present: bool },
    /// An intercepted exception.
    Exception { vector: u8, error_code: Option<u32> },
    /// Triple fault (SVM: SHUTDOWN; VMX: exit reason 2).
    Shutdown,
    /// A host interrupt or NMI arrived; it was handled by the host on exit.
    HostInterrupt,
    /// The guest can take an interrupt now (interrupt-window exiting).
    InterruptWindow,
    /// IRET while NMIs are masked (the NMI handler returns).
    Iret,
    /// RSM (SVM intercepts it; x86/kvm/smm.rs leaves SMM or injects #UD).
    Rsm,
    /// MOV to or from debug register `dr`.
    DrAccess { dr: u8, write: bool },
    /// An intercepted access to control register `cr` (VMX: the CR0/CR4 bits the
    /// host owns, CR8; SVM: CR8 writes).
    CrAccess { cr: u8, op: CrOp },
    /// An instruction that must behave as #UD for this guest (SVM/VMX
    /// instructions, since nested virtualization is not offered, RDPRU...).
    UndefinedOpcode,
    /// An instruction to be treated as a no-op (MONITOR/MWAIT/INVD/WBINVD).
    Nop,
    /// VM entry failed: the guest state or the controls are invalid.
    FailEntry { hardware_reason: u64 },
    /// Anything else: reported to user space as KVM_EXIT_INTERNAL_ERROR.
    Unhandled { reason: u64, info1: u64, info2: u64 },
}

/// What an intercepted control-register access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrOp {
    /// MOV to CR from a general-purpose register (`None`: the hardware did not
    /// say which; kvm.ko decodes the instruction).
    Write { gpr: Option<u8> },
    /// MOV from CR to a general-purpose register.
    Read { gpr: Option<u8> },
    /// CLTS.
    Clts,
    /// LMSW with its 16-bit source operand.
    Lmsw { msw: u16 },
}
