//! The vCPU TSC offset attribute (KVM_CAP_VCPU_ATTRIBUTES;
//! KVM_HAS/GET/SET_DEVICE_ATTR on the vCPU with group KVM_VCPU_TSC_CTRL,
//! attribute KVM_VCPU_TSC_OFFSET): errnos, and the guest's TSC being the
//! host's plus the offset set, as the KVM selftest
//! system_counter_offset_test checks.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("tsc_attr/has_get_set_errnos", errnos),
        ("tsc_attr/offset_moves_guest_tsc", offset_moves_guest_tsc),
    ]
}

const CODE: u64 = 0x1000;
const MSR_IA32_TSC: u32 = 0x10;

fn attr_ioctl(v: &Vcpu, req: u32, group: u32, attr: u64, addr: u64) -> Result<i64, Errno> {
    let mut a = kvm_device_attr { flags: 0, group, attr, addr };
    ioctl_ptr(&v.fd, req, &mut a)
}

fn get_offset(v: &Vcpu) -> Result<u64, String> {
    let mut off = 0u64;
    attr_ioctl(v, KVM_GET_DEVICE_ATTR, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET as u64, &mut off as *mut u64 as u64)
        .map_err(|e| format!("GET_DEVICE_ATTR errno {e}"))?;
    Ok(off)
}

fn set_offset(v: &Vcpu, mut off: u64) -> Result<(), String> {
    attr_ioctl(v, KVM_SET_DEVICE_ATTR, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET as u64, &mut off as *mut u64 as u64)
        .map_err(|e| format!("SET_DEVICE_ATTR errno {e}"))?;
    Ok(())
}

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions in user mode here.
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn errnos() -> TestResult {
    let (vm, v, _mem) = vm_with_ram(0x10000)?;
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_VCPU_ATTRIBUTES as u64), Ok(1));
    let off = KVM_VCPU_TSC_OFFSET as u64;
    for req in [KVM_HAS_DEVICE_ATTR, KVM_GET_DEVICE_ATTR, KVM_SET_DEVICE_ATTR] {
        check_eq!(attr_ioctl(&v, req, 1, off, 0), Err(libc::ENXIO));
        check_eq!(attr_ioctl(&v, req, KVM_VCPU_TSC_CTRL, 1, 0), Err(libc::ENXIO));
        check_eq!(ioctl_val(&v.fd, req, 8), Err(libc::EFAULT));
    }
    check_eq!(attr_ioctl(&v, KVM_HAS_DEVICE_ATTR, KVM_VCPU_TSC_CTRL, off, 0), Ok(0));
    check_eq!(attr_ioctl(&v, KVM_GET_DEVICE_ATTR, KVM_VCPU_TSC_CTRL, off, 8), Err(libc::EFAULT));
    check_eq!(attr_ioctl(&v, KVM_SET_DEVICE_ATTR, KVM_VCPU_TSC_CTRL, off, 8), Err(libc::EFAULT));
    // The vCPU's offset: its TSC started near 0, so about minus the host's.
    let o = get_offset(&v)?;
    let guest = rdtsc().wrapping_add(o);
    check!(guest < 1 << 62, "offset {o:#x} gives a guest TSC of {guest:#x}");
    Ok(())
}

fn offset_moves_guest_tsc() -> TestResult {
    // rdtsc; mov [0x9000], eax; mov [0x9004], edx; out 0x10; jmp back
    let code = [0x0f, 0x31, 0x89, 0x04, 0x25, 0x00, 0x90, 0x00, 0x00, 0x89, 0x14, 0x25, 0x04, 0x90, 0x00, 0x00, 0xe6, 0x10, 0xeb, 0xec];
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &code);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    let host = rdtsc();
    for off in [0u64, 180_000_000_000, 180_000_000_000u64.wrapping_neg(), host.wrapping_neg()] {
        set_offset(&v, off)?;
        check_eq!(get_offset(&v)?, off);
        let start = rdtsc().wrapping_add(off);
        expect_exit(&v, KVM_EXIT_IO)?;
        let end = rdtsc().wrapping_add(off);
        let g = u64::from_le_bytes(peek(mem, 0x9000, 8).try_into().unwrap_or([0; 8]));
        check!(g.wrapping_sub(start) <= end.wrapping_sub(start), "offset {off:#x}: guest TSC {g:#x} outside [{start:#x}, {end:#x}]");
        // IA32_TSC as user space reads it agrees.
        let s = rdtsc().wrapping_add(off);
        let m = v.get_msr(MSR_IA32_TSC)?;
        let e = rdtsc().wrapping_add(off);
        check!(m.wrapping_sub(s) <= e.wrapping_sub(s), "offset {off:#x}: IA32_TSC {m:#x} outside [{s:#x}, {e:#x}]");
    }
    Ok(())
}
