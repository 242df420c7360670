//! The client API beyond the irqchip that newer VMMs require (QEMU 8.2+ and
//! 11 refuse to start without it): machine-check setup and injection
//! (KVM_CAP_MCE), the VM clock (KVM_CAP_ADJUST_CLOCK), XCR0 for a guest
//! without XSAVE.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("client/mce_setup_and_banks", mce_setup),
        ("client/mce_inject_corrected", mce_inject),
        ("client/vm_clock", vm_clock),
        ("client/xcr0_x87_without_xsave", xcr0_without_xsave),
        ("client/guest_debug_single_step", single_step),
    ]
}

const MCG_CTL_P: u64 = 1 << 8;

fn mce_setup() -> TestResult {
    let vm = Vm::new()?;
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_MCE as u64), Ok(32));
    let mut cap = 0u64;
    check_eq!(ioctl_ptr(&vm.kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, &mut cap), Ok(0));
    // The capability bits; the bank count is KVM_CAP_MCE's answer.
    check_eq!(cap & 0xff, 0);
    check!(cap & MCG_CTL_P != 0);
    let v = vm.vcpu(0)?;
    // Before setup: 32 banks, as upstream's default.
    check_eq!(v.get_msr(0x179)?, 32);
    for bad in [0u64, 33, 10 | (1 << 40)] {
        let mut c = bad;
        check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Err(libc::EINVAL));
    }
    let mut c = 10 | MCG_CTL_P;
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Ok(0));
    check_eq!(v.get_msr(0x179)?, 10 | MCG_CTL_P);
    // MCG_CTL and every bank's CTL start all-ones.
    check_eq!(v.get_msr(0x17b)?, u64::MAX);
    check_eq!(v.get_msr(0x400 + 4 * 9)?, u64::MAX);
    // Bank 10 does not exist now.
    check!(v.get_msr(0x400 + 4 * 10).is_err());
    check_eq!(v.set_msr(0x400 + 4 * 10, 0), Ok(0));
    Ok(())
}

fn mce_inject() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut c = 10 | MCG_CTL_P;
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Ok(0));
    let val = 1u64 << 63;
    let mut m = kvm_x86_mce { status: val | 0x1234, addr: 0xabc000, misc: 7, bank: 3, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut m), Ok(0));
    check_eq!(v.get_msr(0x400 + 4 * 3 + 1)?, val | 0x1234);
    check_eq!(v.get_msr(0x400 + 4 * 3 + 2)?, 0xabc000);
    // A second corrected error in the same bank sets OVER.
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut m), Ok(0));
    check_eq!(v.get_msr(0x400 + 4 * 3 + 1)?, val | (1 << 62) | 0x1234);
    // No VAL, or a bank that does not exist: EINVAL.
    let mut bad = kvm_x86_mce { status: 0x1234, bank: 3, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut bad), Err(libc::EINVAL));
    let mut bad = kvm_x86_mce { status: val, bank: 10, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut bad), Err(libc::EINVAL));
    Ok(())
}

fn get_clock(vm: &Vm) -> Result<kvm_clock_data, String> {
    let mut d = kvm_clock_data::default();
    ioctl_ptr(&vm.fd, KVM_GET_CLOCK, &mut d).map_err(|e| format!("GET_CLOCK errno {e}"))?;
    Ok(d)
}

fn vm_clock() -> TestResult {
    let vm = Vm::new()?;
    let flags = ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK as u64).unwrap_or(0);
    check!(flags & KVM_CLOCK_REALTIME as i64 != 0);
    let a = get_clock(&vm)?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = get_clock(&vm)?;
    check!(b.clock > a.clock);
    // Set it far ahead: it continues from there.
    let target = a.clock + 1_000_000_000_000;
    let mut d = kvm_clock_data { clock: target, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Ok(0));
    let c = get_clock(&vm)?;
    check!(c.clock >= target && c.clock < target + 10_000_000_000);
    // Unknown flags are refused.
    let mut d = kvm_clock_data { clock: target, flags: 1 << 8, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Err(libc::EINVAL));
    // KVM_CLOCK_REALTIME: the time since `realtime` is added.
    if c.flags & KVM_CLOCK_REALTIME != 0 {
        let mut d = kvm_clock_data { clock: target, flags: KVM_CLOCK_REALTIME, realtime: c.realtime - 5_000_000_000, ..Default::default() };
        check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Ok(0));
        let e = get_clock(&vm)?;
        check!(e.clock >= target + 5_000_000_000);
    }
    Ok(())
}

fn xcr0_without_xsave() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut xc = kvm_xcrs::default();
    ioctl_ptr(&v.fd, KVM_GET_XCRS, &mut xc).map_err(|e| format!("GET_XCRS errno {e}"))?;
    if xc.nr_xcrs == 0 {
        return Ok(());
    }
    // No CPUID set, so no XSAVE: XCR0 = 1 (its reset value) is still valid,
    // anything more is not.
    xc.nr_xcrs = 1;
    xc.xcrs[0].value = 1;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Ok(0));
    xc.xcrs[0].value = 3;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Err(libc::EINVAL));
    Ok(())
}

fn set_guest_debug(v: &Vcpu, control: u32) -> Result<i64, Errno> {
    let mut d = kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg: [0; 8] } };
    ioctl_ptr(&v.fd, KVM_SET_GUEST_DEBUG, &mut d)
}

/// KVM_EXIT_DEBUG's exception and linear pc.
fn debug_exit(v: &Vcpu) -> (u64, u64, u64) {
    (v.exit_u64(0) & 0xffff_ffff, v.exit_u64(1), v.exit_u64(2))
}

fn single_step() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    check!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_ROBUST_SINGLESTEP as u64).unwrap_or(0) > 0);
    // nop; nop; xor eax,eax; cpuid; out 0x10,al; hlt
    poke(mem, 0x1000, &[0x90, 0x90, 0x66, 0x31, 0xc0, 0x0f, 0xa2, 0xe6, 0x10, 0xf4]);
    v.real_mode_at(0x1000)?;
    check_eq!(set_guest_debug(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP), Ok(0));
    // Each instruction is one KVM_EXIT_DEBUG (#DB, DR6.BS), including CPUID,
    // which the kernel completes itself, and OUT after its I/O exit.
    for pc in [0x1001u64, 0x1002, 0x1005, 0x1007] {
        check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
        let (exc, got_pc, dr6) = debug_exit(&v);
        check_eq!((exc, got_pc), (1, pc));
        check!(dr6 & (1 << 14) != 0);
    }
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
    check_eq!(debug_exit(&v).1, 0x1009);
    // The guest never sees the TF the debugger set.
    check_eq!(v.regs()?.rflags & (1 << 8), 0);
    check_eq!(set_guest_debug(&v, 0), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    // Without ENABLE, debugging is off whatever the other bits say.
    check_eq!(set_guest_debug(&v, 1 << 30), Ok(0));
    Ok(())
}
