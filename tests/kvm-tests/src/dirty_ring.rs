//! The dirty ring (KVM_CAP_DIRTY_LOG_RING / _ACQ_REL), as QEMU's dirty-ring
//! mode and the dirty_log selftests use it: each vCPU has a ring of
//! `struct kvm_dirty_gfn` mapped from its file at page KVM_DIRTY_LOG_PAGE_OFFSET;
//! the first write to a page of a logged slot pushes (slot, offset) with
//! F_DIRTY; user space sets F_RESET on what it harvested and
//! KVM_RESET_DIRTY_RINGS write-protects those pages again and frees the
//! entries; a vCPU whose ring is filled to its soft limit (size less the
//! reserved entries) exits with KVM_EXIT_DIRTY_RING_FULL until user space
//! resets. The ring replaces the bitmap: KVM_GET/CLEAR_DIRTY_LOG answer ENXIO.
//!
//! The tests are named dirty_ring/ rather than vm/, vcpu/ or guest/ so that
//! the Bochs VMX run (tests/vm/vmx.sh filters on those prefixes) does not pick
//! them up: with kvm-intel's PML the reserved entries, the smallest ring and
//! the order of entries (PML flushes its buffer newest first) all differ.

use crate::guest::*;
use crate::guests::get_dirty_log;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("dirty_ring/cap_and_enable_errors", cap),
        ("dirty_ring/vcpu_mmap", ring_mmap),
        ("dirty_ring/guest_writes_collected", collects_writes),
        ("dirty_ring/full_exit_and_resume", full_exit),
        ("dirty_ring/reset_garbage_entries", reset_garbage),
    ]
}

const F_DIRTY: u32 = KVM_DIRTY_GFN_F_DIRTY;
const F_RESET: u32 = KVM_DIRTY_GFN_F_RESET;
const PAGE: usize = 4096;
const GFN_SIZE: usize = std::mem::size_of::<kvm_dirty_gfn>();
/// The ring's offset in the vCPU file.
const RING_PGOFF: usize = KVM_DIRTY_LOG_PAGE_OFFSET as usize;
/// KVM_DIRTY_RING_MAX_ENTRIES (65536) entries of 16 bytes.
const MAX_BYTES: u64 = 65536 * GFN_SIZE as u64;
/// KVM_DIRTY_RING_RSVD_ENTRIES: room kept free past the soft limit.
const RSVD: usize = 64;
const CODE: u64 = 0x1000;
/// The logged slot (slot 1) at 1M.
const DATA_GPA: u64 = 0x10_0000;

fn enable_ring(vm: &Vm, cap: u32, bytes: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap, ..Default::default() };
    c.args[0] = bytes;
    ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c)
}

fn reset_rings(vm: &Vm) -> Result<i64, Errno> {
    ioctl_val(&vm.fd, KVM_RESET_DIRTY_RINGS, 0)
}

/// mmap of the vCPU file; the errno on failure.
fn mmap_vcpu(v: &Vcpu, len: usize, prot: i32, flags: i32, pgoff: usize) -> Result<*mut u8, Errno> {
    // SAFETY: a new mapping of the vCPU file; the caller unmaps it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, v.fd.as_raw_fd(), (pgoff * PAGE) as i64) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(p.cast())
}

fn unmap(p: *mut u8, len: usize) {
    // SAFETY: a mapping made by `mmap_vcpu` and not used again.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Whether the kernel can read `len` bytes at `p` (a write(2) of them to a
/// pipe: EFAULT where a user access would be SIGBUS).
fn kernel_can_read(p: *const u8, len: usize) -> Result<bool, String> {
    let mut fds = [0i32; 2];
    // SAFETY: a new pipe, closed below.
    check_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: write(2) checks the buffer itself.
    let n = unsafe { libc::write(fds[1], p.cast(), len) };
    let e = std::io::Error::last_os_error().raw_os_error();
    // SAFETY: our pipe's descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    match n {
        n if n == len as isize => Ok(true),
        -1 if e == Some(libc::EFAULT) => Ok(false),
        _ => Err(format!("write from the mapping: {n}, errno {e:?}")),
    }
}

/// A vCPU's ring mapped shared, read/write; `next` is user space's fetch index.
struct Ring {
    base: *mut kvm_dirty_gfn,
    entries: usize,
    next: usize,
}

impl Ring {
    fn map(v: &Vcpu, bytes: usize) -> Result<Ring, String> {
        let p = mmap_vcpu(v, bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, RING_PGOFF)
            .map_err(|e| format!("mmap the dirty ring: errno {e}"))?;
        Ok(Ring { base: p.cast(), entries: bytes / GFN_SIZE, next: 0 })
    }

    fn flags(&self, i: usize) -> &AtomicU32 {
        // SAFETY: `i % entries` is inside the mapping; flags is the first,
        // naturally aligned u32 of the entry, which the kernel updates
        // concurrently only while a vCPU runs in another thread (never here).
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*self.base.add(i % self.entries)).flags)) }
    }

    fn entry(&self, i: usize) -> kvm_dirty_gfn {
        // SAFETY: as above; volatile since the kernel writes the page.
        unsafe { self.base.add(i % self.entries).read_volatile() }
    }

    fn set(&self, i: usize, slot: u32, offset: u64) {
        // SAFETY: as above (user space may write anything into its ring).
        unsafe {
            let e = self.base.add(i % self.entries);
            std::ptr::addr_of_mut!((*e).slot).write_volatile(slot);
            std::ptr::addr_of_mut!((*e).offset).write_volatile(offset);
        }
    }

    /// Collects the entries published since the last harvest, as QEMU does:
    /// stop at the first entry without F_DIRTY, mark each harvested one
    /// F_RESET (a release store, so KVM reads it after our reads).
    fn harvest(&mut self) -> Result<Vec<(u32, u64)>, String> {
        let mut got = vec![];
        loop {
            let f = self.flags(self.next).load(Ordering::Acquire);
            if f & F_DIRTY == 0 {
                break;
            }
            check!(f == F_DIRTY, "entry {} flags {f:#x}", self.next);
            let e = self.entry(self.next);
            got.push((e.slot, e.offset));
            self.flags(self.next).store(F_RESET, Ordering::Release);
            self.next += 1;
            check!(got.len() <= self.entries, "every entry of the ring is dirty");
        }
        Ok(got)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        unmap(self.base.cast(), self.entries * GFN_SIZE);
    }
}

/// A VM with the ring (`bytes` per vCPU, through `cap`), code in slot 0
/// (64K at 0), `pages` logged pages as slot 1 at DATA_GPA, one vCPU and its
/// mapped ring.
fn ring_vm(cap: u32, bytes: usize, pages: usize) -> Result<(Vm, Vcpu, Ring, *mut u8, *mut u8), String> {
    let mut vm = Vm::new()?;
    check_eq!(enable_ring(&vm, cap, bytes as u64), Ok(0));
    let code = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = vm.add_mem(1, DATA_GPA, pages * PAGE, KVM_MEM_LOG_DIRTY_PAGES)?;
    let v = vm.vcpu(0)?;
    let ring = Ring::map(&v, bytes)?;
    Ok((vm, v, ring, code, data))
}

/// Runs flat 32-bit code writing `tag` to offset 8 of each listed page of
/// slot 1, in order, then halts.
fn write_pages(v: &Vcpu, code: *mut u8, pages: &[usize], tag: u32) -> TestResult {
    let mut prog = vec![];
    for &p in pages {
        prog.extend_from_slice(&[0xc7, 0x05]); // mov dword [addr], tag
        prog.extend_from_slice(&((DATA_GPA as usize + p * PAGE + 8) as u32).to_le_bytes());
        prog.extend_from_slice(&tag.to_le_bytes());
    }
    prog.push(0xf4); // hlt
    poke(code, CODE as usize, &prog);
    v.protected_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_HLT)
}

fn read_u32(p: *mut u8, off: usize) -> u32 {
    // SAFETY: offsets inside the slot's mapping.
    unsafe { p.add(off).cast::<u32>().read_volatile() }
}

/// (slot 1, offset) entries for `pages`.
fn entries(pages: &[u64]) -> Vec<(u32, u64)> {
    pages.iter().map(|&p| (1, p)).collect()
}

fn cap() -> TestResult {
    let kvm = open_kvm()?;
    // Both flavours, 64K entries of 16 bytes; x86 has no ring-with-bitmap.
    for fd in [&kvm, &Vm::new()?.fd] {
        check_eq!(ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING as u64), Ok(MAX_BYTES as i64));
        check_eq!(ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL as u64), Ok(MAX_BYTES as i64));
        check_eq!(ioctl_val(fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP as u64), Ok(0));
    }
    let caps = [KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_CAP_DIRTY_LOG_RING];
    for (i, &c) in caps.iter().enumerate() {
        let vm = Vm::new()?;
        // Without a ring there is nothing to reset.
        check_eq!(reset_rings(&vm), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, c, 0), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, c, 3 * PAGE as u64), Err(libc::EINVAL)); // not a power of two
        check_eq!(enable_ring(&vm, c, PAGE as u64 + 16), Err(libc::EINVAL));
        // Smaller than a page (1024 bytes are exactly the reserved entries).
        check_eq!(enable_ring(&vm, c, (RSVD * GFN_SIZE) as u64), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, c, 2048), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, c, 2 * MAX_BYTES), Err(libc::E2BIG));
        check_eq!(enable_ring(&vm, c, 1 << 31), Err(libc::E2BIG));
        // The ring with a bitmap is arm64's (NEED_KVM_DIRTY_RING_WITH_BITMAP).
        check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, 1), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, c, MAX_BYTES), Ok(0));
        // Once only, whichever flavour.
        check_eq!(enable_ring(&vm, c, MAX_BYTES), Err(libc::EINVAL));
        check_eq!(enable_ring(&vm, caps[1 - i], PAGE as u64), Err(libc::EINVAL));
        // No vCPU, no ring to reset: nothing cleared.
        check_eq!(reset_rings(&vm), Ok(0));
        // Now the ring with a bitmap is still refused (x86 does not have it).
        check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, 1), Err(libc::EINVAL));
    }
    // Not after a vCPU exists (each vCPU's ring is allocated at creation).
    let vm = Vm::new()?;
    let _v = vm.vcpu(0)?;
    check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, PAGE as u64), Err(libc::EINVAL));
    check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING, PAGE as u64), Err(libc::EINVAL));
    // The ring is one of upstream's generic capabilities, which do not look at
    // kvm_enable_cap.flags (x86's own ones refuse non-zero flags).
    let vm = Vm::new()?;
    let mut c = kvm_enable_cap { cap: KVM_CAP_DIRTY_LOG_RING, flags: 1, ..Default::default() };
    c.args[0] = PAGE as u64;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Ok(0));
    // With the ring, the bitmap interfaces are gone, manual protection or not.
    let mut vm = Vm::new()?;
    let mut m = kvm_enable_cap { cap: KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, ..Default::default() };
    m.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE as u64;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut m), Ok(0));
    check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, PAGE as u64), Ok(0));
    let _mem = vm.add_mem(1, DATA_GPA, 64 * PAGE, KVM_MEM_LOG_DIRTY_PAGES)?;
    check_eq!(get_dirty_log(&vm, 1, 64).map(|_| ()), Err(libc::ENXIO));
    // ENXIO before the slot is even looked up.
    check_eq!(get_dirty_log(&vm, 7, 64).map(|_| ()), Err(libc::ENXIO));
    let mut bitmap = [0u64; 1];
    let mut c = kvm_clear_dirty_log { slot: 1, num_pages: 64, first_page: 0, ..Default::default() };
    c.__bindgen_anon_1.dirty_bitmap = bitmap.as_mut_ptr().cast();
    check_eq!(ioctl_ptr(&vm.fd, KVM_CLEAR_DIRTY_LOG, &mut c), Err(libc::ENXIO));
    Ok(())
}

fn ring_mmap() -> TestResult {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // Without a ring the pages at the ring's offset are not refused at mmap
    // time (upstream checks flags only inside an enabled ring) but are not
    // there: the fault is SIGBUS, a kernel access EFAULT.
    {
        let vm = Vm::new()?;
        let v = vm.vcpu(0)?;
        let p = mmap_vcpu(&v, PAGE, rw, libc::MAP_SHARED, RING_PGOFF).map_err(|e| format!("mmap without a ring: errno {e}"))?;
        let readable = kernel_can_read(p, GFN_SIZE);
        unmap(p, PAGE);
        check_eq!(readable?, false);
    }
    const BYTES: usize = 16 * PAGE;
    let vm = Vm::new()?;
    check_eq!(enable_ring(&vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, BYTES as u64), Ok(0));
    let v = vm.vcpu(0)?;
    let a = Ring::map(&v, BYTES)?;
    let b = Ring::map(&v, BYTES)?;
    // A fresh ring is all invalid entries (flags 0).
    for i in 0..a.entries {
        let e = a.entry(i);
        check!(e.flags == 0 && e.slot == 0 && e.offset == 0, "entry {i} of a fresh ring: {e:?}");
    }
    // Both mappings are the same kernel pages: a write through one shows
    // through the other (put back, since a reset would read it).
    a.set(1000, 0xabcd, 0x1234_5678_9abc);
    let e = b.entry(1000);
    check!(e.slot == 0xabcd && e.offset == 0x1234_5678_9abc, "second mapping reads {e:?}");
    a.set(1000, 0, 0);
    // Executable or private mappings of ring pages are refused, also when
    // only the last page of the range is in the ring.
    let ring_flags = [
        (libc::PROT_READ | libc::PROT_EXEC, libc::MAP_SHARED, RING_PGOFF, PAGE),
        (libc::PROT_READ, libc::MAP_PRIVATE, RING_PGOFF, PAGE),
        (rw, libc::MAP_PRIVATE, RING_PGOFF + 15, PAGE),
        (libc::PROT_READ, libc::MAP_PRIVATE, RING_PGOFF - 1, 2 * PAGE),
    ];
    for (prot, flags, pgoff, len) in ring_flags {
        let r = mmap_vcpu(&v, len, prot, flags, pgoff);
        if let Ok(p) = r {
            unmap(p, len);
        }
        check!(r == Err(libc::EINVAL), "mmap prot {prot:#x} flags {flags:#x} page {pgoff}: {r:?}, expected EINVAL");
    }
    // Outside the ring the same flags are allowed: a private kvm_run page, a
    // private page past the ring (which, like any page there, is not backed).
    let p = mmap_vcpu(&v, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, 0).map_err(|e| format!("private kvm_run: errno {e}"))?;
    unmap(p, PAGE);
    let p = mmap_vcpu(&v, PAGE, libc::PROT_READ, libc::MAP_PRIVATE, RING_PGOFF + 16).map_err(|e| format!("private page past the ring: errno {e}"))?;
    let readable = kernel_can_read(p, GFN_SIZE);
    unmap(p, PAGE);
    check_eq!(readable?, false);
    // The ring's last page maps alone and reads.
    let p = mmap_vcpu(&v, PAGE, libc::PROT_READ, libc::MAP_SHARED, RING_PGOFF + 15).map_err(|e| format!("last ring page: errno {e}"))?;
    let readable = kernel_can_read(p, PAGE);
    unmap(p, PAGE);
    check_eq!(readable?, true);
    Ok(())
}

fn collects_writes() -> TestResult {
    let (vm, v, mut ring, code, data) = ring_vm(KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 16 * PAGE, 64)?;
    // First writes in this order; repeated writes before a reset add nothing.
    write_pages(&v, code, &[7, 2, 9, 2, 0, 7, 63], 0x11)?;
    let got = ring.harvest()?;
    check!(got == entries(&[7, 2, 9, 0, 63]), "ring after the first writes: {got:?}");
    check_eq!(read_u32(data, 63 * PAGE + 8), 0x11);
    // Harvested but not reset: the pages stay writable, no new entry.
    write_pages(&v, code, &[7, 9], 0x12)?;
    check_eq!(ring.harvest()?, vec![]);
    // The reset counts what we marked, invalidates those entries (flags 0)...
    check_eq!(reset_rings(&vm), Ok(5));
    for i in 0..5 {
        check!(ring.entry(i).flags == 0, "entry {i} after the reset: {:?}", ring.entry(i));
    }
    check_eq!(reset_rings(&vm), Ok(0));
    // ...and write-protects the pages again: their next write is logged,
    // after the old entries; a page never written before (40) too.
    write_pages(&v, code, &[2, 40, 7, 2, 40], 0x13)?;
    check_eq!(ring.next, 5);
    let got = ring.harvest()?;
    check!(got == entries(&[2, 40, 7]), "ring after writing again: {got:?}");
    check_eq!(reset_rings(&vm), Ok(3));
    // The pages not rewritten (9, 0, 63) were protected too but are still
    // clean: nothing for them until written.
    write_pages(&v, code, &[63], 0x14)?;
    check!(ring.harvest()? == entries(&[63]));
    check_eq!(reset_rings(&vm), Ok(1));
    check_eq!(read_u32(data, 2 * PAGE + 8), 0x13);
    check_eq!(read_u32(data, 63 * PAGE + 8), 0x14);
    Ok(())
}

fn full_exit() -> TestResult {
    // The smallest ring: one page, 256 entries; the vCPU stops once 256 - 64
    // are used (kvm_dirty_ring_soft_full).
    const BYTES: usize = PAGE;
    const SOFT: usize = BYTES / GFN_SIZE - RSVD;
    const N: usize = 300;
    let (vm, v, mut ring, code, data) = ring_vm(KVM_CAP_DIRTY_LOG_RING, BYTES, 512)?;
    // mov edi,DATA_GPA; mov ecx,N; l: mov [edi],edi; add edi,0x1000; loop l; hlt
    let (g, n) = ((DATA_GPA as u32).to_le_bytes(), (N as u32).to_le_bytes());
    #[rustfmt::skip]
    let prog = [
        0xbf, g[0], g[1], g[2], g[3], 0xb9, n[0], n[1], n[2], n[3],
        0x89, 0x3f, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, 0xe2, 0xf6, 0xf4,
    ];
    poke(code, CODE as usize, &prog);
    v.protected_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_DIRTY_RING_FULL)?;
    let first = ring.harvest()?;
    check!(first.len() == SOFT, "{} entries at KVM_EXIT_DIRTY_RING_FULL, expected the soft limit {SOFT}", first.len());
    check!(first == entries(&(0..SOFT as u64).collect::<Vec<_>>()), "entries {first:?}");
    // Until reset, KVM_RUN exits again at once without running the guest.
    let rip = v.regs()?.rip;
    expect_exit(&v, KVM_EXIT_DIRTY_RING_FULL)?;
    check_eq!(v.regs()?.rip, rip);
    check_eq!(ring.harvest()?, vec![]);
    check_eq!(reset_rings(&vm), Ok(SOFT as i64));
    expect_exit(&v, KVM_EXIT_HLT)?;
    // The write whose fault filled the ring to the soft limit had not been
    // done when the vCPU exited: the reset write-protected its page again, so
    // the retried write logs that page (SOFT - 1) once more, first.
    let rest = ring.harvest()?;
    check!(rest == entries(&(SOFT as u64 - 1..N as u64).collect::<Vec<_>>()), "entries after the reset: {rest:?}");
    check_eq!(reset_rings(&vm), Ok((N - SOFT + 1) as i64));
    for p in [0, SOFT - 1, SOFT, N - 1] {
        check_eq!(read_u32(data, p * PAGE), (DATA_GPA as usize + p * PAGE) as u32);
    }
    // The guest stopped before its last write: page N is untouched.
    check_eq!(read_u32(data, N * PAGE), 0);
    Ok(())
}

fn reset_garbage() -> TestResult {
    let (vm, v, mut ring, code, _data) = ring_vm(KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 16 * PAGE, 64)?;
    write_pages(&v, code, &[1, 2, 3, 4, 5, 6], 0x21)?;
    check!(ring.harvest()? == entries(&[1, 2, 3, 4, 5, 6]));
    // User space owns the ring's contents: rewrite four harvested entries
    // with a slot of an address space without that slot (SMM's, 1 << 16), a
    // slot id beyond KVM_USER_MEM_SLOTS, an offset past the slot's end and
    // one far beyond it; leave entry 4 (page 5) valid; unmark entry 5 (page 6).
    ring.set(0, 1 << 16 | 1, 1);
    ring.set(1, 0xffff, 2);
    ring.set(2, 1, 64);
    ring.set(3, 1, 1 << 40);
    ring.flags(5).store(F_DIRTY, Ordering::Release);
    ring.next = 5;
    // KVM skips what it cannot find, still counts and frees every marked
    // entry, and stops at the first unmarked one.
    check_eq!(reset_rings(&vm), Ok(5));
    for i in 0..5 {
        check!(ring.entry(i).flags == 0, "entry {i} after the reset: {:?}", ring.entry(i));
    }
    check_eq!(ring.entry(5).flags, F_DIRTY);
    // Only page 5 was write-protected again; 1-4 stay writable (their
    // entries named other pages) and 6 is still unreset.
    write_pages(&v, code, &[1, 2, 3, 4, 5, 6], 0x22)?;
    check!(ring.harvest()? == entries(&[6, 5]), "entries {:?}", &[ring.entry(5), ring.entry(6)]);
    // Entries 5 and 6 (pages 6 then 5) reset together, and both pages log again.
    check_eq!(reset_rings(&vm), Ok(2));
    write_pages(&v, code, &[5, 6, 1], 0x23)?;
    let got = ring.harvest()?;
    check!(got == entries(&[5, 6]), "entries after the second reset: {got:?}");
    check_eq!(reset_rings(&vm), Ok(2));
    Ok(())
}
