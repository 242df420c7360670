//! KVM's paravirtual interface beyond kvmclock: KVM_CAP_ENFORCE_PV_FEATURE_CPUID
//! (per-vCPU: the PV MSRs #GP and the hypercalls answer -KVM_ENOSYS unless
//! the vCPU's KVM_CPUID_FEATURES offers them), the hypercall ABI (numbers,
//! results, 32-bit truncation), the vCPU KVM_ENABLE_CAP ioctl, and steal
//! time (MSR_KVM_STEAL_TIME: the record's version protocol, the steal
//! counter following the vCPU thread's run_delay, the preempted byte), and
//! KVM_CAP_X86_DISABLE_EXITS (HLT in the guest, which hides PV_UNHALT).
//!
//! Guests are hand-assembled 64-bit (or 32-bit) code without an IDT: a #GP
//! is seen as KVM_EXIT_SHUTDOWN.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("pv/enable_cap_on_vcpu", vcpu_enable_cap),
        ("pv/enforced_features_gate_msrs", enforced_msrs),
        ("pv/hypercall_results", hypercalls),
        ("pv/hypercall_32bit_truncates", hypercall_32bit),
        ("steal_time/msr_and_record", steal_time_record),
        ("steal_time/follows_run_delay", steal_time_run_delay),
        ("disable_exits/cap_and_errnos", disable_exits_errnos),
        ("disable_exits/hlt_in_guest_and_pv_unhalt", hlt_in_guest),
    ]
}

const CODE: u64 = 0x1000;
const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
const MSR_KVM_SYSTEM_TIME: u32 = 0x12;
const KVM_ENOSYS: u64 = 1000;

/// VMMCALL on AMD, VMCALL on Intel (the host's vendor is the guest's).
fn hypercall_insn() -> [u8; 3] {
    let r = std::arch::x86_64::__cpuid(0);
    if r.ebx == 0x6874_7541 {
        [0x0f, 0x01, 0xd9] // "Auth"enticAMD: vmmcall
    } else {
        [0x0f, 0x01, 0xc1] // vmcall
    }
}

fn enable_vcpu_cap(v: &Vcpu, cap: u32, flags: u32, arg: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap, flags, ..Default::default() };
    c.args[0] = arg;
    ioctl_ptr(&v.fd, KVM_ENABLE_CAP, &mut c)
}

/// Sets the supported CPUID with KVM_CPUID_FEATURES (0x40000001) EAX = `eax`.
fn set_cpuid_pv(kvm: &std::os::fd::OwnedFd, v: &Vcpu, eax: u32) -> Result<(), String> {
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("GET_SUPPORTED_CPUID errno {e}"))?;
    let n = c.nent() as usize;
    // SAFETY: `c` holds `n` entries after its 8-byte header.
    let entries = unsafe { std::slice::from_raw_parts_mut((c.ptr() as *mut u8).add(8) as *mut kvm_cpuid_entry2, n) };
    let e = entries.iter_mut().find(|e| e.function == 0x4000_0001).ok_or("no leaf 0x40000001")?;
    e.eax = eax;
    ioctl_ptr(&v.fd, KVM_SET_CPUID2, c.ptr()).map_err(|e| format!("SET_CPUID2 errno {e}"))?;
    Ok(())
}

/// A 64-bit guest running `code`, with KVM_CPUID_FEATURES EAX = `pv_eax`.
fn guest(code: &[u8], pv_eax: u32) -> Result<(Vm, Vcpu), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, code);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    set_cpuid_pv(&vm.kvm, &v, pv_eax)?;
    Ok((vm, v))
}

fn wrmsr0(msr: u32) -> Vec<u8> {
    let mut c = vec![0xb9];
    c.extend_from_slice(&msr.to_le_bytes());
    c.extend_from_slice(&[0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x30]); // xor eax,eax; xor edx,edx; wrmsr
    c
}

fn vcpu_enable_cap() -> TestResult {
    let (vm, v, _mem) = vm_with_ram(0x10000)?;
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ENFORCE_PV_FEATURE_CPUID as u64), Ok(1));
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ENABLE_CAP as u64), Ok(1));
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), Ok(0));
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 0), Ok(0));
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1, 1), Err(libc::EINVAL));
    // A VM capability is not a vCPU one.
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_X86_USER_SPACE_MSR, 0, 1), Err(libc::EINVAL));
    check_eq!(ioctl_val(&v.fd, KVM_ENABLE_CAP, 8), Err(libc::EFAULT));
    Ok(())
}

fn enforced_msrs() -> TestResult {
    // The supported CPUID offers CLOCKSOURCE2: with enforcement, the new
    // kvmclock MSRs work.
    let mut code = wrmsr0(MSR_KVM_SYSTEM_TIME_NEW);
    code.extend_from_slice(&[0xe6, 0x10, 0xf4]); // out 0x10; hlt
    let kvm = open_kvm()?;
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    let offered = c.entries().iter().find(|e| e.function == 0x4000_0001).map_or(0, |e| e.eax);
    check!(offered & (1 << 3) != 0, "CLOCKSOURCE2 not offered: {offered:#x}");
    let (_vm, v) = guest(&code, offered)?;
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), Ok(0));
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.get_msr(MSR_KVM_SYSTEM_TIME_NEW)?, 0);
    // Without any PV feature, enforced: the MSRs do not exist for the vCPU.
    // The guest gets #GP; user space may only read 0 and write 0 (as to any
    // MSR in KVM_GET_MSR_INDEX_LIST).
    let (_vm, v) = guest(&code, 0)?;
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME_NEW, 0x5001), Ok(1));
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), Ok(0));
    check_eq!(v.get_msr(MSR_KVM_SYSTEM_TIME_NEW)?, 0);
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME_NEW, 0x6001), Ok(0));
    check_eq!(v.set_msr(MSR_KVM_WALL_CLOCK_NEW, 0x7000), Ok(0));
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME, 0), Ok(1));
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    // Not enforced (the default): the same CPUID, the MSR works.
    let (_vm, v) = guest(&code, 0)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME, 0), Ok(1));
    // Enforcement turned on after KVM_SET_CPUID2 takes the CPUID as it is;
    // turned off again, everything works.
    let (_vm, v) = guest(&code, 0)?;
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), Ok(0));
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME, 0x3001), Ok(0));
    check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 0), Ok(0));
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME, 0x3001), Ok(1));
    check_eq!(v.set_msr(MSR_KVM_SYSTEM_TIME, 0), Ok(1));
    expect_exit(&v, KVM_EXIT_IO)
}

fn hypercalls() -> TestResult {
    // For each number: mov rax, nr (imm32 sign-extended); hypercall;
    // mov [0x9000 + 8*i], rax. Then hlt.
    let nrs: [u64; 5] = [1, 5, 10, 11, 0x7fff_0000];
    let mut code = Vec::new();
    for (i, nr) in nrs.iter().enumerate() {
        code.extend_from_slice(&[0x48, 0xc7, 0xc0]);
        code.extend_from_slice(&(*nr as u32).to_le_bytes());
        code.extend_from_slice(&hypercall_insn());
        code.extend_from_slice(&[0x48, 0x89, 0x04, 0x25]);
        code.extend_from_slice(&(0x9000u32 + 8 * i as u32).to_le_bytes());
    }
    code.push(0xf4);
    for enforce in [true, false] {
        let (vm, v) = guest(&code, 0)?;
        if enforce {
            check_eq!(enable_vcpu_cap(&v, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), Ok(0));
        }
        expect_exit(&v, KVM_EXIT_HLT)?;
        let mem = vm.mems[0].0;
        let got: Vec<u64> =
            (0..nrs.len()).map(|i| u64::from_le_bytes(peek(mem, 0x9000 + 8 * i, 8).try_into().unwrap_or([0; 8]))).collect();
        // VAPIC_POLL_IRQ 0; KICK_CPU, SEND_IPI, SCHED_YIELD without their
        // feature bits and an unknown number: -KVM_ENOSYS.
        if enforce {
            check_eq!(got, vec![0, KVM_ENOSYS.wrapping_neg(), KVM_ENOSYS.wrapping_neg(), KVM_ENOSYS.wrapping_neg(), KVM_ENOSYS.wrapping_neg()]);
        } else {
            check_eq!((got[0], got[4]), (0, KVM_ENOSYS.wrapping_neg()));
        }
    }
    Ok(())
}

fn hypercall_32bit() -> TestResult {
    // 32-bit protected mode: mov eax, nr; hypercall; hlt. The result is
    // the low 32 bits of -KVM_ENOSYS; the number's upper half is ignored.
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    let mut code = vec![0xb8, 0x01, 0x00, 0x00, 0x00]; // mov eax, 1 (VAPIC_POLL_IRQ)
    code.extend_from_slice(&hypercall_insn());
    code.extend_from_slice(&[0x89, 0xc3]); // mov ebx, eax
    code.extend_from_slice(&[0xb8, 0x39, 0x30, 0x00, 0x00]); // mov eax, 12345
    code.extend_from_slice(&hypercall_insn());
    code.push(0xf4);
    poke(mem, CODE as usize, &code);
    v.protected_mode_at(CODE)?;
    let mut r = v.regs()?;
    r.rbx = 0xffff_ffff;
    v.set_regs(&r)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!((r.rbx, r.rax), (0, KVM_ENOSYS.wrapping_neg() & 0xffff_ffff));
    Ok(())
}

const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
const ST: u64 = 0x6000;

/// The calling thread's run_delay (ns waiting on a run queue), as the KVM
/// selftests read it.
fn run_delay() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").map_err(|e| format!("schedstat: {e}"))?;
    s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("schedstat: {s:?}"))
}

/// (steal, version, flags, preempted) of the record at ST.
fn st_record(mem: *mut u8) -> (u64, u32, u32, u8) {
    let b = peek(mem, ST as usize, 17);
    (
        u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
        u32::from_le_bytes(b[8..12].try_into().unwrap_or([0; 4])),
        u32::from_le_bytes(b[12..16].try_into().unwrap_or([0; 4])),
        b[16],
    )
}

/// A vCPU with steal time enabled at ST whose guest exits with OUT 0x10 in
/// a loop.
fn steal_guest() -> Result<(Vm, Vcpu, *mut u8), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &[0xe6, 0x10, 0xeb, 0xfc]); // out 0x10; jmp back
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    check_eq!(v.set_msr(MSR_KVM_STEAL_TIME, ST | 1), Ok(1));
    Ok((vm, v, mem))
}

fn steal_time_record() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_STEAL_TIME as u64), Ok(1));
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    let pv = c.entries().iter().find(|e| e.function == 0x4000_0001).map_or(0, |e| e.eax);
    check!(pv & (1 << 5) != 0, "KVM_FEATURE_STEAL_TIME not offered: {pv:#x}");
    let mut l = MsrList::with_room(512);
    ioctl_ptr(&kvm, KVM_GET_MSR_INDEX_LIST, l.ptr()).map_err(|e| format!("errno {e}"))?;
    check!(l.indices().contains(&MSR_KVM_STEAL_TIME));

    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &[0xe6, 0x10, 0xeb, 0xfc]);
    v.long_mode_at(&_vm.kvm, mem, CODE)?;
    // Reserved bits 1-5 are refused; the MSR reads back as written.
    check_eq!(v.set_msr(MSR_KVM_STEAL_TIME, ST | 2), Ok(0));
    check_eq!(v.set_msr(MSR_KVM_STEAL_TIME, ST | 0x20 | 1), Ok(0));
    // Junk in the page: an odd version and the preempted byte set.
    poke(mem, ST as usize, &[0xaa; 16]);
    poke(mem, ST as usize + 8, &7u32.to_le_bytes());
    poke(mem, ST as usize + 16, &[1]);
    check_eq!(v.set_msr(MSR_KVM_STEAL_TIME, ST | 1), Ok(1));
    check_eq!(v.get_msr(MSR_KVM_STEAL_TIME)?, ST | 1);
    expect_exit(&v, KVM_EXIT_IO)?;
    let (_, version, _, preempted) = st_record(mem);
    // 7 is junk: taken as 8, then odd (9) while writing, even (10) after;
    // a preemption of the vCPU thread during the run adds updates.
    check!(version >= 10 && version % 2 == 0 && preempted == 0, "version {version}, preempted {preempted}");
    // Each KVM_RUN updates the record again (at least two version steps).
    let mut last = version;
    for _ in 1..4 {
        expect_exit(&v, KVM_EXIT_IO)?;
        let now = st_record(mem).1;
        check!(now >= last + 2 && now % 2 == 0, "version {last} -> {now}");
        last = now;
    }
    // Disabled: no more updates, the MSR keeps the address.
    check_eq!(v.set_msr(MSR_KVM_STEAL_TIME, ST), Ok(1));
    let before = st_record(mem);
    expect_exit(&v, KVM_EXIT_IO)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(st_record(mem), before);
    check_eq!(v.get_msr(MSR_KVM_STEAL_TIME)?, ST);
    Ok(())
}

fn steal_time_run_delay() -> TestResult {
    // Pin this thread, and a thread that steals its CPU, to one CPU.
    // SAFETY: plain libc calls on this thread's own affinity.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    // SAFETY: a zeroed cpu_set_t is empty.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` outlives the call.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    check_eq!(r, 0);
    let (_vm, v, mem) = steal_guest()?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let first = st_record(mem);
    // The first update adds the thread's whole run_delay (as upstream), so
    // the counter never exceeds it.
    check!(first.0 <= run_delay()?, "steal {} > run_delay", first.0);
    // Steal at least 50 ms: a spinning thread on the same CPU while this one
    // keeps yielding.
    let start = run_delay()?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        // SAFETY: as above, for the new thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    });
    let t0 = std::time::Instant::now();
    while run_delay()? - start < 50_000_000 && t0.elapsed().as_secs() < 20 {
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = t.join();
    let stolen = run_delay()? - start;
    check!(stolen >= 50_000_000, "run_delay grew by only {stolen} ns");
    expect_exit(&v, KVM_EXIT_IO)?;
    let after = st_record(mem);
    check!(after.0 - first.0 >= stolen, "steal grew by {} ns, run_delay by {stolen} ns", after.0 - first.0);
    check_eq!((after.1 & 1, after.2, after.3), (0, 0, 0));
    Ok(())
}

fn enable_vm_cap(vm: &Vm, cap: u32, arg: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap, ..Default::default() };
    c.args[0] = arg;
    ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c)
}

fn disable_exits_errnos() -> TestResult {
    let vm = Vm::new()?;
    let hlt_pause = (KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_PAUSE) as i64;
    let r = ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_DISABLE_EXITS as u64).unwrap_or(0);
    check!(r & hlt_pause == hlt_pause, "KVM_CAP_X86_DISABLE_EXITS {r:#x}");
    for bit in 4..64 {
        check!(enable_vm_cap(&vm, KVM_CAP_X86_DISABLE_EXITS, 1 << bit) == Err(libc::EINVAL), "bit {bit}");
    }
    check_eq!(enable_vm_cap(&vm, KVM_CAP_X86_DISABLE_EXITS, 0), Ok(0));
    check_eq!(enable_vm_cap(&vm, KVM_CAP_X86_DISABLE_EXITS, hlt_pause as u64), Ok(0));
    Ok(())
}

/// Sets `v`'s CPUID to the supported one with PV_UNHALT (bit 7) in
/// KVM_CPUID_FEATURES, and reads back whether the vCPU's table has it.
fn pv_unhalt_kept(kvm: &std::os::fd::OwnedFd, v: &Vcpu) -> Result<bool, String> {
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    let pv = c.entries().iter().find(|e| e.function == 0x4000_0001).map_or(0, |e| e.eax);
    set_cpuid_pv(kvm, v, pv | 1 << 7)?;
    let mut g = Cpuid2::with_room(256);
    ioctl_ptr(&v.fd, KVM_GET_CPUID2, g.ptr()).map_err(|e| format!("GET_CPUID2 errno {e}"))?;
    let e = g.entries().iter().find(|e| e.function == 0x4000_0001).map_or(0, |e| e.eax);
    Ok(e & (1 << 7) != 0)
}

fn hlt_in_guest() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    // hlt; out 0x10; hlt (interrupts off)
    poke(mem, CODE as usize, &[0xf4, 0xe6, 0x10, 0xf4]);
    let before = vm.vcpu(0)?;
    before.long_mode_at(&vm.kvm, mem, CODE)?;
    check!(pv_unhalt_kept(&vm.kvm, &before)?, "PV_UNHALT dropped without the capability");
    check_eq!(enable_vm_cap(&vm, KVM_CAP_X86_DISABLE_EXITS, KVM_X86_DISABLE_EXITS_HLT as u64), Ok(0));
    let after = vm.vcpu(1)?;
    after.long_mode_at(&vm.kvm, mem, CODE)?;
    // PV_UNHALT is taken out of every vCPU's CPUID from now on.
    check!(!pv_unhalt_kept(&vm.kvm, &after)?, "PV_UNHALT kept with HLT exits disabled");
    check!(!pv_unhalt_kept(&vm.kvm, &before)?, "PV_UNHALT kept with HLT exits disabled");
    // The vCPU created before still exits on HLT.
    expect_exit(&before, KVM_EXIT_HLT)?;
    // The new one halts in the guest; on AMD the next host interrupt ends
    // the guest after the HLT (on Intel the vCPU would stay halted until an
    // event is injected, so it is not run here).
    if std::arch::x86_64::__cpuid(0).ebx == 0x6874_7541 {
        expect_exit(&after, KVM_EXIT_IO)?;
        check_eq!(after.io().port, 0x10);
    }
    Ok(())
}
