// SPDX-License-Identifier: GPL-2.0
//! The guest's FPU/SSE/AVX state, kept by the kernel's guest-FPU API (the one
//! upstream KVM uses): swapped with the VMM thread's state around KVM_RUN, and
//! read/written in the XSAVE UABI format for KVM_GET/SET_FPU and _XSAVE.

use crate::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// Size of the XSAVE UABI buffer (`struct kvm_xsave`).
pub(crate) const UABI_SIZE: usize = 4096;

pub(crate) struct GuestFpu {
    fpu: KBox<Opaque<bindings::fpu_guest>>,
}

// SAFETY: the state is only used by the thread holding the vCPU mutex.
unsafe impl Send for GuestFpu {}

impl GuestFpu {
    pub(crate) fn new() -> Result<Self> {
        let fpu = KBox::new(Opaque::<bindings::fpu_guest>::uninit(), GFP_KERNEL)?;
        // SAFETY: zeroing then initializing a struct we own.
        let ok = unsafe {
            core::ptr::write_bytes(fpu.get(), 0, 1);
            bindings::fpu_alloc_guest_fpstate(fpu.get())
        };
        if !ok {
            return Err(ENOMEM);
        }
        Ok(GuestFpu { fpu })
    }

    /// Puts the guest state in the FPU registers (the task's state is saved).
    pub(crate) fn load(&mut self) {
        // SAFETY: an allocated guest fpstate; called from the vCPU thread.
        unsafe { bindings::fpu_swap_kvm_fpstate(self.fpu.get(), true) };
    }

    /// Saves the guest state and gives the registers back to the task.
    pub(crate) fn put(&mut self) {
        // SAFETY: pairs with `load`.
        unsafe { bindings::fpu_swap_kvm_fpstate(self.fpu.get(), false) };
    }

    /// The state in XSAVE UABI format (legacy area, header, components).
    pub(crate) fn get_uabi(&mut self, buf: &mut [u8; UABI_SIZE], xcr0: u64) {
        // SAFETY: `buf` holds UABI_SIZE bytes.
        unsafe {
            bindings::fpu_copy_guest_fpstate_to_uabi(self.fpu.get(), buf.as_mut_ptr().cast(), UABI_SIZE as u32, xcr0, 0)
        };
    }

    /// Loads the state from XSAVE UABI format; EINVAL if the kernel refuses it
    /// (reserved bits, components beyond `xcr0`...).
    pub(crate) fn set_uabi(&mut self, buf: &[u8; UABI_SIZE], xcr0: u64) -> Result {
        let mut pkru = 0u32;
        // SAFETY: `buf` holds UABI_SIZE bytes, validated by the callee.
        let r = unsafe {
            bindings::fpu_copy_uabi_to_guest_fpstate(self.fpu.get(), buf.as_ptr().cast(), xcr0, &mut pkru)
        };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(())
    }
}

impl Drop for GuestFpu {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`.
        unsafe { bindings::fpu_free_guest_fpstate(self.fpu.get()) };
    }
}

/// Makes sure the FPU registers hold the current (guest) state before entry.
pub(crate) fn load_if_needed() {
    // SAFETY: called with interrupts disabled on the vCPU thread.
    unsafe { bindings::kvm_rs_fpu_load_if_needed() };
}
