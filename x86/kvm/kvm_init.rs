// SPDX-License-Identifier: GPL-2.0
//! Registration of a vendor module (upstream's kvm_x86_vendor_init + kvm_init):
//! hardware_setup, virtualization on every CPU, then /dev/kvm, in that order, and
//! the reverse when the registration is dropped (the vendor module unloads).

use crate::misc_device::{MiscFileOps, MiscRegistration};
use crate::virtualization::{self, VirtualizationOn};
use crate::x86_ops::{KvmX86Ops, VendorOps};
use crate::files::{self, FileTables, Handlers};
use crate::{dev_ioctl, msr_list, vcpu, vfio_device, vm};
use kernel::c_str;
use kernel::prelude::*;

/// The misc minor of /dev/kvm (include/linux/miscdevice.h: KVM_MINOR).
pub const KVM_MINOR: i32 = 232;

/// A registered vendor. Dropping it removes /dev/kvm, turns virtualization off on
/// every CPU and then drops the vendor's ops (its hardware_unsetup).
pub struct Registration<T: KvmX86Ops> {
    misc: Option<MiscRegistration>,
    files: Option<KBox<FileTables>>,
    virt: Option<VirtualizationOn>,
    /// /sys/kernel/debug/kvm (dropped after the fields above are emptied).
    debugfs: Option<crate::stats::debugfs::RootRegistration>,
    ops: KBox<T>,
}

impl<T: KvmX86Ops> Registration<T> {
    /// The vendor's ops, as created by its hardware_setup.
    pub fn ops(&self) -> &T {
        &self.ops
    }
}

/// Registers vendor `T`: runs `T::hardware_setup`, enables virtualization on every
/// CPU and creates /dev/kvm, owned by `module` (the vendor module, so an open
/// /dev/kvm pins it).
pub fn kvm_init<T: KvmX86Ops>(module: &'static ThisModule) -> Result<Registration<T>> {
    if !virtualization::claim() {
        let other = virtualization::vendor().map(|v| v.name()).unwrap_or(c_str!("?"));
        pr_err!("already loaded vendor module '{}'\n", other);
        return Err(EEXIST);
    }
    let ops = match T::hardware_setup().and_then(|o| Ok(KBox::new(o, GFP_KERNEL)?)) {
        Ok(ops) => ops,
        Err(e) => {
            virtualization::release();
            return Err(e);
        }
    };
    let ops_ptr: *const T = &*ops;
    // SAFETY: the box is owned by the registration built below, whose drop clears
    // the vendor slot (after unregistering every user of it) before the box is
    // freed, so the reference never outlives the ops.
    let ops_ref: &'static dyn VendorOps = unsafe { &*ops_ptr };
    // SAFETY: we hold the claim and nothing that reads the slot is registered yet.
    unsafe { virtualization::set_vendor(Some(ops_ref)) };

    let mut reg = Registration { misc: None, files: None, virt: None, debugfs: None, ops };
    msr_list::init(ops_ref);
    reg.files = Some(files::install(
        Handlers { ioctl: vm::kvm_vm_ioctl, release: vm::kvm_vm_release, mmap: None },
        Handlers { ioctl: vcpu::kvm_vcpu_ioctl, release: vcpu::kvm_vcpu_release, mmap: Some(vcpu::kvm_vcpu_mmap) },
        Handlers { ioctl: vfio_device::kvm_device_ioctl, release: vfio_device::kvm_device_release, mmap: None },
        module,
    )?);
    reg.debugfs = Some(crate::stats::debugfs::init()?);
    reg.virt = Some(virtualization::enable_all()?);
    reg.misc = Some(MiscRegistration::register(
        c_str!("kvm"),
        KVM_MINOR,
        MiscFileOps { ioctl: dev_ioctl::kvm_dev_ioctl },
        module,
    )?);
    Ok(reg)
}

impl<T: KvmX86Ops> Drop for Registration<T> {
    fn drop(&mut self) {
        // /dev/kvm first: no new users. Then every CPU off. Then the slot is cleared,
        // and only after this function returns is `ops` dropped (hardware_unsetup).
        drop(self.misc.take());
        // Every VM and vCPU file pins the vendor module, so none is open when it
        // unloads: the file operations can go.
        files::uninstall();
        drop(self.files.take());
        drop(self.debugfs.take());
        drop(self.virt.take());
        // SAFETY: the misc device, the hotplug callbacks and the syscore/emergency
        // hooks are all unregistered above.
        unsafe { virtualization::set_vendor(None) };
        virtualization::release();
    }
}
