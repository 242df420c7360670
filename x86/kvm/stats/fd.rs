// SPDX-License-Identifier: GPL-2.0
//! KVM_GET_STATS_FD (upstream's kvm_vm_ioctl_get_stats_fd and
//! kvm_vcpu_ioctl_get_stats_fd): a read-only anonymous file whose content is
//! the stats image of src/kvm-stats (header, id, descriptors, data), read
//! with pread at any offset (kvm_stats_read).
//!
//! A VM stats file keeps its VM (upstream's kvm_get_kvm), a vCPU stats file
//! its vCPU's counters, so both stay readable after the VM's and vCPU's
//! files are closed. The file operations belong to the vendor module (like
//! the VM files), which an open stats file therefore pins.

use super::counters::VcpuStats;
use crate::bindings;
use crate::stats_desc::{self as desc, vcpu, vm, Desc, Layout, NAME_SIZE};
use crate::vcpu::Vcpu;
use crate::vm::Vm;
use kernel::ffi::{c_char, c_int, c_void};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::Arc;
use kernel::fmt;

enum Source {
    Vm(Arc<Vm>),
    Vcpu(Arc<VcpuStats>),
}

/// The private data of a stats file.
struct StatsFile {
    id: [u8; NAME_SIZE],
    src: Source,
}

impl StatsFile {
    fn descs(&self) -> &'static [Desc] {
        match self.src {
            Source::Vm(_) => &vm::DESCS,
            Source::Vcpu(_) => &vcpu::DESCS,
        }
    }

    /// The current data block.
    fn data(&self) -> Result<KVec<u64>> {
        let (n, snap): (usize, &dyn Fn(&mut [u64])) = match &self.src {
            Source::Vm(v) => (vm::WORDS, &|o| v.stats.c.snapshot(o)),
            Source::Vcpu(s) => (vcpu::WORDS, &|o| s.c.snapshot(o)),
        };
        let mut data = KVec::from_elem(0u64, n, GFP_KERNEL)?;
        snap(&mut data);
        Ok(data)
    }
}

/// Fills the stats files' operations (read, release, no seek), owned by the
/// vendor module.
pub(crate) fn fill_fops(ops: *mut bindings::file_operations, owner: &'static ThisModule) {
    // SAFETY: `ops` is an unpublished allocation of ours; zeroed
    // file_operations are valid.
    unsafe {
        core::ptr::write_bytes(ops, 0, 1);
        (*ops).owner = owner.as_ptr().cast();
        (*ops).read = Some(stats_read);
        (*ops).release = Some(stats_release);
        (*ops).llseek = Some(bindings::noop_llseek);
    }
}

fn install(name: &CStr, f: StatsFile) -> Result<isize> {
    let fops = crate::files::stats_fops()?;
    let raw = KBox::into_raw(KBox::new(f, GFP_KERNEL)?);
    // SAFETY: `fops` is published; `raw` is owned by the file from here on
    // (freed by release), or by us again on failure.
    let fd = unsafe { bindings::kvm_rs_stats_getfd(name.as_char_ptr(), fops, raw as *mut c_void) };
    if fd < 0 {
        // SAFETY: no file was created, so the box is still ours.
        drop(unsafe { KBox::from_raw(raw) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd as isize)
}

/// KVM_GET_STATS_FD on a VM.
pub(crate) fn vm_stats_fd(vm: &Arc<Vm>) -> Result<isize> {
    let id = desc::format_id(vm.stats.pid, None);
    install(kernel::c_str!("kvm-vm-stats"), StatsFile { id, src: Source::Vm(vm.clone()) })
}

/// KVM_GET_STATS_FD on a vCPU.
pub(crate) fn vcpu_stats_fd(vcpu: &Vcpu) -> Result<isize> {
    let s = vcpu.shared.stats.clone();
    let id = desc::format_id(vcpu.vm.stats.pid, Some(s.vcpu_id));
    let name = CString::try_from_fmt(fmt!("kvm-vcpu-stats:{}", s.vcpu_id))?;
    install(&name, StatsFile { id, src: Source::Vcpu(s) })
}

fn read(f: &StatsFile, buf: usize, size: usize, pos: &mut i64) -> Result<isize> {
    let descs = f.descs();
    let data = f.data()?;
    let layout = Layout::new(descs, data.len());
    let range = desc::read_range(layout.size(), u64::try_from(*pos).unwrap_or(u64::MAX), size);
    if range.is_empty() {
        return Ok(0);
    }
    let mut img = KVec::from_elem(0u8, layout.size(), GFP_KERNEL)?;
    if !desc::write_image(&mut img, &f.id, descs, &data) {
        return Err(EINVAL);
    }
    let n = range.len();
    kernel::uaccess::UserSlice::new(buf, n).writer().write_slice(&img[range])?;
    *pos += n as i64;
    Ok(n as isize)
}

unsafe extern "C" fn stats_read(file: *mut bindings::file, buf: *mut c_char, size: usize, pos: *mut bindings::loff_t) -> isize {
    // SAFETY: a stats file in read: its private data is the StatsFile that
    // `install` gave it, alive until release.
    let f = unsafe { &*(bindings::kvm_rs_file_private(file) as *const StatsFile) };
    // SAFETY: the VFS passes a valid position.
    let pos = unsafe { &mut *pos };
    match read(f, buf as usize, size, pos) {
        Ok(n) => n,
        Err(e) => e.to_errno() as isize,
    }
}

unsafe extern "C" fn stats_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: called once, when the file goes: the box `install` made.
    drop(unsafe { KBox::from_raw(bindings::kvm_rs_file_private(file) as *mut StatsFile) });
    0
}
