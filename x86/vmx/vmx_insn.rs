// SPDX-License-Identifier: GPL-2.0
//! The VMX instructions kvm-intel executes outside of VM entry, each wrapped with
//! the conditions that make it safe.

use kernel::prelude::*;

/// VMXON with the region at physical address `pa`.
///
/// # Safety
/// CR4.VMXE is set, IA32_FEATURE_CONTROL is locked with VMXON enabled, CR0/CR4
/// satisfy the VMX fixed bits, the CPU is not in VMX operation, and `pa` is the
/// 4K-aligned address of a zeroed page holding the VMCS revision ID, owned until
/// VMXOFF. (Under these conditions VMXON cannot fault; it can only report
/// VMfailInvalid, returned as `EIO`.)
pub(crate) unsafe fn vmxon(pa: u64) -> Result {
    let failed: u8;
    // SAFETY: the caller guarantees the preconditions above; `pa` is read from
    // memory by the instruction.
    unsafe {
        core::arch::asm!(
            "vmxon [{pa}]",
            "setna {failed}",
            pa = in(reg) &pa,
            failed = out(reg_byte) failed,
            options(nostack),
        );
    }
    if failed != 0 {
        Err(EIO)
    } else {
        Ok(())
    }
}

/// VMXOFF.
///
/// # Safety
/// The CPU is in VMX operation (a successful [`vmxon`] with no VMXOFF since).
pub(crate) unsafe fn vmxoff() {
    // SAFETY: per the caller's guarantee the instruction cannot #UD.
    unsafe { core::arch::asm!("vmxoff", options(nostack)) };
}

/// VMCLEAR of the VMCS at `pa`.
///
/// # Safety
/// VMX operation is on; `pa` is a VMCS region owned by the caller.
pub(crate) unsafe fn vmclear(pa: u64) -> Result {
    let failed: u8;
    // SAFETY: per the caller's guarantee.
    unsafe { core::arch::asm!("vmclear [{}]", "setna {}", in(reg) &pa, out(reg_byte) failed, options(nostack)) };
    if failed != 0 { Err(EIO) } else { Ok(()) }
}

/// VMPTRLD of the VMCS at `pa`.
///
/// # Safety
/// As for [`vmclear`], and the region carries the VMCS revision ID.
pub(crate) unsafe fn vmptrld(pa: u64) -> Result {
    let failed: u8;
    // SAFETY: per the caller's guarantee.
    unsafe { core::arch::asm!("vmptrld [{}]", "setna {}", in(reg) &pa, out(reg_byte) failed, options(nostack)) };
    if failed != 0 { Err(EIO) } else { Ok(()) }
}

/// VMREAD of a field of the current VMCS (0 if the read fails).
///
/// # Safety
/// A VMCS is current on this CPU.
pub(crate) unsafe fn vmread(field: u32) -> u64 {
    let v: u64;
    // SAFETY: per the caller's guarantee; an invalid field only sets flags.
    unsafe { core::arch::asm!("vmread {}, {}", out(reg) v, in(reg) field as u64, options(nostack)) };
    v
}

/// VMWRITE of a field of the current VMCS; `EIO` if the CPU refuses it.
///
/// # Safety
/// A VMCS is current on this CPU.
pub(crate) unsafe fn vmwrite(field: u32, value: u64) -> Result {
    let failed: u8;
    // SAFETY: per the caller's guarantee.
    unsafe {
        core::arch::asm!("vmwrite {}, {}", "setna {}", in(reg) field as u64, in(reg) value, out(reg_byte) failed, options(nostack))
    };
    if failed != 0 { Err(EIO) } else { Ok(()) }
}

/// INVEPT (type 2: all contexts).
///
/// # Safety
/// VMX operation is on and INVEPT is supported.
pub(crate) unsafe fn invept_all() {
    let desc = [0u64; 2];
    // SAFETY: per the caller's guarantee.
    unsafe { core::arch::asm!("invept {}, [{}]", in(reg) 2u64, in(reg) &desc, options(nostack)) };
}

/// INVVPID types (SDM vol. 3, 30.3, "INVVPID").
#[derive(Clone, Copy)]
pub(crate) enum InvvpidType {
    /// Every mapping tagged with the given VPID.
    SingleContext = 1,
    /// Every mapping tagged with any VPID but 0.
    AllContexts = 2,
}

/// INVVPID of `vpid`'s mappings.
///
/// # Safety
/// VMX operation is on and the CPU supports INVVPID with this type (the VMCS
/// configuration checked both).
pub(crate) unsafe fn invvpid(ty: InvvpidType, vpid: u16) {
    let desc = [vpid as u64, 0u64];
    // SAFETY: per the caller's guarantee; the descriptor is 16 bytes in memory.
    unsafe { core::arch::asm!("invvpid {}, [{}]", in(reg) ty as u64, in(reg) &desc, options(nostack)) };
}
