// SPDX-License-Identifier: GPL-2.0
//! The ioctls of /dev/kvm itself (upstream's kvm_dev_ioctl + kvm_arch_dev_ioctl).

use crate::bindings;
use crate::supported_cpuid;
use crate::uapi::{self, ioctl};
use crate::{caps, cpu, msr_list, user};
use core::mem::size_of;
use kernel::ffi::{c_long, c_uint, c_ulong};
use kernel::prelude::*;

/// `file_operations.unlocked_ioctl` of /dev/kvm.
pub(crate) unsafe extern "C" fn kvm_dev_ioctl(
    _file: *mut bindings::file,
    cmd: c_uint,
    arg: c_ulong,
) -> c_long {
    match kvm_dev_ioctl_checked(cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

fn kvm_dev_ioctl_checked(cmd: u32, arg: usize) -> Result<isize> {
    match cmd {
        ioctl::KVM_GET_API_VERSION => {
            if arg != 0 {
                return Err(EINVAL);
            }
            Ok(uapi::KVM_API_VERSION as isize)
        }
        ioctl::KVM_CHECK_EXTENSION => Ok(caps::check_extension(arg as u64)),
        ioctl::KVM_GET_VCPU_MMAP_SIZE => {
            if arg != 0 {
                return Err(EINVAL);
            }
            // struct kvm_run, the PIO data page, the coalesced-MMIO ring.
            Ok(((crate::coalesced_mmio::PAGE_OFFSET + 1) as usize * cpu::page_size()) as isize)
        }
        ioctl::KVM_GET_MSR_INDEX_LIST => {
            msr_list::with_msrs_to_save(|list| copy_msr_list(arg, list))?;
            Ok(0)
        }
        ioctl::KVM_GET_MSR_FEATURE_INDEX_LIST => {
            crate::feature_msrs::with_indices(|list| copy_msr_list(arg, list))?;
            Ok(0)
        }
        ioctl::KVM_GET_MSRS => crate::feature_msrs::get_msrs(arg),
        ioctl::KVM_GET_EMULATED_CPUID => {
            get_emulated_cpuid(arg)?;
            Ok(0)
        }
        ioctl::KVM_GET_SUPPORTED_CPUID => {
            get_supported_cpuid(arg)?;
            Ok(0)
        }
        ioctl::KVM_CREATE_VM => crate::vm::kvm_dev_ioctl_create_vm(arg),
        ioctl::KVM_X86_GET_MCE_CAP_SUPPORTED => crate::mce::get_mce_cap_supported(arg).map(|_| 0),
        // Everything else is unknown to /dev/kvm: upstream answers EINVAL.
        _ => Err(EINVAL),
    }
}

/// `struct kvm_msr_list { __u32 nmsrs; __u32 indices[]; }`: the count is always
/// written back; the indices only if they fit (else E2BIG), as upstream does.
fn copy_msr_list(arg: usize, list: &[u32]) -> Result {
    let mut hdr: uapi::kvm_msr_list = user::read(arg)?;
    let room = hdr.nmsrs as usize;
    hdr.nmsrs = list.len() as u32;
    user::write(arg, &hdr)?;
    if room < list.len() {
        return Err(E2BIG);
    }
    user::write_slice(arg + size_of::<uapi::kvm_msr_list>(), list)
}

/// KVM_GET_SUPPORTED_CPUID (upstream's kvm_dev_ioctl_get_cpuid): `nent` below 1 or
/// too small for all entries is E2BIG; above KVM_MAX_CPUID_ENTRIES it is clamped.
fn get_supported_cpuid(arg: usize) -> Result {
    let mut hdr: uapi::kvm_cpuid2 = user::read(arg)?;
    if hdr.nent < 1 {
        return Err(E2BIG);
    }
    let out = crate::cpuid::supported_entries(hdr.nent as usize)?;
    user::write_slice(arg + size_of::<uapi::kvm_cpuid2>(), &out)?;
    hdr.nent = out.len() as u32;
    user::write(arg, &hdr)
}

/// KVM_GET_EMULATED_CPUID (upstream's kvm_dev_ioctl_get_cpuid with
/// __do_cpuid_func_emulated): the features KVM would emulate although the
/// host lacks them. kvm.ko emulates none (no instruction is emulated on #UD),
/// so the leaves upstream reports (0, 1 and 7) come without feature bits.
/// As upstream: `nent` below 1 or too small is E2BIG, above
/// KVM_MAX_CPUID_ENTRIES it is clamped, and the entries' padding must be 0.
fn get_emulated_cpuid(arg: usize) -> Result {
    let mut hdr: uapi::kvm_cpuid2 = user::read(arg)?;
    if hdr.nent < 1 {
        return Err(E2BIG);
    }
    let nent = (hdr.nent as usize).min(supported_cpuid::MAX_ENTRIES);
    let base = arg + size_of::<uapi::kvm_cpuid2>();
    let esize = size_of::<uapi::kvm_cpuid_entry2>();
    for i in 0..nent {
        let e: uapi::kvm_cpuid_entry2 = user::read(base + i * esize)?;
        if e.padding.iter().any(|&p| p != 0) {
            return Err(EINVAL);
        }
    }
    let out = [
        uapi::kvm_cpuid_entry2 { function: 0, eax: 7, ..Default::default() },
        uapi::kvm_cpuid_entry2 { function: 1, ..Default::default() },
        uapi::kvm_cpuid_entry2 { function: 7, flags: uapi::KVM_CPUID_FLAG_SIGNIFCANT_INDEX, ..Default::default() },
    ];
    if nent < out.len() {
        return Err(E2BIG);
    }
    user::write_slice(base, &out)?;
    hdr.nent = out.len() as u32;
    user::write(arg, &hdr)
}
