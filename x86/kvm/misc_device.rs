// SPDX-License-Identifier: GPL-2.0
//! A registered misc character device (/dev/kvm, minor 232), as a value that
//! deregisters itself when dropped.
//!
//! 6.12's `kernel` crate has no misc-device abstraction; this wraps misc_register/
//! misc_deregister from our own bindings.

use crate::bindings;
use kernel::prelude::*;
use kernel::types::Opaque;

/// The C signature of `file_operations.unlocked_ioctl`.
pub(crate) type IoctlFn =
    unsafe extern "C" fn(*mut bindings::file, kernel::ffi::c_uint, kernel::ffi::c_ulong) -> kernel::ffi::c_long;

/// The file operations of a misc device: only what /dev/kvm needs.
pub(crate) struct MiscFileOps {
    /// `unlocked_ioctl` (and `compat_ioctl`: the KVM ABI has no 32-bit variants on
    /// x86_64 for the ioctls handled here).
    pub ioctl: IoctlFn,
}

/// The miscdevice and its file_operations, at a fixed address while registered
/// (the misc core keeps pointers to both).
struct MiscData {
    fops: Opaque<bindings::file_operations>,
    dev: Opaque<bindings::miscdevice>,
}

/// A registration of a misc device; dropping it calls misc_deregister.
pub(crate) struct MiscRegistration {
    data: KBox<MiscData>,
}

// SAFETY: after registration the structures are only read by the misc core, which
// synchronizes itself; deregistration happens once, in drop.
unsafe impl Send for MiscRegistration {}
// SAFETY: as above: no `&self` method mutates.
unsafe impl Sync for MiscRegistration {}

impl MiscRegistration {
    /// Registers `name` with a fixed `minor` and `ops`; `owner` is the module whose
    /// reference count open files hold (the vendor module, as upstream's
    /// kvm_chardev_ops.owner).
    pub(crate) fn register(
        name: &'static CStr,
        minor: i32,
        ops: MiscFileOps,
        owner: &'static ThisModule,
    ) -> Result<Self> {
        let data = KBox::new(
            MiscData { fops: Opaque::uninit(), dev: Opaque::uninit() },
            GFP_KERNEL,
        )?;
        let fops = data.fops.get();
        let dev = data.dev.get();
        // SAFETY: both pointers point into the new allocation and are valid for
        // writes; zeroed file_operations/miscdevice are valid (all fields are
        // pointers, integers or lists that misc_register initializes).
        unsafe {
            core::ptr::write_bytes(fops, 0, 1);
            core::ptr::write_bytes(dev, 0, 1);
            (*fops).owner = owner.as_ptr().cast();
            (*fops).unlocked_ioctl = Some(ops.ioctl);
            (*fops).compat_ioctl = (*fops).unlocked_ioctl;
            (*fops).llseek = Some(bindings::noop_llseek);
            (*dev).minor = minor;
            (*dev).name = name.as_char_ptr();
            (*dev).fops = fops;
        }
        // SAFETY: `dev` is fully initialized and lives in `data`, which is not moved
        // (boxed) and outlives the registration (deregistered in drop).
        let r = unsafe { bindings::misc_register(dev) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(MiscRegistration { data })
    }
}

impl Drop for MiscRegistration {
    fn drop(&mut self) {
        // SAFETY: registered in `register`, deregistered exactly once here.
        unsafe { bindings::misc_deregister(self.data.dev.get()) };
    }
}
