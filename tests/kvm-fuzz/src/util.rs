//! Shared pieces: the PRNG, raw ioctls, ioctl numbers the uapi crate lacks, bad
//! pointers and argument scratch areas, the watchdog that kicks threads out of
//! long ioctls (KVM_RUN) and reports hangs.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

// ---------------------------------------------------------------- PRNG

/// splitmix64: seeds the per-thread and per-operation generators.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64* seeded through splitmix64 (never zero).
#[derive(Clone)]
pub struct Rng(u64);

pub const BOUNDARY64: &[u64] = &[
    0, 1, 2, 3, 4, 7, 8, 0xf, 0x10, 0x1f, 0x20, 0x3f, 0x40, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0xfff, 0x1000,
    0x7fff, 0x8000, 0xffff, 0x10000, 0xf_ffff, 0x10_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff,
    0x1_0000_0000, 0xfee0_0000, 0xfec0_0000, 0xffff_0000, 0xffff_fff0, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000,
    u64::MAX, u64::MAX - 1, 0xffff_8000_0000_0000, 0x0000_7fff_ffff_f000, 0x0000_8000_0000_0000, 1 << 52, 1 << 40,
];

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let s = splitmix(seed);
        Rng(if s == 0 { 0x1234_5678 } else { s })
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A fresh generator for one operation (its draws do not disturb ours).
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    pub fn u8(&mut self) -> u8 {
        self.next() as u8
    }
    /// Boundary values, small values or anything.
    pub fn val64(&mut self) -> u64 {
        match self.below(10) {
            0..=3 => self.pick(BOUNDARY64),
            4..=6 => self.below(256),
            7 => 1u64 << self.below(64),
            _ => self.next(),
        }
    }
    pub fn val32(&mut self) -> u32 {
        match self.below(10) {
            0..=3 => self.pick(BOUNDARY64) as u32,
            4..=6 => self.below(64) as u32,
            7 => 1u32 << self.below(32),
            _ => self.u32(),
        }
    }
    /// A count for variable-length arrays: small, boundary or huge.
    pub fn count(&mut self, typical: u32) -> u32 {
        match self.below(12) {
            0 => 0,
            1 => 1,
            2 => typical,
            3 => typical + 1,
            4 => typical.saturating_sub(1),
            5 => self.pick(&[255, 256, 257, 1024, 4095, 4096, 4097, 65535, 65536]),
            6 => self.pick(&[0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x1000_0000]),
            _ => self.below(typical as u64 + 8) as u32,
        }
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }
    /// Flips a few bits/bytes of `b` (mutation of a valid structure).
    pub fn mutate(&mut self, b: &mut [u8]) {
        if b.is_empty() {
            return;
        }
        for _ in 0..self.range(1, 4) {
            let i = self.below(b.len() as u64) as usize;
            match self.below(4) {
                0 => b[i] ^= 1 << self.below(8),
                1 => b[i] = self.u8(),
                2 => b[i] = self.pick(&[0, 0xff, 0x80, 0x7f, 1]),
                _ => {
                    let v = self.val64().to_le_bytes();
                    let n = (b.len() - i).min(8);
                    b[i..i + n].copy_from_slice(&v[..n]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- byte buffers

pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// The bytes of a plain-old-data value.
pub fn as_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: T is a plain C struct of integers (uapi types); reading its bytes is fine.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()).to_vec() }
}

// ---------------------------------------------------------------- TCG

/// The test VM's QEMU (7.2, TCG) wrecks the host CPU's state when it enters a
/// nested guest whose EFER has LME set while CR0.PG is clear (the real-mode or
/// protected-mode step before long mode): the CPU keeps running with the guest's
/// CR0 and the whole VM stalls, on upstream's modules as on ours (found with
/// `kvm-fuzz sregs-probe`, KVM_FUZZ_PROBE_EFER=100). The fuzzers therefore never
/// ask for that state: these clear LME where it would come without paging.
pub const EFER_LME: u64 = 0x100;

/// Fixes up a kvm_sregs / kvm_sregs2 image (cr0 at 224, efer at 264).
pub fn tcg_safe_sregs(b: &mut [u8]) {
    let cr0 = u64::from_le_bytes(b[224..232].try_into().unwrap());
    let efer = u64::from_le_bytes(b[264..272].try_into().unwrap());
    if efer & EFER_LME != 0 && cr0 & 0x8000_0000 == 0 {
        b[264..272].copy_from_slice(&(efer & !EFER_LME).to_le_bytes());
    }
}

/// The value for a write of MSR `index`: EFER without LME (the vCPU may not be paging).
pub fn tcg_safe_msr(index: u32, value: u64) -> u64 {
    if index == 0xc000_0080 {
        value & !EFER_LME
    } else {
        value
    }
}

// ---------------------------------------------------------------- ioctls

thread_local! {
    pub static IOCTLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// ioctl returning the result or -errno.
pub fn kioctl(fd: i32, req: u32, arg: u64) -> i64 {
    IOCTLS.with(|c| c.set(c.get() + 1));
    // SAFETY: the argument is an integer, a pointer into one of our scratch areas,
    // or a deliberately bad address; the kernel copes with each.
    let r = unsafe { libc::ioctl(fd, req as libc::c_ulong, arg) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        r as i64
    }
}

pub fn close_fd(fd: i32) {
    if fd > 2 {
        // SAFETY: closing a descriptor this program created and owns.
        unsafe { libc::close(fd) };
    }
}

pub fn errno_name(e: i64) -> String {
    let n = match -e {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        28 => "ENOSPC",
        34 => "ERANGE",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        _ => return format!("-{}", -e),
    };
    n.to_string()
}

pub fn result_str(r: i64) -> String {
    if r < 0 {
        errno_name(r)
    } else {
        r.to_string()
    }
}

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | (0xAE << 8) | nr | ((size as u32) << 16)
}
pub const fn io(nr: u32) -> u32 {
    ioc(0, nr, 0)
}
pub const fn iow(nr: u32, size: usize) -> u32 {
    ioc(1, nr, size)
}
#[allow(dead_code)]
pub const fn ior(nr: u32, size: usize) -> u32 {
    ioc(2, nr, size)
}
pub const fn iowr(nr: u32, size: usize) -> u32 {
    ioc(3, nr, size)
}

/// Requests kvm-uapi's ioctl.rs does not list.
pub mod nr {
    use super::*;
    pub const KVM_CLEAR_DIRTY_LOG: u32 = iowr(0xc0, 24);
    pub const KVM_REGISTER_COALESCED_MMIO: u32 = iow(0x67, 16);
    pub const KVM_UNREGISTER_COALESCED_MMIO: u32 = iow(0x68, 16);
    pub const KVM_CREATE_DEVICE: u32 = iowr(0xe0, 12);
    pub const KVM_SET_DEVICE_ATTR: u32 = iow(0xe1, 24);
    pub const KVM_GET_DEVICE_ATTR: u32 = iow(0xe2, 24);
    pub const KVM_HAS_DEVICE_ATTR: u32 = iow(0xe3, 24);
    pub const KVM_GET_ONE_REG: u32 = iow(0xab, 16);
    pub const KVM_SET_ONE_REG: u32 = iow(0xac, 16);
    pub const KVM_TPR_ACCESS_REPORTING: u32 = iowr(0x92, 40);
    pub const KVM_X86_SET_MSR_FILTER: u32 = iow(0xc6, 392);
    pub const KVM_SET_PMU_EVENT_FILTER: u32 = iow(0xb2, 32);
    pub const KVM_SMI: u32 = io(0xb7);
    pub const KVM_GET_SUPPORTED_HV_CPUID: u32 = iowr(0xc1, 8);
    pub const KVM_SET_MEMORY_ATTRIBUTES: u32 = iow(0xd2, 32);
    pub const KVM_CREATE_GUEST_MEMFD: u32 = iowr(0xd4, 64);
    pub const KVM_PRE_FAULT_MEMORY: u32 = iowr(0xd5, 64);
    pub const KVM_GET_NESTED_STATE: u32 = iowr(0xbe, 128);
    pub const KVM_SET_NESTED_STATE: u32 = iow(0xbf, 128);
    pub const KVM_RESET_DIRTY_RINGS: u32 = io(0xc7);
    pub const KVM_MEMORY_ENCRYPT_OP: u32 = iowr(0xba, 8);
}

// ---------------------------------------------------------------- dirty ring

pub const KVM_CAP_DIRTY_LOG_RING: u32 = 192;
pub const KVM_CAP_DIRTY_LOG_RING_ACQ_REL: u32 = 223;
/// The ring's first page in the vCPU mmap (KVM_DIRTY_LOG_PAGE_OFFSET).
pub const DIRTY_RING_PGOFF: u64 = 64;
pub const F_DIRTY: u32 = 1;
pub const F_RESET: u32 = 2;
/// struct kvm_dirty_gfn { u32 flags; u32 slot; u64 offset; }
pub const GFN_SIZE: usize = 16;
/// Ring sizes (bytes) worth asking for: valid ones and every kind of invalid.
pub const RING_SIZES: &[u64] = &[
    0, 4096, 4096, 8192, 16384, 65536, 65536, 1 << 20, 1 << 20, 2 << 20, 4095, 3 * 4096, 1024, 2048, 1 << 21 | 4096,
    1 << 31, 1 << 32, (1 << 32) | 4096, u64::MAX, 0x8000_0000_0000_1000,
];

/// A random dirty-ring entry: flags, slot ids (other address spaces, slots
/// that do not exist) and offsets (past any slot) user space may write.
pub fn ring_entry(r: &mut Rng) -> [u8; GFN_SIZE] {
    let mut e = [0u8; GFN_SIZE];
    put32(&mut e, 0, r.pick(&[F_RESET, F_RESET, F_RESET, F_DIRTY, F_DIRTY | F_RESET, 0, 4, u32::MAX]));
    put32(&mut e, 4, match r.below(10) {
        0..=4 => r.pick(&[0u32, 0, 5, 5, 1, 3, 4, 6]),
        5..=6 => (1 << 16) | r.pick(&[0u32, 4, 5]),
        7 => r.pick(&[0xffff, 0x1_ffff, 0x2_0000, 0x8000, 32767, 32768]),
        _ => r.val32(),
    });
    put64(&mut e, 8, match r.below(10) {
        0..=4 => r.below(2048),
        5 => r.pick(&[255, 256, 511, 512, 1023, 1024, 2047, 2048, 4096]),
        6 => r.pick(&[u64::MAX, u64::MAX - 62, 1 << 52, 1 << 63, 0xffff_ffff, 0x1_0000_0000]),
        _ => r.val64(),
    });
    e
}

/// KVM_ENABLE_CAP(cap, args[0] = bytes).
pub fn enable_dirty_ring(vm: i32, cap: u32, bytes: u64) -> i64 {
    let mut b = [0u8; 104];
    put32(&mut b, 0, cap);
    put64(&mut b, 8, bytes);
    kioctl(vm, kvm_uapi::ioctl::KVM_ENABLE_CAP, b.as_ptr() as u64)
}

/// /proc/self/mem, opened once: reads and writes through it fault pages in
/// like the kernel's own user copies, so a page that would SIGBUS (a vCPU mmap
/// page past the ring, a hugetlb page the pool cannot supply) makes the call
/// fail instead. (The test kernel lacks process_vm_readv/writev.)
fn self_mem() -> i32 {
    static FD: OnceLock<i32> = OnceLock::new();
    // SAFETY: opens a file we keep for the life of the process.
    *FD.get_or_init(|| unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

/// Copies `b` to our own address `addr` (see [`self_mem`]). Returns the bytes
/// written or -errno.
pub fn self_write(addr: u64, b: &[u8]) -> i64 {
    // SAFETY: the kernel checks the target range; the source is our buffer.
    let r = unsafe { libc::pwrite(self_mem(), b.as_ptr() as *const _, b.len(), addr as i64) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        r as i64
    }
}

/// Reads `n` bytes of our own memory at `addr`; None if it would fault.
pub fn self_read(addr: u64, n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; n];
    // SAFETY: as in self_write.
    let r = unsafe { libc::pread(self_mem(), b.as_mut_ptr() as *mut _, n, addr as i64) };
    if r == n as isize {
        Some(b)
    } else {
        None
    }
}

/// Makes sure `n` free 2M hugetlb pages exist (raises vm.nr_hugepages when we
/// are root); returns whether they do.
pub fn reserve_hugepages(n: u64) -> bool {
    let rd = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";
    const NR: &str = "/proc/sys/vm/nr_hugepages";
    let (Some(free), Some(nr)) = (rd(FREE), rd(NR)) else { return false };
    if free >= n {
        return true;
    }
    let _ = std::fs::write(NR, (nr + n - free).to_string());
    rd(FREE).is_some_and(|f| f >= n)
}

/// `len` bytes of anonymous memory at a 2M-aligned address (a THP candidate,
/// madvise(MADV_HUGEPAGE)), or from the hugetlb pool if `hugetlb`. Null on failure.
pub fn huge_mem(len: usize, hugetlb: bool) -> *mut u8 {
    const H: usize = 2 << 20;
    if hugetlb {
        return mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_HUGETLB | libc::MAP_HUGE_2MB);
    }
    let raw = mmap_anon(len + H, libc::PROT_READ | libc::PROT_WRITE, 0);
    if raw.is_null() {
        return raw;
    }
    let p = ((raw as usize + H - 1) & !(H - 1)) as *mut u8;
    // SAFETY: trims our own mapping to the aligned part and advises it.
    unsafe {
        let head = p as usize - raw as usize;
        if head > 0 {
            libc::munmap(raw as *mut _, head);
        }
        let tail = H - head;
        if tail > 0 {
            libc::munmap(p.add(len) as *mut _, tail);
        }
        libc::madvise(p as *mut _, len, libc::MADV_HUGEPAGE);
    }
    p
}

/// madvise advice for huge-backed memory: zap, collapse, split, re-enable.
pub const MADV_COLLAPSE: i32 = 25;
pub fn huge_advice(r: &mut Rng) -> i32 {
    r.pick(&[libc::MADV_DONTNEED, libc::MADV_DONTNEED, MADV_COLLAPSE, MADV_COLLAPSE, libc::MADV_NOHUGEPAGE, libc::MADV_HUGEPAGE, libc::MADV_HUGEPAGE, libc::MADV_FREE, libc::MADV_COLD, libc::MADV_PAGEOUT])
}

/// A range inside [p, p + len) for madvise: a whole 2M chunk, part of one
/// (splits it), or a range straddling two.
pub fn huge_subrange(r: &mut Rng, p: u64, len: u64) -> (u64, u64) {
    const H: u64 = 2 << 20;
    let chunks = (len / H).max(1);
    let c = p + r.below(chunks) * H;
    match r.below(4) {
        0 => (c, H.min(len)),
        1 => (c + r.below(512) * 4096, 4096 * r.range(1, 8)),
        2 if len > H => (c.min(p + len - H) + H - 4096 * r.range(1, 16), 4096 * r.range(2, 32)),
        _ => (p, len),
    }
}

// ---------------------------------------------------------------- memory

pub fn mmap_anon(len: usize, prot: i32, extra: i32) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra, -1, 0) };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

pub fn mmap_fixed(addr: *mut u8, len: usize, prot: i32) -> bool {
    // SAFETY: replaces pages inside a reservation this program made.
    let p = unsafe {
        libc::mmap(addr as *mut _, len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0)
    };
    p != libc::MAP_FAILED
}

pub const PAGE: usize = 4096;
/// Where argument structures go; a guard page follows so the kernel cannot
/// write past it into the rest of our memory.
pub const SCRATCH_RW: usize = 4 << 20;
/// Inner pointers (dirty bitmaps, ONE_REG values, MSR filter bitmaps) point here.
pub const SCRATCH_INNER: usize = 2 << 20;

/// Addresses that are never valid user buffers.
pub const KERNEL_PTRS: &[u64] =
    &[0xffff_8880_0000_0000, 0xffff_ffff_8100_0000, 0xffff_ffff_ffff_f000, 0x8000_0000_0000_0000, 0xffff_ffff_ffff_ffff, 0x0000_8000_0000_0000, 0x0000_7fff_ffff_fff8];

/// Per-thread argument area: [rw 4 MiB][guard][ro page][guard].
pub struct Scratch {
    pub rw: *mut u8,
    pub guard: *mut u8,
    pub ro: *mut u8,
}

impl Scratch {
    pub fn new() -> Scratch {
        let total = SCRATCH_RW + 3 * PAGE;
        let base = mmap_anon(total, libc::PROT_NONE, libc::MAP_NORESERVE);
        assert!(!base.is_null(), "scratch mmap");
        assert!(mmap_fixed(base, SCRATCH_RW, libc::PROT_READ | libc::PROT_WRITE));
        // SAFETY: offsets inside the mapping above.
        let (guard, ro) = unsafe { (base.add(SCRATCH_RW), base.add(SCRATCH_RW + PAGE)) };
        assert!(mmap_fixed(ro, PAGE, libc::PROT_READ));
        Scratch { rw: base, guard, ro }
    }

    pub fn inner(&self) -> u64 {
        self.rw as u64 + SCRATCH_INNER as u64
    }

    /// A pointer for an inner buffer of the kernel's: mostly good, sometimes bad.
    pub fn inner_ptr(&self, r: &mut Rng) -> u64 {
        match r.below(20) {
            0 => 0,
            1 => self.guard as u64,
            2 => r.pick(KERNEL_PTRS),
            3 => self.ro as u64,
            4 => self.rw as u64 + SCRATCH_RW as u64 - r.range(1, 64),
            _ => self.inner(),
        }
    }

    /// Copies `bytes` to where the ioctl's argument pointer will point: usually
    /// the start of the rw area, sometimes NULL, unmapped, a kernel address, the
    /// read-only page (for ioctls that write back), straddling the guard page, or
    /// misaligned. `det`: no choice that depends on anything but `r`.
    pub fn place(&mut self, r: &mut Rng, bytes: &[u8]) -> u64 {
        let len = bytes.len();
        let kind = r.below(100);
        let dst: *mut u8 = match kind {
            0..=2 => return 0,
            3..=4 => return self.guard as u64,
            5..=6 => return r.pick(KERNEL_PTRS),
            7..=8 if len <= PAGE => {
                // SAFETY: our read-only page, made writable for the copy.
                unsafe {
                    libc::mprotect(self.ro as *mut _, PAGE, libc::PROT_READ | libc::PROT_WRITE);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ro, len);
                    libc::mprotect(self.ro as *mut _, PAGE, libc::PROT_READ);
                }
                return self.ro as u64;
            }
            9..=10 if len > 1 && len < SCRATCH_INNER => {
                // The tail of the structure lies in the guard page.
                let cut = r.range(1, len as u64 - 1) as usize;
                // SAFETY: the copied part lies inside the rw area.
                unsafe {
                    let p = self.rw.add(SCRATCH_RW - cut);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, cut);
                    return p as u64;
                }
            }
            // SAFETY: inside the rw area.
            11 => unsafe { self.rw.add(r.range(1, 7) as usize) },
            _ => self.rw,
        };
        let n = len.min(SCRATCH_INNER);
        // SAFETY: dst + n lies inside the rw area.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n) };
        dst as u64
    }

    /// Like `place` but always the valid rw area (for the follow-up of a GET).
    pub fn place_good(&mut self, bytes: &[u8]) -> u64 {
        let n = bytes.len().min(SCRATCH_INNER);
        // SAFETY: inside the rw area.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.rw, n) };
        self.rw as u64
    }

    pub fn read(&self, n: usize) -> Vec<u8> {
        // SAFETY: inside the rw area.
        unsafe { std::slice::from_raw_parts(self.rw, n.min(SCRATCH_RW)).to_vec() }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.rw as *mut _, SCRATCH_RW + 3 * PAGE) };
    }
}

// ---------------------------------------------------------------- signals

extern "C" fn on_kick(_: libc::c_int) {}

/// SIGUSR1 interrupts blocking ioctls (no SA_RESTART) and does nothing else.
pub fn install_kick_handler() {
    // SAFETY: installing a handler that does nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        // A closed eventfd/pipe must not kill us.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

// ---------------------------------------------------------------- watchdog

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64 + 1
}

/// What a worker is doing, for the watchdog.
pub struct Slot {
    pub busy_since: AtomicU64,
    pub op_index: AtomicU64,
    pub op_name: AtomicUsize,
    pub tid: AtomicU64,
    pub run_page: AtomicUsize,
    pub kicks: AtomicU64,
    pub last_kick: AtomicU64,
    pub done: AtomicBool,
}

impl Slot {
    pub fn new() -> Slot {
        Slot {
            busy_since: AtomicU64::new(0),
            op_index: AtomicU64::new(0),
            op_name: AtomicUsize::new(0),
            tid: AtomicU64::new(0),
            run_page: AtomicUsize::new(0),
            kicks: AtomicU64::new(0),
            last_kick: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }
    pub fn register(&self) {
        // SAFETY: pthread_self has no preconditions.
        self.tid.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    }
    pub fn begin(&self, index: u64, name: usize) {
        self.op_index.store(index, Ordering::Relaxed);
        self.op_name.store(name, Ordering::Relaxed);
        self.busy_since.store(now_ms(), Ordering::SeqCst);
    }
    pub fn end(&self) {
        self.busy_since.store(0, Ordering::SeqCst);
    }
}

/// Runs until all workers are done. Past `deadline_ms` it sets `stop` and kicks
/// every busy worker; any op busy for more than `kick_ms` is kicked (SIGUSR1, and
/// immediate_exit if the worker published its run page); an op busy for more than
/// `hang_ms` is a hang: reported, and the process exits with status 3.
pub fn watchdog(slots: &[Slot], names: &[&str], stop: &AtomicBool, deadline_ms: u64, kick_ms: u64, hang_ms: u64, label: &str) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let now = now_ms();
        if now >= deadline_ms {
            stop.store(true, Ordering::SeqCst);
        }
        let stopping = stop.load(Ordering::SeqCst);
        let mut all_done = true;
        for (i, s) in slots.iter().enumerate() {
            if s.done.load(Ordering::SeqCst) {
                continue;
            }
            all_done = false;
            let since = s.busy_since.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            let age = now.saturating_sub(since);
            if age >= hang_ms {
                let name = names.get(s.op_name.load(Ordering::Relaxed)).copied().unwrap_or("?");
                println!(
                    "HANG {label} thread {i} op #{} {name}: still in the kernel after {:.1} s despite {} kicks",
                    s.op_index.load(Ordering::Relaxed),
                    age as f64 / 1000.0,
                    s.kicks.load(Ordering::Relaxed)
                );
                for (j, o) in slots.iter().enumerate() {
                    let b = o.busy_since.load(Ordering::SeqCst);
                    if j != i && b != 0 {
                        let n = names.get(o.op_name.load(Ordering::Relaxed)).copied().unwrap_or("?");
                        println!("  thread {j} op #{} {n} busy {:.1} s", o.op_index.load(Ordering::Relaxed), now.saturating_sub(b) as f64 / 1000.0);
                    }
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
            if (age >= kick_ms || stopping) && now.saturating_sub(s.last_kick.load(Ordering::Relaxed)) >= 50 {
                s.last_kick.store(now, Ordering::Relaxed);
                let rp = s.run_page.load(Ordering::SeqCst);
                if rp != 0 {
                    // SAFETY: the worker keeps the run page mapped while it publishes it;
                    // immediate_exit is byte 1 of struct kvm_run.
                    unsafe { std::ptr::write_volatile((rp as *mut u8).add(1), 1) };
                }
                s.kicks.fetch_add(1, Ordering::Relaxed);
                // SAFETY: the thread is alive (it has not set `done`).
                unsafe { libc::pthread_kill(s.tid.load(Ordering::SeqCst) as libc::pthread_t, libc::SIGUSR1) };
            }
        }
        if all_done {
            return;
        }
    }
}
