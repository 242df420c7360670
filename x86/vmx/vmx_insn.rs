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
