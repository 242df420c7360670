//! kvm-lifecycle: VMM processes for the module lifecycle tests in the test VM
//! (tests/vm/lifecycle.sh), run against our modules and upstream's.
//!
//!   kvm-lifecycle hold vm|vcpu|mmap
//!       Keeps one KVM object alive and nothing else: a VM fd (/dev/kvm closed),
//!       a vCPU fd (VM and /dev/kvm closed) or only the vCPU's kvm_run mapping
//!       (every fd closed). Prints `READY` and waits for a signal. While it
//!       lives, rmmod of kvm-amd and kvm must be refused.
//!   kvm-lifecycle kill [--rounds N] [--first K] [--limit-ms MS]
//!       N times: forks a VMM with the in-kernel irqchip and one thread per vCPU
//!       state (spinning in the guest, in the guest on a slot that changes under
//!       it, HLT blocked in the kernel, an AP waiting for SIPI in KVM_RUN, PIO
//!       exits in a loop, in user space with a PIO IN or an MMIO read pending)
//!       plus a thread changing a memory slot in a loop; once all are there
//!       (the blocked ones seen sleeping in /proc), SIGKILL, and the process
//!       must be gone within --limit-ms (default 10000). Round numbers start
//!       at --first (default 0); the number varies the delay before the kill.
//!       Prints one `ROUND` line per round and `OK`, or `FAIL <why>` and exit
//!       status 1.

#[allow(dead_code)]
#[path = "../guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../kvm.rs"]
mod kvm;

use guest::*;
use kvm::*;
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: kvm-lifecycle hold vm|vcpu|mmap | kill [--rounds N] [--first K] [--limit-ms MS]");
    std::process::exit(2);
}

fn die(msg: String) -> ! {
    println!("FAIL {msg}");
    let _ = std::io::stdout().flush();
    std::process::exit(1);
}

fn wait_for_signal() -> ! {
    loop {
        // SAFETY: sleeps until a signal ends the process.
        unsafe { libc::pause() };
    }
}

fn hold(what: &str) -> ! {
    if !matches!(what, "vm" | "vcpu" | "mmap") {
        usage();
    }
    let kvm = open_kvm().unwrap_or_else(|e| die(e));
    let vm = ioctl_val(&kvm, KVM_CREATE_VM, 0).unwrap_or_else(|e| die(format!("KVM_CREATE_VM: errno {e}")));
    // SAFETY: a fresh descriptor from the kernel.
    let vm = unsafe { OwnedFd::from_raw_fd(vm as i32) };
    let size = ioctl_val(&kvm, KVM_GET_VCPU_MMAP_SIZE, 0).unwrap_or_else(|e| die(format!("MMAP_SIZE: errno {e}"))) as usize;
    drop(kvm);
    if what == "vm" {
        println!("READY holding a VM fd");
        let _ = std::io::stdout().flush();
        let _keep = vm;
        wait_for_signal();
    }
    let vcpu = ioctl_val(&vm, KVM_CREATE_VCPU, 0).unwrap_or_else(|e| die(format!("KVM_CREATE_VCPU: errno {e}")));
    // SAFETY: a fresh descriptor from the kernel.
    let vcpu = unsafe { OwnedFd::from_raw_fd(vcpu as i32) };
    drop(vm);
    if what == "vcpu" {
        println!("READY holding a vCPU fd");
        let _ = std::io::stdout().flush();
        let _keep = vcpu;
        wait_for_signal();
    }
    // SAFETY: maps the vCPU file; the mapping is never unmapped and keeps the
    // file open after its descriptor is closed.
    let map = unsafe {
        libc::mmap(std::ptr::null_mut(), size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, vcpu.as_raw_fd(), 0)
    };
    if map == libc::MAP_FAILED {
        die(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    drop(vcpu);
    println!("READY holding a vCPU mapping");
    let _ = std::io::stdout().flush();
    wait_for_signal();
}

// The VMM that gets killed: guest code in slot 0 (64 KB at GPA 0, real mode).
const SPIN: (u64, &[u8]) = (0x1000, &[0xeb, 0xfe]); // jmp $
// mov ax,0x2000; mov ds,ax; L: mov al,[0]; jmp L   (reads slot 1 at 0x20000)
const SPIN_SLOT: (u64, &[u8]) = (0x1100, &[0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xeb, 0xfb]);
const HLT: (u64, &[u8]) = (0x1200, &[0xfa, 0xf4, 0xeb, 0xfd]); // cli; L: hlt; jmp L
const OUT_LOOP: (u64, &[u8]) = (0x1300, &[0xe6, 0x10, 0xeb, 0xfc]); // L: out 0x10,al; jmp L
const PIO_IN: (u64, &[u8]) = (0x1400, &[0xe4, 0x10, 0xeb, 0xfe]); // in al,0x10; jmp $
// mov ax,0x3000; mov ds,ax; mov al,[0]; jmp $   (0x30000 is never memory)
const MMIO_READ: (u64, &[u8]) = (0x1500, &[0xb8, 0x00, 0x30, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xeb, 0xfe]);

/// One thread of the VMM: what its vCPU does and whether it must be seen
/// sleeping in the kernel before the kill.
#[derive(Clone, Copy)]
enum Role {
    Spin,
    SpinSlot,
    Hlt,
    WaitSipi,
    OutLoop,
    UserPioPending,
    UserMmioPending,
    SlotLoop,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Spin => "in_guest",
            Role::SpinSlot => "in_guest_on_changing_slot",
            Role::Hlt => "hlt_blocked",
            Role::WaitSipi => "ap_waiting_for_sipi",
            Role::OutLoop => "pio_exit_loop",
            Role::UserPioPending => "user_space_pio_in_pending",
            Role::UserMmioPending => "user_space_mmio_read_pending",
            Role::SlotLoop => "set_user_memory_region_loop",
        }
    }
    fn must_sleep_in_kernel(self) -> bool {
        matches!(self, Role::Hlt | Role::WaitSipi)
    }
}

const ROLES: [Role; 8] = [
    Role::Spin,
    Role::SpinSlot,
    Role::Hlt,
    Role::WaitSipi,
    Role::OutLoop,
    Role::UserPioPending,
    Role::UserMmioPending,
    Role::SlotLoop,
];

fn gettid() -> i64 {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

fn set_mp_state(v: &Vcpu, state: u32) -> Result<(), String> {
    let mut m = kvm_mp_state { mp_state: state };
    ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut m).map(|_| ()).map_err(|e| format!("SET_MP_STATE: errno {e}"))
}

fn report(pipe: RawFd, line: &str) {
    let s = format!("{line}\n");
    // SAFETY: writes our buffer to the pipe (short lines: atomic).
    unsafe { libc::write(pipe, s.as_ptr() as *const _, s.len()) };
}

/// The child: sets up the VM and its threads, reports `TID <role> <tid>` for
/// each, then `READY`, and waits to be killed.
fn vmm(pipe: RawFd) -> Result<(), String> {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    ioctl_val(&vm.fd, KVM_CREATE_IRQCHIP, 0).map_err(|e| format!("KVM_CREATE_IRQCHIP: errno {e}"))?;
    for (gpa, code) in [SPIN, SPIN_SLOT, HLT, OUT_LOOP, PIO_IN, MMIO_READ] {
        poke(mem, gpa as usize, code);
    }
    let slot_mem = anon(0x1000)? as u64;
    let vm_fd = vm.fd.as_raw_fd();
    let mut handles = vec![];
    let mut id = 0u64;
    for role in ROLES {
        let vcpu = match role {
            Role::SlotLoop => None,
            _ => {
                let v = vm.vcpu(id)?;
                id += 1;
                let rip = match role {
                    Role::Spin => Some(SPIN.0),
                    Role::SpinSlot => Some(SPIN_SLOT.0),
                    Role::Hlt => Some(HLT.0),
                    Role::OutLoop => Some(OUT_LOOP.0),
                    Role::UserPioPending => Some(PIO_IN.0),
                    Role::UserMmioPending => Some(MMIO_READ.0),
                    _ => None,
                };
                if let Some(rip) = rip {
                    // APs start waiting for SIPI with the in-kernel irqchip.
                    set_mp_state(&v, KVM_MP_STATE_RUNNABLE)?;
                    v.real_mode_at(rip)?;
                }
                Some(v)
            }
        };
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            report(pipe, &format!("TID {} {}", role.name(), gettid()));
            match role {
                Role::SlotLoop => {
                    // Create, log dirty pages, move, delete slot 1 (which the
                    // SpinSlot vCPU reads), forever.
                    let set = |gpa: u64, size: u64, flags: u32| {
                        let mut r = kvm_userspace_memory_region { slot: 1, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: slot_mem };
                        ioctl_ptr(&vm_fd, KVM_SET_USER_MEMORY_REGION, &mut r)
                    };
                    let mut first = true;
                    loop {
                        set(0x20000, 0x1000, 0).map_err(|e| format!("slot create: errno {e}"))?;
                        set(0x20000, 0x1000, KVM_MEM_LOG_DIRTY_PAGES).map_err(|e| format!("slot log dirty: errno {e}"))?;
                        set(0x40000, 0x1000, KVM_MEM_LOG_DIRTY_PAGES).map_err(|e| format!("slot move: errno {e}"))?;
                        set(0x40000, 0, 0).map_err(|e| format!("slot delete: errno {e}"))?;
                        if first {
                            report(pipe, &format!("IN {}", role.name()));
                            first = false;
                        }
                    }
                }
                _ => {}
            }
            let Some(v) = vcpu else { return Ok(()) };
            match role {
                Role::Spin | Role::Hlt | Role::WaitSipi => {
                    report(pipe, &format!("IN {}", role.name()));
                    loop {
                        match v.run() {
                            // Upstream returns EAGAIN from a wait for SIPI
                            // that woke without one.
                            Err(libc::EAGAIN) if matches!(role, Role::WaitSipi) => {}
                            r => return Err(format!("{}: KVM_RUN returned {r:?}", role.name())),
                        }
                    }
                }
                Role::SpinSlot | Role::OutLoop => {
                    let mut first = true;
                    loop {
                        match v.run() {
                            Ok(KVM_EXIT_MMIO) | Ok(KVM_EXIT_IO) => {}
                            r => {
                                let rip = v.regs().map(|r| r.rip).unwrap_or(0);
                                let data = [v.exit_u64(0), v.exit_u64(1), v.exit_u64(2), v.exit_u64(3), v.exit_u64(4)];
                                return Err(format!("{}: KVM_RUN returned {r:?}, rip {rip:#x}, exit data {data:x?}", role.name()));
                            }
                        }
                        if first {
                            report(pipe, &format!("IN {}", role.name()));
                            first = false;
                        }
                    }
                }
                Role::UserPioPending | Role::UserMmioPending => {
                    let want = if matches!(role, Role::UserPioPending) { KVM_EXIT_IO } else { KVM_EXIT_MMIO };
                    match v.run() {
                        Ok(r) if r == want => {}
                        r => return Err(format!("{}: KVM_RUN returned {r:?}", role.name())),
                    }
                    // Stay in user space with the exit not completed.
                    report(pipe, &format!("IN {}", role.name()));
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                Role::SlotLoop => Ok(()),
            }
        }));
    }
    // A thread that fails ends the VMM with its error; the parent then sees
    // `ERR` instead of every thread in place.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(i) = handles.iter().position(|h| h.is_finished()) {
            return match handles.swap_remove(i).join() {
                Ok(Err(e)) => Err(e),
                _ => Err("a thread ended".into()),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(vm);
    Err("still alive after 60 s".into())
}

fn read_lines_until(fd: RawFd, buf: &mut String, deadline: Instant, want: usize) -> Result<(), String> {
    loop {
        if buf.lines().filter(|l| l.starts_with("IN ")).count() >= want || buf.contains("ERR ") {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out waiting for the VMM's threads; got: {}", buf.replace('\n', "; ")));
        }
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd of ours.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
        if n <= 0 {
            continue;
        }
        let mut b = [0u8; 512];
        // SAFETY: reads into our buffer.
        let r = unsafe { libc::read(fd, b.as_mut_ptr() as *mut _, b.len()) };
        if r <= 0 {
            return Err(format!("the VMM closed its pipe (it died?); got: {}", buf.replace('\n', "; ")));
        }
        buf.push_str(&String::from_utf8_lossy(&b[..r as usize]));
    }
}

fn task_state(pid: i32, tid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    // "tid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("?").to_string()
}

fn kernel_stacks(pid: i32) -> String {
    let mut out = String::new();
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in d.flatten() {
            let s = std::fs::read_to_string(e.path().join("stack")).unwrap_or_default();
            out.push_str(&format!("[{}] {}", e.file_name().to_string_lossy(), s.replace('\n', " | ")));
        }
    }
    out
}

fn kill_round(round: u32, limit_ms: u64) -> Result<String, String> {
    let mut fds = [0i32; 2];
    // SAFETY: a fresh pipe.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err("pipe".into());
    }
    // SAFETY: fork; the child runs the VMM until it is killed and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the read end is the parent's.
        unsafe { libc::close(fds[0]) };
        let e = vmm(fds[1]).err().unwrap_or_default();
        report(fds[1], &format!("ERR {e}"));
        // SAFETY: leave without the parent's destructors.
        unsafe { libc::_exit(3) };
    }
    // SAFETY: the write end is the child's.
    let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    unsafe { libc::close(fds[1]) };
    let mut buf = String::new();
    let reaped = |status: &mut i32| -> bool {
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, status, libc::WNOHANG) == pid }
    };
    let setup = read_lines_until(rd.as_raw_fd(), &mut buf, Instant::now() + Duration::from_secs(60), ROLES.len());
    let failed_setup = setup.err().or_else(|| buf.lines().find(|l| l.starts_with("ERR ")).map(|l| l.to_string()));
    if let Some(e) = failed_setup {
        // SAFETY: our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(format!("round {round}: VMM setup: {e}"));
    }
    // The threads that must be asleep in the kernel (HLT, wait for SIPI).
    let tids: Vec<(String, String)> = buf
        .lines()
        .filter_map(|l| l.strip_prefix("TID "))
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect();
    let sleepers: Vec<&(String, String)> = tids
        .iter()
        .filter(|(name, _)| ROLES.iter().any(|r| r.name() == name && r.must_sleep_in_kernel()))
        .collect();
    let t = Instant::now();
    loop {
        let asleep = sleepers.iter().all(|(_, tid)| task_state(pid, tid) == "S");
        if asleep {
            break;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let states: Vec<String> = sleepers.iter().map(|(n, tid)| format!("{n}={}", task_state(pid, tid))).collect();
            // SAFETY: our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(format!("round {round}: blocked vCPUs not asleep after 10 s: {}", states.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Vary the moment of the kill against the slot loop and the exit loop.
    std::thread::sleep(Duration::from_millis(50 + (round as u64 * 137) % 400));
    let states: Vec<String> = tids.iter().map(|(n, tid)| format!("{n}={}", task_state(pid, tid))).collect();
    let killed = Instant::now();
    // SAFETY: our child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    while !reaped(&mut status) {
        if killed.elapsed() > Duration::from_millis(limit_ms) {
            return Err(format!(
                "round {round}: the killed VMM still exists after {limit_ms} ms; kernel stacks: {}",
                kernel_stacks(pid)
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ms = killed.elapsed().as_millis();
    if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL) {
        // The VMM died on its own: its last words are in the pipe.
        let mut rest = String::new();
        let mut b = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer from our pipe; the writer
            // is gone, so this ends with 0 (EOF).
            let r = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            if r <= 0 {
                break;
            }
            rest.push_str(&String::from_utf8_lossy(&b[..r as usize]));
        }
        let why = rest.lines().find(|l| l.starts_with("ERR ")).unwrap_or("no ERR line").to_string();
        return Err(format!("round {round}: VMM status {status:#x}, not killed by SIGKILL: {why}"));
    }
    Ok(format!("ROUND {round} gone {ms} ms after SIGKILL; states {}", states.join(" ")))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(|s| s.as_str()) {
        Some("hold") => hold(args.get(2).map(|s| s.as_str()).unwrap_or_else(|| usage())),
        Some("kill") => {
            let mut rounds = 5u32;
            let mut limit_ms = 10_000u64;
            let mut first = 0u32;
            let mut i = 2;
            while i < args.len() {
                let v = args.get(i + 1).and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| usage());
                match args[i].as_str() {
                    "--rounds" => rounds = v as u32,
                    "--limit-ms" => limit_ms = v,
                    "--first" => first = v as u32,
                    _ => usage(),
                }
                i += 2;
            }
            let mut worst = 0u128;
            for r in first..first + rounds {
                match kill_round(r, limit_ms) {
                    Ok(line) => {
                        if let Some(ms) = line.split_whitespace().nth(3).and_then(|s| s.parse::<u128>().ok()) {
                            worst = worst.max(ms);
                        }
                        println!("{line}");
                    }
                    Err(e) => die(e),
                }
                let _ = std::io::stdout().flush();
            }
            println!("KILLS {rounds} WORST_MS {worst}");
            println!("OK");
        }
        _ => usage(),
    }
}
