//! KVM_PRE_FAULT_MEMORY: argument checks, the leftover range written back, a
//! hole without a memory slot, and the mapping it makes (seen through the
//! dirty log: a page user space has written is mapped writable by a read
//! fault, and a writable mapping in a logged slot is logged).

use crate::guest::*;
use crate::guests::get_dirty_log;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("vcpu/pre_fault_memory_arguments", arguments),
        ("vcpu/pre_fault_memory_ranges", ranges),
    ]
}

fn pre_fault(v: &Vcpu, gpa: u64, size: u64, flags: u64) -> (Result<i64, Errno>, u64, u64) {
    let mut r = kvm_pre_fault_memory { gpa, size, flags, padding: [0; 5] };
    let ret = ioctl_ptr(&v.fd, KVM_PRE_FAULT_MEMORY, &mut r);
    (ret, r.gpa, r.size)
}

fn arguments() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY as u64), Ok(1));
    let (_vm, v, _mem) = vm_with_ram(0x10000)?;
    check_eq!(pre_fault(&v, 0, 0x1000, 1).0, Err(libc::EINVAL));
    check_eq!(pre_fault(&v, 0x800, 0x1000, 0).0, Err(libc::EINVAL));
    check_eq!(pre_fault(&v, 0, 0x800, 0).0, Err(libc::EINVAL));
    check_eq!(pre_fault(&v, 0, 0, 0).0, Err(libc::EINVAL));
    check_eq!(pre_fault(&v, u64::MAX - 0xfff, 0x2000, 0).0, Err(libc::EINVAL));
    check_eq!(ioctl_val(&v.fd, KVM_PRE_FAULT_MEMORY, 8), Err(libc::EFAULT));
    Ok(())
}

fn ranges() -> TestResult {
    let mut vm = Vm::new()?;
    let _mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let logged = vm.add_mem(1, 0x10000, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)?;
    let v = vm.vcpu(0)?;
    // The whole range.
    check_eq!(pre_fault(&v, 0, 0x4000, 0), (Ok(0), 0x4000, 0));
    // Running into the hole after the slots: the pages before it count.
    check_eq!(pre_fault(&v, 0x1e000, 0x4000, 0), (Ok(0), 0x20000, 0x2000));
    // Only the hole: ENOENT, the range unchanged.
    check_eq!(pre_fault(&v, 0x20000, 0x1000, 0), (Err(libc::ENOENT), 0x20000, 0x1000));
    // Pages user space wrote are mapped writable, so logged (the first
    // GET_DIRTY_LOG clears what the earlier pre-faults logged).
    get_dirty_log(&vm, 1, 16).map_err(|e| format!("GET_DIRTY_LOG: {e}"))?;
    poke(logged, 0x3000, &[1]);
    poke(logged, 0x5000, &[1]);
    check_eq!(pre_fault(&v, 0x13000, 0x3000, 0), (Ok(0), 0x16000, 0));
    let log = get_dirty_log(&vm, 1, 16).map_err(|e| format!("GET_DIRTY_LOG: {e}"))?;
    check!(log[0] & (1 << 3 | 1 << 5) == (1 << 3 | 1 << 5), "dirty log {:#x}", log[0]);
    Ok(())
}
