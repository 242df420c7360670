// SPDX-License-Identifier: GPL-2.0
//! The VM and vCPU files (anon inodes): their file_operations, installed with the
//! vendor module as owner (so an open VM or vCPU pins it, as upstream), and the
//! link between a file and the `Arc` of the object it stands for.

use crate::bindings;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};
use kernel::types::Opaque;

/// `unlocked_ioctl`.
pub(crate) type IoctlFn = unsafe extern "C" fn(*mut bindings::file, c_uint, c_ulong) -> c_long;
/// `release`.
pub(crate) type ReleaseFn = unsafe extern "C" fn(*mut bindings::inode, *mut bindings::file) -> c_int;
/// `mmap`.
pub(crate) type MmapFn = unsafe extern "C" fn(*mut bindings::file, *mut bindings::vm_area_struct) -> c_int;

/// The file_operations of VM and vCPU files.
pub(crate) struct FileTables {
    vm: Opaque<bindings::file_operations>,
    vcpu: Opaque<bindings::file_operations>,
    device: Opaque<bindings::file_operations>,
    /// KVM_GET_STATS_FD's files (stats::fd).
    stats: Opaque<bindings::file_operations>,
}

// SAFETY: the tables are written once before publication and only read after.
unsafe impl Send for FileTables {}
// SAFETY: as above.
unsafe impl Sync for FileTables {}

static TABLES: AtomicPtr<FileTables> = AtomicPtr::new(core::ptr::null_mut());

/// The handlers of one kind of file.
pub(crate) struct Handlers {
    pub ioctl: IoctlFn,
    pub release: ReleaseFn,
    pub mmap: Option<MmapFn>,
}

fn fill(ops: *mut bindings::file_operations, h: &Handlers, owner: &'static ThisModule) {
    // SAFETY: `ops` points to an allocation of ours, not yet published; zeroed
    // file_operations are valid.
    unsafe {
        core::ptr::write_bytes(ops, 0, 1);
        (*ops).owner = owner.as_ptr().cast();
        (*ops).unlocked_ioctl = Some(h.ioctl);
        (*ops).compat_ioctl = Some(h.ioctl);
        (*ops).release = Some(h.release);
        (*ops).mmap = h.mmap;
        (*ops).llseek = Some(bindings::noop_llseek);
    }
}

/// Builds and publishes the tables; the returned box must outlive every file
/// created with them (the registration drops it after /dev/kvm is gone and no VM
/// file can exist, since each pins the vendor module).
pub(crate) fn install(vm: Handlers, vcpu: Handlers, device: Handlers, owner: &'static ThisModule) -> Result<KBox<FileTables>> {
    let t = KBox::new(FileTables { vm: Opaque::uninit(), vcpu: Opaque::uninit(), device: Opaque::uninit(), stats: Opaque::uninit() }, GFP_KERNEL)?;
    fill(t.vm.get(), &vm, owner);
    fill(t.vcpu.get(), &vcpu, owner);
    fill(t.device.get(), &device, owner);
    crate::stats::fd::fill_fops(t.stats.get(), owner);
    TABLES.store(&*t as *const FileTables as *mut FileTables, Ordering::Release);
    Ok(t)
}

/// Unpublishes the tables.
pub(crate) fn uninstall() {
    TABLES.store(core::ptr::null_mut(), Ordering::Release);
}

fn tables() -> Result<&'static FileTables> {
    let p = TABLES.load(Ordering::Acquire);
    // SAFETY: non-null only while the registration owns the box.
    unsafe { p.as_ref() }.ok_or(ENODEV)
}

pub(crate) fn vm_fops() -> Result<*const bindings::file_operations> {
    Ok(tables()?.vm.get())
}

pub(crate) fn vcpu_fops() -> Result<*const bindings::file_operations> {
    Ok(tables()?.vcpu.get())
}

/// The file operations of KVM_CREATE_DEVICE's device files.
pub(crate) fn device_fops() -> Result<*const bindings::file_operations> {
    Ok(tables()?.device.get())
}

/// The file operations of KVM_GET_STATS_FD's files.
pub(crate) fn stats_fops() -> Result<*const bindings::file_operations> {
    Ok(tables()?.stats.get())
}

/// Creates a file descriptor (O_RDWR | O_CLOEXEC) whose private data owns `obj`.
pub(crate) fn new_fd<T: Send + Sync>(
    name: &'static CStr,
    fops: *const bindings::file_operations,
    obj: Arc<T>,
) -> Result<i32> {
    let raw = Arc::into_raw(obj);
    // SAFETY: `fops` is a published table; `raw` stays valid until release drops
    // it (or below on failure).
    let fd = unsafe {
        bindings::anon_inode_getfd(
            name.as_char_ptr(),
            fops,
            raw as *mut c_void,
            (bindings::O_RDWR | bindings::O_CLOEXEC) as c_int,
        )
    };
    if fd < 0 {
        // SAFETY: the file was not created, so the reference is still ours.
        drop(unsafe { Arc::from_raw(raw) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd)
}

/// The object of an open file.
///
/// # Safety
/// `file` is a file created by [`new_fd`] with an `Arc<T>`, and the caller holds
/// a reference to the file (an ioctl or mmap in progress), so release has not run.
pub(crate) unsafe fn borrow<'a, T>(file: *mut bindings::file) -> ArcBorrow<'a, T> {
    // SAFETY: per the contract, private_data is the `Arc<T>` of `new_fd`, alive.
    unsafe { ArcBorrow::from_raw(bindings::kvm_rs_file_private(file) as *const T) }
}

/// Drops the object of a file being released.
///
/// # Safety
/// `file` was created by [`new_fd`] with an `Arc<T>`; called once, from release.
pub(crate) unsafe fn release<T>(file: *mut bindings::file) {
    // SAFETY: the reference `new_fd` stored, given back exactly once.
    drop(unsafe { Arc::from_raw(bindings::kvm_rs_file_private(file) as *const T) });
}
