//! Manual dirty-log protection (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) and
//! KVM_CLEAR_DIRTY_LOG, as QEMU and the dirty_log selftests use them.

use crate::guest::*;
use crate::guests::get_dirty_log;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("vm/manual_dirty_log_protect_cap", manual_cap),
        ("guest/clear_dirty_log_initially_set", clear_initially_set),
        ("vm/clear_dirty_log_bad_arguments", clear_bad_args),
        ("vm/moved_slot_logging_follows_flags", moved_slot_logging),
    ]
}

const ENABLE: u64 = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE as u64;
const INIT_SET: u64 = KVM_DIRTY_LOG_INITIALLY_SET as u64;
const CODE: u64 = 0x1000;

fn enable_manual(vm: &Vm, flags: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, ..Default::default() };
    c.args[0] = flags;
    ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c)
}

fn clear_dirty_log(vm: &Vm, slot: u32, first_page: u64, num_pages: u32, mask: &[u64]) -> Result<i64, Errno> {
    let mut bitmap = mask.to_vec();
    let mut log = kvm_clear_dirty_log { slot, num_pages, first_page, ..Default::default() };
    log.__bindgen_anon_1.dirty_bitmap = bitmap.as_mut_ptr() as *mut _;
    ioctl_ptr(&vm.fd, KVM_CLEAR_DIRTY_LOG, &mut log)
}

fn manual_cap() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 as u64), Ok((ENABLE | INIT_SET) as i64));
    let vm = Vm::new()?;
    check_eq!(enable_manual(&vm, INIT_SET), Err(libc::EINVAL));
    check_eq!(enable_manual(&vm, ENABLE | 4), Err(libc::EINVAL));
    check_eq!(enable_manual(&vm, ENABLE | INIT_SET), Ok(0));
    check_eq!(enable_manual(&vm, 0), Ok(0));
    Ok(())
}

/// Writes to page `page` of slot 1 (guest-physical 0x10000 + page * 4K) and halts.
fn write_page(v: &Vcpu, mem: *mut u8, page: u8) -> TestResult {
    // mov ax,0x1000; mov ds,ax; mov byte [page*0x1000],1; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xc6, 0x06, 0x00, page << 4, 0x01, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_HLT)
}

fn clear_initially_set() -> TestResult {
    let mut vm = Vm::new()?;
    check_eq!(enable_manual(&vm, ENABLE | INIT_SET), Ok(0));
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let _logged = vm.add_mem(1, 0x10000, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)?;
    let v = vm.vcpu(0)?;
    let log = |vm: &Vm| get_dirty_log(vm, 1, 16).map(|b| b[0]).map_err(|e| format!("GET_DIRTY_LOG: {e}"));
    // Every page starts dirty, and reading the log does not clear it.
    check_eq!(log(&vm)?, 0xffff);
    check_eq!(log(&vm)?, 0xffff);
    write_page(&v, mem, 3)?;
    check_eq!(log(&vm)?, 0xffff);
    // Clearing (bits beyond the slot are ignored) leaves nothing dirty...
    check_eq!(clear_dirty_log(&vm, 1, 0, 16, &[u64::MAX]), Ok(0));
    check_eq!(log(&vm)?, 0);
    // ...and write-protects: the next write is logged, and stays until cleared.
    write_page(&v, mem, 3)?;
    check_eq!(log(&vm)?, 1 << 3);
    check_eq!(log(&vm)?, 1 << 3);
    write_page(&v, mem, 5)?;
    check_eq!(log(&vm)?, 1 << 3 | 1 << 5);
    check_eq!(clear_dirty_log(&vm, 1, 0, 16, &[1 << 3]), Ok(0));
    check_eq!(log(&vm)?, 1 << 5);
    write_page(&v, mem, 3)?;
    check!(log(&vm)? == 1 << 3 | 1 << 5, "page 3 was not logged again after the clear");
    Ok(())
}

fn clear_bad_args() -> TestResult {
    let mut vm = Vm::new()?;
    check_eq!(enable_manual(&vm, ENABLE), Ok(0));
    let _plain = vm.add_mem(0, 0, 0x10000, 0)?;
    // 200 pages: two full 64-page words and a partial one.
    let _logged = vm.add_mem(1, 0x100000, 200 * 4096, KVM_MEM_LOG_DIRTY_PAGES)?;
    check_eq!(clear_dirty_log(&vm, 1, 1, 64, &[0]), Err(libc::EINVAL));
    check_eq!(clear_dirty_log(&vm, 1, 0, 201, &[0; 4]), Err(libc::EINVAL));
    check_eq!(clear_dirty_log(&vm, 1, 256, 0, &[0]), Err(libc::EINVAL));
    check_eq!(clear_dirty_log(&vm, 1, 0, 5, &[0]), Err(libc::EINVAL));
    check_eq!(clear_dirty_log(&vm, 1, 128, 72, &[0, 0]), Ok(0));
    check_eq!(clear_dirty_log(&vm, 1, 64, 64, &[0]), Ok(0));
    check_eq!(clear_dirty_log(&vm, 0, 0, 16, &[0]), Err(libc::ENOENT));
    check_eq!(clear_dirty_log(&vm, 7, 0, 16, &[0]), Err(libc::ENOENT));
    let mut log = kvm_clear_dirty_log { slot: 1, num_pages: 64, first_page: 0, ..Default::default() };
    log.__bindgen_anon_1.padding2 = 8;
    check_eq!(ioctl_ptr(&vm.fd, KVM_CLEAR_DIRTY_LOG, &mut log), Err(libc::EFAULT));
    Ok(())
}

/// A move may change KVM_MEM_LOG_DIRTY_PAGES too: the moved slot's log is
/// whatever its new flags say, and a new log starts empty.
fn moved_slot_logging() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(5, 0x1_0000_0000, 0x60_0000, KVM_MEM_LOG_DIRTY_PAGES)?;
    let pages = 0x600;
    check_eq!(get_dirty_log(&vm, 5, pages).map(|b| b.iter().all(|&w| w == 0)), Ok(true));
    // Moved without logging: no log to read or clear.
    check_eq!(vm.set_region(5, 0x20_0000, 0x60_0000, mem as u64, 0), Ok(0));
    check_eq!(get_dirty_log(&vm, 5, pages).map(|_| ()), Err(libc::ENOENT));
    check_eq!(clear_dirty_log(&vm, 5, 64, 64, &[u64::MAX]), Err(libc::ENOENT));
    // Moved back with logging: a log again, empty.
    check_eq!(vm.set_region(5, 0x1_0000_0000, 0x60_0000, mem as u64, KVM_MEM_LOG_DIRTY_PAGES), Ok(0));
    check_eq!(get_dirty_log(&vm, 5, pages).map(|b| b.iter().all(|&w| w == 0)), Ok(true));
    Ok(())
}
