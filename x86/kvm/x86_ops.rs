// SPDX-License-Identifier: GPL-2.0
//! The seam between kvm.ko and the vendor modules: what kvm-amd.ko (SVM) and
//! kvm-intel.ko (VMX) each implement, the counterpart of upstream's
//! `struct kvm_x86_ops` + `struct kvm_x86_init_ops`.

use crate::arch_state::ArchState;
use crate::exit::Exit;
use kernel::prelude::*;

/// A vendor implementation of hardware virtualization.
///
/// The value is created by [`KvmX86Ops::hardware_setup`] when the vendor module
/// calls [`crate::kvm_init`], lives as long as the returned registration, and its
/// `Drop` is upstream's hardware_unsetup.
pub trait KvmX86Ops: Sync + Send + Sized + 'static {
    /// Module name as users see it ("kvm_amd", "kvm_intel"), for messages.
    const NAME: &'static CStr;

    /// The format of KVM_GET/SET_NESTED_STATE for this vendor
    /// (KVM_STATE_NESTED_FORMAT_SVM or _VMX).
    const NESTED_STATE_FORMAT: u16;

    /// Computes the vendor configuration (capability MSRs, feature checks) and
    /// allocates the per-CPU state that enabling virtualization needs. Runs once,
    /// in kvm_init, before any CPU is enabled.
    fn hardware_setup() -> Result<Self>;

    /// Turns virtualization on for the CPU this runs on (EFER.SVME + host save
    /// area, or CR4.VMXE + VMXON). Called on each CPU, with preemption off.
    /// Must fail with `EBUSY` if another user already turned it on.
    fn enable_virtualization_cpu(&self) -> Result;

    /// Turns virtualization off for the CPU this runs on. Must be idempotent: it is
    /// also called on shutdown/reboot and in emergencies, possibly twice.
    fn disable_virtualization_cpu(&self);

    /// Whether the vendor can virtualize the MSR `index` for guests (the
    /// counterpart of upstream's has_emulated_msr): decides which candidate MSRs
    /// enter KVM_GET_MSR_INDEX_LIST.
    fn has_emulated_msr(&self, _index: u32) -> bool {
        true
    }

    /// The value of a vendor-specific feature MSR (upstream's get_feature_msr),
    /// None if `index` is not one of the vendor's.
    fn get_feature_msr(&self, _index: u32) -> Option<u64> {
        None
    }

    /// Whether the vendor can run guests (VMs and vCPUs); a vendor that cannot
    /// yet offers only the system ioctls, and every VM capability says 0.
    fn runs_guests(&self) -> bool {
        true
    }

    /// Creates the vendor half of a vCPU (VMCB or VMCS).
    fn vcpu_create(&self) -> Result<KBox<dyn VendorVcpu>>;

    /// The two-dimensional paging format (NPT or EPT) of this vendor.
    fn tdp(&self) -> &'static dyn TdpFormat;
}

/// Entry parameters the core computes before each entry.
#[allow(missing_docs)]
pub struct EntryParams {
    /// Physical address of the root of the nested/extended page tables.
    pub tdp_root: u64,
    /// The guest's translations must be flushed (memory slots changed).
    pub flush_tlb: bool,
    /// The guest's own linear translations must be flushed (an intercepted CR0/CR4
    /// write or KVM_SET_SREGS changed the paging mode, as a MOV to CR would).
    pub flush_guest_tlb: bool,
    /// Exit as soon as the guest can take an interrupt.
    pub request_interrupt_window: bool,
    /// Exit when the guest executes IRET (the end of an NMI handler, so NMIs can
    /// be unmasked).
    pub intercept_iret: bool,
    /// Exceptions to intercept besides #MC (bit n: vector n): #DB and #BP while
    /// user space debugs the guest (KVM_SET_GUEST_DEBUG).
    pub intercept_exceptions: u32,
    /// Every RDMSR/WRMSR must exit, also of MSRs the vendor otherwise lets
    /// the guest access directly (an MSR filter is installed).
    pub intercept_all_msrs: bool,
    /// HLT exits (off: the guest halts in guest mode, KVM_CAP_X86_DISABLE_EXITS).
    pub intercept_hlt: bool,
}

/// KVM_ISA_VMX: kvm:kvm_exit's exit_reason is a VMX basic exit reason.
pub const ISA_VMX: u32 = 1;
/// KVM_ISA_SVM: kvm:kvm_exit's exit_reason is an SVM exit code.
pub const ISA_SVM: u32 = 2;

/// The last exit as upstream's get_exit_info reports it (kvm:kvm_exit's
/// fields): the raw exit code and the vendor's information words.
#[derive(Clone, Copy, Default, Debug)]
pub struct ExitInfo {
    /// ISA_VMX or ISA_SVM.
    pub isa: u32,
    /// The exit reason (VMX) or exit code (SVM).
    pub reason: u32,
    /// Exit qualification (VMX), EXITINFO1 (SVM).
    pub info1: u64,
    /// IDT-vectoring information (VMX), EXITINFO2 (SVM).
    pub info2: u64,
    /// VM-exit interruption information (VMX), EXITINTINFO (SVM).
    pub intr_info: u32,
    /// The error code of `intr_info`, if it has one.
    pub error_code: u32,
}

/// The vendor half of a vCPU.
pub trait VendorVcpu: Send {
    /// Prepares CPU `cpu` for this vCPU's next entry (upstream's vcpu_load):
    /// called before every entry with preemption disabled but interrupts still
    /// enabled, so the vendor can wait for other CPUs (VMX: VMCLEAR of the VMCS
    /// on the CPU the vCPU ran on before).
    fn vcpu_load(&mut self, _cpu: u32) {}

    /// Loads `state`, enters the guest until the next exit (with host interrupts
    /// disabled by the caller, and the guest FPU loaded), stores the state back
    /// and returns the decoded exit.
    fn run(&mut self, state: &mut ArchState, params: &EntryParams) -> Exit;

    /// The address of the instruction after the one that exited, when the
    /// hardware reports it (NRIPS, VM-exit instruction length).
    fn next_rip(&self) -> Option<u64>;

    /// The last exit's raw reason and information (upstream's get_exit_info:
    /// for kvm:kvm_exit and the emulation-failure exit's data); called right
    /// after `run`, before interrupts are enabled again, or later in the same
    /// exit's handling.
    fn exit_info(&self) -> ExitInfo {
        ExitInfo::default()
    }

    /// Whether the guest can take an external interrupt now (IF=1, no shadow, no
    /// pending event).
    fn interrupt_allowed(&self, state: &ArchState) -> bool {
        state.rflags & crate::arch_state::rflags::IF != 0
            && !state.interrupt_shadow
            && state.pending_event.is_none()
    }
}

/// How the vendor's nested/extended page tables encode entries.
pub trait TdpFormat: Sync {
    /// A leaf mapping 4K of guest-physical memory to host-physical `pa`.
    fn leaf(&self, pa: u64, writable: bool) -> u64;
    /// A non-leaf entry pointing to the table at `pa`.
    fn table(&self, pa: u64) -> u64;
    /// Whether `pte` maps or points to anything.
    fn present(&self, pte: u64) -> bool;
    /// The same leaf without write permission.
    fn write_protect(&self, pte: u64) -> u64;
    /// The accessed bit of a leaf, set by the CPU on use (0: the format has
    /// none, e.g. EPT without A/D bits).
    fn accessed_mask(&self) -> u64 {
        0
    }
    /// The physical address in `pte` (of a huge leaf: the page's base plus
    /// low bits the caller masks off).
    fn address(&self, pte: u64) -> u64 {
        pte & 0x000f_ffff_ffff_f000
    }
    /// The largest leaf level the hardware offers (1: 4K only, 2: 2M, 3: 1G).
    fn max_level(&self) -> u32;
    /// `leaf` without execute permission (NPT: NX; EPT: X clear): huge
    /// leaves under kvm.nx_huge_pages.
    fn no_exec(&self, leaf: u64) -> u64;
    /// `leaf` with execute permission again (a 4K piece of such a leaf).
    fn exec(&self, leaf: u64) -> u64;
    /// `leaf` made a huge leaf (for level 2 or 3): bit 7, the page-size bit
    /// of both NPT (PS) and EPT ("maps a page").
    fn huge(&self, leaf: u64) -> u64 {
        leaf | PAGE_SIZE_BIT
    }
    /// Whether a present entry above level 1 is a leaf rather than a table.
    fn is_huge(&self, pte: u64) -> bool {
        pte & PAGE_SIZE_BIT != 0
    }
    /// The entry at `child_level` that maps `child_pa` with the permissions
    /// and accessed/dirty bits of the huge leaf `huge` (splitting it).
    /// 4K pieces are executable: only huge leaves are made non-executable
    /// (upstream's make_huge_page_split_spte with NX huge pages).
    fn split_child(&self, huge: u64, child_pa: u64, child_level: u32) -> u64 {
        let flags = huge & !0x000f_ffff_ffff_f000;
        if child_level == 1 {
            self.exec((flags & !PAGE_SIZE_BIT) | child_pa)
        } else {
            flags | child_pa
        }
    }
}

/// Bit 7 of a nested or extended page-table entry above level 1: a leaf.
const PAGE_SIZE_BIT: u64 = 1 << 7;

/// The object-safe part of [`KvmX86Ops`] that kvm.ko's non-generic code calls
/// through a `&'static dyn` (per-CPU callbacks, ioctls).
///
/// Each method forwards to the [`KvmX86Ops`] method of the same name.
#[allow(missing_docs)]
pub trait VendorOps: Sync + Send {
    fn name(&self) -> &'static CStr;
    fn nested_state_format(&self) -> u16;
    fn enable_virtualization_cpu(&self) -> Result;
    fn disable_virtualization_cpu(&self);
    fn has_emulated_msr(&self, index: u32) -> bool;
    fn get_feature_msr(&self, index: u32) -> Option<u64>;
    fn runs_guests(&self) -> bool;
    fn vcpu_create(&self) -> Result<KBox<dyn VendorVcpu>>;
    fn tdp(&self) -> &'static dyn TdpFormat;
}

impl<T: KvmX86Ops> VendorOps for T {
    fn name(&self) -> &'static CStr {
        T::NAME
    }
    fn nested_state_format(&self) -> u16 {
        T::NESTED_STATE_FORMAT
    }
    fn enable_virtualization_cpu(&self) -> Result {
        KvmX86Ops::enable_virtualization_cpu(self)
    }
    fn disable_virtualization_cpu(&self) {
        KvmX86Ops::disable_virtualization_cpu(self)
    }
    fn has_emulated_msr(&self, index: u32) -> bool {
        KvmX86Ops::has_emulated_msr(self, index)
    }
    fn get_feature_msr(&self, index: u32) -> Option<u64> {
        KvmX86Ops::get_feature_msr(self, index)
    }
    fn runs_guests(&self) -> bool {
        KvmX86Ops::runs_guests(self)
    }
    fn vcpu_create(&self) -> Result<KBox<dyn VendorVcpu>> {
        KvmX86Ops::vcpu_create(self)
    }
    fn tdp(&self) -> &'static dyn TdpFormat {
        KvmX86Ops::tdp(self)
    }
}
