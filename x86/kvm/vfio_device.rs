// SPDX-License-Identifier: GPL-2.0
//! KVM_CREATE_DEVICE and the kvm-vfio pseudo-device (upstream's
//! virt/kvm/kvm_main.c kvm_ioctl_create_device and virt/kvm/vfio.c): the only
//! device type x86 KVM has. A VMM that assigns VFIO devices to a guest adds
//! their group or device files to it (KVM_DEV_VFIO_FILE_ADD/DEL).
//!
//! What it does here: one device per VM (EBUSY for a second), the file list
//! with upstream's checks and errnos (EBADF, EINVAL for a file that is not a
//! VFIO file, as the vfio module says; EEXIST, ENOENT), HAS_DEVICE_ATTR, and
//! KVM_CREATE_DEVICE_TEST. What upstream also does and this does not: it
//! tells VFIO the VM (vfio_file_set_kvm: there is no `struct kvm` here, so
//! mediated devices that need one, such as GVT-g, refuse to open) and tracks
//! non-coherent DMA for the guest's memory types.

use crate::bindings;
use crate::files;
use crate::uapi;
use crate::user;
use crate::vm::Vm;
use core::sync::atomic::Ordering;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::{c_str, new_mutex};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

/// A reference to a VFIO file, dropped with fput.
struct VfioFile(*mut bindings::file);

// SAFETY: a counted reference to a `struct file`, usable from any task.
unsafe impl Send for VfioFile {}

impl Drop for VfioFile {
    fn drop(&mut self) {
        // SAFETY: the reference taken by fget when the file was added.
        unsafe { bindings::fput(self.0) };
    }
}

/// The kvm-vfio device of a VM.
#[pin_data(PinnedDrop)]
pub(crate) struct KvmVfio {
    /// The VM stays while its device file is open (as upstream's device
    /// holds a reference to its kvm).
    vm: Arc<Vm>,
    /// The files added. Taken only by this device's ioctls; nothing is taken
    /// under it.
    #[pin]
    files: Mutex<KVec<VfioFile>>,
}

#[pinned_drop]
impl PinnedDrop for KvmVfio {
    fn drop(self: Pin<&mut Self>) {
        self.vm.vfio_device_open.store(false, Ordering::SeqCst);
    }
}

/// KVM_CREATE_DEVICE on a VM.
pub(crate) fn create_device(vm: &Arc<Vm>, arg: usize) -> Result<isize> {
    let mut cd: uapi::kvm_create_device = user::read(arg)?;
    if cd.type_ != uapi::kvm_device_type_KVM_DEV_TYPE_VFIO {
        return Err(ENODEV);
    }
    if cd.flags & uapi::KVM_CREATE_DEVICE_TEST == 0 {
        if vm.vfio_device_open.swap(true, Ordering::SeqCst) {
            return Err(EBUSY);
        }
        let dev = Arc::pin_init(
            pin_init!(KvmVfio { vm: vm.clone(), files <- new_mutex!(KVec::new(), "KvmVfio::files") }),
            GFP_KERNEL_ACCOUNT,
        );
        // On failure the device (if made) is dropped, which clears the flag.
        let dev = match dev {
            Ok(d) => d,
            Err(e) => {
                vm.vfio_device_open.store(false, Ordering::SeqCst);
                return Err(e);
            }
        };
        cd.fd = files::new_fd(c_str!("kvm-vfio"), files::device_fops()?, dev)? as u32;
    }
    user::write(arg, &cd)?;
    Ok(0)
}

pub(crate) unsafe extern "C" fn kvm_device_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: a device file in an ioctl: its Arc<KvmVfio> is alive.
    let dev = unsafe { files::borrow::<KvmVfio>(file) };
    match device_ioctl(&dev, cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

pub(crate) unsafe extern "C" fn kvm_device_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: called once, when the last reference to the file goes.
    unsafe { files::release::<KvmVfio>(file) };
    0
}

fn device_ioctl(dev: &KvmVfio, cmd: u32, arg: usize) -> Result<isize> {
    if !dev.vm.owner_is_current() {
        return Err(EIO);
    }
    match cmd {
        uapi::ioctl::KVM_SET_DEVICE_ATTR => {
            let a: uapi::kvm_device_attr = user::read(arg)?;
            dev.set_attr(&a).map(|_| 0)
        }
        uapi::ioctl::KVM_HAS_DEVICE_ATTR => {
            let a: uapi::kvm_device_attr = user::read(arg)?;
            match (a.group, a.attr) {
                (uapi::KVM_DEV_VFIO_FILE, a) if a == uapi::KVM_DEV_VFIO_FILE_ADD as u64 || a == uapi::KVM_DEV_VFIO_FILE_DEL as u64 => Ok(0),
                _ => Err(ENXIO),
            }
        }
        // The device has no readable attributes (upstream: no get_attr).
        uapi::ioctl::KVM_GET_DEVICE_ATTR => Err(EPERM),
        _ => Err(ENOTTY),
    }
}

impl KvmVfio {
    fn set_attr(&self, a: &uapi::kvm_device_attr) -> Result {
        if a.group != uapi::KVM_DEV_VFIO_FILE {
            return Err(ENXIO);
        }
        let add = match a.attr {
            x if x == uapi::KVM_DEV_VFIO_FILE_ADD as u64 => true,
            x if x == uapi::KVM_DEV_VFIO_FILE_DEL as u64 => false,
            _ => return Err(ENXIO),
        };
        let fd: i32 = user::read(a.addr as usize)?;
        // SAFETY: fget takes a reference or returns NULL for a bad descriptor.
        let f = unsafe { bindings::fget(fd as c_uint) };
        if f.is_null() {
            return Err(EBADF);
        }
        let f = VfioFile(f);
        let mut list = self.files.lock();
        let pos = list.iter().position(|x| x.0 == f.0);
        if add {
            // SAFETY: `f` holds a reference to the file.
            if !unsafe { bindings::kvm_rs_vfio_file_is_valid(f.0) } {
                return Err(EINVAL);
            }
            if pos.is_some() {
                return Err(EEXIST);
            }
            list.push(f, GFP_KERNEL_ACCOUNT)?;
            Ok(())
        } else {
            let i = pos.ok_or(ENOENT)?;
            drop(crate::kvec_ext::swap_remove(&mut list, i));
            Ok(())
        }
    }
}
