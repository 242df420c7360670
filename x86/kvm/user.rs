// SPDX-License-Identifier: GPL-2.0
//! Copying UAPI structures between user space and the kernel.
//!
//! Every ioctl argument goes through here: a bad pointer becomes `EFAULT`, never a
//! fault in the kernel. The `FromBytes`/`AsBytes` markers below are sound because
//! the UAPI structs are plain integers and arrays with explicit padding fields
//! (bindgen --explicit-padding): every bit pattern is valid and no byte is
//! uninitialized.

use crate::uapi;
use core::mem::size_of;
use kernel::prelude::*;
use kernel::types::{AsBytes, FromBytes};
use kernel::uaccess::UserSlice;

macro_rules! plain_uapi {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: see the module comment: integers/arrays only, explicit padding.
        unsafe impl FromBytes for $t {}
        // SAFETY: as above.
        unsafe impl AsBytes for $t {}
    )*};
}

plain_uapi!(
    uapi::kvm_msr_list,
    uapi::kvm_cpuid2,
    uapi::kvm_cpuid_entry2,
    uapi::kvm_regs,
    uapi::kvm_sregs,
    uapi::kvm_fpu,
    uapi::kvm_xcrs,
    uapi::kvm_msrs,
    uapi::kvm_msr_entry,
    uapi::kvm_mp_state,
    uapi::kvm_debugregs,
    uapi::kvm_vcpu_events,
    uapi::kvm_userspace_memory_region,
    uapi::kvm_userspace_memory_region2,
    uapi::kvm_dirty_log,
    uapi::kvm_clear_dirty_log,
    uapi::kvm_interrupt,
    uapi::kvm_signal_mask,
    uapi::kvm_irq_level,
    uapi::kvm_irqchip,
    uapi::kvm_lapic_state,
    uapi::kvm_pit_config,
    uapi::kvm_pit_state,
    uapi::kvm_pit_state2,
    uapi::kvm_reinject_control,
    uapi::kvm_irq_routing,
    uapi::kvm_irq_routing_entry,
    uapi::kvm_msi,
    uapi::kvm_enable_cap,
    uapi::kvm_irqfd,
    uapi::kvm_ioeventfd,
    uapi::kvm_vapic_addr,
    uapi::kvm_x86_mce,
    uapi::kvm_clock_data,
    uapi::kvm_guest_debug,
    uapi::kvm_translation,
    uapi::kvm_pre_fault_memory,
    uapi::kvm_coalesced_mmio_zone,
    uapi::kvm_create_device,
    uapi::kvm_device_attr,
);

/// Reads a `T` from the user address `ptr`.
pub fn read<T: FromBytes>(ptr: usize) -> Result<T> {
    UserSlice::new(ptr, size_of::<T>()).reader().read::<T>()
}

/// Writes `value` to the user address `ptr`.
pub fn write<T: AsBytes>(ptr: usize, value: &T) -> Result {
    UserSlice::new(ptr, size_of::<T>()).writer().write(value)
}

/// Writes the elements of `values` back to back starting at the user address `ptr`.
pub fn write_slice<T: AsBytes>(ptr: usize, values: &[T]) -> Result {
    let len = values.len().checked_mul(size_of::<T>()).ok_or(EFAULT)?;
    let mut w = UserSlice::new(ptr, len).writer();
    for v in values {
        w.write(v)?;
    }
    Ok(())
}

/// Fills `values` from consecutive elements starting at the user address `ptr`.
pub fn read_slice<T: FromBytes>(ptr: usize, values: &mut [T]) -> Result {
    let len = values.len().checked_mul(size_of::<T>()).ok_or(EFAULT)?;
    let mut r = UserSlice::new(ptr, len).reader();
    for v in values.iter_mut() {
        *v = r.read::<T>()?;
    }
    Ok(())
}
