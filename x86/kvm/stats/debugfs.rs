// SPDX-License-Identifier: GPL-2.0
//! The statistics in debugfs, as upstream's kvm_init_debug and
//! kvm_create_vm_debugfs lay them out:
//!
//! - /sys/kernel/debug/kvm/<stat>: every VM and vCPU statistic, summed over
//!   all VMs (all vCPUs);
//! - /sys/kernel/debug/kvm/<pid>-<fd>/<stat>: one VM's, vCPU statistics
//!   summed over its vCPUs.
//!
//! - /sys/kernel/debug/kvm/<pid>-<fd>/vcpu<N>/{pid,guest_mode,tsc-offset}:
//!   the thread that last ran the vCPU, 0 (no nested guests here), the TSC
//!   offset (upstream's kvm_create_vcpu_debugfs and x86's additions, less
//!   lapic_timer_advance_ns: no timer advance here; and the TSC scaling
//!   files, which upstream too has only with TSC scaling).
//!
//! Files of counters can be written 0 to clear them; instant values are
//! read-only (upstream's modes). A VM's directory goes with the VM, the
//! top directory when the vendor module unregisters (no VM can exist then:
//! each pins the vendor module).
//!
//! The files hold pointers to [`StatFile`]s. debugfs_remove() waits for
//! reads and writes in progress and fails later ones, so the data of a file
//! is freed only after its file is gone.

use super::counters::{VcpuStats, VmStats};
use kernel::sync::Arc;
use crate::bindings;
use crate::stats_desc::{vcpu, vm, Desc};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Mutex;
use kernel::{fmt, new_mutex};

/// What one file shows.
pub(crate) struct StatFile {
    /// Its VM, or null for the sums over all VMs at the top.
    vm: *const VmStats,
    desc: &'static Desc,
    /// A vCPU statistic (summed over vCPUs) rather than a VM one.
    per_vcpu: bool,
}

/// A debugfs dentry (owned by debugfs; we only remove it).
struct Dentry(*mut bindings::dentry);

/// A VM's directory and its files' data.
pub(crate) struct VmDir {
    dir: Dentry,
    _files: KVec<StatFile>,
    /// The data of the vcpuN/ files (boxed: their addresses are the files').
    vcpu_files: KVec<KBox<VcpuFile>>,
}

/// What a vcpuN/ file shows.
enum VcpuFileKind {
    Pid,
    GuestMode,
    TscOffset,
}

pub(crate) struct VcpuFile {
    stats: Arc<VcpuStats>,
    kind: VcpuFileKind,
}

// SAFETY: the pointers are only used under the owner's lock or while debugfs
// guarantees the file (and so the VM) is alive; nothing is thread-bound.
unsafe impl Send for VmDir {}
// SAFETY: as above.
unsafe impl Send for StatFile {}
// SAFETY: as above.
unsafe impl Sync for StatFile {}
// SAFETY: as above.
unsafe impl Send for Dentry {}
// SAFETY: as above.
unsafe impl Sync for Dentry {}

struct VmPtr(*const VmStats);
// SAFETY: a VM is on the list only between its registration and its drop,
// which takes it off under the same lock.
unsafe impl Send for VmPtr {}

/// /sys/kernel/debug/kvm and the list of VMs its files sum over.
#[pin_data]
pub(crate) struct Root {
    dir: Dentry,
    files: KVec<StatFile>,
    /// Every VM. Taken by VM creation and destruction and by the top
    /// files' reads; a VM's `vcpus` lock nests inside it.
    #[pin]
    vms: Mutex<KVec<VmPtr>>,
}

static ROOT: AtomicPtr<Root> = AtomicPtr::new(null_mut());

fn root() -> Option<&'static Root> {
    // SAFETY: non-null only while the registration owns the box, and every
    // VM (the only other user) is gone before it is dropped.
    unsafe { ROOT.load(Ordering::Acquire).as_ref() }
}

/// Keeps /sys/kernel/debug/kvm while the vendor module is registered.
pub(crate) struct RootRegistration(Pin<KBox<Root>>);

fn all_files(vm: *const VmStats) -> Result<KVec<StatFile>> {
    let mut files = KVec::with_capacity(vm::DESCS.len() + vcpu::DESCS.len(), GFP_KERNEL)?;
    for desc in vm::DESCS.iter() {
        files.push(StatFile { vm, desc, per_vcpu: false }, GFP_KERNEL)?;
    }
    for desc in vcpu::DESCS.iter() {
        files.push(StatFile { vm, desc, per_vcpu: true }, GFP_KERNEL)?;
    }
    Ok(files)
}

fn create_files(dir: *mut bindings::dentry, files: &KVec<StatFile>) -> Result {
    for f in files.iter() {
        let name = CString::try_from_fmt(fmt!("{}", f.desc.name))?;
        // SAFETY: `f` stays at this address until the directory is removed
        // (the vector is never grown; see VmDir/Root); the name is copied.
        unsafe {
            bindings::kvm_rs_debugfs_stat(name.as_char_ptr(), f.desc.debugfs_mode(), dir, f as *const StatFile as *mut c_void)
        };
    }
    Ok(())
}

/// Creates /sys/kernel/debug/kvm (upstream's kvm_init_debug).
pub(crate) fn init() -> Result<RootRegistration> {
    // SAFETY: a plain debugfs call; NULL parent is the debugfs root.
    let dir = unsafe { bindings::kvm_rs_debugfs_dir(kernel::c_str!("kvm").as_char_ptr(), null_mut()) };
    let files = all_files(null_mut())?;
    let root = KBox::pin_init(
        pin_init!(Root { dir: Dentry(dir), files, vms <- new_mutex!(KVec::new(), "stats::Root::vms") }),
        GFP_KERNEL,
    );
    let root = match root {
        Ok(r) => r,
        Err(e) => {
            // SAFETY: the directory we just created, no file in it yet.
            unsafe { bindings::kvm_rs_debugfs_remove(dir) };
            return Err(e);
        }
    };
    let reg = RootRegistration(root);
    create_files(dir, &reg.0.files)?;
    ROOT.store(&*reg.0 as *const Root as *mut Root, Ordering::Release);
    Ok(reg)
}

impl Drop for RootRegistration {
    fn drop(&mut self) {
        ROOT.store(null_mut(), Ordering::Release);
        // SAFETY: removes our directory (and anything left under it), waiting
        // for reads in progress; the files' data is freed after.
        unsafe { bindings::kvm_rs_debugfs_remove(self.0.dir.0) };
    }
}

/// A new VM got its file descriptor: list it and create <pid>-<fd>/.
pub(crate) fn vm_created(stats: &VmStats, fd: i32) -> Result {
    let Some(root) = root() else { return Ok(()) };
    root.vms.lock().push(VmPtr(stats), GFP_KERNEL)?;
    let name = CString::try_from_fmt(fmt!("{}-{}", stats.pid, fd))?;
    // Upstream skips a duplicate name (a VM whose fd number was reused while
    // the old VM lives on through a stats fd) without creating the directory.
    // SAFETY: plain debugfs calls on our directory.
    if unsafe { bindings::kvm_rs_debugfs_exists(name.as_char_ptr(), root.dir.0) } {
        return Ok(());
    }
    // SAFETY: as above.
    let dir = unsafe { bindings::kvm_rs_debugfs_dir(name.as_char_ptr(), root.dir.0) };
    if dir.is_null() {
        return Ok(());
    }
    let mut slot = stats.debugfs.lock();
    let files = all_files(stats)?;
    let d = slot.insert(VmDir { dir: Dentry(dir), _files: files, vcpu_files: KVec::new() });
    create_files(dir, &d._files)
}

/// A new vCPU: vcpu<N>/ in its VM's directory (if the VM has one).
pub(crate) fn vcpu_created(vm: &VmStats, stats: &Arc<VcpuStats>) -> Result {
    let mut slot = vm.debugfs.lock();
    let Some(d) = slot.as_mut() else { return Ok(()) };
    let name = CString::try_from_fmt(fmt!("vcpu{}", stats.vcpu_id))?;
    // SAFETY: a plain debugfs call under the VM's directory.
    let dir = unsafe { bindings::kvm_rs_debugfs_dir(name.as_char_ptr(), d.dir.0) };
    if dir.is_null() {
        return Ok(());
    }
    d.vcpu_files.reserve(3, GFP_KERNEL)?;
    for (file, kind, signed) in [
        (kernel::c_str!("pid"), VcpuFileKind::Pid, false),
        (kernel::c_str!("guest_mode"), VcpuFileKind::GuestMode, true),
        (kernel::c_str!("tsc-offset"), VcpuFileKind::TscOffset, true),
    ] {
        let f = KBox::new(VcpuFile { stats: stats.clone(), kind }, GFP_KERNEL)?;
        let data = &*f as *const VcpuFile as *mut c_void;
        d.vcpu_files.push(f, GFP_KERNEL)?;
        // SAFETY: the box stays in `vcpu_files` until the VM's directory is
        // removed (vm_destroyed); the name is copied.
        unsafe { bindings::kvm_rs_debugfs_vcpu_file(file.as_char_ptr(), dir, data, signed) };
    }
    Ok(())
}

/// debugfs read of a vcpuN/ file.
#[no_mangle]
pub(crate) unsafe extern "C" fn kvm_rs_vcpu_file_get(data: *mut c_void, val: *mut u64) -> c_int {
    // SAFETY: a VcpuFile of a live file (removed before it is freed).
    let f = unsafe { &*(data as *const VcpuFile) };
    let v = match f.kind {
        VcpuFileKind::Pid => f.stats.pid.load(Ordering::Relaxed) as u64,
        VcpuFileKind::GuestMode => f.stats.c.get(vcpu::GUEST_MODE),
        VcpuFileKind::TscOffset => f.stats.tsc_offset.load(Ordering::Relaxed),
    };
    // SAFETY: debugfs passes a valid u64.
    unsafe { *val = v };
    0
}

/// A VM goes: off the list, and its directory removed.
pub(crate) fn vm_destroyed(stats: &VmStats) {
    if let Some(root) = root() {
        let mut vms = root.vms.lock();
        if let Some(i) = vms.iter().position(|v| core::ptr::eq(v.0, stats)) {
            drop(crate::kvec_ext::swap_remove(&mut vms, i));
        }
    }
    if let Some(d) = stats.debugfs.lock().take() {
        // SAFETY: the VM's own directory; waits for reads in progress before
        // `d`'s file data is freed (when `d` drops).
        unsafe { bindings::kvm_rs_debugfs_remove(d.dir.0) };
    }
}

fn value(vm: &VmStats, f: &StatFile) -> u64 {
    if f.per_vcpu {
        vm.vcpu_sum(f.desc)
    } else {
        vm.c.value(f.desc)
    }
}

fn clear(vm: &VmStats, f: &StatFile) {
    if f.per_vcpu {
        for v in vm.vcpus.lock().iter() {
            v.c.clear(f.desc);
        }
    } else {
        vm.c.clear(f.desc);
    }
}

/// Calls `op` on the VM of a file, or on every VM for a top file.
fn for_each_vm(f: &StatFile, mut op: impl FnMut(&VmStats)) {
    if !f.vm.is_null() {
        // SAFETY: the VM outlives its directory's files (vm_destroyed removes
        // them before the VM's memory goes, and debugfs waits for us).
        op(unsafe { &*f.vm });
        return;
    }
    if let Some(root) = root() {
        for v in root.vms.lock().iter() {
            // SAFETY: listed VMs are alive (they leave the list, under this
            // lock, before they are freed).
            op(unsafe { &*v.0 });
        }
    }
}

/// debugfs read of a statistic (upstream's kvm_stat_data_get / vm_stat_get).
#[no_mangle]
pub(crate) unsafe extern "C" fn kvm_rs_stat_get(data: *mut c_void, val: *mut u64) -> c_int {
    // SAFETY: `data` is a StatFile of a live file (see the module comment).
    let f = unsafe { &*(data as *const StatFile) };
    let mut sum = 0u64;
    for_each_vm(f, |vm| sum = sum.wrapping_add(value(vm, f)));
    // SAFETY: debugfs passes a valid u64.
    unsafe { *val = sum };
    0
}

/// debugfs write: only 0, which clears the statistic (upstream's
/// kvm_stat_data_clear / vm_stat_clear).
#[no_mangle]
pub(crate) unsafe extern "C" fn kvm_rs_stat_set(data: *mut c_void, val: u64) -> c_int {
    if val != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: as in kvm_rs_stat_get.
    let f = unsafe { &*(data as *const StatFile) };
    for_each_vm(f, |vm| clear(vm, f));
    0
}
