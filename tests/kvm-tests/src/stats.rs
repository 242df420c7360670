//! Binary statistics (KVM_GET_STATS_FD): the file layout and descriptor checks
//! of upstream's kvm_binary_stats_test, upstream's stat names, and counters
//! that move by exactly what a guest does (N port writes are N io_exits).

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("stats/cap_binary_stats_fd", cap),
        ("stats/vm_file_layout_and_descriptors", vm_layout),
        ("stats/vcpu_file_layout_and_descriptors", vcpu_layout),
        ("stats/read_only_pread_pieces_and_eof", read_only_and_pieces),
        ("stats/outlive_vm_and_vcpu_files", outlive),
        ("stats/pio_exits_counted", pio_counted),
        ("stats/mmio_exits_counted", mmio_counted),
        ("stats/vm_pages_and_remote_tlb_flush", vm_pages),
    ]
}

/// A parsed stats file.
struct Stats {
    fd: OwnedFd,
    name_size: u32,
    num_desc: u32,
    id_offset: u32,
    desc_offset: u32,
    data_offset: u32,
    id: String,
    descs: Vec<Desc>,
}

#[derive(Clone, Debug)]
struct Desc {
    flags: u32,
    exponent: i16,
    size: u16,
    offset: u32,
    bucket_size: u32,
    name: String,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn pread(fd: &OwnedFd, len: usize, off: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    // SAFETY: reads into our buffer of `len` bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, off as i64) };
    if n < 0 {
        return Err(format!("pread({len}, {off}): {}", std::io::Error::last_os_error()));
    }
    buf.truncate(n as usize);
    Ok(buf)
}

fn stats_fd(fd: &impl AsRawFd) -> Result<OwnedFd, String> {
    let r = ioctl_val(fd, KVM_GET_STATS_FD, 0).map_err(|e| format!("KVM_GET_STATS_FD: errno {e}"))?;
    // SAFETY: a new descriptor the ioctl returned.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

impl Stats {
    fn open(owner: &impl AsRawFd) -> Result<Stats, String> {
        let fd = stats_fd(owner)?;
        let h = pread(&fd, 24, 0)?;
        if h.len() != 24 {
            return Err(format!("header read {} bytes", h.len()));
        }
        let (name_size, num_desc) = (u32_at(&h, 4), u32_at(&h, 8));
        let (id_offset, desc_offset, data_offset) = (u32_at(&h, 12), u32_at(&h, 16), u32_at(&h, 20));
        let id_raw = pread(&fd, name_size as usize, id_offset as u64)?;
        let id = String::from_utf8_lossy(id_raw.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
        let dsize = 16 + name_size as usize;
        let raw = pread(&fd, dsize * num_desc as usize, desc_offset as u64)?;
        if raw.len() != dsize * num_desc as usize {
            return Err(format!("descriptors: read {} of {} bytes", raw.len(), dsize * num_desc as usize));
        }
        let descs = raw
            .chunks(dsize)
            .map(|d| Desc {
                flags: u32_at(d, 0),
                exponent: i16::from_le_bytes([d[4], d[5]]),
                size: u16::from_le_bytes([d[6], d[7]]),
                offset: u32_at(d, 8),
                bucket_size: u32_at(d, 12),
                name: String::from_utf8_lossy(d[16..].split(|&c| c == 0).next().unwrap_or(&[])).into_owned(),
            })
            .collect();
        Ok(Stats { fd, name_size, num_desc, id_offset, desc_offset, data_offset, id, descs })
    }

    fn desc(&self, name: &str) -> Result<&Desc, String> {
        self.descs.iter().find(|d| d.name == name).ok_or_else(|| format!("no stat {name}"))
    }

    /// A statistic's value (summed over a histogram's buckets).
    fn get(&self, name: &str) -> Result<u64, String> {
        let d = self.desc(name)?;
        let b = pread(&self.fd, 8 * d.size as usize, self.data_offset as u64 + d.offset as u64)?;
        check!(b.len() == 8 * d.size as usize, "short read of {name}");
        Ok(b.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).sum())
    }

    /// The header and descriptor checks of kvm_binary_stats_test.c.
    fn sanity(&self) -> TestResult {
        check_eq!(self.name_size, 48);
        check!(self.num_desc > 0);
        check!(self.id.starts_with("kvm") && self.id.len() < self.name_size as usize, "id {:?}", self.id);
        check_eq!(self.id_offset, 24);
        let dsize = 16 + self.name_size;
        check!(self.desc_offset >= 24 && self.data_offset >= 24);
        check!(self.desc_offset > self.data_offset || self.desc_offset + dsize * self.num_desc <= self.data_offset);
        let mut size_data = 0u32;
        for d in &self.descs {
            let (ty, unit, base) = (d.flags & 0xf, d.flags & 0xf0, d.flags & 0xf00);
            check!(d.name.len() < self.name_size as usize && !d.name.is_empty());
            check!(ty <= KVM_STATS_TYPE_MAX && unit <= KVM_STATS_UNIT_MAX && base <= KVM_STATS_BASE_MAX, "{} flags {:#x}", d.name, d.flags);
            match unit {
                KVM_STATS_UNIT_NONE | KVM_STATS_UNIT_BYTES | KVM_STATS_UNIT_CYCLES => check!(d.exponent >= 0, "{}", d.name),
                KVM_STATS_UNIT_SECONDS => check!(d.exponent <= 0, "{}", d.name),
                KVM_STATS_UNIT_BOOLEAN => check!(d.exponent == 0, "{}", d.name),
                _ => {}
            }
            check!(d.size > 0, "{}", d.name);
            check_eq!(d.bucket_size != 0, ty == KVM_STATS_TYPE_LINEAR_HIST);
            size_data = size_data.max(d.offset + 8 * d.size as u32);
        }
        check!(self.data_offset >= self.desc_offset || self.data_offset + size_data <= self.desc_offset);
        check!(size_data >= 8 * self.num_desc);
        let all = pread(&self.fd, size_data as usize, self.data_offset as u64)?;
        check_eq!(all.len(), size_data as usize);
        // Reading past the data gives nothing.
        check_eq!(pread(&self.fd, 64, (self.data_offset + size_data) as u64)?.len(), 0);
        Ok(())
    }
}

/// Upstream 6.12's x86 VM statistics, in its order.
const VM_STATS: &[&str] = &[
    "remote_tlb_flush", "remote_tlb_flush_requests", "mmu_shadow_zapped", "mmu_pte_write",
    "mmu_pde_zapped", "mmu_flooded", "mmu_recycled", "mmu_cache_miss", "mmu_unsync", "pages_4k",
    "pages_2m", "pages_1g", "nx_lpage_splits", "max_mmu_rmap_size", "max_mmu_page_hash_collisions",
];

/// Upstream 6.12's x86 vCPU statistics, in its order.
const VCPU_STATS: &[&str] = &[
    "halt_successful_poll", "halt_attempted_poll", "halt_poll_invalid", "halt_wakeup",
    "halt_poll_success_ns", "halt_poll_fail_ns", "halt_wait_ns", "halt_poll_success_hist",
    "halt_poll_fail_hist", "halt_wait_hist", "blocking", "pf_taken", "pf_fixed", "pf_emulate",
    "pf_spurious", "pf_fast", "pf_mmio_spte_created", "pf_guest", "tlb_flush", "invlpg", "exits",
    "io_exits", "mmio_exits", "signal_exits", "irq_window_exits", "nmi_window_exits", "l1d_flush",
    "halt_exits", "request_irq_exits", "irq_exits", "host_state_reload", "fpu_reload",
    "insn_emulation", "insn_emulation_fail", "hypercalls", "irq_injections", "nmi_injections",
    "req_event", "nested_run", "directed_yield_attempted", "directed_yield_successful",
    "preemption_reported", "preemption_other", "guest_mode", "notify_window_exits",
];

fn pid() -> u32 {
    std::process::id()
}

fn cap() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD as u64), Ok(1));
    Ok(())
}

fn vm_layout() -> TestResult {
    let vm = Vm::new()?;
    let s = Stats::open(&vm.fd)?;
    s.sanity()?;
    check_eq!(s.id, format!("kvm-{}", pid()));
    let names: Vec<&str> = s.descs.iter().map(|d| d.name.as_str()).collect();
    check_eq!(names, VM_STATS.to_vec());
    // pages_4k is an instant counter, max_mmu_rmap_size a peak one.
    check_eq!(s.desc("pages_4k")?.flags, KVM_STATS_TYPE_INSTANT);
    check_eq!(s.desc("max_mmu_rmap_size")?.flags, KVM_STATS_TYPE_PEAK);
    check_eq!(s.desc("remote_tlb_flush")?.offset, 0);
    Ok(())
}

fn vcpu_layout() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(3)?;
    let s = Stats::open(&v.fd)?;
    s.sanity()?;
    check_eq!(s.id, format!("kvm-{}/vcpu-3", pid()));
    let names: Vec<&str> = s.descs.iter().map(|d| d.name.as_str()).collect();
    check_eq!(names, VCPU_STATS.to_vec());
    let h = s.desc("halt_wait_hist")?;
    check_eq!((h.flags, h.exponent, h.size), (KVM_STATS_TYPE_LOG_HIST | KVM_STATS_UNIT_SECONDS, -9, 32));
    let ns = s.desc("halt_wait_ns")?;
    check_eq!((ns.flags, ns.exponent), (KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS, -9));
    check_eq!(s.desc("blocking")?.flags, KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BOOLEAN);
    check_eq!(s.desc("exits")?.offset, 8 * (4 + 3 + 3 * 32 + 1 + 9));
    check_eq!(s.get("exits")?, 0);
    Ok(())
}

fn read_only_and_pieces() -> TestResult {
    let vm = Vm::new()?;
    let s = Stats::open(&vm.fd)?;
    // SAFETY: fcntl on our descriptor.
    let fl = unsafe { libc::fcntl(s.fd.as_raw_fd(), libc::F_GETFL) };
    check_eq!(fl & libc::O_ACCMODE, libc::O_RDONLY);
    check_eq!(fl & libc::O_CLOEXEC, 0);
    // SAFETY: as above.
    check!(unsafe { libc::fcntl(s.fd.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC != 0);
    // SAFETY: a one-byte write from our buffer.
    let w = unsafe { libc::write(s.fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    check!(w == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF));
    // The whole file at once equals the file read in odd-sized pieces.
    let total = (s.data_offset + 8 * 15) as usize;
    let whole = pread(&s.fd, total + 100, 0)?;
    check_eq!(whole.len(), total);
    let mut pieces = Vec::new();
    while pieces.len() < total {
        let p = pread(&s.fd, 7, pieces.len() as u64)?;
        check!(!p.is_empty());
        pieces.extend_from_slice(&p);
    }
    check!(whole == pieces);
    check_eq!(pread(&s.fd, 8, 1 << 40)?.len(), 0);
    Ok(())
}

fn outlive() -> TestResult {
    let (vm, v, _mem) = vm_with_ram(0x10000)?;
    let vs = Stats::open(&vm.fd)?;
    let cs = Stats::open(&v.fd)?;
    drop(v);
    drop(vm);
    vs.sanity()?;
    cs.sanity()?;
    check_eq!(cs.get("exits")?, 0);
    Ok(())
}

/// Runs the guest at CODE until it halts; returns how many port writes user
/// space saw.
fn run_to_hlt(v: &Vcpu) -> Result<u64, String> {
    let mut outs = 0;
    loop {
        let r = v.run().map_err(|e| format!("KVM_RUN: errno {e}"))?;
        match r {
            KVM_EXIT_IO => outs += 1,
            KVM_EXIT_MMIO => outs += 1,
            KVM_EXIT_HLT => return Ok(outs),
            _ => return Err(format!("exit {} ({r})", exit_name(r))),
        }
    }
}

fn pio_counted() -> TestResult {
    const N: u64 = 25;
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // mov cx,N; l: out 0x10,al; loop l; hlt
    poke(mem, 0x1000, &[0xb9, N as u8, 0x00, 0xe6, 0x10, 0xe2, 0xfc, 0xf4]);
    v.real_mode_at(0x1000)?;
    let s = Stats::open(&v.fd)?;
    let names = ["exits", "io_exits", "halt_exits", "mmio_exits", "pf_taken", "pf_fixed"];
    let before: Vec<u64> = names.iter().map(|n| s.get(n)).collect::<Result<_, _>>()?;
    check_eq!(run_to_hlt(&v)?, N);
    let after: Vec<u64> = names.iter().map(|n| s.get(n)).collect::<Result<_, _>>()?;
    let d = |i: usize| after[i] - before[i];
    check!(d(1) == N, "io_exits +{}, expected +{}", d(1), N);
    check!(d(2) == 1, "halt_exits +{}, expected +{}", d(2), 1);
    check!(d(3) == 0, "mmio_exits +{}, expected +{}", d(3), 0);
    // The code page faulted in (at least once), and every exit counts.
    check!(d(4) >= 1 && d(5) >= 1, "pf_taken +{} pf_fixed +{}", d(4), d(5));
    check!(d(0) >= N + 1 + d(4), "exits +{} for {N} OUTs, a HLT and {} faults", d(0), d(4));
    check!(d(0) <= N + 1 + d(4) + 20, "exits +{}", d(0));
    Ok(())
}

fn mmio_counted() -> TestResult {
    const N: u64 = 10;
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // 32-bit flat protected mode: mov ecx,N; l: mov [0xd0000000],al; loop l; hlt
    poke(mem, 0x1000, &[0xb9, N as u8, 0, 0, 0, 0xa2, 0x00, 0x00, 0x00, 0xd0, 0xe2, 0xf9, 0xf4]);
    v.protected_mode_at(0x1000)?;
    let s = Stats::open(&v.fd)?;
    let names = ["mmio_exits", "io_exits", "insn_emulation", "halt_exits"];
    let before: Vec<u64> = names.iter().map(|n| s.get(n)).collect::<Result<_, _>>()?;
    check_eq!(run_to_hlt(&v)?, N);
    let after: Vec<u64> = names.iter().map(|n| s.get(n)).collect::<Result<_, _>>()?;
    let d = |i: usize| after[i] - before[i];
    check!(d(0) == N, "mmio_exits +{}, expected +{}", d(0), N);
    check!(d(1) == 0, "io_exits +{}, expected +{}", d(1), 0);
    check!(d(2) >= N, "insn_emulation +{}", d(2));
    check!(d(3) == 1, "halt_exits +{}, expected +{}", d(3), 1);
    Ok(())
}

fn vm_pages() -> TestResult {
    let (mut vm, v, mem) = vm_with_ram(0x10000)?;
    // Slot 1 logs dirty pages: KVM_GET_DIRTY_LOG write-protects what the
    // guest wrote and flushes the VM's TLBs (kvm_flush_remote_tlbs), which is
    // where upstream counts remote_tlb_flush(_requests).
    let extra = vm.add_mem(1, 0x20000, 0x4000, KVM_MEM_LOG_DIRTY_PAGES)?;
    // Touch the 4 pages of slot 1, then halt.
    // mov ax,0x2000; mov ds,ax; mov [0],al; mov [0x1000],al; mov [0x2000],al; mov [0x3000],al; hlt
    poke(
        mem,
        0x1000,
        &[0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xa2, 0x00, 0x00, 0xa2, 0x00, 0x10, 0xa2, 0x00, 0x20, 0xa2, 0x00, 0x30, 0xf4],
    );
    v.real_mode_at(0x1000)?;
    let s = Stats::open(&vm.fd)?;
    let pages = |s: &Stats| -> Result<u64, String> { Ok(s.get("pages_4k")? + 512 * s.get("pages_2m")? + 512 * 512 * s.get("pages_1g")?) };
    let p0 = pages(&s)?;
    check_eq!(run_to_hlt(&v)?, 0);
    let p1 = pages(&s)?;
    check!(p1 >= p0 + 5, "pages mapped {p0} -> {p1} (code page and 4 data pages)");
    let (requests, flushes) = (s.get("remote_tlb_flush_requests")?, s.get("remote_tlb_flush")?);
    let mut bitmap = 0u64;
    let mut log = kvm_dirty_log { slot: 1, ..Default::default() };
    log.__bindgen_anon_1.dirty_bitmap = &mut bitmap as *mut u64 as *mut core::ffi::c_void;
    ioctl_ptr(&vm.fd, KVM_GET_DIRTY_LOG, &mut log).map_err(|e| format!("KVM_GET_DIRTY_LOG: errno {e}"))?;
    check_eq!(bitmap, 0xf);
    check!(s.get("remote_tlb_flush_requests")? > requests);
    // remote_tlb_flush counts flushes that had to kick a running vCPU; this
    // one is idle in user space.
    check_eq!(s.get("remote_tlb_flush")?, flushes);
    // Deleting slot 1 unmaps its pages.
    vm.set_region(1, 0x20000, 0, extra as u64, 0).map_err(|e| format!("delete slot: errno {e}"))?;
    let p2 = pages(&s)?;
    check!(p2 + 4 <= p1, "pages after deleting the slot: {p1} -> {p2}");
    Ok(())
}
