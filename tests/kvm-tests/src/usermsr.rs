//! MSR accesses user space takes part in: KVM_CAP_X86_USER_SPACE_MSR (guest
//! RDMSR/WRMSR that fail exit with KVM_EXIT_X86_RDMSR/WRMSR, for the reasons
//! the VM chose; user space's answer completes the instruction or raises
//! #GP), KVM_X86_SET_MSR_FILTER (validation, errnos, the filter deciding
//! which guest accesses reach the kernel, swapped whole), and
//! KVM_CAP_MSR_PLATFORM_INFO (MSR_PLATFORM_INFO readable by the guest until
//! the VM turns it off; CPUID faulting's MSR_MISC_FEATURES_ENABLES).
//!
//! The guests are hand-assembled 64-bit code without an IDT: a #GP becomes
//! a triple fault (KVM_EXIT_SHUTDOWN), which is how a test sees one.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("user_msr/caps_and_enable_cap_flags", caps_and_flags),
        ("user_msr/filter_validation_errnos", filter_validation),
        ("user_msr/unknown_msr_exit_and_completion", unknown_msr_exits),
        ("user_msr/exit_reasons_follow_the_mask", reasons_follow_mask),
        ("user_msr/filter_denies_then_swapped", filter_denies_then_swapped),
        ("user_msr/default_deny_filter", default_deny_filter),
        ("user_msr/filter_covers_segment_base_msrs", filter_covers_segment_bases),
        ("platform_info/guest_read_and_cap", platform_info),
        ("platform_info/misc_features_enables", misc_features_enables),
    ]
}

const CODE: u64 = 0x1000;
const UNKNOWN_MSR: u32 = 0xdead_beef;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_PAT: u32 = 0x277;
const MSR_PLATFORM_INFO: u32 = 0xce;
const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;

/// 64-bit guest code.
#[derive(Default)]
struct Asm(Vec<u8>);

impl Asm {
    fn rdmsr(mut self, msr: u32) -> Self {
        self.0.push(0xb9); // mov ecx, imm32
        self.0.extend_from_slice(&msr.to_le_bytes());
        self.0.extend_from_slice(&[0x0f, 0x32]);
        self
    }
    fn wrmsr(mut self, msr: u32, v: u64) -> Self {
        self.0.push(0xb9);
        self.0.extend_from_slice(&msr.to_le_bytes());
        self.0.push(0xb8); // mov eax, imm32
        self.0.extend_from_slice(&(v as u32).to_le_bytes());
        self.0.push(0xba); // mov edx, imm32
        self.0.extend_from_slice(&((v >> 32) as u32).to_le_bytes());
        self.0.extend_from_slice(&[0x0f, 0x30]);
        self
    }
    fn out(mut self, port: u8) -> Self {
        self.0.extend_from_slice(&[0xe6, port]);
        self
    }
    fn cpuid(mut self) -> Self {
        self.0.extend_from_slice(&[0x31, 0xc0, 0x0f, 0xa2]); // xor eax,eax; cpuid
        self
    }
    fn hlt(mut self) -> Self {
        self.0.push(0xf4);
        self
    }
}

/// A VM with one vCPU in 64-bit mode about to run `code`.
fn guest(code: Asm) -> Result<(Vm, Vcpu), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &code.0);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    Ok((vm, v))
}

fn enable_cap(vm: &Vm, cap: u32, arg: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap, ..Default::default() };
    c.args[0] = arg;
    ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c)
}

/// kvm_run.msr: { u8 error; u8 pad[7]; u32 reason; u32 index; u64 data; }.
#[derive(Debug, PartialEq)]
struct MsrExit {
    error: u8,
    reason: u32,
    index: u32,
    data: u64,
}

fn msr_exit(v: &Vcpu) -> MsrExit {
    let w1 = v.exit_u64(1);
    MsrExit { error: v.exit_u64(0) as u8, reason: w1 as u32, index: (w1 >> 32) as u32, data: v.exit_u64(2) }
}

/// Answers a KVM_EXIT_X86_RDMSR/WRMSR.
fn answer(v: &Vcpu, error: u8, data: u64) {
    // SAFETY: the msr member of the exit union (offset 32) of the mapped kvm_run.
    unsafe {
        let u = (v.run as *mut u8).add(32);
        u.write_volatile(error);
        u.add(16).cast::<u64>().write_unaligned(data);
    }
}

/// Runs to an MSR exit of kind `exit` for `index` with `reason`.
fn expect_msr_exit(v: &Vcpu, exit: u32, index: u32, reason: u32) -> Result<MsrExit, String> {
    let r = v.run().map_err(|e| format!("KVM_RUN errno {e}"))?;
    let m = msr_exit(v);
    if r != exit || m.index != index || m.reason != reason || m.error != 0 {
        return Err(format!(
            "exit {r} {m:x?}, expected exit {exit} for MSR {index:#x} reason {reason}; rip {:#x}",
            v.regs().map(|r| r.rip).unwrap_or(0)
        ));
    }
    Ok(m)
}

fn expect_out(v: &Vcpu, port: u16) -> Result<(), String> {
    expect_exit(v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, port);
    Ok(())
}

/// A filter with the given ranges: (flags, base, nmsrs, bitmap).
fn filter(flags: u32, ranges: &mut [(u32, u32, u32, &mut [u8])]) -> kvm_msr_filter {
    let mut f = kvm_msr_filter { flags, ..Default::default() };
    for (i, r) in ranges.iter_mut().enumerate() {
        f.ranges[i].flags = r.0;
        f.ranges[i].base = r.1;
        f.ranges[i].nmsrs = r.2;
        f.ranges[i].bitmap = r.3.as_mut_ptr();
    }
    f
}

fn set_filter(vm: &Vm, f: &mut kvm_msr_filter) -> Result<i64, Errno> {
    ioctl_ptr(&vm.fd, KVM_X86_SET_MSR_FILTER, f)
}

fn caps_and_flags() -> TestResult {
    let vm = Vm::new()?;
    for cap in [KVM_CAP_X86_USER_SPACE_MSR, KVM_CAP_X86_MSR_FILTER, KVM_CAP_MSR_PLATFORM_INFO] {
        check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, cap as u64), Ok(1));
        check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, cap as u64), Ok(1));
    }
    // Each reason bit alone: the three defined ones are accepted, others EINVAL.
    for i in 0..64 {
        let want = if i < 3 { Ok(0) } else { Err(libc::EINVAL) };
        check!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, 1 << i) == want, "reason bit {i}");
    }
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_VALID_MASK as u64), Ok(0));
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, 0), Ok(0));
    // Non-zero flags are refused.
    let mut c = kvm_enable_cap { cap: KVM_CAP_X86_USER_SPACE_MSR, flags: 1, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Err(libc::EINVAL));
    Ok(())
}

fn filter_validation() -> TestResult {
    let vm = Vm::new()?;
    let mut bits = [0u8; 8];
    // Filter flags: only DEFAULT_DENY (bit 0) exists.
    for i in 0..32 {
        let mut f = filter(1 << i, &mut [(KVM_MSR_FILTER_READ, 0, 1, &mut bits)]);
        let want = if i == 0 { Ok(0) } else { Err(libc::EINVAL) };
        check!(set_filter(&vm, &mut f) == want, "filter flag bit {i}");
    }
    // Range flags: READ and WRITE; none at all is refused too.
    for i in 0..32 {
        let mut f = filter(KVM_MSR_FILTER_DEFAULT_ALLOW, &mut [(1 << i, 0, 1, &mut bits)]);
        let want = if i < 2 { Ok(0) } else { Err(libc::EINVAL) };
        check!(set_filter(&vm, &mut f) == want, "range flag bit {i}");
    }
    let mut f = filter(0, &mut [(0, 0, 1, &mut bits)]);
    check_eq!(set_filter(&vm, &mut f), Err(libc::EINVAL));
    // A range without MSRs is ignored, whatever its other fields.
    let mut f = filter(0, &mut [(0xffff, 0, 0, &mut [])]);
    f.ranges[0].bitmap = 8 as *mut u8;
    check_eq!(set_filter(&vm, &mut f), Ok(0));
    // Deny-by-default needs a range; allow-by-default needs none.
    check_eq!(set_filter(&vm, &mut kvm_msr_filter { flags: KVM_MSR_FILTER_DEFAULT_DENY, ..Default::default() }), Err(libc::EINVAL));
    check_eq!(set_filter(&vm, &mut kvm_msr_filter::default()), Ok(0));
    // The bitmap is at most KVM_MSR_FILTER_MAX_BITMAP_SIZE bytes.
    let mut big = vec![0u8; KVM_MSR_FILTER_MAX_BITMAP_SIZE as usize + 8];
    let max = KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8;
    let mut f = filter(0, &mut [(KVM_MSR_FILTER_WRITE, 0, max, &mut big)]);
    check_eq!(set_filter(&vm, &mut f), Ok(0));
    f.ranges[0].nmsrs = max + 1;
    check_eq!(set_filter(&vm, &mut f), Err(libc::EINVAL));
    f.ranges[0].nmsrs = u32::MAX;
    check_eq!(set_filter(&vm, &mut f), Err(libc::EINVAL));
    // A bitmap user space cannot read; the filter itself unreadable.
    let mut f = filter(0, &mut [(KVM_MSR_FILTER_READ, 0, 64, &mut bits)]);
    f.ranges[0].bitmap = 8 as *mut u8;
    check_eq!(set_filter(&vm, &mut f), Err(libc::EFAULT));
    check_eq!(ioctl_val(&vm.fd, KVM_X86_SET_MSR_FILTER, 8), Err(libc::EFAULT));
    Ok(())
}

fn unknown_msr_exits() -> TestResult {
    let code = Asm::default()
        .rdmsr(UNKNOWN_MSR)
        .out(0x10)
        .wrmsr(UNKNOWN_MSR, 0x1122_3344_5566_7788)
        .out(0x11)
        .rdmsr(UNKNOWN_MSR)
        .hlt();
    let (vm, v) = guest(code)?;
    // Not asked for yet: the first run would #GP; ask for unknown MSRs.
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_UNKNOWN as u64), Ok(0));
    let m = expect_msr_exit(&v, KVM_EXIT_X86_RDMSR, UNKNOWN_MSR, KVM_MSR_EXIT_REASON_UNKNOWN)?;
    check_eq!(m.data, 0);
    answer(&v, 0, 0xaabb_ccdd_1122_3344);
    expect_out(&v, 0x10)?;
    let r = v.regs()?;
    check_eq!((r.rax, r.rdx), (0x1122_3344, 0xaabb_ccdd));
    let m = expect_msr_exit(&v, KVM_EXIT_X86_WRMSR, UNKNOWN_MSR, KVM_MSR_EXIT_REASON_UNKNOWN)?;
    check_eq!(m.data, 0x1122_3344_5566_7788);
    expect_out(&v, 0x11)?;
    // An error from user space is #GP at the instruction.
    expect_msr_exit(&v, KVM_EXIT_X86_RDMSR, UNKNOWN_MSR, KVM_MSR_EXIT_REASON_UNKNOWN)?;
    answer(&v, 1, 0);
    expect_exit(&v, KVM_EXIT_SHUTDOWN)
}

fn reasons_follow_mask() -> TestResult {
    // INVAL only: a known MSR refusing a value exits, an unknown MSR #GPs.
    let code = Asm::default().wrmsr(MSR_PAT, 0x0808_0808_0808_0808).out(0x10).rdmsr(UNKNOWN_MSR).hlt();
    let (vm, v) = guest(code)?;
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_INVAL as u64), Ok(0));
    let m = expect_msr_exit(&v, KVM_EXIT_X86_WRMSR, MSR_PAT, KVM_MSR_EXIT_REASON_INVAL)?;
    check_eq!(m.data, 0x0808_0808_0808_0808);
    // User space took the write: the guest goes on; the PAT is unchanged.
    answer(&v, 0, 0);
    expect_out(&v, 0x10)?;
    check_eq!(v.get_msr(MSR_PAT)?, 0x0007_0406_0007_0406);
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    // Mask 0 (the default): an unknown MSR is #GP.
    let (_vm, v) = guest(Asm::default().rdmsr(UNKNOWN_MSR).hlt())?;
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    // A filtered access without FILTER in the mask is #GP too.
    let (vm, v) = guest(Asm::default().rdmsr(MSR_STAR).hlt())?;
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_UNKNOWN as u64), Ok(0));
    let mut deny = [0u8; 8];
    check_eq!(set_filter(&vm, &mut filter(0, &mut [(KVM_MSR_FILTER_READ, MSR_STAR, 1, &mut deny)])), Ok(0));
    expect_exit(&v, KVM_EXIT_SHUTDOWN)
}

fn filter_denies_then_swapped() -> TestResult {
    let code = Asm::default()
        .wrmsr(MSR_STAR, 0x0023_0010_0000_0000)
        .rdmsr(MSR_STAR)
        .out(0x10)
        .rdmsr(MSR_STAR)
        .out(0x11)
        .wrmsr(MSR_STAR, 0x55)
        .hlt();
    let (vm, v) = guest(code)?;
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER as u64), Ok(0));
    // Reads of STAR denied (bit clear), writes allowed (no write range).
    let mut deny = [0u8; 8];
    check_eq!(set_filter(&vm, &mut filter(0, &mut [(KVM_MSR_FILTER_READ, MSR_STAR, 1, &mut deny)])), Ok(0));
    let m = expect_msr_exit(&v, KVM_EXIT_X86_RDMSR, MSR_STAR, KVM_MSR_EXIT_REASON_FILTER)?;
    check_eq!(m.data, 0);
    // The write went to the kernel; user space still reads STAR (never filtered).
    check_eq!(v.get_msr(MSR_STAR)?, 0x0023_0010_0000_0000);
    answer(&v, 0, 0x42);
    expect_out(&v, 0x10)?;
    check_eq!((v.regs()?.rax, v.regs()?.rdx), (0x42, 0));
    // A refused filter leaves the old one; a new one replaces it whole.
    let mut f = filter(0, &mut [(KVM_MSR_FILTER_READ, MSR_STAR, 1, &mut deny), (4, 0, 1, &mut [0u8; 8])]);
    check_eq!(set_filter(&vm, &mut f), Err(libc::EINVAL));
    let mut allow = [1u8; 8];
    let mut f = filter(0, &mut [(KVM_MSR_FILTER_READ, MSR_STAR, 1, &mut allow), (KVM_MSR_FILTER_WRITE, MSR_STAR, 1, &mut deny)]);
    check_eq!(set_filter(&vm, &mut f), Ok(0));
    expect_out(&v, 0x11)?;
    check_eq!((v.regs()?.rax, v.regs()?.rdx), (0, 0x0023_0010));
    let m = expect_msr_exit(&v, KVM_EXIT_X86_WRMSR, MSR_STAR, KVM_MSR_EXIT_REASON_FILTER)?;
    check_eq!(m.data, 0x55);
    answer(&v, 0, 0);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.get_msr(MSR_STAR)?, 0x0023_0010_0000_0000);
    Ok(())
}

fn default_deny_filter() -> TestResult {
    // Everything denied but reads of LSTAR: one READ range of two MSRs at
    // STAR with only bit 1 (LSTAR) set.
    let code = Asm::default().rdmsr(0xc000_0082).out(0x10).rdmsr(MSR_STAR).hlt();
    let (vm, v) = guest(code)?;
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER as u64), Ok(0));
    let mut bits = [0b10u8, 0, 0, 0, 0, 0, 0, 0];
    let mut f = filter(KVM_MSR_FILTER_DEFAULT_DENY, &mut [(KVM_MSR_FILTER_READ, MSR_STAR, 2, &mut bits)]);
    check_eq!(set_filter(&vm, &mut f), Ok(0));
    expect_out(&v, 0x10)?;
    expect_msr_exit(&v, KVM_EXIT_X86_RDMSR, MSR_STAR, KVM_MSR_EXIT_REASON_FILTER)?;
    answer(&v, 0, 7);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rax, 7);
    Ok(())
}

fn filter_covers_segment_bases() -> TestResult {
    // FS_BASE and KERNEL_GS_BASE, which VMX otherwise lets the guest access
    // without exits: a filter denying them must see every access.
    const FS_BASE: u32 = 0xc000_0100;
    const KERNEL_GS_BASE: u32 = 0xc000_0102;
    let code = Asm::default().wrmsr(FS_BASE, 0x1234).rdmsr(FS_BASE).out(0x10).wrmsr(KERNEL_GS_BASE, 0x5678).hlt();
    let (vm, v) = guest(code)?;
    check_eq!(enable_cap(&vm, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER as u64), Ok(0));
    let (mut deny_r, mut deny_w) = ([0u8; 8], [0u8; 8]);
    let mut f = filter(0, &mut [(KVM_MSR_FILTER_READ, FS_BASE, 1, &mut deny_r), (KVM_MSR_FILTER_WRITE, KERNEL_GS_BASE, 1, &mut deny_w)]);
    check_eq!(set_filter(&vm, &mut f), Ok(0));
    expect_msr_exit(&v, KVM_EXIT_X86_RDMSR, FS_BASE, KVM_MSR_EXIT_REASON_FILTER)?;
    // The write was allowed and done in the kernel.
    check_eq!(v.get_msr(FS_BASE)?, 0x1234);
    answer(&v, 0, 0x99);
    expect_out(&v, 0x10)?;
    check_eq!(v.regs()?.rax, 0x99);
    let m = expect_msr_exit(&v, KVM_EXIT_X86_WRMSR, KERNEL_GS_BASE, KVM_MSR_EXIT_REASON_FILTER)?;
    check_eq!(m.data, 0x5678);
    answer(&v, 0, 0);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.get_msr(KERNEL_GS_BASE)?, 0);
    Ok(())
}

fn platform_info() -> TestResult {
    let (vm, v) = guest(Asm::default().rdmsr(MSR_PLATFORM_INFO).out(0x10).rdmsr(MSR_PLATFORM_INFO).hlt())?;
    // CPUID faulting is offered from the start (bit 31).
    check_eq!(v.get_msr(MSR_PLATFORM_INFO)?, 0x8000_0000);
    check_eq!(v.set_msr(MSR_PLATFORM_INFO, 0x8000_ff00), Ok(1));
    expect_out(&v, 0x10)?;
    check_eq!((v.regs()?.rax, v.regs()?.rdx), (0x8000_ff00, 0));
    // Turned off for the guest: its next read is #GP; user space still reads.
    check_eq!(enable_cap(&vm, KVM_CAP_MSR_PLATFORM_INFO, 0), Ok(0));
    check_eq!(v.get_msr(MSR_PLATFORM_INFO)?, 0x8000_ff00);
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    // On again; the guest may read but never write it.
    let (vm, v) = guest(Asm::default().rdmsr(MSR_PLATFORM_INFO).out(0x10).wrmsr(MSR_PLATFORM_INFO, 0x8000_0000).hlt())?;
    check_eq!(enable_cap(&vm, KVM_CAP_MSR_PLATFORM_INFO, 0), Ok(0));
    check_eq!(enable_cap(&vm, KVM_CAP_MSR_PLATFORM_INFO, 1), Ok(0));
    expect_out(&v, 0x10)?;
    check_eq!(v.regs()?.rax, 0x8000_0000);
    expect_exit(&v, KVM_EXIT_SHUTDOWN)
}

fn misc_features_enables() -> TestResult {
    // CPUID faulting on: CPUID at CPL 0 still works.
    let (_vm, v) = guest(Asm::default().rdmsr(MSR_MISC_FEATURES_ENABLES).out(0x10).cpuid().hlt())?;
    check_eq!(v.get_msr(MSR_MISC_FEATURES_ENABLES)?, 0);
    check_eq!(v.set_msr(MSR_MISC_FEATURES_ENABLES, 2), Ok(0));
    check_eq!(v.set_msr(MSR_MISC_FEATURES_ENABLES, 1), Ok(1));
    expect_out(&v, 0x10)?;
    check_eq!(v.regs()?.rax, 1);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check!(v.regs()?.rbx != 0, "CPUID leaf 0 gave no vendor");
    // MSR_PLATFORM_INFO cannot drop bit 31 while faulting is on; without bit
    // 31 faulting cannot be turned on.
    check_eq!(v.set_msr(MSR_PLATFORM_INFO, 0), Ok(0));
    check_eq!(v.set_msr(MSR_MISC_FEATURES_ENABLES, 0), Ok(1));
    check_eq!(v.set_msr(MSR_PLATFORM_INFO, 0), Ok(1));
    check_eq!(v.set_msr(MSR_MISC_FEATURES_ENABLES, 1), Ok(0));
    check_eq!(v.get_msr(MSR_PLATFORM_INFO)?, 0);
    Ok(())
}
