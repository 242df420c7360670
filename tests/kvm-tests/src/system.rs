//! The ioctls of /dev/kvm itself (issue: foundation), with good and bad arguments.

use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("system/api_version", api_version),
        ("system/api_version_bad_arg", api_version_bad_arg),
        ("system/check_extension_unknown_is_0", check_extension_unknown),
        ("system/check_extension_ext_cpuid", check_extension_ext_cpuid),
        ("system/vcpu_mmap_size", vcpu_mmap_size),
        ("system/msr_index_list_e2big_probe", msr_index_list_probe),
        ("system/msr_index_list_contents", msr_index_list_contents),
        ("system/msr_index_list_efault", msr_index_list_efault),
        ("system/msr_feature_index_list", msr_feature_index_list),
        ("system/supported_cpuid_e2big", supported_cpuid_e2big),
        ("system/supported_cpuid_contents", supported_cpuid_contents),
        ("system/supported_cpuid_clamps_nent", supported_cpuid_clamps),
        ("system/supported_cpuid_efault", supported_cpuid_efault),
        ("system/unknown_ioctls_einval", unknown_ioctls),
        ("system/many_opens", many_opens),
    ]
}

fn api_version() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_GET_API_VERSION, 0), Ok(12));
    Ok(())
}

fn api_version_bad_arg() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_GET_API_VERSION, 1), Err(libc::EINVAL));
    check_eq!(ioctl_val(&kvm, KVM_GET_VCPU_MMAP_SIZE, 7), Err(libc::EINVAL));
    Ok(())
}

fn check_extension_unknown() -> TestResult {
    let kvm = open_kvm()?;
    for cap in [100_000u64, 0xffff_ffff, 0x1_0000_0001, u64::MAX] {
        check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, cap), Ok(0));
    }
    Ok(())
}

fn check_extension_ext_cpuid() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_EXT_CPUID as u64), Ok(1));
    Ok(())
}

fn vcpu_mmap_size() -> TestResult {
    let kvm = open_kvm()?;
    let size = ioctl_val(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0).map_err(|e| format!("errno {e}"))?;
    // struct kvm_run and the PIO data page at least (upstream adds the coalesced
    // MMIO ring page).
    check!(size >= 2 * 4096 && size % 4096 == 0, "mmap size {size}");
    check!(size as usize >= std::mem::size_of::<kvm_run>());
    Ok(())
}

fn msr_index_list_probe() -> TestResult {
    let kvm = open_kvm()?;
    let mut l = MsrList::with_room(0);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSR_INDEX_LIST, l.ptr()), Err(libc::E2BIG));
    let n = l.nmsrs();
    check!(n > 0, "the probe must report the count");
    // One short of the count: still E2BIG, count still reported.
    let mut l = MsrList::with_room(n - 1);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSR_INDEX_LIST, l.ptr()), Err(libc::E2BIG));
    check_eq!(l.nmsrs(), n);
    Ok(())
}

fn get_msr_list(kvm: &std::os::fd::OwnedFd, req: u32) -> Result<Vec<u32>, String> {
    let mut l = MsrList::with_room(0);
    let n = match ioctl_ptr(kvm, req, l.ptr()) {
        Ok(_) => return Ok(vec![]),
        Err(libc::E2BIG) => l.nmsrs(),
        Err(e) => return Err(format!("probe errno {e}")),
    };
    let mut l = MsrList::with_room(n + 10);
    ioctl_ptr(kvm, req, l.ptr()).map_err(|e| format!("errno {e}"))?;
    if l.nmsrs() != n {
        return Err(format!("count changed {n} -> {}", l.nmsrs()));
    }
    Ok(l.indices().to_vec())
}

fn msr_index_list_contents() -> TestResult {
    let kvm = open_kvm()?;
    let list = get_msr_list(&kvm, KVM_GET_MSR_INDEX_LIST)?;
    // The MSRs every x86-64 guest's syscall/sysenter paths need.
    for msr in [0x174u32, 0x175, 0x176, 0xc000_0081, 0xc000_0082, 0xc000_0084, 0xc000_0102, 0x10] {
        check!(list.contains(&msr), "MSR {msr:#x} missing from {list:x?}");
    }
    let mut sorted = list.clone();
    sorted.sort();
    sorted.dedup();
    check_eq!(sorted.len(), list.len());
    Ok(())
}

fn msr_index_list_efault() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_GET_MSR_INDEX_LIST, 0), Err(libc::EFAULT));
    check_eq!(ioctl_val(&kvm, KVM_GET_MSR_INDEX_LIST, 0xffff_8000_0000_0000), Err(libc::EFAULT));
    // A header that is readable but indices that are not writable: the count is
    // written, then the copy of the indices faults.
    let n = get_msr_list(&kvm, KVM_GET_MSR_INDEX_LIST)?.len() as u32;
    // SAFETY: an anonymous mapping of two pages, the second made inaccessible.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ | libc::PROT_WRITE,
                           libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) as *mut u8;
        check!(p as isize != -1);
        libc::mprotect(p.add(4096) as *mut _, 4096, libc::PROT_NONE);
        let hdr = p.add(4096 - 4) as *mut u32;
        *hdr = n;
        let r = ioctl_ptr(&kvm, KVM_GET_MSR_INDEX_LIST, hdr);
        libc::munmap(p as *mut _, 8192);
        check_eq!(r, Err(libc::EFAULT));
    }
    Ok(())
}

fn msr_feature_index_list() -> TestResult {
    let kvm = open_kvm()?;
    let list = get_msr_list(&kvm, KVM_GET_MSR_FEATURE_INDEX_LIST)?;
    let cap = ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_GET_MSR_FEATURES as u64);
    if cap == Ok(0) {
        // Without the capability, feature MSRs cannot be read: the list must not
        // promise any.
        check!(list.is_empty(), "features listed without KVM_CAP_GET_MSR_FEATURES: {list:x?}");
    }
    Ok(())
}

fn supported_cpuid_e2big() -> TestResult {
    let kvm = open_kvm()?;
    for room in [0u32, 1, 2] {
        let mut c = Cpuid2::with_room(room);
        check_eq!(ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()), Err(libc::E2BIG));
    }
    Ok(())
}

fn supported_cpuid(kvm: &std::os::fd::OwnedFd) -> Result<Vec<kvm_cpuid_entry2>, String> {
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    Ok(c.entries())
}

fn supported_cpuid_contents() -> TestResult {
    let kvm = open_kvm()?;
    let e = supported_cpuid(&kvm)?;
    check!(e.len() > 4 && e.len() < 256, "{} entries", e.len());
    let l0 = find_cpuid(&e, 0, 0).ok_or("no leaf 0")?;
    check!(l0.eax >= 1);
    let l1 = find_cpuid(&e, 1, 0).ok_or("no leaf 1")?;
    // FPU, TSC, MSR, PAE, CX8, APIC, CMOV, FXSR, SSE, SSE2.
    for bit in [0, 4, 5, 6, 8, 9, 15, 24, 25, 26] {
        check!(l1.edx & (1 << bit) != 0, "leaf 1 EDX bit {bit}");
    }
    check_eq!(l1.ecx & (1 << 27), 0); // OSXSAVE is dynamic, never supported
    let e1 = find_cpuid(&e, 0x8000_0001, 0).ok_or("no leaf 0x80000001")?;
    check!(e1.edx & (1 << 29) != 0, "long mode");
    check!(e1.edx & (1 << 20) != 0, "NX");
    let e8 = find_cpuid(&e, 0x8000_0008, 0).ok_or("no leaf 0x80000008")?;
    let vbits = (e8.eax >> 8) & 0xff;
    check!(vbits == 48 || vbits == 57, "linear address bits {vbits}");
    let max_ext = find_cpuid(&e, 0x8000_0000, 0).ok_or("no leaf 0x80000000")?.eax;
    check!(max_ext >= 0x8000_0008);
    // Every reported leaf is within the reported maxima (or a hypervisor leaf).
    for x in &e {
        let ok = x.function <= l0.eax
            || (0x4000_0000..0x4001_0000).contains(&x.function)
            || (0x8000_0000..=max_ext).contains(&x.function);
        check!(ok, "leaf {:#x} beyond the maxima", x.function);
    }
    Ok(())
}

fn supported_cpuid_clamps() -> TestResult {
    let kvm = open_kvm()?;
    // More room than KVM_MAX_CPUID_ENTRIES (256) is fine: nent is clamped.
    let mut c = Cpuid2::with_room(1000);
    ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    check!(c.nent() > 0 && c.nent() <= 256);
    // The exact count fits.
    let n = c.nent();
    let mut c = Cpuid2::with_room(n);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()), Ok(0));
    check_eq!(c.nent(), n);
    // One less does not.
    let mut c = Cpuid2::with_room(n - 1);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()), Err(libc::E2BIG));
    Ok(())
}

fn supported_cpuid_efault() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_GET_SUPPORTED_CPUID, 0), Err(libc::EFAULT));
    check_eq!(ioctl_val(&kvm, KVM_GET_SUPPORTED_CPUID, 0xffff_ffff_ffff_f000), Err(libc::EFAULT));
    Ok(())
}

fn unknown_ioctls() -> TestResult {
    let kvm = open_kvm()?;
    // An unassigned KVM number, a vCPU ioctl on the system fd, and a tty ioctl.
    for req in [0xaeffu32, KVM_RUN, 0x5401] {
        check_eq!(ioctl_val(&kvm, req, 0), Err(libc::EINVAL));
    }
    Ok(())
}

fn many_opens() -> TestResult {
    let fds: Vec<_> = (0..200).map(|_| open_kvm()).collect::<Result<_, _>>()?;
    for fd in fds.iter().step_by(17) {
        check_eq!(ioctl_val(fd, KVM_GET_API_VERSION, 0), Ok(12));
    }
    Ok(())
}
