//! Model-specific register indices (AMD APM vol. 2 appendix A, Intel SDM vol. 4).

pub const IA32_TSC: u32 = 0x0000_0010;
pub const IA32_PLATFORM_ID: u32 = 0x0000_0017;
pub const IA32_APIC_BASE: u32 = 0x0000_001b;
pub const IA32_FEATURE_CONTROL: u32 = 0x0000_003a;
pub const SMI_COUNT: u32 = 0x0000_0034;
pub const IA32_TSC_ADJUST: u32 = 0x0000_003b;
pub const IA32_SPEC_CTRL: u32 = 0x0000_0048;
pub const IA32_PRED_CMD: u32 = 0x0000_0049;
pub const IA32_BIOS_SIGN_ID: u32 = 0x0000_008b;
/// The SMRAM base (KVM's emulated MSR, host-initiated access only).
pub const IA32_SMBASE: u32 = 0x0000_009e;
pub const IA32_MTRRCAP: u32 = 0x0000_00fe;
pub const IA32_ARCH_CAPABILITIES: u32 = 0x0000_010a;
pub const IA32_SYSENTER_CS: u32 = 0x0000_0174;
pub const IA32_SYSENTER_ESP: u32 = 0x0000_0175;
pub const IA32_SYSENTER_EIP: u32 = 0x0000_0176;
pub const IA32_MCG_CAP: u32 = 0x0000_0179;
pub const IA32_MCG_STATUS: u32 = 0x0000_017a;
pub const IA32_MCG_CTL: u32 = 0x0000_017b;
pub const IA32_MISC_ENABLE: u32 = 0x0000_01a0;
pub const IA32_DEBUGCTL: u32 = 0x0000_01d9;
pub const IA32_MTRR_PHYSBASE0: u32 = 0x0000_0200;
pub const IA32_MTRR_FIX64K_00000: u32 = 0x0000_0250;
pub const IA32_MTRR_FIX16K_80000: u32 = 0x0000_0258;
pub const IA32_MTRR_FIX16K_A0000: u32 = 0x0000_0259;
pub const IA32_MTRR_FIX4K_C0000: u32 = 0x0000_0268;
pub const IA32_MTRR_FIX4K_F8000: u32 = 0x0000_026f;
pub const IA32_PAT: u32 = 0x0000_0277;
pub const IA32_MTRR_DEF_TYPE: u32 = 0x0000_02ff;
pub const IA32_MC0_CTL: u32 = 0x0000_0400;
pub const IA32_TSC_DEADLINE: u32 = 0x0000_06e0;

// VMX capability MSRs (Intel SDM vol. 3 appendix A).
pub const IA32_VMX_BASIC: u32 = 0x0000_0480;
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x0000_0481;
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x0000_0482;
pub const IA32_VMX_EXIT_CTLS: u32 = 0x0000_0483;
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x0000_0484;
pub const IA32_VMX_MISC: u32 = 0x0000_0485;
pub const IA32_VMX_CR0_FIXED0: u32 = 0x0000_0486;
pub const IA32_VMX_CR0_FIXED1: u32 = 0x0000_0487;
pub const IA32_VMX_CR4_FIXED0: u32 = 0x0000_0488;
pub const IA32_VMX_CR4_FIXED1: u32 = 0x0000_0489;
pub const IA32_VMX_VMCS_ENUM: u32 = 0x0000_048a;
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x0000_048b;
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x0000_048c;
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x0000_048d;
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x0000_048e;
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x0000_048f;
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x0000_0490;
pub const IA32_VMX_VMFUNC: u32 = 0x0000_0491;
pub const IA32_VMX_PROCBASED_CTLS3: u32 = 0x0000_0492;

pub const EFER: u32 = 0xc000_0080;
pub const STAR: u32 = 0xc000_0081;
pub const LSTAR: u32 = 0xc000_0082;
pub const CSTAR: u32 = 0xc000_0083;
pub const SYSCALL_MASK: u32 = 0xc000_0084;
pub const FS_BASE: u32 = 0xc000_0100;
pub const GS_BASE: u32 = 0xc000_0101;
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
pub const TSC_AUX: u32 = 0xc000_0103;

// AMD SVM MSRs (APM vol. 2, 15.30).
pub const AMD64_VM_CR: u32 = 0xc001_0114;
pub const AMD64_VM_HSAVE_PA: u32 = 0xc001_0117;
pub const AMD64_TSC_RATIO: u32 = 0xc000_0104;

// KVM paravirtual clock MSRs (Documentation/virt/kvm/x86/msr.rst).
pub const KVM_WALL_CLOCK: u32 = 0x11;
pub const KVM_SYSTEM_TIME: u32 = 0x12;
pub const KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
pub const KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
// The other KVM paravirtual MSRs (same document).
pub const KVM_ASYNC_PF_EN: u32 = 0x4b56_4d02;
pub const KVM_STEAL_TIME: u32 = 0x4b56_4d03;
pub const KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
pub const KVM_POLL_CONTROL: u32 = 0x4b56_4d05;
pub const KVM_ASYNC_PF_INT: u32 = 0x4b56_4d06;
pub const KVM_ASYNC_PF_ACK: u32 = 0x4b56_4d07;

/// VM_CR bit 4: SVM disabled by firmware (APM vol. 2, 15.30.1).
pub const VM_CR_SVMDIS: u64 = 1 << 4;

/// IA32_FEATURE_CONTROL bits (Intel SDM vol. 4, table 2-2).
pub const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
pub const FEATURE_CONTROL_VMXON_INSIDE_SMX: u64 = 1 << 1;
pub const FEATURE_CONTROL_VMXON_OUTSIDE_SMX: u64 = 1 << 2;
