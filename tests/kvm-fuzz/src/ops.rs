//! The ioctl fuzzer's world (VMs, vCPUs, eventfds and guest RAM shared by all
//! threads, by fd number) and its operations. `kvm-fuzz ioctl` runs them from
//! many threads; `kvm-fuzz diff` runs the deterministic subset from one thread
//! and prints each call's result.

use crate::gen;
use crate::util::*;
use kvm_uapi::ioctl::*;
use kvm_uapi::KVM_MEM_LOG_DIRTY_PAGES;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub const NVM: usize = 4;
pub const NVCPU: usize = 4;
pub const NEFD: usize = 8;

/// `--trace`: also print each structured ioctl's argument bytes.
pub static TRACE_ARGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With `--trace`: what an op did beyond its main call.
macro_rules! tr {
    ($($a:tt)*) => {
        if TRACE_ARGS.load(Ordering::Relaxed) {
            println!("  {}", format!($($a)*));
        }
    };
}

// ---------------------------------------------------------------- objects

pub struct VcpuObj {
    pub fd: AtomicI32,
    pub run: usize,
    pub map_size: usize,
    /// The dirty ring's pages mapped (MAP_SHARED) from the vCPU at page 64, if
    /// its VM enabled one; touched only through self_read/self_write (a wrong
    /// idea of the ring's size then costs an EFAULT, not a SIGBUS).
    pub ring: usize,
    pub ring_len: usize,
}

impl Drop for VcpuObj {
    fn drop(&mut self) {
        close_fd(self.fd.swap(-1, Ordering::SeqCst));
        if self.run != 0 {
            // SAFETY: the vCPU mapping made in `new_vcpu`; nobody holds the Arc any more.
            unsafe { libc::munmap(self.run as *mut _, self.map_size) };
        }
        if self.ring != 0 {
            // SAFETY: the ring mapping made in `wrap_vcpu`.
            unsafe { libc::munmap(self.ring as *mut _, self.ring_len) };
        }
    }
}

/// A memory slot on huge-page-backed memory (`huge_slot`), for `toggle_dirty_log`.
#[derive(Clone, Copy)]
pub struct HugeSlot {
    pub slot: u32,
    pub flags: u32,
    pub gpa: u64,
    pub size: u64,
    pub hva: u64,
}

pub struct VmObj {
    pub fd: AtomicI32,
    pub vcpus: Vec<Mutex<Option<Arc<VcpuObj>>>>,
    /// Bytes per vCPU dirty ring, once KVM_ENABLE_CAP succeeded through this object.
    pub ring_bytes: AtomicU32,
    pub huge: Mutex<Option<HugeSlot>>,
}

impl VmObj {
    fn new(fd: i32) -> VmObj {
        VmObj { fd: AtomicI32::new(fd), vcpus: (0..NVCPU).map(|_| Mutex::new(None)).collect(), ring_bytes: AtomicU32::new(0), huge: Mutex::new(None) }
    }
}

impl Drop for VmObj {
    fn drop(&mut self) {
        close_fd(self.fd.swap(-1, Ordering::SeqCst));
    }
}

/// Guest RAM: regions inside one large PROT_NONE reservation, so that a memory
/// slot larger than its region covers only inaccessible pages of ours (never
/// our heap or stacks, which a guest could otherwise scribble on).
pub struct Pool {
    pub base: u64,
    pub reserve: u64,
    /// (offset, length, writable)
    pub regions: Vec<(u64, u64, bool)>,
    /// The 2M-aligned region madvised MADV_HUGEPAGE (THP), (offset, length).
    pub thp: (u64, u64),
    /// A region from the hugetlb pool (MAP_HUGETLB), if pages could be reserved.
    pub hugetlb: Option<(u64, u64)>,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
/// Above this, a slot's end is past TASK_SIZE and the kernel must refuse it.
const BEYOND_USER: u64 = 1 << 47;

impl Pool {
    pub fn new(r: &mut Rng) -> Pool {
        let mut reserve = 32 * TIB;
        let mut raw = std::ptr::null_mut();
        while reserve >= 64 * GIB {
            raw = mmap_anon((reserve + 2 * MIB) as usize, libc::PROT_NONE, libc::MAP_NORESERVE);
            if !raw.is_null() {
                break;
            }
            reserve /= 2;
        }
        assert!(!raw.is_null(), "cannot reserve guest RAM address space");
        let base = (raw as u64 + 2 * MIB - 1) & !(2 * MIB - 1);
        let mut regions = vec![
            (0, 2 * MIB, true),
            (4 * MIB, MIB, true),
            (8 * MIB, 64 << 10, true),
            (16 * MIB, 64 * MIB, true),
            (96 * MIB, MIB, false),
            (100 * MIB, 4 * MIB, true),
            (112 * MIB, 8 * MIB, true),
        ];
        let thp = (112 * MIB, 8 * MIB);
        // Two pages for the region and spares for refaults after MADV_DONTNEED.
        let hugetlb = if reserve_hugepages(6) { Some((128 * MIB, 4 * MIB)) } else { None };
        if let Some((off, len)) = hugetlb {
            // SAFETY: inside our reservation (2M-aligned).
            let q = unsafe {
                libc::mmap((base + off) as *mut _, len as usize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB, -1, 0)
            };
            if q != libc::MAP_FAILED {
                regions.push((off, len, true));
            }
        }
        let hugetlb = hugetlb.filter(|h| regions.iter().any(|r| r.0 == h.0));
        for &(off, len, w) in &regions {
            let p = (base + off) as *mut u8;
            if Some((off, len)) == hugetlb {
                let code = gen::code(r, MIB as usize);
                // SAFETY: the hugetlb region was just mapped writable.
                unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p, code.len()) };
                continue;
            }
            let extra = if len > 8 * MIB { libc::MAP_NORESERVE } else { 0 };
            // SAFETY: inside our reservation.
            let q = unsafe {
                libc::mmap(p as *mut _, len as usize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | extra, -1, 0)
            };
            assert!(q != libc::MAP_FAILED);
            let fill = len.min(MIB) as usize;
            let code = gen::code(r, fill);
            // SAFETY: the region was just mapped writable.
            unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), p, fill) };
            if !w {
                // SAFETY: as above.
                unsafe { libc::mprotect(p as *mut _, len as usize, libc::PROT_READ) };
            }
        }
        // SAFETY: 2 MiB-aligned region 0 may use huge pages.
        unsafe { libc::madvise(base as *mut _, (2 * MIB) as usize, libc::MADV_HUGEPAGE) };
        // SAFETY: the THP region, likewise.
        unsafe { libc::madvise((base + thp.0) as *mut _, thp.1 as usize, libc::MADV_HUGEPAGE) };
        Pool { base, reserve, regions, thp, hugetlb }
    }
}

pub struct Shared {
    pub kvm: i32,
    pub vms: Vec<Mutex<Option<Arc<VmObj>>>>,
    pub efds: Vec<AtomicI32>,
    pub pool: Pool,
    pub mmap_size: usize,
    /// KVM_GET_SUPPORTED_CPUID's entries (40 bytes each).
    pub cpuid: Vec<u8>,
    pub det: bool,
}

fn new_efd() -> i32 {
    // SAFETY: creates a descriptor we own.
    unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }
}

impl Shared {
    pub fn new(seed: u64, det: bool) -> Shared {
        // SAFETY: opening /dev/kvm.
        let kvm = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if kvm < 0 {
            eprintln!("kvm-fuzz: open /dev/kvm: {}", std::io::Error::last_os_error());
            std::process::exit(2);
        }
        let mmap_size = match kioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0) {
            n if n > 0 => n as usize,
            _ => 3 * PAGE,
        };
        let mut buf = vec![0u8; 8 + 40 * 256];
        put32(&mut buf, 0, 256);
        let n = if kioctl(kvm, KVM_GET_SUPPORTED_CPUID, buf.as_mut_ptr() as u64) == 0 { get32(&buf, 0) as usize } else { 0 };
        let cpuid = buf[8..8 + 40 * n.min(256)].to_vec();
        let mut r = Rng::new(seed ^ 0x5eed_0f_9001);
        Shared {
            kvm,
            vms: (0..if det { 1 } else { NVM }).map(|_| Mutex::new(None)).collect(),
            efds: (0..NEFD).map(|_| AtomicI32::new(new_efd())).collect(),
            pool: Pool::new(&mut r),
            mmap_size,
            cpuid,
            det,
        }
    }

    pub fn cpuid2(&self) -> Vec<u8> {
        let n = self.cpuid.len() / 40;
        let mut b = vec![0u8; 8];
        put32(&mut b, 0, n as u32);
        b.extend_from_slice(&self.cpuid);
        b
    }

    /// A VM with RAM at 0 (2 MiB, region 0) and vCPU 0 mapped; optionally an irqchip.
    pub fn standard_vm(&self, irqchip: bool, cpuid: bool) -> Option<Arc<VmObj>> {
        let fd = kioctl(self.kvm, KVM_CREATE_VM, 0);
        if fd < 0 {
            return None;
        }
        let vm = Arc::new(VmObj::new(fd as i32));
        let reg = kvm_uapi::kvm_userspace_memory_region { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 2 * MIB, userspace_addr: self.pool.base };
        kioctl(fd as i32, KVM_SET_USER_MEMORY_REGION, &reg as *const _ as u64);
        if irqchip {
            kioctl(fd as i32, KVM_CREATE_IRQCHIP, 0);
        }
        if let Some(v) = self.new_vcpu(fd as i32, 0, true, 0) {
            if cpuid {
                let b = self.cpuid2();
                kioctl(v.fd.load(Ordering::SeqCst), KVM_SET_CPUID2, b.as_ptr() as u64);
            }
            *vm.vcpus[0].lock().unwrap() = Some(Arc::new(v));
        }
        Some(vm)
    }

    pub fn new_vcpu(&self, vmfd: i32, id: u64, map: bool, ring_bytes: u32) -> Option<VcpuObj> {
        let fd = kioctl(vmfd, KVM_CREATE_VCPU, id);
        if fd < 0 {
            return None;
        }
        Some(self.wrap_vcpu(fd as i32, map, ring_bytes))
    }

    fn wrap_vcpu(&self, fd: i32, map: bool, ring_bytes: u32) -> VcpuObj {
        let mut ring = 0;
        let ring_len = ring_bytes as usize;
        if map && ring_len != 0 {
            // SAFETY: maps the vCPU's dirty ring pages.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), ring_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, (DIRTY_RING_PGOFF * 4096) as i64) };
            if p != libc::MAP_FAILED {
                ring = p as usize;
            }
        }
        let mut run = 0;
        if map {
            // SAFETY: maps the vCPU file as the KVM API documents.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), self.mmap_size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
            if p != libc::MAP_FAILED {
                run = p as usize;
            }
        }
        VcpuObj { fd: AtomicI32::new(fd), run, map_size: self.mmap_size, ring, ring_len }
    }
}

// ---------------------------------------------------------------- operations

/// (name, weight in the ioctl fuzzer, weight in the diff run; 0 = never)
pub const OPS: &[(&str, u32, u32)] = &[
    ("get_api_version", 1, 1),
    ("check_extension", 3, 0),
    ("get_vcpu_mmap_size", 1, 1),
    ("get_msr_index_list", 2, 2),
    ("get_msr_feature_index_list", 2, 2),
    ("get_supported_cpuid", 2, 2),
    ("get_emulated_cpuid", 2, 2),
    ("get_supported_hv_cpuid", 1, 1),
    ("sys_get_msrs", 2, 2),
    ("sys_device_attr", 1, 1),
    ("get_mce_cap_supported", 1, 1),
    ("sys_random_ioctl", 3, 3),
    ("create_vm", 3, 1),
    ("setup_vm", 4, 0),
    ("create_vcpu", 4, 2),
    ("set_user_memory_region", 12, 6),
    ("set_user_memory_region2", 4, 3),
    ("get_dirty_log", 3, 2),
    ("clear_dirty_log", 2, 2),
    ("set_tss_addr", 1, 1),
    ("set_identity_map_addr", 1, 1),
    ("set_nr_mmu_pages", 1, 1),
    ("get_nr_mmu_pages", 1, 0),
    ("create_irqchip", 3, 2),
    ("irq_line", 4, 2),
    ("irq_line_status", 2, 2),
    ("get_irqchip", 2, 2),
    ("set_irqchip", 3, 2),
    ("create_pit", 1, 1),
    ("create_pit2", 2, 2),
    ("get_pit", 1, 1),
    ("set_pit", 1, 1),
    ("get_pit2", 1, 1),
    ("set_pit2", 2, 2),
    ("reinject_control", 1, 1),
    ("set_boot_cpu_id", 1, 1),
    ("set_gsi_routing", 5, 3),
    ("irqfd", 5, 2),
    ("ioeventfd", 4, 2),
    ("signal_msi", 4, 2),
    ("get_clock", 1, 1),
    ("set_clock", 1, 1),
    ("vm_tsc_khz", 1, 1),
    ("enable_cap_vm", 3, 2),
    ("check_extension_vm", 1, 0),
    ("coalesced_mmio", 2, 2),
    ("create_device", 1, 1),
    ("get_stats_fd", 1, 1),
    ("set_msr_filter", 2, 2),
    ("set_pmu_event_filter", 1, 1),
    ("set_memory_attributes", 1, 1),
    ("create_guest_memfd", 1, 1),
    ("reset_dirty_rings", 2, 1),
    ("enable_dirty_ring", 3, 2),
    ("ring_vm", 2, 1),
    ("mmap_ring", 3, 2),
    ("scribble_ring", 3, 1),
    ("harvest_ring", 2, 1),
    ("ring_dirty_log", 2, 2),
    ("huge_slot", 3, 1),
    ("toggle_dirty_log", 4, 1),
    ("memory_encrypt_op", 1, 1),
    ("vm_device_attr", 1, 1),
    ("vm_random_ioctl", 3, 3),
    ("vm_close", 1, 0),
    ("vm_drop", 1, 0),
    ("run", 20, 1),
    ("get_regs", 1, 1),
    ("set_regs", 4, 2),
    ("get_sregs", 1, 1),
    ("set_sregs", 5, 3),
    ("get_sregs2", 1, 1),
    ("set_sregs2", 2, 2),
    ("get_fpu", 1, 1),
    ("set_fpu", 1, 1),
    ("get_xsave", 1, 1),
    ("set_xsave", 2, 2),
    ("get_xsave2", 1, 1),
    ("get_xcrs", 1, 1),
    ("set_xcrs", 2, 2),
    ("get_msrs", 3, 2),
    ("set_msrs", 5, 3),
    ("set_cpuid2", 4, 2),
    ("get_cpuid2", 1, 1),
    ("set_cpuid", 1, 1),
    ("interrupt", 2, 1),
    ("nmi", 2, 1),
    ("smi", 1, 1),
    ("get_lapic", 1, 1),
    ("set_lapic", 4, 2),
    ("set_vapic_addr", 1, 1),
    ("set_signal_mask", 1, 1),
    ("get_mp_state", 1, 1),
    ("set_mp_state", 3, 2),
    ("get_debugregs", 1, 1),
    ("set_debugregs", 2, 2),
    ("get_vcpu_events", 1, 1),
    ("set_vcpu_events", 3, 2),
    ("set_guest_debug", 2, 2),
    ("translate", 1, 1),
    ("setup_mce", 1, 1),
    ("set_mce", 1, 1),
    ("kvmclock_ctrl", 1, 1),
    ("vcpu_tsc_khz", 1, 1),
    ("one_reg", 1, 1),
    ("get_nested_state", 1, 1),
    ("set_nested_state", 1, 1),
    ("tpr_access_reporting", 1, 1),
    ("enable_cap_vcpu", 1, 1),
    ("pre_fault_memory", 1, 1),
    ("vcpu_random_ioctl", 3, 3),
    ("vcpu_close", 1, 0),
    ("vcpu_drop", 1, 0),
    ("poke_run_page", 2, 0),
    ("poke_ram", 3, 0),
    ("remap_ram", 1, 0),
    ("madvise_ram", 1, 0),
    ("madvise_huge", 3, 0),
    ("touch_huge", 3, 0),
    ("efd_signal", 2, 0),
    ("efd_recycle", 1, 0),
];

pub fn op_names() -> Vec<&'static str> {
    OPS.iter().map(|o| o.0).collect()
}

/// Restricts the ioctl fuzzer to some ops (`--ops a,b,c`; `--ops -a,b` = all but these).
pub static ONLY: std::sync::OnceLock<(bool, Vec<String>)> = std::sync::OnceLock::new();

/// Picks an op index by weight (column 1 for the fuzzer, 2 for diff).
pub fn pick_op(r: &mut Rng, det: bool) -> usize {
    let only = ONLY.get();
    let w = |o: &(&str, u32, u32)| {
        let w = if det { o.2 } else { o.1 } as u64;
        match only {
            Some((neg, list)) if list.iter().any(|n| n == o.0) == *neg => 0,
            _ => w,
        }
    };
    let total: u64 = OPS.iter().map(w).sum();
    let mut x = r.below(total);
    for (i, o) in OPS.iter().enumerate() {
        if x < w(o) {
            return i;
        }
        x -= w(o);
    }
    0
}

/// A worker's context: the shared world, its scratch area and the current op's
/// random generator.
pub struct Ctx<'a> {
    pub sh: &'a Shared,
    pub sc: Scratch,
    pub r: Rng,
    /// Set by ops whose result is a new descriptor (printed as `fd` by diff).
    pub returns_fd: bool,
}

/// What `run_op` says about a call for the diff output.
pub struct OpResult {
    pub res: i64,
    pub fd: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(sh: &'a Shared) -> Ctx<'a> {
        Ctx { sh, sc: Scratch::new(), r: Rng::new(0), returns_fd: false }
    }

    fn det(&self) -> bool {
        self.sh.det
    }

    fn vm_slot(&mut self) -> usize {
        self.r.below(self.sh.vms.len() as u64) as usize
    }

    fn vm(&mut self) -> (i32, Option<Arc<VmObj>>) {
        if !self.det() && self.r.chance(2) {
            return (self.wrong_fd(), None);
        }
        let i = self.vm_slot();
        let vm = self.sh.vms[i].lock().unwrap().clone();
        let fd = vm.as_ref().map(|v| v.fd.load(Ordering::SeqCst)).unwrap_or(-1);
        (fd, vm)
    }

    fn vcpu(&mut self) -> (i32, Option<Arc<VcpuObj>>) {
        if !self.det() && self.r.chance(2) {
            return (self.wrong_fd(), None);
        }
        let i = self.vm_slot();
        let j = if self.det() { 0 } else { self.r.below(NVCPU as u64) as usize };
        let vm = self.sh.vms[i].lock().unwrap().clone();
        let v = vm.and_then(|vm| vm.vcpus[j].lock().unwrap().clone());
        let fd = v.as_ref().map(|v| v.fd.load(Ordering::SeqCst)).unwrap_or(-1);
        (fd, v)
    }

    fn wrong_fd(&mut self) -> i32 {
        match self.r.below(4) {
            0 => self.sh.kvm,
            1 => self.efd(),
            2 => -1,
            _ => self.r.below(64) as i32,
        }
    }

    fn efd(&mut self) -> i32 {
        self.sh.efds[self.r.below(NEFD as u64) as usize].load(Ordering::SeqCst)
    }

    /// An fd argument inside a structure: mostly one of our eventfds.
    fn fd_arg(&mut self) -> u32 {
        match self.r.below(20) {
            0 => u32::MAX,
            1 => self.sh.kvm as u32,
            2 => 100_000,
            3 if !self.det() => self.r.below(64) as u32,
            _ => self.efd() as u32,
        }
    }

    /// Issues `req` on `fd` with `bytes` placed (maybe badly) in scratch.
    fn call(&mut self, fd: i32, req: u32, bytes: &[u8]) -> i64 {
        let p = self.sc.place(&mut self.r, bytes);
        if TRACE_ARGS.load(Ordering::Relaxed) {
            let hex: String = bytes.iter().take(512).map(|b| format!("{b:02x}")).collect();
            let at = if p == self.sc.rw as u64 { "buf".to_string() } else { format!("{p:#x}") };
            println!("  ioctl {req:#x} fd {fd} arg {at} {hex}");
        }
        kioctl(fd, req, p)
    }

    /// GET into a good buffer, returning the bytes (for get-mutate-set).
    fn get(&mut self, fd: i32, req: u32, len: usize) -> Option<Vec<u8>> {
        let p = self.sc.place_good(&vec![0u8; len]);
        if kioctl(fd, req, p) < 0 {
            return None;
        }
        Some(self.sc.read(len))
    }

    fn pool_hva(&mut self, rw_only: bool) -> (u64, u64) {
        let regs: Vec<_> = self.sh.pool.regions.iter().filter(|r| !rw_only || r.2).copied().collect();
        let (off, len, _) = self.r.pick(&regs);
        (self.sh.pool.base + off, len)
    }

    fn memslot(&mut self, v2: bool) -> Vec<u8> {
        let r = &mut self.r;
        let slot = match r.below(10) {
            0..=5 => r.below(4) as u32,
            6 => r.below(4) as u32 | (1 << 16),
            7 => r.pick(&[509, 510, 511, 512, 32763, 32764, 32765, 0x7fff, 0xffff]),
            8 => r.val32(),
            _ => r.below(16) as u32,
        };
        let flags = match r.below(20) {
            0..=11 => 0,
            12..=14 => 1,
            15..=16 => 2,
            17 => 4,
            18 => 3,
            _ => r.val32(),
        };
        let (hva_base, rlen) = {
            let (b, l) = {
                let regs = &self.sh.pool.regions;
                let (off, len, _) = regs[self.r.below(regs.len() as u64) as usize];
                (self.sh.pool.base + off, len)
            };
            (b, l)
        };
        let r = &mut self.r;
        let mut hva = match r.below(20) {
            0..=15 => hva_base + (r.below(rlen / 4096) * 4096) * (r.below(2)),
            16 => self.sh.pool.base + 200 * MIB + r.below(1024) * 4096, // reserved, inaccessible
            17 => r.pick(KERNEL_PTRS),
            18 => hva_base + r.range(1, 4095),
            _ => r.val64(),
        };
        let mut size = match r.below(20) {
            0..=2 => 0,
            3..=10 => rlen - (hva.saturating_sub(hva_base) % rlen),
            11..=12 => r.pick(&[0x1000, 0x2000, 0x20_0000, 0x10_0000, 0x40_0000]),
            13 => r.pick(&[GIB, 64 * GIB]),
            14 => TIB,
            15 if r.chance(10) => 16 * TIB,
            16 => r.pick(&[BEYOND_USER, 1 << 50, u64::MAX & !0xfff, 1 << 63]),
            17 => r.val64(),
            _ => r.below(512) * 4096,
        };
        let gpa = match r.below(10) {
            0..=4 => r.pick(&[0u64, 0x10_0000, 0xf_0000, 0xc_0000, 0xfee0_0000, 0xfec0_0000, 0xffff_0000, 0xffff_f000, 0x1_0000_0000, TIB, 0x20_0000]),
            5..=7 => r.below(1 << 32) & !0xfff,
            8 => ((1u64 << r.range(36, 52)) - size.min(1 << 40)) & !0xfff,
            _ => r.val64(),
        };
        // A slot with a dirty bitmap costs the kernel size/32768 bytes: keep it small.
        if flags & 1 != 0 && size > 64 * GIB && size < BEYOND_USER {
            size = 64 * GIB;
        }
        // Within user space, stay inside our reservation (the PROT_NONE part is fine).
        let base = self.sh.pool.base;
        if hva >= base && hva < base + self.sh.pool.reserve && size < BEYOND_USER {
            let room = base + self.sh.pool.reserve - hva;
            if size > room {
                size = room & !0xfff;
            }
        } else if hva < BEYOND_USER && size < BEYOND_USER {
            if hva == 0 {
                // From 0: stays far below the program, its heap and libraries.
                size = size.min(TIB);
            } else {
                // An arbitrary user address could be ours: move it into the reservation's hole.
                hva = base + 200 * MIB + (hva & 0xfff);
                size = size.min(self.sh.pool.reserve - 200 * MIB - 4096);
            }
        }
        let mut b = vec![0u8; if v2 { 160 } else { 32 }];
        put32(&mut b, 0, slot);
        put32(&mut b, 4, flags);
        put64(&mut b, 8, gpa);
        put64(&mut b, 16, size);
        put64(&mut b, 24, hva);
        if v2 {
            put64(&mut b, 32, if self.r.chance(80) { 0 } else { self.r.val64() });
            put32(&mut b, 40, if self.r.chance(50) { self.efd() as u32 } else { self.r.val32() });
            if self.r.chance(10) {
                let i = self.r.range(44, 159) as usize;
                b[i] = self.r.u8() | 1;
            }
        }
        b
    }

    fn routing(&mut self) -> Vec<u8> {
        let r = &mut self.r;
        let nr = r.count(24);
        let alloc = nr.min(4097) as usize;
        let mut b = vec![0u8; 8 + 32 * alloc];
        put32(&mut b, 0, nr);
        put32(&mut b, 4, if r.chance(95) { 0 } else { r.val32() });
        for i in 0..alloc {
            let e = 8 + 32 * i;
            let gsi = match r.below(10) {
                0..=6 => r.below(24) as u32,
                7..=8 => r.below(1024) as u32,
                _ => r.val32(),
            };
            let ty = match r.below(20) {
                0..=8 => 1,
                9..=17 => 2,
                _ => r.pick(&[0, 3, 4, 5, 6, 0xffff_ffff]),
            };
            put32(&mut b, e, gsi);
            put32(&mut b, e + 4, ty);
            put32(&mut b, e + 8, if r.chance(90) { 0 } else { r.val32() });
            if ty == 1 {
                put32(&mut b, e + 16, if r.chance(90) { r.below(3) as u32 } else { r.val32() });
                put32(&mut b, e + 20, if r.chance(90) { r.below(24) as u32 } else { r.val32() });
            } else {
                let lo = if r.chance(80) { 0xfee0_0000 | ((r.below(4) as u32) << 12) | ((r.below(4) as u32) << 2) } else { r.val32() };
                put32(&mut b, e + 16, lo);
                put32(&mut b, e + 20, if r.chance(85) { 0 } else { r.val32() });
                put32(&mut b, e + 24, msi_data(r));
                put32(&mut b, e + 28, if r.chance(90) { 0 } else { r.val32() });
            }
        }
        b
    }

    fn sregs_template(&mut self, fd: i32, len: usize) -> Vec<u8> {
        let from_get = !self.det() && self.r.chance(50);
        if from_get {
            let req = if len == 312 { KVM_GET_SREGS } else { KVM_GET_SREGS2 };
            if let Some(b) = self.get(fd, req, len) {
                return b;
            }
        }
        // Reset-like real mode, as a template.
        let mut s = kvm_uapi::kvm_sregs::default();
        let seg = kvm_uapi::kvm_segment { base: 0, limit: 0xffff, selector: 0, type_: 3, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0, padding: 0 };
        s.cs = kvm_uapi::kvm_segment { type_: 0xb, base: 0xffff_0000, selector: 0xf000, ..seg };
        s.ds = seg;
        s.es = seg;
        s.fs = seg;
        s.gs = seg;
        s.ss = seg;
        s.tr = kvm_uapi::kvm_segment { type_: 0xb, s: 0, ..seg };
        s.ldt = kvm_uapi::kvm_segment { type_: 2, s: 0, ..seg };
        s.gdt.limit = 0xffff;
        s.idt.limit = 0xffff;
        s.cr0 = 0x6000_0010;
        s.apic_base = 0xfee0_0900;
        let mut b = as_bytes(&s);
        b.resize(len, 0);
        b
    }

    /// Mutates an sregs image (same leading layout for sregs and sregs2).
    fn mutate_sregs(&mut self, b: &mut [u8]) {
        let r = &mut self.r;
        // offsets: 8 segments of 24 bytes, gdt @192, idt @208, cr0 @224, cr2, cr3, cr4, cr8, efer @264, apic_base @272
        match r.below(8) {
            0 => put64(b, 224, r.pick(&[0x11, 0x8000_0011, 0x8000_0001, 0x6000_0010, 0x8000_0000, 0x2000_0000, 0xe005_003b]) | if r.chance(10) { r.val64() } else { 0 }),
            1 => put64(b, 248, r.pick(&[0x20, 0x620, 0x1000, 0x30_0620, 0x8_0000, 0x40_0000, 0x10_0000]) | if r.chance(20) { r.val64() } else { 0 }),
            2 => put64(b, 264, r.pick(&[0x500, 0xd01, 0x1000, 0x100, 0x400, 0x2000, 0x8000, 0x1_0000]) | if r.chance(20) { r.val64() } else { 0 }),
            3 => {
                // long mode all at once
                put64(b, 224, 0x8000_0011);
                put64(b, 248, 0x20);
                put64(b, 264, 0x500);
                put64(b, 240, r.below(0x20_0000) & !0xfff);
                b[19] = 1; // cs.l (cs is the first segment: base 8, limit 4, selector 2, type, present, dpl, db, s, l)
                b[17] = 0; // cs.db
            }
            4 => put64(b, 272, r.pick(&[0xfee0_0900, 0xfee0_0d00, 0xfee0_0c00, 0xfee0_0100, 0, 0xfee0_0800]) | if r.chance(20) { r.val64() } else { 0 }),
            5 => put64(b, 240, r.val64()),
            6 => {
                // a segment field
                let s = r.below(8) as usize * 24;
                let f = r.pick(&[0usize, 8, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
                b[s + f] = r.u8();
            }
            _ => r.mutate(&mut b[..280]),
        }
        // interrupt_bitmap (sregs, @280..312): at most one bit, or garbage
        if b.len() == 312 && r.chance(10) {
            let i = 280 + r.below(32) as usize;
            b[i] = if r.chance(50) { 1 << r.below(8) } else { r.u8() };
        }
    }

    fn msrs(&mut self, set: bool) -> Vec<u8> {
        let r = &mut self.r;
        let n = r.count(4);
        let alloc = n.min(300) as usize;
        let mut b = vec![0u8; 8 + 16 * alloc];
        put32(&mut b, 0, n);
        for i in 0..alloc {
            let m = gen::msr(r);
            put32(&mut b, 8 + 16 * i, m);
            if set {
                put64(&mut b, 16 + 16 * i, tcg_safe_msr(m, r.val64()));
            }
            if r.chance(3) {
                put32(&mut b, 12 + 16 * i, r.u32());
            }
        }
        b
    }

    /// `kvm-fuzz sregs-probe`: a fresh VM per iteration, one random KVM_SET_SREGS,
    /// one KVM_RUN; prints the state before each run (to find a state that hangs).
    pub fn sregs_probe(&mut self, seed: u64, count: u64, slot: &Slot) {
        let mut rng = Rng::new(seed);
        for i in 0..count {
            self.r = rng.fork();
            let irq = self.r.chance(50);
            let Some(vm) = self.sh.standard_vm(irq, true) else { continue };
            let v = vm.vcpus[0].lock().unwrap().clone().unwrap();
            let fd = v.fd.load(Ordering::SeqCst);
            let mut b = self.sregs_template(fd, 312);
            for _ in 0..self.r.range(1, 3) {
                self.mutate_sregs(&mut b);
            }
            if std::env::var("KVM_FUZZ_PROBE_UNSAFE").is_err() {
                tcg_safe_sregs(&mut b);
            }
            // KVM_FUZZ_PROBE_CR0/EFER (hex): force those fields (to test one state).
            for (var, off) in [("KVM_FUZZ_PROBE_CR0", 224), ("KVM_FUZZ_PROBE_EFER", 264)] {
                if let Some(v) = std::env::var(var).ok().and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()) {
                    put64(&mut b, off, v);
                }
            }
            let r = kioctl(fd, KVM_SET_SREGS, b.as_ptr() as u64);
            if r < 0 {
                println!("PROBE {i} set_sregs = {}", result_str(r));
                continue;
            }
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            println!("PROBE {i} irqchip={irq} sregs {hex}");
            slot.begin(i, 0);
            let r = kioctl(fd, KVM_RUN, 0);
            slot.end();
            // SAFETY: the vCPU's mapped kvm_run, held through `v`.
            let reason = if v.run != 0 { unsafe { std::ptr::read_volatile((v.run as *const u8).add(8) as *const u32) } } else { 0 };
            println!("PROBE {i} run = {} exit {reason}", result_str(r));
        }
    }

    /// A VM slot's VM and one of its vCPUs (as `vcpu`, but with the VM object).
    fn vm_vcpu(&mut self) -> (Option<Arc<VmObj>>, i32, Option<Arc<VcpuObj>>) {
        if !self.det() && self.r.chance(2) {
            return (None, self.wrong_fd(), None);
        }
        let i = self.vm_slot();
        let j = if self.det() { 0 } else { self.r.below(NVCPU as u64) as usize };
        let vm = self.sh.vms[i].lock().unwrap().clone();
        let v = vm.as_ref().and_then(|vm| vm.vcpus[j].lock().unwrap().clone());
        let fd = v.as_ref().map(|v| v.fd.load(Ordering::SeqCst)).unwrap_or(-1);
        (vm, fd, v)
    }

    /// A memory slot on the THP (or hugetlb) region of the pool, 2M-aligned
    /// mostly, at a guest address the fuzzed guest code writes to.
    fn huge_slot(&mut self, fd: i32, vm: Option<&Arc<VmObj>>) -> i64 {
        let pool = &self.sh.pool;
        let (off, len) = match pool.hugetlb {
            Some(h) if self.r.chance(25) => h,
            _ => pool.thp,
        };
        let mut hva = pool.base + off;
        let mut size = self.r.pick(&[2 * MIB, 4 * MIB, 6 * MIB, 8 * MIB]).min(len);
        if self.r.chance(8) {
            // host and guest addresses disagree modulo 2M: 4K leaves only
            hva += 0x1000 * self.r.range(1, 511);
            size = size.min(pool.base + off + len - hva) & !0xfff;
        }
        let mut gpa = self.r.pick(&[0x20_0000u64, 0x20_0000, 0x20_0000, 0x60_0000, 0x4000_0000, 0x1_0000_0000]);
        if self.r.chance(8) {
            gpa += 0x1000 * self.r.range(1, 511);
        }
        let slot = if self.r.chance(90) { 5 } else { self.r.pick(&[6, (1 << 16) | 5]) };
        let flags = if self.r.chance(50) { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        let h = HugeSlot { slot, flags, gpa, size, hva };
        let reg = kvm_uapi::kvm_userspace_memory_region { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva };
        let r = kioctl(fd, KVM_SET_USER_MEMORY_REGION, self.sc.place_good(&as_bytes(&reg)));
        tr!("huge_slot slot {slot:#x} flags {flags} gpa {gpa:#x} size {size:#x} hva {hva:#x} = {}", result_str(r));
        if r == 0 {
            if let Some(vm) = vm {
                *vm.huge.lock().unwrap() = Some(h);
            }
        }
        r
    }

    /// A VM with a dirty ring (usually a valid size), slot 0 maybe logged, a
    /// huge-backed slot, and vCPUs with their rings mapped.
    fn ring_vm(&mut self) -> i64 {
        let fd = kioctl(self.sh.kvm, KVM_CREATE_VM, 0);
        if fd < 0 {
            return fd;
        }
        let fd = fd as i32;
        let vm = Arc::new(VmObj::new(fd));
        let cap = self.r.pick(&[KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL]);
        let bytes = if self.r.chance(85) { self.r.pick(&[4096u64, 4096, 8192, 16384, 65536, 1 << 20]) } else { self.r.pick(RING_SIZES) };
        let res = enable_dirty_ring(fd, cap, bytes);
        tr!("ring_vm cap {cap} bytes {bytes:#x} = {}", result_str(res));
        if res == 0 {
            vm.ring_bytes.store(bytes as u32, Ordering::SeqCst);
        }
        let flags = if self.r.chance(60) { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        let reg = kvm_uapi::kvm_userspace_memory_region { slot: 0, flags, guest_phys_addr: 0, memory_size: 2 * MIB, userspace_addr: self.sh.pool.base };
        kioctl(fd, KVM_SET_USER_MEMORY_REGION, &reg as *const _ as u64);
        if self.r.chance(70) {
            self.huge_slot(fd, Some(&vm));
        }
        if self.r.chance(50) {
            kioctl(fd, KVM_CREATE_IRQCHIP, 0);
        }
        let ring = vm.ring_bytes.load(Ordering::SeqCst);
        for id in 0..self.r.range(1, 3) {
            let v = self.sh.new_vcpu(fd, id, true, ring);
            tr!("ring_vm vcpu {id}: {}", if v.is_some() { "ok" } else { "failed" });
            if let Some(v) = v {
                if self.r.chance(80) {
                    let b = self.sh.cpuid2();
                    kioctl(v.fd.load(Ordering::SeqCst), KVM_SET_CPUID2, b.as_ptr() as u64);
                }
                *vm.vcpus[id as usize].lock().unwrap() = Some(Arc::new(v));
            }
        }
        let i = self.vm_slot();
        *self.sh.vms[i].lock().unwrap() = Some(vm);
        res
    }

    fn ring_entry(&mut self) -> [u8; GFN_SIZE] {
        ring_entry(&mut self.r)
    }

    /// mmap of a vCPU's ring pages with random offsets, lengths, protections
    /// and flags; a shared writable mapping inside the ring gets random
    /// entries, then maybe KVM_RESET_DIRTY_RINGS. The result is the mmap's.
    fn mmap_ring(&mut self) -> i64 {
        let (vm, fd, _v) = self.vm_vcpu();
        let ring_pages = vm.as_ref().map(|vm| vm.ring_bytes.load(Ordering::SeqCst) as u64 / 4096).unwrap_or(0);
        let rp = ring_pages.max(1);
        let (pgoff, npages) = match self.r.below(10) {
            0..=4 => {
                let first = self.r.below(rp);
                (DIRTY_RING_PGOFF + first, self.r.range(1, rp - first))
            }
            5 => (DIRTY_RING_PGOFF + self.r.below(rp + 2), self.r.pick(&[1u64, 2, 16, 17, 256, 257])),
            // the whole ring with its first and last pages outside it
            6 => {
                let s = self.r.pick(&[0u64, 63]);
                (s, DIRTY_RING_PGOFF + rp + 1 - s + self.r.below(2))
            }
            7 => (self.r.pick(&[0u64, 1, 2, 63]), self.r.pick(&[1u64, 2, 3, 64])),
            8 => (self.r.pick(&[1u64 << 40, (1 << 51) - 1, DIRTY_RING_PGOFF + 4096, DIRTY_RING_PGOFF + 65536]), self.r.pick(&[1u64, 2])),
            _ => (self.r.below(128), self.r.range(1, 64)),
        };
        let npages = npages.min(4096);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let prot = self.r.pick(&[rw, rw, rw, rw, libc::PROT_READ, rw | libc::PROT_EXEC, libc::PROT_READ | libc::PROT_EXEC, libc::PROT_WRITE, libc::PROT_NONE]);
        let shared = self.r.chance(80);
        let mut flags = if shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
        if !self.det() && self.r.chance(10) {
            flags |= libc::MAP_POPULATE;
        }
        let len = (npages * 4096) as usize;
        // SAFETY: a fresh mapping of the vCPU file (or of whatever fd this is).
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, (pgoff * 4096) as i64) };
        if p == libc::MAP_FAILED {
            return -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64);
        }
        let inside = ring_pages > 0 && pgoff >= DIRTY_RING_PGOFF && pgoff + npages <= DIRTY_RING_PGOFF + ring_pages;
        if inside && shared && prot & libc::PROT_WRITE != 0 && self.r.chance(70) {
            let entries = npages * 4096 / GFN_SIZE as u64;
            for _ in 0..self.r.range(1, 16) {
                let i = self.r.below(entries);
                let e = self.ring_entry();
                let n = if self.r.chance(30) { 4 } else { GFN_SIZE };
                self_write(p as u64 + i * GFN_SIZE as u64, &e[..n]);
            }
            if self.r.chance(60) {
                let vmfd = vm.as_ref().map(|vm| vm.fd.load(Ordering::SeqCst)).unwrap_or(-1);
                kioctl(vmfd, nr::KVM_RESET_DIRTY_RINGS, 0);
            }
        } else if inside && prot & libc::PROT_READ != 0 {
            let _ = self_read(p as u64, len.min(4096));
        }
        // SAFETY: the mapping just made.
        unsafe { libc::munmap(p, len) };
        0
    }

    /// On a vCPU's mapped ring: random entries (`scribble_ring`) or an honest
    /// harvest, F_RESET on the F_DIRTY entries (`harvest_ring`); then
    /// KVM_RESET_DIRTY_RINGS (the result).
    fn scribble_ring(&mut self, harvest: bool) -> i64 {
        let (vm, _fd, v) = self.vm_vcpu();
        let vmfd = vm.as_ref().map(|vm| vm.fd.load(Ordering::SeqCst)).unwrap_or(-1);
        if let Some(v) = v.as_ref().filter(|v| v.ring != 0) {
            let entries = (v.ring_len / GFN_SIZE) as u64;
            if harvest {
                let start = if self.r.chance(50) { 0 } else { self.r.below(entries) };
                let n = entries.min(512);
                for k in 0..n {
                    let at = v.ring as u64 + ((start + k) % entries) * GFN_SIZE as u64;
                    let Some(f) = self_read(at, 4) else { break };
                    if get32(&f, 0) & F_DIRTY != 0 {
                        tr!("harvest entry {} {:?}", (start + k) % entries, self_read(at, 16));
                        self_write(at, &F_RESET.to_le_bytes());
                    }
                }
            } else {
                for _ in 0..self.r.range(1, 8) {
                    let i = if self.r.chance(50) { self.r.below(entries.min(64)) } else { self.r.below(entries) };
                    let e = self.ring_entry();
                    let n = if self.r.chance(30) { 4 } else { GFN_SIZE };
                    tr!("scribble entry {i} flags {:#x} slot {:#x} offset {:#x} ({n} bytes)", get32(&e, 0), get32(&e, 4), u64::from_le_bytes(e[8..16].try_into().unwrap()));
                    self_write(v.ring as u64 + i * GFN_SIZE as u64, &e[..n]);
                }
            }
        }
        if self.r.chance(80) {
            kioctl(vmfd, nr::KVM_RESET_DIRTY_RINGS, 0)
        } else {
            0
        }
    }

    fn random_ioctl(&mut self, fd: i32) -> i64 {
        let r = &mut self.r;
        // Never numbers that create descriptors or set the KVM_RUN signal mask, nor
        // SET_SREGS(2)/SET_MSRS with random bytes (see tcg_safe_sregs).
        let mut nr;
        loop {
            nr = r.u8() as u32;
            if ![0x01, 0x41, 0xce, 0xd4, 0xe0, 0x8b, 0x09, 0x84, 0xcd, 0x89].contains(&nr) {
                break;
            }
        }
        let dir = r.below(4) as u32;
        let size = if dir == 0 { 0 } else { r.pick(&[4usize, 8, 16, 24, 32, 40, 64, 72, 104, 128, 144, 312, 416, 520, 1024, 4096]).max(r.below(0x200) as usize) };
        let req = (dir << 30) | ((size as u32 & 0x3fff) << 16) | (0xAE << 8) | nr;
        let arg = if dir == 0 && r.chance(50) {
            r.val64()
        } else {
            let bytes = r.bytes(size.max(8));
            self.sc.place(&mut self.r, &bytes)
        };
        kioctl(fd, req, arg)
    }

    /// Runs op `i`; the result is the op's main ioctl's.
    pub fn run_op(&mut self, i: usize) -> OpResult {
        self.returns_fd = false;
        let res = self.op(OPS[i].0);
        OpResult { res, fd: self.returns_fd }
    }

    fn op(&mut self, name: &str) -> i64 {
        let kvm = self.sh.kvm;
        match name {
            "get_api_version" => kioctl(kvm, KVM_GET_API_VERSION, if self.r.chance(80) { 0 } else { self.r.val64() }),
            "check_extension" => {
                let cap = if self.r.chance(80) { self.r.below(240) } else { self.r.val64() };
                kioctl(kvm, KVM_CHECK_EXTENSION, cap)
            }
            "check_extension_vm" => {
                let (fd, _vm) = self.vm();
                let cap = if self.r.chance(80) { self.r.below(240) } else { self.r.val64() };
                kioctl(fd, KVM_CHECK_EXTENSION, cap)
            }
            "get_vcpu_mmap_size" => kioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, if self.r.chance(80) { 0 } else { self.r.val64() }),
            "get_msr_index_list" | "get_msr_feature_index_list" => {
                let n = self.r.count(64);
                let mut b = vec![0u8; 4 + 4 * n.min(2048) as usize];
                put32(&mut b, 0, n);
                let req = if name == "get_msr_index_list" { KVM_GET_MSR_INDEX_LIST } else { KVM_GET_MSR_FEATURE_INDEX_LIST };
                self.call(kvm, req, &b)
            }
            "get_supported_cpuid" | "get_emulated_cpuid" | "get_supported_hv_cpuid" => {
                let n = self.r.count(64);
                let mut b = vec![0u8; 8 + 40 * n.min(300) as usize];
                put32(&mut b, 0, n);
                if self.r.chance(5) {
                    put32(&mut b, 4, self.r.u32());
                }
                let req = match name {
                    "get_supported_cpuid" => KVM_GET_SUPPORTED_CPUID,
                    "get_emulated_cpuid" => KVM_GET_EMULATED_CPUID,
                    _ => nr::KVM_GET_SUPPORTED_HV_CPUID,
                };
                let fd = if req == nr::KVM_GET_SUPPORTED_HV_CPUID && self.r.chance(50) { self.vcpu().0 } else { kvm };
                self.call(fd, req, &b)
            }
            "sys_get_msrs" => {
                let n = self.r.count(3);
                let alloc = n.min(300) as usize;
                let mut b = vec![0u8; 8 + 16 * alloc];
                put32(&mut b, 0, n);
                for i in 0..alloc {
                    let idx = if self.r.chance(60) { self.r.pick(&[0x10a, 0x345, 0xc0011029, 0x48, 0x8b, 0x1a0]) } else { gen::msr(&mut self.r) };
                    put32(&mut b, 8 + 16 * i, idx);
                }
                self.call(kvm, KVM_GET_MSRS, &b)
            }
            "sys_device_attr" | "vm_device_attr" => {
                let fd = if name == "sys_device_attr" { kvm } else { self.vm().0 };
                let mut b = vec![0u8; 24];
                put32(&mut b, 0, if self.r.chance(80) { 0 } else { self.r.val32() });
                put32(&mut b, 4, if self.r.chance(60) { 0 } else { self.r.val32() });
                put64(&mut b, 8, if self.r.chance(60) { self.r.below(3) } else { self.r.val64() });
                let p = self.sc.inner_ptr(&mut self.r);
                put64(&mut b, 16, p);
                let req = self.r.pick(&[nr::KVM_GET_DEVICE_ATTR, nr::KVM_HAS_DEVICE_ATTR, nr::KVM_SET_DEVICE_ATTR]);
                self.call(fd, req, &b)
            }
            "get_mce_cap_supported" => {
                let b = [0u8; 8];
                self.call(kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, &b)
            }
            "sys_random_ioctl" => self.random_ioctl(kvm),
            "vm_random_ioctl" => {
                let (fd, _vm) = self.vm();
                self.random_ioctl(fd)
            }
            "vcpu_random_ioctl" => {
                let (fd, _v) = self.vcpu();
                self.random_ioctl(fd)
            }
            "create_vm" => {
                let ty = if self.r.chance(80) { 0 } else { self.r.val64() };
                let fd = kioctl(kvm, KVM_CREATE_VM, ty);
                self.returns_fd = true;
                if fd >= 0 {
                    let i = self.vm_slot();
                    *self.sh.vms[i].lock().unwrap() = Some(Arc::new(VmObj::new(fd as i32)));
                }
                fd
            }
            "setup_vm" => {
                let irq = self.r.chance(60);
                let cpuid = self.r.chance(70);
                let vm = self.sh.standard_vm(irq, cpuid);
                let ok = vm.is_some();
                if let Some(vm) = &vm {
                    let n = self.r.below(3);
                    for id in 1..=n {
                        if let Some(v) = self.sh.new_vcpu(vm.fd.load(Ordering::SeqCst), id, self.r.chance(90), 0) {
                            *vm.vcpus[id as usize].lock().unwrap() = Some(Arc::new(v));
                        }
                    }
                }
                let i = self.vm_slot();
                *self.sh.vms[i].lock().unwrap() = vm;
                ok as i64
            }
            "create_vcpu" => {
                let (fd, vm) = self.vm();
                let id = match self.r.below(10) {
                    0..=6 => self.r.below(4),
                    7 => self.r.pick(&[254, 255, 256, 1023, 1024, 4095, 4096, 0xffff_ffff, 1 << 32]),
                    _ => self.r.val64(),
                };
                let map = self.det() || self.r.chance(85);
                let r = kioctl(fd, KVM_CREATE_VCPU, id);
                tr!("create_vcpu id {id:#x} = {}", result_str(r));
                self.returns_fd = true;
                if r >= 0 {
                    let ring = vm.as_ref().map(|vm| vm.ring_bytes.load(Ordering::SeqCst)).unwrap_or(0);
                    let v = self.sh.wrap_vcpu(r as i32, map, ring);
                    match vm {
                        Some(vm) => {
                            let j = if self.det() { 0 } else { self.r.below(NVCPU as u64) as usize };
                            *vm.vcpus[j].lock().unwrap() = Some(Arc::new(v));
                        }
                        None => drop(v),
                    }
                }
                r
            }
            "set_user_memory_region" | "set_user_memory_region2" => {
                let v2 = name.ends_with('2');
                let (fd, _vm) = self.vm();
                let b = self.memslot(v2);
                // A bad pointer only rarely: the slot layout is what matters here.
                if self.r.chance(90) {
                    let p = self.sc.place_good(&b);
                    if TRACE_ARGS.load(Ordering::Relaxed) {
                        let hex: String = b.iter().take(48).map(|b| format!("{b:02x}")).collect();
                        println!("  ioctl memslot fd {fd} arg buf {hex}");
                    }
                    kioctl(fd, if v2 { KVM_SET_USER_MEMORY_REGION2 } else { KVM_SET_USER_MEMORY_REGION }, p)
                } else {
                    self.call(fd, if v2 { KVM_SET_USER_MEMORY_REGION2 } else { KVM_SET_USER_MEMORY_REGION }, &b)
                }
            }
            "get_dirty_log" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 16];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(4) as u32 | if self.r.chance(10) { 1 << 16 } else { 0 } } else { self.r.val32() });
                let p = self.sc.inner_ptr(&mut self.r);
                put64(&mut b, 8, p);
                self.call(fd, KVM_GET_DIRTY_LOG, &b)
            }
            "clear_dirty_log" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 24];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(4) as u32 } else { self.r.val32() });
                put32(&mut b, 4, self.r.count(64));
                put64(&mut b, 8, if self.r.chance(70) { self.r.below(16) * 64 } else { self.r.val64() });
                let p = self.sc.inner_ptr(&mut self.r);
                put64(&mut b, 16, p);
                self.call(fd, nr::KVM_CLEAR_DIRTY_LOG, &b)
            }
            "set_tss_addr" => {
                let (fd, _vm) = self.vm();
                let a = if self.r.chance(50) { 0xfeff_d000 } else { self.r.val64() };
                kioctl(fd, KVM_SET_TSS_ADDR, a)
            }
            "set_identity_map_addr" => {
                let (fd, _vm) = self.vm();
                let a = if self.r.chance(50) { 0xfeff_c000u64 } else { self.r.val64() };
                self.call(fd, KVM_SET_IDENTITY_MAP_ADDR, &a.to_le_bytes())
            }
            "set_nr_mmu_pages" => {
                let (fd, _vm) = self.vm();
                let n = self.r.val64();
                kioctl(fd, KVM_SET_NR_MMU_PAGES, n)
            }
            "get_nr_mmu_pages" => {
                let (fd, _vm) = self.vm();
                kioctl(fd, KVM_GET_NR_MMU_PAGES, 0)
            }
            "create_irqchip" => {
                let (fd, _vm) = self.vm();
                kioctl(fd, KVM_CREATE_IRQCHIP, 0)
            }
            "irq_line" | "irq_line_status" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 8];
                let irq = match self.r.below(10) {
                    0..=7 => self.r.below(24) as u32,
                    8 => self.r.below(1024) as u32,
                    _ => self.r.val32(),
                };
                put32(&mut b, 0, irq);
                put32(&mut b, 4, if self.r.chance(90) { self.r.below(2) as u32 } else { self.r.val32() });
                self.call(fd, if name == "irq_line" { KVM_IRQ_LINE } else { KVM_IRQ_LINE_STATUS }, &b)
            }
            "get_irqchip" | "set_irqchip" => {
                let (fd, _vm) = self.vm();
                let chip = if self.r.chance(90) { self.r.below(3) as u32 } else { self.r.val32() };
                let mut b = vec![0u8; 520];
                put32(&mut b, 0, chip);
                if name == "set_irqchip" {
                    if !self.det() && self.r.chance(60) {
                        if let Some(g) = self.get(fd, KVM_GET_IRQCHIP, 520) {
                            b = g;
                            put32(&mut b, 0, chip);
                        }
                    }
                    let n = b.len();
                    self.r.mutate(&mut b[8..n]);
                    if self.r.chance(20) {
                        self.r.fill(&mut b[8..n]);
                    }
                }
                self.call(fd, if name == "get_irqchip" { KVM_GET_IRQCHIP } else { KVM_SET_IRQCHIP }, &b)
            }
            "create_pit" => {
                let (fd, _vm) = self.vm();
                kioctl(fd, KVM_CREATE_PIT, 0)
            }
            "create_pit2" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 64];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                if self.r.chance(10) {
                    let i = self.r.range(4, 63) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_CREATE_PIT2, &b)
            }
            "get_pit" | "get_pit2" => {
                let (fd, _vm) = self.vm();
                let n = if name == "get_pit" { 72 } else { 112 };
                let b = vec![0u8; n];
                self.call(fd, if name == "get_pit" { KVM_GET_PIT } else { KVM_GET_PIT2 }, &b)
            }
            "set_pit" | "set_pit2" => {
                let (fd, _vm) = self.vm();
                let n = if name == "set_pit" { 72 } else { 112 };
                let mut b = vec![0u8; n];
                for ch in 0..3 {
                    let o = ch * 24;
                    put32(&mut b, o, if self.r.chance(50) { self.r.val32() } else { self.r.below(0x10001) as u32 });
                    put16(&mut b, o + 4, self.r.u32() as u16);
                    b[o + 6] = self.r.below(4) as u8; // status_latched.. random small fields
                    for k in 7..16 {
                        b[o + k] = if self.r.chance(70) { self.r.below(8) as u8 } else { self.r.u8() };
                    }
                    put64(&mut b, o + 16, self.r.val64());
                }
                if n == 112 {
                    put32(&mut b, 72, if self.r.chance(70) { self.r.below(2) as u32 } else { self.r.val32() });
                }
                self.call(fd, if name == "set_pit" { KVM_SET_PIT } else { KVM_SET_PIT2 }, &b)
            }
            "reinject_control" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 32];
                b[0] = if self.r.chance(80) { self.r.below(2) as u8 } else { self.r.u8() };
                self.call(fd, KVM_REINJECT_CONTROL, &b)
            }
            "set_boot_cpu_id" => {
                let (fd, _vm) = self.vm();
                let id = if self.r.chance(80) { self.r.below(4) } else { self.r.val64() };
                kioctl(fd, KVM_SET_BOOT_CPU_ID, id)
            }
            "set_gsi_routing" => {
                let (fd, _vm) = self.vm();
                let b = self.routing();
                self.call(fd, KVM_SET_GSI_ROUTING, &b)
            }
            "irqfd" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 32];
                let efd = self.fd_arg();
                put32(&mut b, 0, efd);
                put32(&mut b, 4, match self.r.below(10) {
                    0..=7 => self.r.below(24) as u32,
                    8 => self.r.below(4096) as u32,
                    _ => self.r.val32(),
                });
                put32(&mut b, 8, match self.r.below(10) {
                    0..=4 => 0,
                    5..=6 => 1,
                    7..=8 => 2,
                    _ => self.r.val32(),
                });
                let rfd = self.fd_arg();
                put32(&mut b, 12, rfd);
                if self.r.chance(5) {
                    let i = self.r.range(16, 31) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_IRQFD, &b)
            }
            "ioeventfd" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 64];
                let flags = if self.r.chance(85) { self.r.below(8) as u32 } else { self.r.val32() };
                put64(&mut b, 0, self.r.val64());
                let addr = if flags & 2 != 0 { if self.r.chance(90) { self.r.below(0x10000) } else { self.r.val64() } } else { gen::mmio_addr(&mut self.r) };
                put64(&mut b, 8, addr);
                put32(&mut b, 16, self.r.pick(&[0, 1, 2, 4, 8, 1, 2, 4, 3, 16, 0xffff_ffff]));
                let efd = self.fd_arg();
                put32(&mut b, 20, efd);
                put32(&mut b, 24, flags);
                if self.r.chance(5) {
                    let i = self.r.range(28, 63) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_IOEVENTFD, &b)
            }
            "signal_msi" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 32];
                let lo = if self.r.chance(85) { 0xfee0_0000 | ((self.r.below(4) as u32) << 12) | ((self.r.below(4) as u32) << 2) } else { self.r.val32() };
                put32(&mut b, 0, lo);
                put32(&mut b, 4, if self.r.chance(85) { 0 } else { self.r.val32() });
                put32(&mut b, 8, msi_data(&mut self.r));
                put32(&mut b, 12, if self.r.chance(85) { 0 } else { self.r.val32() });
                put32(&mut b, 16, self.r.val32());
                if self.r.chance(5) {
                    let i = self.r.range(20, 31) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_SIGNAL_MSI, &b)
            }
            "get_clock" | "set_clock" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 48];
                if name == "set_clock" {
                    put64(&mut b, 0, self.r.val64());
                    put32(&mut b, 8, if self.r.chance(60) { 0 } else { self.r.val32() });
                    put64(&mut b, 16, self.r.val64());
                    put64(&mut b, 24, self.r.val64());
                }
                self.call(fd, if name == "get_clock" { KVM_GET_CLOCK } else { KVM_SET_CLOCK }, &b)
            }
            "vm_tsc_khz" | "vcpu_tsc_khz" => {
                let fd = if name == "vm_tsc_khz" { self.vm().0 } else { self.vcpu().0 };
                if self.r.chance(40) {
                    kioctl(fd, KVM_GET_TSC_KHZ, 0)
                } else {
                    let k = if self.r.chance(50) { self.r.range(1, 10_000_000) } else { self.r.val64() };
                    kioctl(fd, KVM_SET_TSC_KHZ, k)
                }
            }
            "enable_cap_vm" | "enable_cap_vcpu" => {
                let fd = if name == "enable_cap_vm" { self.vm().0 } else { self.vcpu().0 };
                let caps: &[u32] = if name == "enable_cap_vm" {
                    &[121, 129, 143, 128, 182, 201, 188, 193, 204, 192, 213, 185, 219, 220, 218, 237, 212, 168, 197, 206, 196, 116, 223, 24]
                } else {
                    &[123, 148, 199, 175, 190, 24, 143]
                };
                let cap = if self.r.chance(90) { self.r.pick(caps) } else { self.r.val32() };
                let mut b = vec![0u8; 104];
                put32(&mut b, 0, cap);
                put32(&mut b, 4, if self.r.chance(85) { 0 } else { self.r.val32() });
                let a0 = match cap {
                    121 => if self.r.chance(80) { self.r.below(49) } else { self.r.val64() },
                    129 => self.r.below(4),
                    143 => self.r.below(16),
                    128 => self.r.pick(&[0, 1, 4, 255, 256, 1024, 4096, 4097]),
                    188 => self.r.below(8),
                    197 | 206 => self.fd_arg() as u64,
                    192 | 223 => self.r.pick(&[0, 4096, 65536, 1 << 20, 4095]),
                    _ => self.r.val64(),
                };
                put64(&mut b, 8, a0);
                for k in 1..4 {
                    put64(&mut b, 8 + 8 * k, if self.r.chance(80) { 0 } else { self.r.val64() });
                }
                if self.r.chance(5) {
                    let i = self.r.range(40, 103) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_ENABLE_CAP, &b)
            }
            "coalesced_mmio" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 16];
                let pio = self.r.chance(30);
                put64(&mut b, 0, if pio { self.r.below(0x10000) } else { gen::mmio_addr(&mut self.r) });
                put32(&mut b, 8, self.r.pick(&[0, 1, 2, 4, 8, 0x1000, 0x10_0000, 0xffff_ffff]));
                put32(&mut b, 12, if self.r.chance(90) { pio as u32 } else { self.r.val32() });
                let req = if self.r.chance(60) { nr::KVM_REGISTER_COALESCED_MMIO } else { nr::KVM_UNREGISTER_COALESCED_MMIO };
                self.call(fd, req, &b)
            }
            "create_device" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 12];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(12) as u32 } else { self.r.val32() });
                put32(&mut b, 4, u32::MAX);
                put32(&mut b, 8, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                let p = self.sc.place(&mut self.r, &b);
                let r = kioctl(fd, nr::KVM_CREATE_DEVICE, p);
                if r == 0 && get32(&b, 8) & 1 == 0 && p >= self.sc.rw as u64 && p + 12 <= self.sc.rw as u64 + SCRATCH_RW as u64 {
                    // SAFETY: p lies inside the rw scratch area.
                    let dfd = unsafe { ((p + 4) as *const u32).read_unaligned() } as i32;
                    close_fd(dfd);
                }
                r
            }
            "get_stats_fd" => {
                let fd = if self.r.chance(50) { self.vm().0 } else { self.vcpu().0 };
                let r = kioctl(fd, KVM_GET_STATS_FD, 0);
                self.returns_fd = true;
                if r >= 0 {
                    let mut buf = [0u8; 64];
                    // SAFETY: reads the stats header into our buffer.
                    unsafe { libc::pread(r as i32, buf.as_mut_ptr() as *mut _, 64, 0) };
                    close_fd(r as i32);
                }
                r
            }
            "create_guest_memfd" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 64];
                put64(&mut b, 0, if self.r.chance(50) { self.r.below(64) * 4096 } else { self.r.val64() });
                put64(&mut b, 8, if self.r.chance(70) { 0 } else { self.r.val64() });
                let r = self.call(fd, nr::KVM_CREATE_GUEST_MEMFD, &b);
                self.returns_fd = true;
                if r >= 0 {
                    close_fd(r as i32);
                }
                r
            }
            "set_msr_filter" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 392];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                let n = self.r.below(17) as usize;
                // The bitmaps: random bits in the inner area.
                let bm = self.r.bytes(1536 * 8);
                // SAFETY: the inner area of our scratch has room for this.
                unsafe { std::ptr::copy_nonoverlapping(bm.as_ptr(), self.sc.inner() as *mut u8, bm.len()) };
                for k in 0..n {
                    let o = 8 + 24 * k;
                    put32(&mut b, o, if self.r.chance(80) { self.r.range(1, 3) as u32 } else { self.r.val32() });
                    put32(&mut b, o + 4, if self.r.chance(70) { self.r.pick(&[1, 8, 64, 0x2000, 0x3000, 1536 * 8]) } else { self.r.val32() });
                    put32(&mut b, o + 8, gen::msr(&mut self.r));
                    let p = self.sc.inner_ptr(&mut self.r);
                    put64(&mut b, o + 16, p);
                }
                self.call(fd, nr::KVM_X86_SET_MSR_FILTER, &b)
            }
            "set_pmu_event_filter" => {
                let (fd, _vm) = self.vm();
                let n = self.r.count(4);
                let alloc = n.min(300) as usize;
                let mut b = vec![0u8; 32 + 8 * alloc];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                put32(&mut b, 4, n);
                put32(&mut b, 8, self.r.val32());
                put32(&mut b, 12, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                for k in 0..alloc {
                    put64(&mut b, 32 + 8 * k, self.r.val64());
                }
                self.call(fd, nr::KVM_SET_PMU_EVENT_FILTER, &b)
            }
            "set_memory_attributes" => {
                let (fd, _vm) = self.vm();
                let mut b = vec![0u8; 32];
                put64(&mut b, 0, self.r.below(1 << 32) & !0xfff);
                put64(&mut b, 8, self.r.pick(&[0, 4096, 1 << 21, 1 << 30]));
                put64(&mut b, 16, if self.r.chance(50) { 1 << 3 } else { self.r.val64() });
                put64(&mut b, 24, if self.r.chance(80) { 0 } else { self.r.val64() });
                self.call(fd, nr::KVM_SET_MEMORY_ATTRIBUTES, &b)
            }
            "reset_dirty_rings" => {
                let (fd, _vm) = self.vm();
                kioctl(fd, nr::KVM_RESET_DIRTY_RINGS, 0)
            }
            "enable_dirty_ring" => {
                let (fd, vm) = self.vm();
                let cap = self.r.pick(&[KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL]);
                let bytes = if self.r.chance(90) { self.r.pick(RING_SIZES) } else { self.r.val64() };
                let mut b = vec![0u8; 104];
                put32(&mut b, 0, cap);
                put64(&mut b, 8, bytes);
                if self.r.chance(5) {
                    put32(&mut b, 4, self.r.val32());
                }
                let r = if self.r.chance(90) { kioctl(fd, KVM_ENABLE_CAP, self.sc.place_good(&b)) } else { self.call(fd, KVM_ENABLE_CAP, &b) };
                tr!("enable_dirty_ring cap {cap} bytes {bytes:#x} flags {:#x} = {}", get32(&b, 4), result_str(r));
                if r == 0 {
                    if let Some(vm) = vm {
                        vm.ring_bytes.store(bytes as u32, Ordering::SeqCst);
                    }
                }
                r
            }
            "ring_vm" => self.ring_vm(),
            "mmap_ring" => self.mmap_ring(),
            "scribble_ring" | "harvest_ring" => self.scribble_ring(name == "harvest_ring"),
            "ring_dirty_log" => {
                let (fd, _vm) = self.vm();
                let slot = self.r.pick(&[0u32, 0, 5, 5, 1, 6, (1 << 16) | 5, 1 << 16]);
                tr!("ring_dirty_log slot {slot:#x}");
                let bm = self.sc.inner();
                if self.r.chance(50) {
                    let mut b = vec![0u8; 16];
                    put32(&mut b, 0, slot);
                    put64(&mut b, 8, bm);
                    kioctl(fd, KVM_GET_DIRTY_LOG, self.sc.place_good(&b))
                } else {
                    let mut b = vec![0u8; 24];
                    put32(&mut b, 0, slot);
                    put32(&mut b, 4, self.r.pick(&[64, 512, 1024, 2048, 0, 1]));
                    put64(&mut b, 8, self.r.pick(&[0, 64, 512, 1024, 1]));
                    tr!("  clear num_pages {} first_page {}", get32(&b, 4), get32(&b, 8));
                    put64(&mut b, 16, bm);
                    kioctl(fd, nr::KVM_CLEAR_DIRTY_LOG, self.sc.place_good(&b))
                }
            }
            "huge_slot" => {
                let (fd, vm) = self.vm();
                self.huge_slot(fd, vm.as_ref())
            }
            "toggle_dirty_log" => {
                let (fd, vm) = self.vm();
                let h = vm.as_ref().and_then(|vm| *vm.huge.lock().unwrap());
                match h {
                    Some(mut h) if self.r.chance(70) => {
                        h.flags = if self.r.chance(90) { h.flags ^ KVM_MEM_LOG_DIRTY_PAGES } else { self.r.pick(&[2, 3, 4, 0x8000_0001]) };
                        let reg = kvm_uapi::kvm_userspace_memory_region { slot: h.slot, flags: h.flags, guest_phys_addr: h.gpa, memory_size: h.size, userspace_addr: h.hva };
                        let r = kioctl(fd, KVM_SET_USER_MEMORY_REGION, self.sc.place_good(&as_bytes(&reg)));
                        if r == 0 {
                            *vm.unwrap().huge.lock().unwrap() = Some(h);
                        }
                        r
                    }
                    _ => {
                        // The standard VM's slot 0 (2M at 0 on region 0, THP-advised): logging on or off.
                        let flags = self.r.below(2) as u32;
                        let reg = kvm_uapi::kvm_userspace_memory_region { slot: 0, flags, guest_phys_addr: 0, memory_size: 2 * MIB, userspace_addr: self.sh.pool.base };
                        kioctl(fd, KVM_SET_USER_MEMORY_REGION, self.sc.place_good(&as_bytes(&reg)))
                    }
                }
            }
            "memory_encrypt_op" => {
                let (fd, _vm) = self.vm();
                let b = self.r.bytes(64);
                self.call(fd, nr::KVM_MEMORY_ENCRYPT_OP, &b)
            }
            "vm_close" => {
                let i = self.vm_slot();
                let vm = self.sh.vms[i].lock().unwrap().clone();
                if let Some(vm) = vm {
                    close_fd(vm.fd.swap(-1, Ordering::SeqCst));
                }
                0
            }
            "vm_drop" => {
                let i = self.vm_slot();
                let old = self.sh.vms[i].lock().unwrap().take();
                drop(old);
                0
            }
            "vcpu_close" | "vcpu_drop" => {
                let i = self.vm_slot();
                let j = self.r.below(NVCPU as u64) as usize;
                let vm = self.sh.vms[i].lock().unwrap().clone();
                if let Some(vm) = vm {
                    if name == "vcpu_close" {
                        let v = vm.vcpus[j].lock().unwrap().clone();
                        if let Some(v) = v {
                            close_fd(v.fd.swap(-1, Ordering::SeqCst));
                        }
                    } else {
                        let old = vm.vcpus[j].lock().unwrap().take();
                        drop(old);
                    }
                }
                0
            }
            "run" => self.run(),
            "get_regs" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_REGS, &[0u8; 144])
            }
            "set_regs" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 144];
                for k in 0..16 {
                    put64(&mut b, 8 * k, self.r.val64());
                }
                put64(&mut b, 128, if self.r.chance(70) { self.r.below(0x20_0000) } else { self.r.val64() });
                put64(&mut b, 136, if self.r.chance(70) { 2 | (self.r.u32() as u64 & 0x3f7fd5) } else { self.r.val64() });
                self.call(fd, KVM_SET_REGS, &b)
            }
            "get_sregs" | "get_sregs2" => {
                let (fd, _v) = self.vcpu();
                let (n, req) = if name == "get_sregs" { (312, KVM_GET_SREGS) } else { (320, KVM_GET_SREGS2) };
                self.call(fd, req, &vec![0u8; n])
            }
            "set_sregs" | "set_sregs2" => {
                let (fd, _v) = self.vcpu();
                let (n, req) = if name == "set_sregs" { (312, KVM_SET_SREGS) } else { (320, KVM_SET_SREGS2) };
                let mut b = self.sregs_template(fd, n);
                for _ in 0..self.r.range(1, 3) {
                    self.mutate_sregs(&mut b);
                }
                tcg_safe_sregs(&mut b);
                if n == 320 {
                    put64(&mut b, 280, if self.r.chance(80) { self.r.below(2) } else { self.r.val64() });
                    for k in 0..4 {
                        put64(&mut b, 288 + 8 * k, self.r.val64());
                    }
                }
                self.call(fd, req, &b)
            }
            "get_fpu" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_FPU, &[0u8; 416])
            }
            "set_fpu" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 416];
                if self.r.chance(50) {
                    self.r.fill(&mut b);
                } else {
                    put16(&mut b, 128, 0x37f);
                    put32(&mut b, 160 + 8, 0x1f80);
                    self.r.mutate(&mut b);
                }
                self.call(fd, KVM_SET_FPU, &b)
            }
            "get_xsave" | "get_xsave2" => {
                let (fd, _v) = self.vcpu();
                let req = if name == "get_xsave" { KVM_GET_XSAVE } else { KVM_GET_XSAVE2 };
                self.call(fd, req, &vec![0u8; 4096])
            }
            "set_xsave" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 4096];
                if !self.det() && self.r.chance(50) {
                    if let Some(g) = self.get(fd, KVM_GET_XSAVE, 4096) {
                        b = g;
                    }
                } else {
                    put16(&mut b, 0, 0x37f);
                    put32(&mut b, 24, 0x1f80);
                }
                match self.r.below(4) {
                    0 => put64(&mut b, 512, self.r.val64()), // xstate_bv
                    1 => put64(&mut b, 520, self.r.val64()), // xcomp_bv
                    2 => put32(&mut b, 24, self.r.val32()),  // mxcsr
                    _ => self.r.mutate(&mut b),
                }
                self.call(fd, KVM_SET_XSAVE, &b)
            }
            "get_xcrs" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_XCRS, &[0u8; 392])
            }
            "set_xcrs" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 392];
                put32(&mut b, 0, if self.r.chance(80) { self.r.below(3) as u32 } else { self.r.val32() });
                put32(&mut b, 4, if self.r.chance(90) { 0 } else { self.r.val32() });
                for k in 0..16 {
                    let o = 8 + 16 * k;
                    put32(&mut b, o, if self.r.chance(80) { self.r.below(2) as u32 } else { self.r.val32() });
                    put64(&mut b, o + 8, if self.r.chance(70) { self.r.pick(&[1, 3, 7, 0xe7, 0x207, 0x2e7, 5, 0]) } else { self.r.val64() });
                }
                self.call(fd, KVM_SET_XCRS, &b)
            }
            "get_msrs" | "set_msrs" => {
                let (fd, _v) = self.vcpu();
                let set = name == "set_msrs";
                let b = self.msrs(set);
                self.call(fd, if set { KVM_SET_MSRS } else { KVM_GET_MSRS }, &b)
            }
            "set_cpuid2" => {
                let (fd, _v) = self.vcpu();
                let mut b = self.sh.cpuid2();
                let n = (b.len() - 8) / 40;
                match self.r.below(6) {
                    0 => {
                        let c = self.r.count(n as u32);
                        put32(&mut b, 0, c);
                        b.resize(8 + 40 * c.min(300) as usize, 0);
                    }
                    1 => {
                        let m = self.r.below(n as u64 + 1) as usize;
                        put32(&mut b, 0, m as u32);
                        b.truncate(8 + 40 * m);
                    }
                    2 | 3 => {
                        for _ in 0..self.r.range(1, 4) {
                            if n == 0 {
                                break;
                            }
                            let e = 8 + 40 * self.r.below(n as u64) as usize;
                            let f = 12 + 4 * self.r.below(4) as usize;
                            let v = get32(&b, e + f) ^ (1 << self.r.below(32));
                            put32(&mut b, e + f, if self.r.chance(70) { v } else { self.r.val32() });
                        }
                    }
                    4 => {
                        // duplicates
                        if n > 0 {
                            let e = 8 + 40 * self.r.below(n as u64) as usize;
                            let dup = b[e..e + 40].to_vec();
                            b.extend_from_slice(&dup);
                            put32(&mut b, 0, n as u32 + 1);
                        }
                    }
                    _ => {}
                }
                self.call(fd, KVM_SET_CPUID2, &b)
            }
            "get_cpuid2" => {
                let (fd, _v) = self.vcpu();
                let c = self.r.count(64);
                let mut b = vec![0u8; 8 + 40 * c.min(300) as usize];
                put32(&mut b, 0, c);
                self.call(fd, KVM_GET_CPUID2, &b)
            }
            "set_cpuid" => {
                let (fd, _v) = self.vcpu();
                let c = self.r.count(8);
                let alloc = c.min(300) as usize;
                let mut b = vec![0u8; 8 + 24 * alloc];
                put32(&mut b, 0, c);
                for k in 0..alloc {
                    let o = 8 + 24 * k;
                    put32(&mut b, o, self.r.pick(&[0, 1, 7, 0xd, 0x8000_0000, 0x8000_0001, 0x8000_0008, 0x4000_0000]));
                    for f in 1..5 {
                        put32(&mut b, o + 4 * f, self.r.val32());
                    }
                }
                self.call(fd, KVM_SET_CPUID, &b)
            }
            "interrupt" => {
                let (fd, _v) = self.vcpu();
                let irq = if self.r.chance(80) { self.r.below(256) as u32 } else { self.r.val32() };
                self.call(fd, KVM_INTERRUPT, &irq.to_le_bytes())
            }
            "nmi" => {
                let (fd, _v) = self.vcpu();
                kioctl(fd, KVM_NMI, 0)
            }
            "smi" => {
                let (fd, _v) = self.vcpu();
                kioctl(fd, nr::KVM_SMI, 0)
            }
            "get_lapic" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_LAPIC, &[0u8; 1024])
            }
            "set_lapic" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 1024];
                if !self.det() && self.r.chance(60) {
                    if let Some(g) = self.get(fd, KVM_GET_LAPIC, 1024) {
                        b = g;
                    }
                } else {
                    put32(&mut b, 0xf0, 0x1ff);
                    put32(&mut b, 0xd0, 0);
                    put32(&mut b, 0xe0, 0xffff_ffff);
                    for l in 0..7 {
                        put32(&mut b, 0x320 + 0x10 * l, 0x1_0000);
                    }
                }
                for _ in 0..self.r.range(1, 6) {
                    let reg = self.r.pick(&[0x20, 0x30, 0x80, 0xb0, 0xd0, 0xe0, 0xf0, 0x100, 0x170, 0x180, 0x200, 0x270, 0x280, 0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3e0, 0x3f0]);
                    let v = match self.r.below(4) {
                        0 => self.r.val32(),
                        1 => self.r.below(256) as u32 | ((self.r.below(8) as u32) << 8) | ((self.r.below(2) as u32) << 16) | ((self.r.below(4) as u32) << 17),
                        2 => 1 << self.r.below(32),
                        _ => self.r.u32(),
                    };
                    put32(&mut b, reg, v);
                }
                self.call(fd, KVM_SET_LAPIC, &b)
            }
            "set_vapic_addr" => {
                let (fd, _v) = self.vcpu();
                let a = if self.r.chance(60) { self.r.below(0x20_0000) & !0xfff } else { self.r.val64() };
                self.call(fd, KVM_SET_VAPIC_ADDR, &a.to_le_bytes())
            }
            "set_signal_mask" => {
                let (fd, _v) = self.vcpu();
                let len = self.r.pick(&[8u32, 8, 8, 0, 4, 16, 128, 0xffff_ffff]);
                let mut b = vec![0u8; 4 + 128];
                put32(&mut b, 0, len);
                self.r.fill(&mut b[4..]);
                // SIGUSR1 (10) must stay deliverable: the watchdog needs it.
                b[4 + 1] &= !(1 << 1);
                if self.r.chance(20) {
                    kioctl(fd, KVM_SET_SIGNAL_MASK, 0)
                } else {
                    self.call(fd, KVM_SET_SIGNAL_MASK, &b)
                }
            }
            "get_mp_state" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_MP_STATE, &[0u8; 4])
            }
            "set_mp_state" => {
                let (fd, _v) = self.vcpu();
                let s = if self.r.chance(85) { self.r.below(10) as u32 } else { self.r.val32() };
                self.call(fd, KVM_SET_MP_STATE, &s.to_le_bytes())
            }
            "get_debugregs" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_DEBUGREGS, &[0u8; 128])
            }
            "set_debugregs" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 128];
                for k in 0..4 {
                    put64(&mut b, 8 * k, self.r.val64());
                }
                put64(&mut b, 32, if self.r.chance(50) { 0xffff_0ff0 } else { self.r.val64() });
                put64(&mut b, 40, if self.r.chance(50) { 0x400 | (self.r.u32() as u64 & 0xffff_03ff) } else { self.r.val64() });
                put64(&mut b, 48, if self.r.chance(85) { 0 } else { self.r.val64() });
                if self.r.chance(5) {
                    let i = self.r.range(56, 127) as usize;
                    b[i] = 1;
                }
                self.call(fd, KVM_SET_DEBUGREGS, &b)
            }
            "get_vcpu_events" => {
                let (fd, _v) = self.vcpu();
                self.call(fd, KVM_GET_VCPU_EVENTS, &[0u8; 64])
            }
            "set_vcpu_events" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 64];
                let r = &mut self.r;
                b[0] = r.below(2) as u8; // exception.injected
                b[1] = if r.chance(80) { r.below(32) as u8 } else { r.u8() };
                b[2] = r.below(2) as u8;
                b[3] = r.below(2) as u8; // pending
                put32(&mut b, 4, r.val32());
                b[8] = r.below(2) as u8; // interrupt.injected
                b[9] = r.u8();
                b[10] = r.below(2) as u8;
                b[11] = r.below(4) as u8;
                b[12] = r.below(2) as u8; // nmi
                b[13] = r.below(2) as u8;
                b[14] = r.below(2) as u8;
                put32(&mut b, 16, r.below(256) as u32);
                put32(&mut b, 20, if r.chance(80) { r.below(64) as u32 } else { r.val32() });
                for k in 24..28 {
                    b[k] = r.below(2) as u8;
                }
                b[28] = r.below(2) as u8; // triple_fault.pending
                put64(&mut b, 56, r.val64()); // exception_payload
                if r.chance(10) {
                    r.mutate(&mut b);
                }
                self.call(fd, KVM_SET_VCPU_EVENTS, &b)
            }
            "set_guest_debug" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 72];
                let ctl = if self.r.chance(80) {
                    let mut c = 0u32;
                    for bit in [1u32, 2, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000] {
                        if self.r.chance(30) {
                            c |= bit;
                        }
                    }
                    c
                } else {
                    self.r.val32()
                };
                put32(&mut b, 0, ctl);
                for k in 0..8 {
                    put64(&mut b, 8 + 8 * k, if self.r.chance(50) { self.r.below(0x20_0000) } else { self.r.val64() });
                }
                self.call(fd, KVM_SET_GUEST_DEBUG, &b)
            }
            "translate" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 24];
                put64(&mut b, 0, self.r.val64());
                self.call(fd, KVM_TRANSLATE, &b)
            }
            "setup_mce" => {
                let (fd, _v) = self.vcpu();
                let cap = if self.r.chance(70) { self.r.below(40) | (self.r.below(8) << 8) } else { self.r.val64() };
                self.call(fd, KVM_X86_SETUP_MCE, &cap.to_le_bytes())
            }
            "set_mce" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 64];
                for k in 0..4 {
                    put64(&mut b, 8 * k, self.r.val64());
                }
                b[32] = if self.r.chance(80) { self.r.below(12) as u8 } else { self.r.u8() };
                self.call(fd, KVM_X86_SET_MCE, &b)
            }
            "kvmclock_ctrl" => {
                let (fd, _v) = self.vcpu();
                kioctl(fd, KVM_KVMCLOCK_CTRL, 0)
            }
            "one_reg" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 16];
                put64(&mut b, 0, self.r.val64());
                let p = self.sc.inner_ptr(&mut self.r);
                put64(&mut b, 8, p);
                let req = if self.r.chance(50) { nr::KVM_GET_ONE_REG } else { nr::KVM_SET_ONE_REG };
                self.call(fd, req, &b)
            }
            "get_nested_state" | "set_nested_state" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 128 + 8192];
                let set = name == "set_nested_state";
                put16(&mut b, 0, if self.r.chance(70) { self.r.below(8) as u16 } else { self.r.u32() as u16 });
                put16(&mut b, 2, if self.r.chance(80) { self.r.below(2) as u16 } else { self.r.u32() as u16 });
                put32(&mut b, 4, self.r.pick(&[0, 127, 128, 128 + 4096, 128 + 8192, 0xffff_ffff, 64]));
                if set {
                    self.r.mutate(&mut b[8..128]);
                    if self.r.chance(50) {
                        let n = b.len();
                        self.r.fill(&mut b[128..n]);
                    }
                }
                self.call(fd, if set { nr::KVM_SET_NESTED_STATE } else { nr::KVM_GET_NESTED_STATE }, &b)
            }
            "tpr_access_reporting" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 40];
                put32(&mut b, 0, self.r.below(2) as u32);
                put32(&mut b, 4, if self.r.chance(80) { 0 } else { self.r.val32() });
                self.call(fd, nr::KVM_TPR_ACCESS_REPORTING, &b)
            }
            "pre_fault_memory" => {
                let (fd, _v) = self.vcpu();
                let mut b = vec![0u8; 64];
                put64(&mut b, 0, if self.r.chance(60) { self.r.below(0x40_0000) & !0xfff } else { self.r.val64() });
                put64(&mut b, 8, self.r.pick(&[4096, 0, 1 << 21, 1 << 30, 1]));
                put64(&mut b, 16, if self.r.chance(80) { 0 } else { self.r.val64() });
                self.call(fd, nr::KVM_PRE_FAULT_MEMORY, &b)
            }
            "poke_run_page" => {
                let (_fd, v) = self.vcpu();
                if let Some(v) = v {
                    if v.run != 0 {
                        let off = self.r.pick(&[0usize, 1, 2, 8, 12, 16, 24, 32, 40, 48, 288, 296, 304, 400, 600]) + if self.r.chance(20) { self.r.below(4096) as usize } else { 0 };
                        let val = self.r.val64();
                        let n = self.r.pick(&[1usize, 2, 4, 8]);
                        if off + n <= 4096 && !(off + n > 672 && off < 720) {
                            // SAFETY: within the first page of the vCPU mapping we hold.
                            unsafe { std::ptr::copy_nonoverlapping(val.to_le_bytes().as_ptr(), (v.run as *mut u8).add(off), n) };
                        }
                    }
                }
                0
            }
            "poke_ram" => {
                let (p, len) = self.pool_hva(true);
                let n = self.r.range(1, 256) as usize;
                let code = gen::code(&mut self.r, n);
                let off = self.r.below(len.min(MIB) - n as u64);
                // SAFETY: inside a writable pool region (always mapped).
                unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), (p + off) as *mut u8, n) };
                0
            }
            "remap_ram" | "madvise_ram" => {
                let (p, len) = self.pool_hva(true);
                let pages = len / 4096;
                let first = self.r.below(pages);
                let n = self.r.range(1, (pages - first).min(512));
                let addr = (p + first * 4096) as *mut u8;
                if name == "remap_ram" {
                    mmap_fixed(addr, (n * 4096) as usize, libc::PROT_READ | libc::PROT_WRITE);
                } else {
                    // SAFETY: a range of our own pool.
                    unsafe { libc::madvise(addr as *mut _, (n * 4096) as usize, libc::MADV_DONTNEED) };
                }
                0
            }
            "madvise_huge" | "touch_huge" => {
                let pool = &self.sh.pool;
                let mut areas = vec![(pool.base, 2 * MIB), (pool.base + pool.thp.0, pool.thp.1), (pool.base + pool.thp.0, pool.thp.1)];
                if let Some((off, len)) = pool.hugetlb {
                    areas.push((pool.base + off, len));
                }
                let (p, len) = self.r.pick(&areas);
                if name == "madvise_huge" {
                    let (a, l) = huge_subrange(&mut self.r, p, len);
                    let adv = huge_advice(&mut self.r);
                    // SAFETY: a range of our own pool (always mapped).
                    let r = unsafe { libc::madvise(a as *mut _, l as usize, adv) };
                    if r < 0 {
                        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
                    } else {
                        0
                    }
                } else {
                    // Fault (huge) pages in, one write per 4K page of a 2M chunk or part of it.
                    let chunk = p + self.r.below((len / (2 * MIB)).max(1)) * 2 * MIB;
                    let first = self.r.below(512);
                    let n = self.r.range(1, 512 - first);
                    let v = self.r.next().to_le_bytes();
                    for i in first..first + n {
                        // (process_vm_writev: a hugetlb refault the pool cannot serve is an error, not SIGBUS)
                        if self_write(chunk + i * 4096 + 64, &v) < 0 {
                            return -14;
                        }
                    }
                    0
                }
            }
            "efd_signal" => {
                let fd = self.efd();
                let one = 1u64;
                // SAFETY: writes 8 bytes to an eventfd (or a reused number: harmless).
                unsafe { libc::write(fd, &one as *const u64 as *const _, 8) };
                0
            }
            "efd_recycle" => {
                let i = self.r.below(NEFD as u64) as usize;
                let old = self.sh.efds[i].swap(-1, Ordering::SeqCst);
                close_fd(old);
                self.sh.efds[i].store(new_efd(), Ordering::SeqCst);
                0
            }
            _ => unreachable!("op {name}"),
        }
    }

    /// KVM_RUN on a shared vCPU, after fiddling with the fields user space owns;
    /// IO/MMIO reads are answered with random data on the next run.
    fn run(&mut self) -> i64 {
        let (fd, v) = self.vcpu();
        let run = v.as_ref().map(|v| v.run).unwrap_or(0);
        if self.det() {
            // Only the deterministic part: immediate_exit makes KVM_RUN return EINTR
            // after its checks, without entering the guest.
            if run == 0 {
                return kioctl(fd, KVM_RUN, 0xdead_0000);
            }
            // SAFETY: the vCPU's kvm_run page, held through `v`.
            unsafe { std::ptr::write_volatile((run as *mut u8).add(1), 1) };
            let r = kioctl(fd, KVM_RUN, 0);
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile((run as *mut u8).add(1), 0) };
            return r;
        }
        if run != 0 {
            let p = run as *mut u8;
            let r = &mut self.r;
            // SAFETY: the first page of the vCPU mapping, held through `v`.
            unsafe {
                std::ptr::write_volatile(p.add(1), if r.chance(8) { 1 } else { 0 });
                std::ptr::write_volatile(p, if r.chance(20) { 1 } else { 0 });
                if r.chance(5) {
                    // sync regs: kvm_valid_regs @288, kvm_dirty_regs @296
                    std::ptr::write_volatile(p.add(288) as *mut u64, if r.chance(70) { r.below(8) } else { r.val64() });
                    std::ptr::write_volatile(p.add(296) as *mut u64, if r.chance(70) { r.below(8) } else { r.val64() });
                    if r.chance(50) {
                        let off = (304 + r.below(1024) as usize) & !7;
                        // not the synced sregs' CR0..EFER (see tcg_safe_sregs)
                        if !(672..720).contains(&off) {
                            std::ptr::write_volatile(p.add(off) as *mut u64, r.val64());
                        }
                    }
                } else {
                    std::ptr::write_volatile(p.add(296) as *mut u64, 0);
                }
                // Answer an IO/MMIO read with random data.
                let reason = std::ptr::read_volatile(p.add(8) as *const u32);
                if reason == kvm_uapi::KVM_EXIT_IO {
                    let size = *p.add(33) as usize;
                    let count = (p.add(36) as *const u32).read_unaligned() as usize;
                    let off = (p.add(40) as *const u64).read_unaligned() as usize;
                    let n = size.saturating_mul(count);
                    if off < v.as_ref().unwrap().map_size && n <= v.as_ref().unwrap().map_size - off {
                        let data = r.bytes(n.min(4096));
                        std::ptr::copy_nonoverlapping(data.as_ptr(), p.add(off), data.len());
                    }
                } else if reason == kvm_uapi::KVM_EXIT_MMIO {
                    std::ptr::write_volatile(p.add(40) as *mut u64, r.val64());
                }
            }
        }
        kioctl(fd, KVM_RUN, 0)
    }
}

pub fn msi_data(r: &mut Rng) -> u32 {
    if r.chance(85) {
        let vec = if r.chance(80) { r.range(16, 255) } else { r.below(16) } as u32;
        let dm = r.pick(&[0u32, 0, 0, 1, 2, 4, 5, 6, 7, 3]);
        vec | (dm << 8) | ((r.below(2) as u32) << 14) | ((r.below(2) as u32) << 15)
    } else {
        r.val32()
    }
}
