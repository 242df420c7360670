//! Guest memory follows the process (MMU notifiers, no long-term pins): what
//! user space does to its mapping of a slot, the guest sees at once.
//! - a page user space wrote, then discarded with MADV_DONTNEED, then wrote
//!   again: the guest reads each state;
//! - munmap + mmap(MAP_FIXED) of a memfd at the slot's address: the guest
//!   reads and writes the new (shared) page;
//! - a guest incrementing a counter while another thread discards the page
//!   for many rounds: at the end the guest's page is user space's page;
//! - the slot's pages are not pinned: munmap while the VM lives frees them;
//! - a slot the guest reads in a loop is deleted (the guest must see MMIO),
//!   created again on a fresh THP-backed mapping (the guest must see the new
//!   memory: the zero page or what user space wrote, never the old page),
//!   deleted again..., each step waited for (Linux's set_memory_region_test
//!   does the same with fixed 100 ms sleeps instead).
//! - a slot whose memory is registered with userfaultfd (missing pages): the
//!   guest's reads wait in the kernel until a user-space thread provides each
//!   page (UFFDIO_COPY), and the guest sees what that thread wrote.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::{check, check_eq};
use kvm_uapi::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("memory/madvise_dontneed_guest_reads_zero", dontneed),
        ("memory/remap_fixed_guest_sees_new_page", remap_fixed),
        ("memory/discard_while_guest_writes", discard_race),
        ("memory/slot_pages_not_pinned", not_pinned),
        ("memory/delete_recreate_in_use_slot", delete_recreate),
        ("memory/userfaultfd_guest_faults_resolved", userfaultfd_demand),
    ]
}

const PAGE: usize = 4096;
const CODE: u64 = 0x1000;
/// Slot 1 (the data) at guest-physical 0x10000: real-mode segment 0x1000.
const DATA_GPA: u64 = 0x10000;

/// Reads the dword at offset 0 of the data slot into the PIO data of port
/// 0x10, then halts (the next KVM_RUN): the value the guest sees.
fn guest_read(v: &Vcpu, mem: *mut u8) -> Result<u32, String> {
    // mov ax,0x1000; mov ds,ax; mov eax,[0]; out 0x10,eax; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0x10, 0x8e, 0xd8, 0x66, 0xa1, 0x00, 0x00, 0x66, 0xe7, 0x10, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_IO)?;
    let d = v.io_data();
    let val = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    expect_exit(v, KVM_EXIT_HLT)?;
    Ok(val)
}

/// Writes `val` to the dword at offset 8 of the data slot, then halts.
fn guest_write(v: &Vcpu, mem: *mut u8, val: u32) -> TestResult {
    // mov ax,0x1000; mov ds,ax; mov dword [8],val; hlt
    let mut code = vec![0xb8, 0x00, 0x10, 0x8e, 0xd8, 0x66, 0xc7, 0x06, 0x08, 0x00];
    code.extend_from_slice(&val.to_le_bytes());
    code.push(0xf4);
    poke(mem, 0x1800, &code);
    v.real_mode_at(0x1800)?;
    expect_exit(v, KVM_EXIT_HLT)
}

fn read_u32(p: *mut u8, off: usize) -> u32 {
    // SAFETY: callers pass offsets inside their mapping; volatile: the guest
    // writes the same page concurrently.
    unsafe { p.add(off).cast::<u32>().read_volatile() }
}

fn write_u32(p: *mut u8, off: usize, v: u32) {
    // SAFETY: as above.
    unsafe { p.add(off).cast::<u32>().write_volatile(v) }
}

fn madvise_dontneed(p: *mut u8, len: usize) -> TestResult {
    // SAFETY: the range is our own anonymous mapping.
    let r = unsafe { libc::madvise(p as *mut _, len, libc::MADV_DONTNEED) };
    check!(r == 0, "madvise: {}", std::io::Error::last_os_error());
    Ok(())
}

fn dontneed() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = vm.add_mem(1, DATA_GPA, 0x10000, 0)?;
    let v = vm.vcpu(0)?;
    write_u32(data, 0, 0x5a5a_1234);
    check_eq!(guest_read(&v, mem)?, 0x5a5a_1234);
    madvise_dontneed(data, PAGE)?;
    check_eq!(read_u32(data, 0), 0);
    check_eq!(guest_read(&v, mem)?, 0);
    // The guest now maps whatever page backs the address (possibly the shared
    // zero page); user space's next write replaces it, and the guest follows.
    write_u32(data, 0, 0x0bad_cafe);
    check_eq!(guest_read(&v, mem)?, 0x0bad_cafe);
    // And a guest write lands in user space's page.
    guest_write(&v, mem, 0x1357_9bdf)?;
    check_eq!(read_u32(data, 8), 0x1357_9bdf);
    madvise_dontneed(data, PAGE)?;
    check_eq!(guest_read(&v, mem)?, 0);
    Ok(())
}

/// A memfd of one page filled with `val` at offset 0, mapped shared at
/// `addr` with MAP_FIXED (replacing what was there).
fn map_memfd_fixed(addr: *mut u8, val: u32) -> Result<(), String> {
    // SAFETY: plain system calls on a fresh descriptor; the fixed mapping
    // replaces our own slot memory only.
    unsafe {
        let fd = libc::memfd_create(c"kvm-tests-memory".as_ptr(), 0);
        check!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        let mut page = vec![0u8; PAGE];
        page[..4].copy_from_slice(&val.to_le_bytes());
        let w = libc::write(fd, page.as_ptr() as *const _, PAGE);
        let p = libc::mmap(addr as *mut _, PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_FIXED, fd, 0);
        libc::close(fd);
        check!(w == PAGE as isize, "write memfd");
        check!(p == addr as *mut _, "mmap MAP_FIXED: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn remap_fixed() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = vm.add_mem(1, DATA_GPA, 0x10000, 0)?;
    let v = vm.vcpu(0)?;
    write_u32(data, 0, 0x1111_1111);
    check_eq!(guest_read(&v, mem)?, 0x1111_1111);
    guest_write(&v, mem, 0x2222_2222)?;
    check_eq!(read_u32(data, 8), 0x2222_2222);
    // SAFETY: unmaps the first page of our own slot memory.
    check_eq!(unsafe { libc::munmap(data as *mut _, PAGE) }, 0);
    map_memfd_fixed(data, 0x3333_3333)?;
    check_eq!(guest_read(&v, mem)?, 0x3333_3333);
    // The guest writes the new, shared page.
    guest_write(&v, mem, 0x4444_4444)?;
    check_eq!(read_u32(data, 8), 0x4444_4444);
    // Replaced once more, directly with MAP_FIXED over the live mapping.
    map_memfd_fixed(data, 0x5555_5555)?;
    check_eq!(guest_read(&v, mem)?, 0x5555_5555);
    check_eq!(read_u32(data, 8), 0);
    Ok(())
}

fn discard_race() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = vm.add_mem(1, DATA_GPA, 0x10000, 0)?;
    // mov ax,0x1000; mov ds,ax
    // L: inc dword [0]; cmp byte [0x1000],0; je L
    //    mov eax,[0]; out 0x10,eax; hlt
    poke(
        mem,
        CODE as usize,
        &[
            0xb8, 0x00, 0x10, 0x8e, 0xd8, 0x66, 0xff, 0x06, 0x00, 0x00, 0x80, 0x3e, 0x00, 0x10, 0x00, 0x74, 0xf4, 0x66,
            0xa1, 0x00, 0x00, 0x66, 0xe7, 0x10, 0xf4,
        ],
    );
    let v = vm.vcpu(0)?;
    v.real_mode_at(CODE)?;
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let h = std::thread::spawn(move || -> Result<u32, String> {
        s2.store(true, Ordering::SeqCst);
        expect_exit(&v, KVM_EXIT_IO)?;
        let d = v.io_data();
        Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
    });
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let data_addr = data as usize;
    // Wait until the guest counts, then discard its page many times.
    let t = Instant::now();
    while read_u32(data, 0) == 0 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    check!(read_u32(data, 0) != 0, "the guest did not start counting");
    let mut rounds_seen_progress = 0;
    for round in 0..2000 {
        madvise_dontneed(data_addr as *mut u8, PAGE)?;
        if round % 200 == 199 {
            // The guest keeps counting in user space's (new) page.
            let t = Instant::now();
            while read_u32(data, 0) == 0 && t.elapsed() < Duration::from_secs(10) {
                std::thread::yield_now();
            }
            if read_u32(data, 0) != 0 {
                rounds_seen_progress += 1;
            }
        } else {
            std::thread::yield_now();
        }
    }
    check_eq!(rounds_seen_progress, 10);
    // After the final discard the guest starts over at 0 in the fresh page;
    // let it count a little, then stop it.
    std::thread::sleep(Duration::from_millis(50));
    let before_stop = read_u32(data, 0);
    write_u32(data, 0x1000, 1);
    let guest_count = h.join().map_err(|_| "vcpu thread panicked")??;
    let user_count = read_u32(data, 0);
    check!(
        guest_count == user_count && guest_count >= before_stop,
        "guest counted to {guest_count}, user space sees {user_count} (before the stop {before_stop})"
    );
    Ok(())
}

fn mem_free_kb() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("MemFree:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no MemFree".into())
}

fn not_pinned() -> TestResult {
    const SIZE: usize = 32 << 20;
    const GPA: u64 = 0x10_0000;
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    // Not in vm.mems: this test unmaps it itself.
    let big = anon(SIZE)?;
    check_eq!(vm.set_region(1, GPA, SIZE as u64, big as u64, 0), Ok(0));
    // Flat 32-bit code: mov ebx,GPA; L: mov byte [ebx],1; add ebx,0x1000;
    // cmp ebx,GPA+SIZE; jb L; hlt
    let end = (GPA as u32 + SIZE as u32).to_le_bytes();
    let mut code = vec![0xbb, 0x00, 0x00, 0x10, 0x00, 0xc6, 0x03, 0x01, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xfb];
    code.extend_from_slice(&end);
    code.extend_from_slice(&[0x72, 0xef, 0xf4]);
    poke(mem, CODE as usize, &code);
    let v = vm.vcpu(0)?;
    v.protected_mode_at(CODE)?;
    let free0 = mem_free_kb()?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(peek(big, SIZE - PAGE, 1)[0], 1);
    let free1 = mem_free_kb()?;
    // A loose sanity check only: other processes of the test machine free
    // memory meanwhile too (the munmap check below is the point).
    check!(free0.saturating_sub(free1) >= (SIZE as u64 >> 10) / 4, "the guest's writes allocated only {} kB", free0.saturating_sub(free1));
    // The VM (and its slot) stays; the memory goes back to the system.
    // SAFETY: our own mapping, not used again.
    check_eq!(unsafe { libc::munmap(big as *mut _, SIZE) }, 0);
    let free2 = mem_free_kb()?;
    check!(
        free2.saturating_sub(free1) >= (SIZE as u64 >> 10) / 2,
        "munmap of a 32M slot's memory freed only {} kB while the VM lives (pinned?)",
        free2.saturating_sub(free1)
    );
    drop(v);
    drop(vm);
    Ok(())
}

/// The region of `delete_recreate`: 2M at 2M, as set_memory_region_test's
/// (one large page on hosts that map one).
const REGION_GPA: u64 = 0x20_0000;
const REGION_SIZE: usize = 2 << 20;
/// What user space answers for an MMIO read of the deleted region (the
/// selftest's MMIO_VAL).
const MMIO_VAL: u32 = 0xbeef;
/// The MMIO answer that ends the guest's loop.
const STOP_VAL: u32 = 0x5707;

/// A fresh anonymous 2M mapping at a 2M-aligned address with MADV_HUGEPAGE
/// (the selftest's VM_MEM_SRC_ANONYMOUS_THP); returns (mapping, aligned start).
fn thp_region() -> Result<(*mut u8, *mut u8), String> {
    let raw = anon(2 * REGION_SIZE)?;
    let start = ((raw as usize + REGION_SIZE - 1) & !(REGION_SIZE - 1)) as *mut u8;
    // SAFETY: advice on our own mapping; failure (no THP) changes nothing
    // the test checks.
    unsafe { libc::madvise(start as *mut _, REGION_SIZE, libc::MADV_HUGEPAGE) };
    Ok((raw, start))
}

fn unmap_region(raw: *mut u8) -> TestResult {
    // SAFETY: a mapping made by `thp_region`, not used again.
    check_eq!(unsafe { libc::munmap(raw as *mut _, 2 * REGION_SIZE) }, 0);
    Ok(())
}

fn delete_recreate() -> TestResult {
    const ROUNDS: u32 = 10;
    const STEP_TIMEOUT: Duration = Duration::from_secs(20);
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    // Flat 32-bit code: report every change of the dword at REGION_GPA
    // through port 0x10 (the first value too).
    //     mov ebx,REGION_GPA; mov edx,[ebx]; mov eax,edx; out 0x10,eax
    // L:  mov eax,[ebx]; cmp eax,edx; je L; out 0x10,eax; mov edx,eax; jmp L
    let gpa = (REGION_GPA as u32).to_le_bytes();
    let code = [
        0xbb, gpa[0], gpa[1], gpa[2], gpa[3], 0x8b, 0x13, 0x89, 0xd0, 0xe7, 0x10, 0x8b, 0x03, 0x39, 0xd0, 0x74, 0xfa, 0xe7,
        0x10, 0x89, 0xc2, 0xeb, 0xf4,
    ];
    poke(mem, CODE as usize, &code);
    let (mut raw, start) = thp_region()?;
    // As the selftest: the first pages written by user space (a real huge
    // page), 0.
    poke(start, 0, &[0u8; 2 * PAGE]);
    check_eq!(vm.set_region(1, REGION_GPA, REGION_SIZE as u64, start as u64, 0), Ok(0));
    let v = vm.vcpu(0)?;
    v.protected_mode_at(CODE)?;
    crate::smp::install_usr2();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel::<Result<u32, String>>();
    // The vCPU thread: forwards each reported value; answers MMIO reads of the
    // region with MMIO_VAL (STOP_VAL once asked to stop).
    let h = std::thread::spawn(move || loop {
        let r = match v.run() {
            Ok(KVM_EXIT_IO) if v.io().port == 0x10 => {
                let d = v.io_data();
                Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
            }
            Ok(KVM_EXIT_MMIO) => {
                let m = v.mmio();
                if m.addr != REGION_GPA || m.len != 4 || m.is_write {
                    Err(format!("unexpected MMIO at {:#x} len {} write {}", m.addr, m.len, m.is_write))
                } else {
                    let val = if stop2.load(Ordering::SeqCst) { STOP_VAL } else { MMIO_VAL };
                    v.set_mmio_data(&val.to_le_bytes());
                    continue;
                }
            }
            Ok(other) => {
                let rip = v.regs().map(|r| r.rip).unwrap_or(0);
                Err(format!("unexpected exit {} ({other}) at rip {rip:#x}", exit_name(other)))
            }
            Err(e) => Err(format!("KVM_RUN: errno {e}")),
        };
        let end = !matches!(r, Ok(x) if x != STOP_VAL);
        if tx.send(r).is_err() || end {
            return;
        }
    });
    let next = |what: &str| -> Result<u32, String> {
        match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(r) => r.map_err(|e| format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: the guest reported nothing within {STEP_TIMEOUT:?}")),
        }
    };
    let result = (|| -> TestResult {
        check_eq!(next("start")?, 0);
        for round in 0..ROUNDS {
            // Deleted while the guest reads it: MMIO from now on.
            check_eq!(vm.set_region(1, REGION_GPA, 0, 0, 0), Ok(0));
            unmap_region(raw)?;
            let got = next("after the delete")?;
            check!(got == MMIO_VAL, "round {round}: after the delete the guest read {got:#x}, not MMIO");
            // Created again on a fresh mapping (the same addresses, most
            // likely): even rounds untouched (the guest maps the zero page),
            // odd rounds with a value user space wrote first.
            let (r, start) = thp_region()?;
            raw = r;
            let want = if round % 2 == 0 { 0 } else { 0x1000 + round };
            if want != 0 {
                write_u32(start, 0, want);
            }
            check_eq!(vm.set_region(1, REGION_GPA, REGION_SIZE as u64, start as u64, 0), Ok(0));
            let got = next("after the re-creation")?;
            check!(got == want, "round {round}: after the re-creation the guest read {got:#x}, not {want:#x}");
            // And it follows user space's writes to the new memory.
            let w = 0x2000 + round;
            write_u32(start, 0, w);
            let got = next("after a user-space write")?;
            check!(got == w, "round {round}: after user space wrote {w:#x} the guest read {got:#x}");
        }
        // Deleted once more; then the vCPU thread ends the loop.
        check_eq!(vm.set_region(1, REGION_GPA, 0, 0, 0), Ok(0));
        unmap_region(raw)?;
        check_eq!(next("after the last delete")?, MMIO_VAL);
        stop.store(true, Ordering::SeqCst);
        check_eq!(next("at the stop")?, STOP_VAL);
        Ok(())
    })();
    if result.is_err() {
        // End the vCPU thread wherever it is: its KVM_RUN returns EINTR.
        stop.store(true, Ordering::SeqCst);
        // SAFETY: the thread is not joined yet, so its id is valid.
        unsafe { libc::pthread_kill(std::os::unix::thread::JoinHandleExt::as_pthread_t(&h), libc::SIGUSR2) };
    }
    h.join().map_err(|_| "vcpu thread panicked")?;
    result
}

// userfaultfd's ABI (linux/userfaultfd.h), which the libc crate does not carry.
const UFFD_API: u64 = 0xaa;
const UFFDIO_API: u64 = 0xc018_aa3f;
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
const UFFDIO_COPY: u64 = 0xc028_aa03;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

/// The value user space's fault handler puts at the start of page `k`.
fn uffd_page_value(k: u64) -> u32 {
    0x1000 + k as u32
}

/// Serves missing-page faults on [base, base + len) until `stop`: each page
/// gets `uffd_page_value` of its index at offset 0. Returns the indices served.
fn uffd_serve(uffd: i32, base: u64, len: u64, stop: Arc<AtomicBool>) -> Result<Vec<u64>, String> {
    let mut served = Vec::new();
    let mut page = vec![0u8; PAGE];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd { fd: uffd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd of our own.
        if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
            continue;
        }
        let mut msg = [0u8; 32];
        // SAFETY: reads one struct uffd_msg into a buffer of its size.
        let n = unsafe { libc::read(uffd, msg.as_mut_ptr().cast(), msg.len()) };
        // The descriptor is non-blocking (poll on a blocking userfaultfd only
        // says EPOLLERR): nothing to read yet is no error.
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            continue;
        }
        check_eq!(n, 32);
        check_eq!(msg[0], UFFD_EVENT_PAGEFAULT);
        let addr = u64::from_le_bytes(msg[16..24].try_into().map_err(|_| "msg")?) & !(PAGE as u64 - 1);
        check!(addr >= base && addr < base + len, "fault at {addr:#x} outside the slot");
        let k = (addr - base) / PAGE as u64;
        page[..4].copy_from_slice(&uffd_page_value(k).to_le_bytes());
        // struct uffdio_copy: dst, src, len, mode, copy (result).
        let mut copy = [addr, page.as_ptr() as u64, PAGE as u64, 0, 0];
        // SAFETY: UFFDIO_COPY reads the struct and our page buffer.
        let r = unsafe { libc::ioctl(uffd, UFFDIO_COPY as _, copy.as_mut_ptr()) };
        check!(r == 0, "UFFDIO_COPY at {addr:#x}: {}", std::io::Error::last_os_error());
        served.push(k);
    }
    Ok(served)
}

fn userfaultfd_demand() -> TestResult {
    const PAGES: u64 = 16;
    const GPA: u64 = 0x10_0000;
    let len = PAGES * PAGE as u64;
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = anon(len as usize)?;
    // SAFETY: plain system calls; the descriptor is closed below.
    let uffd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) } as i32;
    check!(uffd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
    let mut api = [UFFD_API, 0, 0];
    // SAFETY: UFFDIO_API on our descriptor with a struct uffdio_api.
    check_eq!(unsafe { libc::ioctl(uffd, UFFDIO_API as _, api.as_mut_ptr()) }, 0);
    // struct uffdio_register: range (start, len), mode, ioctls (result).
    let mut reg = [data as u64, len, UFFDIO_REGISTER_MODE_MISSING, 0];
    // SAFETY: registers our own anonymous mapping.
    let r = unsafe { libc::ioctl(uffd, UFFDIO_REGISTER as _, reg.as_mut_ptr()) };
    check!(r == 0, "UFFDIO_REGISTER: {}", std::io::Error::last_os_error());
    check_eq!(vm.set_region(1, GPA, len, data as u64, 0), Ok(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handler = {
        let stop = stop.clone();
        let base = data as u64;
        std::thread::spawn(move || uffd_serve(uffd, base, len, stop))
    };
    // Flat 32-bit code: xor eax,eax; mov ebx,GPA; L: add eax,[ebx];
    // add ebx,0x1000; cmp ebx,GPA+len; jb L; out 0x10,eax; hlt
    let end = (GPA as u32 + len as u32).to_le_bytes();
    let mut code = vec![0x31, 0xc0, 0xbb, 0x00, 0x00, 0x10, 0x00, 0x03, 0x03, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xfb];
    code.extend_from_slice(&end);
    code.extend_from_slice(&[0x72, 0xf0, 0xe7, 0x10, 0xf4]);
    poke(mem, CODE as usize, &code);
    let v = vm.vcpu(0)?;
    v.protected_mode_at(CODE)?;
    let run = expect_exit(&v, KVM_EXIT_IO).map(|_| {
        let d = v.io_data();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    });
    stop.store(true, Ordering::Relaxed);
    let served = handler.join().map_err(|_| "the fault handler panicked".to_string())?;
    // SAFETY: our descriptor, not used again.
    unsafe { libc::close(uffd) };
    let sum = run?;
    let mut served = served?;
    check_eq!(sum, (0..PAGES).map(uffd_page_value).sum::<u32>());
    served.sort_unstable();
    check_eq!(served, (0..PAGES).collect::<Vec<_>>());
    // The pages are ordinary memory now: user space reads what the guest read.
    check_eq!(read_u32(data, 5 * PAGE), uffd_page_value(5));
    drop(v);
    drop(vm);
    // SAFETY: our own mapping, not used again.
    check_eq!(unsafe { libc::munmap(data as *mut _, len as usize) }, 0);
    Ok(())
}
