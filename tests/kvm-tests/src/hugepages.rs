//! Huge (2M) NPT/EPT mappings: a slot backed by 2M host pages (THP or
//! hugetlbfs) whose guest-physical and host-virtual addresses agree modulo 2M
//! is mapped with 2M leaf entries, counted in the VM's binary statistic
//! pages_2m; dirty logging splits them (upstream's eager_page_split=Y at the
//! moment logging is enabled) and logs exactly the 4K pages written; when
//! logging stops, the guest's next accesses map 2M again (upstream zaps the
//! collapsible 4K tables, kvm_mmu_zap_collapsible_sptes). A slot whose
//! guest-physical address is not 2M-aligned relative to its host address can
//! never be mapped huge (upstream's disallow_lpage for the whole slot).

use crate::guest::*;
use crate::guests::get_dirty_log;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("memory/thp_slot_maps_2m", thp_maps_2m),
        ("memory/thp_dirty_log_splits_exact", thp_dirty_log_split),
        ("memory/dirty_log_off_keeps_4k_mappings", dirty_log_off_keeps_4k),
        ("memory/nx_huge_pages_fetch_maps_4k", nx_huge_fetch),
        ("memory/hugetlbfs_slot_maps_2m", hugetlbfs_maps_2m),
        ("memory/hugetlbfs_1g_slot_maps_1g", hugetlbfs_1g_maps_1g),
    ]
}

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;
/// The data slot: 64M at 256M (2M-aligned), slot 1; code and stack in slot 0.
const SIZE: usize = 64 << 20;
const PAGES: usize = SIZE / PAGE;
const GPA: u64 = 0x1000_0000;
const CODE: u64 = 0x1000;

/// The VM's binary statistics file (KVM_GET_STATS_FD), read by name.
struct VmStats {
    fd: OwnedFd,
    data_offset: u64,
    /// (name, offset in the data block) of each descriptor.
    descs: Vec<(String, u64)>,
}

fn pread(fd: &OwnedFd, len: usize, off: u64) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; len];
    // SAFETY: reads into our buffer of `len` bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, off as i64) };
    if n != len as isize {
        return Err(format!("stats pread({len}, {off}) = {n}: {}", std::io::Error::last_os_error()));
    }
    Ok(buf)
}

impl VmStats {
    fn open(vm: &Vm) -> Result<VmStats, String> {
        let r = ioctl_val(&vm.fd, KVM_GET_STATS_FD, 0).map_err(|e| format!("KVM_GET_STATS_FD: errno {e}"))?;
        // SAFETY: a new descriptor the ioctl returned.
        let fd = unsafe { OwnedFd::from_raw_fd(r as i32) };
        let h = pread(&fd, 24, 0)?;
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let (name_size, num_desc) = (u32_at(&h, 4) as usize, u32_at(&h, 8) as usize);
        let (desc_offset, data_offset) = (u32_at(&h, 16) as u64, u32_at(&h, 20) as u64);
        let dsize = 16 + name_size;
        let raw = pread(&fd, dsize * num_desc, desc_offset)?;
        let descs = raw
            .chunks(dsize)
            .map(|d| {
                let name = String::from_utf8_lossy(d[16..].split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
                (name, u32_at(d, 8) as u64)
            })
            .collect();
        Ok(VmStats { fd, data_offset, descs })
    }

    /// A (single-value) statistic.
    fn get(&self, name: &str) -> Result<u64, String> {
        let off = self.descs.iter().find(|d| d.0 == name).ok_or_else(|| format!("no stat {name}"))?.1;
        let b = pread(&self.fd, 8, self.data_offset + off)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// (pages_4k, pages_2m).
    fn pages(&self) -> Result<(u64, u64), String> {
        Ok((self.get("pages_4k")?, self.get("pages_2m")?))
    }

    /// (pages_4k, pages_2m, pages_1g).
    fn pages3(&self) -> Result<(u64, u64, u64), String> {
        Ok((self.get("pages_4k")?, self.get("pages_2m")?, self.get("pages_1g")?))
    }
}

/// A mapping of ours, unmapped when dropped (also when a check fails).
struct Mapping {
    raw: *mut u8,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: a mapping this module made and no longer uses.
        unsafe { libc::munmap(self.raw.cast(), self.len) };
    }
}

/// Writes `value` to a sysfs/procfs file now and the old contents back when
/// dropped, so that a failing test leaves the VM's settings as it found them.
struct Setting {
    path: &'static str,
    old: String,
}

impl Setting {
    fn set(path: &'static str, value: &str) -> Result<Setting, String> {
        let old = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))?;
        Ok(Setting { path, old })
    }
}

impl Drop for Setting {
    fn drop(&mut self) {
        // THP's files show every mode with the active one bracketed ("always
        // [madvise] never"): write back the bracketed word.
        let old = match (self.old.find('['), self.old.find(']')) {
            (Some(a), Some(b)) if a < b => &self.old[a + 1..b],
            _ => self.old.trim(),
        };
        let _ = std::fs::write(self.path, old);
    }
}

/// Makes THP usable for MADV_HUGEPAGE mappings (the test VM is ours: we are
/// root). Keeps "always" or "madvise"; turns "never" into "madvise".
fn thp_on() -> Result<Option<Setting>, String> {
    const P: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
    let cur = std::fs::read_to_string(P).map_err(|e| format!("{P}: {e} (kernel without THP?)"))?;
    if cur.contains("[never]") {
        return Setting::set(P, "madvise").map(Some);
    }
    Ok(None)
}

/// 64M of anonymous memory at a 2M-aligned address with MADV_HUGEPAGE.
fn thp_mem() -> Result<(Mapping, *mut u8), String> {
    let raw = anon(SIZE + HUGE)?;
    let m = Mapping { raw, len: SIZE + HUGE };
    let start = ((raw as usize + HUGE - 1) & !(HUGE - 1)) as *mut u8;
    // SAFETY: advice on our own mapping.
    let r = unsafe { libc::madvise(start.cast(), SIZE, libc::MADV_HUGEPAGE) };
    check!(r == 0, "madvise(MADV_HUGEPAGE): {}", std::io::Error::last_os_error());
    Ok((m, start))
}

/// The AnonHugePages (kB) of the mapping starting at `start`, from
/// /proc/self/smaps: how much of it the host maps with 2M pages, which
/// bounds what KVM can map 2M.
fn anon_huge_kb(start: *mut u8) -> Result<u64, String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("smaps: {e}"))?;
    let head = format!("{:x}-", start as usize);
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    check!(lines.next().is_some(), "no VMA at {head} in smaps");
    for l in lines {
        if let Some(v) = l.strip_prefix("AnonHugePages:") {
            return v.trim().trim_end_matches("kB").trim().parse().map_err(|e| format!("AnonHugePages {v:?}: {e}"));
        }
    }
    Err("no AnonHugePages line".into())
}

/// A VM whose slot 0 (64K at 0) holds the code, with `data` as slot 1 at
/// `gpa`, and one vCPU.
fn vm_with(data: *mut u8, gpa: u64, size: usize) -> Result<(Vm, Vcpu, *mut u8), String> {
    let mut vm = Vm::new()?;
    let code = vm.add_mem(0, 0, 0x10000, 0)?;
    vm.set_region(1, gpa, size as u64, data as u64, 0).map_err(|e| format!("SET_USER_MEMORY_REGION slot 1: errno {e}"))?;
    let v = vm.vcpu(0)?;
    Ok((vm, v, code))
}

/// Runs flat 32-bit code that writes, to every 4K page of [gpa, gpa+size),
/// the page's own address at offset 0 and `tag` at offset 4, then halts.
fn touch_all(v: &Vcpu, code: *mut u8, gpa: u64, size: usize, tag: u32) -> TestResult {
    let (g, n, t) = ((gpa as u32).to_le_bytes(), ((size / PAGE) as u32).to_le_bytes(), tag.to_le_bytes());
    #[rustfmt::skip]
    let prog = [
        0xbf, g[0], g[1], g[2], g[3], // mov edi, gpa
        0xb9, n[0], n[1], n[2], n[3], // mov ecx, pages
        0xba, t[0], t[1], t[2], t[3], // mov edx, tag
        0x89, 0x3f,                   // l: mov [edi], edi
        0x89, 0x57, 0x04,             //    mov [edi+4], edx
        0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, // add edi, 0x1000
        0xe2, 0xf3,                   //    loop l
        0xf4,                         // hlt
    ];
    poke(code, CODE as usize, &prog);
    v.protected_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_HLT)
}

/// Runs flat 32-bit code that writes `tag` to offset 8 of each page in
/// `pages` (page numbers of the slot at `gpa`), in order, then halts.
fn write_pages(v: &Vcpu, code: *mut u8, gpa: u64, pages: &[usize], tag: u32) -> TestResult {
    let mut prog = vec![];
    for &p in pages {
        prog.extend_from_slice(&[0xc7, 0x05]); // mov dword [addr], tag
        prog.extend_from_slice(&((gpa as usize + p * PAGE + 8) as u32).to_le_bytes());
        prog.extend_from_slice(&tag.to_le_bytes());
    }
    prog.push(0xf4);
    poke(code, CODE as usize, &prog);
    v.protected_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_HLT)
}

fn read_u32(p: *mut u8, off: usize) -> u32 {
    // SAFETY: offsets inside the slot's mapping.
    unsafe { p.add(off).cast::<u32>().read_volatile() }
}

/// User space sees what `touch_all(.., gpa, size, tag)` wrote on every page.
fn check_touched(mem: *mut u8, gpa: u64, size: usize, tag: u32) -> TestResult {
    for p in 0..size / PAGE {
        let (a, t) = (read_u32(mem, p * PAGE), read_u32(mem, p * PAGE + 4));
        check!(a == (gpa as usize + p * PAGE) as u32 && t == tag, "page {p}: user space reads {a:#x}, {t:#x}; the guest wrote {:#x}, {tag:#x}", gpa as usize + p * PAGE);
    }
    Ok(())
}

fn thp_maps_2m() -> TestResult {
    let _thp = thp_on()?;
    let (_m, mem) = thp_mem()?;
    let (vm, v, code) = vm_with(mem, GPA, SIZE)?;
    let s = VmStats::open(&vm)?;
    check_eq!(s.pages()?.1, 0);
    // The guest's writes are the first touch of the memory: KVM's fault-in
    // (get_user_pages) allocates the transparent huge pages itself.
    touch_all(&v, code, GPA, SIZE, 0x7e57_0001)?;
    let (p4k, p2m) = s.pages()?;
    let huge = anon_huge_kb(mem)? / 2048;
    check!(huge > 0, "the host kernel gave the region no transparent huge page (AnonHugePages 0)");
    // Every 2M range the host maps with a huge page, KVM maps with one 2M
    // entry (upstream: 32 of 32 in the test VM); the code slot is 4K.
    check!(p2m == huge, "pages_2m {p2m} (pages_4k {p4k}), host huge pages in the slot {huge}");
    check_touched(mem, GPA, SIZE, 0x7e57_0001)
}

fn thp_dirty_log_split() -> TestResult {
    let _thp = thp_on()?;
    let (_m, mem) = thp_mem()?;
    let (vm, v, code) = vm_with(mem, GPA, SIZE)?;
    let s = VmStats::open(&vm)?;
    touch_all(&v, code, GPA, SIZE, 1)?;
    let (p4k, p2m) = s.pages()?;
    check!(p2m > 0 && p2m == anon_huge_kb(mem)? / 2048, "pages_2m {p2m} before logging");
    // Enabling dirty logging splits every huge mapping of the slot at once
    // (eager_page_split): each 2M entry becomes a full table of 512 4K entries.
    vm.set_region(1, GPA, SIZE as u64, mem as u64, KVM_MEM_LOG_DIRTY_PAGES).map_err(|e| format!("enable logging: errno {e}"))?;
    let (q4k, q2m) = s.pages()?;
    check!(q2m == 0, "pages_2m {q2m} after enabling dirty logging (was {p2m})");
    check!(q4k == p4k + 512 * p2m, "pages_4k {p4k} -> {q4k} after splitting {p2m} huge pages");
    let log = |vm: &Vm| get_dirty_log(vm, 1, PAGES).map_err(|e| format!("KVM_GET_DIRTY_LOG: errno {e}"));
    let bits = |pages: &[usize]| dirty_bits(PAGES, pages);
    let set = |b: &[u64]| dirty_set(PAGES, b);
    // Nothing written since logging began.
    let b = log(&vm)?;
    check!(b == bits(&[]), "dirty right after enabling: {:?}", set(&b));
    // Pages on both sides of 2M boundaries (511/512), in the middle and the last one.
    let written = [3, 511, 512, 700, 5000, PAGES - 1];
    write_pages(&v, code, GPA, &[700, 3, 511, 512, 3, 5000, PAGES - 1, 700], 0xd1d1)?;
    let b = log(&vm)?;
    check!(b == bits(&written), "dirty log {:?}, the guest wrote {written:?}", set(&b));
    for p in written {
        check_eq!(read_u32(mem, p * PAGE + 8), 0xd1d1);
    }
    // KVM_GET_DIRTY_LOG cleared and write-protected them: only a new write shows.
    check!(log(&vm)? == bits(&[]));
    write_pages(&v, code, GPA, &[512], 0xd2d2)?;
    let b = log(&vm)?;
    check!(b == bits(&[512]), "dirty log {:?} after writing page 512 again", set(&b));
    // Logging off: the 4K mappings that could be huge are dropped, and the
    // guest's next touches map 2M again, as many as before.
    vm.set_region(1, GPA, SIZE as u64, mem as u64, 0).map_err(|e| format!("disable logging: errno {e}"))?;
    let (r4k, r2m) = s.pages()?;
    check!(r2m == 0 && r4k < q4k, "after disabling logging: pages_4k {r4k} (was {q4k}), pages_2m {r2m}");
    touch_all(&v, code, GPA, SIZE, 2)?;
    let (_, t2m) = s.pages()?;
    check!(t2m == p2m, "pages_2m {t2m} after logging off and a new touch, {p2m} before logging");
    check_touched(mem, GPA, SIZE, 2)
}

/// Memory the host maps with 4K pages (MADV_NOHUGEPAGE, as the selftests'
/// "anonymous" backing) keeps its 4K mappings when dirty logging stops: only
/// ranges the host backs with huge pages are dropped to be mapped huge again
/// (upstream's kvm_mmu_zap_collapsible_sptes). Zapping them all would make
/// the guest fault every page in again (kvm_page_table_test: 10 s against
/// upstream's 0.08 s).
fn dirty_log_off_keeps_4k() -> TestResult {
    let (_m, mem) = thp_mem()?;
    // SAFETY: advice on our own mapping.
    let r = unsafe { libc::madvise(mem.cast(), SIZE, libc::MADV_NOHUGEPAGE) };
    check!(r == 0, "madvise(MADV_NOHUGEPAGE): {}", std::io::Error::last_os_error());
    let (vm, v, code) = vm_with(mem, GPA, SIZE)?;
    let s = VmStats::open(&vm)?;
    touch_all(&v, code, GPA, SIZE, 1)?;
    let (p4k, p2m) = s.pages()?;
    check!(p2m == 0 && p4k >= PAGES as u64, "pages_4k {p4k}, pages_2m {p2m} with 4K host pages");
    vm.set_region(1, GPA, SIZE as u64, mem as u64, KVM_MEM_LOG_DIRTY_PAGES).map_err(|e| format!("enable logging: errno {e}"))?;
    check_eq!(s.pages()?, (p4k, 0));
    vm.set_region(1, GPA, SIZE as u64, mem as u64, 0).map_err(|e| format!("disable logging: errno {e}"))?;
    check_eq!(s.pages()?, (p4k, 0));
    touch_all(&v, code, GPA, SIZE, 2)?;
    check_eq!(s.pages()?, (p4k, 0));
    check_touched(mem, GPA, SIZE, 2)
}

/// kvm.nx_huge_pages (the iTLB multihit mitigation, Y by default on CPUs with
/// that bug, as Bochs's Skylake-X): huge mappings stay, but not executable;
/// the guest's first instruction fetch from one replaces it with 4K mappings
/// (upstream zaps the huge entry and maps the fetched page; ours splits it
/// into 512 executable 4K entries), and the code runs.
fn nx_huge_fetch() -> TestResult {
    let _thp = thp_on()?;
    let _nx = Setting::set("/sys/module/kvm/parameters/nx_huge_pages", "force")?;
    let (_m, mem) = thp_mem()?;
    let (vm, v, code) = vm_with(mem, GPA, SIZE)?;
    let s = VmStats::open(&vm)?;
    touch_all(&v, code, GPA, SIZE, 1)?;
    let (p4k, p2m) = s.pages()?;
    check!(p2m > 0 && p2m == anon_huge_kb(mem)? / 2048, "pages_2m {p2m} (pages_4k {p4k}) for data with nx_huge_pages");
    // mov eax, 0x1234abcd; hlt, on the second page of the slot.
    poke(mem, PAGE, &[0xb8, 0xcd, 0xab, 0x34, 0x12, 0xf4]);
    v.protected_mode_at(GPA + PAGE as u64)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rax as u32, 0x1234_abcd);
    let (q4k, q2m) = s.pages()?;
    check!(q2m == p2m - 1 && q4k > p4k, "after the fetch: pages_2m {p2m} -> {q2m}, pages_4k {p4k} -> {q4k}");
    // The guest's data around it is intact (page 1 now holds the code).
    for p in [0, 2, 511, 512, PAGES - 1] {
        check_eq!((read_u32(mem, p * PAGE), read_u32(mem, p * PAGE + 4)), ((GPA as usize + p * PAGE) as u32, 1));
    }
    Ok(())
}

/// A dirty bitmap of `npages` pages with `pages` set.
fn dirty_bits(npages: usize, pages: &[usize]) -> Vec<u64> {
    let mut b = vec![0u64; npages.div_ceil(64)];
    pages.iter().for_each(|&p| b[p / 64] |= 1 << (p % 64));
    b
}

/// The pages set in a dirty bitmap of `npages` pages (for messages).
fn dirty_set(npages: usize, b: &[u64]) -> Vec<usize> {
    (0..npages).filter(|&p| b[p / 64] >> (p % 64) & 1 != 0).collect()
}

/// hugetlbfs pages come from the pool: reserve `n` more 2M pages for the test.
fn reserve_hugepages(n: u64) -> Result<Setting, String> {
    const P: &str = "/proc/sys/vm/nr_hugepages";
    let old: u64 = std::fs::read_to_string(P).map_err(|e| format!("{P}: {e}"))?.trim().parse().map_err(|e| format!("{P}: {e}"))?;
    let s = Setting::set(P, &(old + n).to_string())?;
    let now: u64 = std::fs::read_to_string(P).map_err(|e| format!("{P}: {e}"))?.trim().parse().unwrap_or(0);
    check!(now >= old + n, "{P}: asked for {} pages, the kernel gave {now}", old + n);
    Ok(s)
}

fn hugetlb_mem(size: usize) -> Result<Mapping, String> {
    // SAFETY: an anonymous private mapping from the hugetlb pool.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap MAP_HUGETLB {size:#x}: {}", std::io::Error::last_os_error()));
    }
    Ok(Mapping { raw: p.cast(), len: size })
}

fn hugetlbfs_maps_2m() -> TestResult {
    let _pool = reserve_hugepages((SIZE / HUGE) as u64)?;
    {
        let m = hugetlb_mem(SIZE)?;
        let (vm, v, code) = vm_with(m.raw, GPA, SIZE)?;
        let s = VmStats::open(&vm)?;
        touch_all(&v, code, GPA, SIZE, 0x4854_4c42)?;
        // hugetlbfs memory is always 2M in the host: every 2M of the slot is
        // one 2M entry.
        let (p4k, p2m) = s.pages()?;
        check!(p2m == (SIZE / HUGE) as u64, "pages_2m {p2m} (pages_4k {p4k}), expected {}", SIZE / HUGE);
        check_touched(m.raw, GPA, SIZE, 0x4854_4c42)?;
    }
    // The same memory 4K off in guest-physical space: no 2M guest range lies
    // in one host huge page, so everything is mapped 4K (8M of it, to keep
    // the 2048 faults short).
    const MIS: usize = 8 << 20;
    let m = hugetlb_mem(MIS)?;
    let gpa = GPA + PAGE as u64;
    let (vm, v, code) = vm_with(m.raw, gpa, MIS)?;
    let s = VmStats::open(&vm)?;
    touch_all(&v, code, gpa, MIS, 0x4854_4c43)?;
    let (p4k, p2m) = s.pages()?;
    check!(p2m == 0, "pages_2m {p2m} for a slot misaligned with its huge pages");
    check!(p4k >= (MIS / PAGE) as u64, "pages_4k {p4k}, the guest touched {} pages", MIS / PAGE);
    check_touched(m.raw, gpa, MIS, 0x4854_4c43)
}

const GIG: usize = 1 << 30;
/// The 1G slot: guest-physical 1G..2G, slot 1.
const GPA_1G: u64 = 0x4000_0000;
const PAGES_1G: usize = GIG / PAGE;

/// A free 1G hugetlbfs page for the test: one already free in the pool (e.g.
/// reserved at boot with hugepagesz=1G hugepages=1) or one more reserved at
/// runtime (the kernel must find a free, or freeable, contiguous and aligned
/// 1G, which needs CONFIG_CONTIG_ALLOC); a runtime reservation is undone
/// when the result is dropped.
fn reserve_1g_page() -> Result<Option<Setting>, String> {
    const DIR: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB";
    const P: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages";
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").map_err(|e| format!("/proc/cpuinfo: {e}"))?;
    check!(cpuinfo.split_whitespace().any(|w| w == "pdpe1gb"), "the CPU has no pdpe1gb (1G pages): /proc/cpuinfo");
    check!(
        std::path::Path::new(DIR).exists(),
        "{DIR} missing: the kernel offers no 1G hugetlbfs pages (x86 registers them at boot only with CONFIG_CONTIG_ALLOC, i.e. COMPACTION with MEMORY_ISOLATION, or CMA; or with hugepagesz=1G on the command line; MemTotal {})",
        meminfo("MemTotal")
    );
    let read = |f: &str| -> Result<u64, String> {
        let path = format!("{DIR}/{f}");
        std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?.trim().parse().map_err(|e| format!("{path}: {e}"))
    };
    if read("free_hugepages")? > read("resv_hugepages")? {
        return Ok(None);
    }
    let old = read("nr_hugepages")?;
    let s = Setting::set(P, &(old + 1).to_string())?;
    let now = read("nr_hugepages")?;
    check!(now >= old + 1, "{P}: asked for {} 1G pages, the kernel gave {now} (no free contiguous 1G; MemFree {})", old + 1, meminfo("MemFree"));
    Ok(Some(s))
}

fn meminfo(key: &str) -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with(key)).map(|l| l[key.len() + 1..].trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// Runs flat 32-bit code that writes, at the start of every 2M piece of
/// [gpa, gpa+size), the piece's own address and then `tag`, then halts:
/// 512 pieces for 1G, one fault each at most.
fn touch_2m_pieces(v: &Vcpu, code: *mut u8, gpa: u64, size: usize, tag: u32) -> TestResult {
    let (g, n, t) = ((gpa as u32).to_le_bytes(), ((size / HUGE) as u32).to_le_bytes(), tag.to_le_bytes());
    #[rustfmt::skip]
    let prog = [
        0xbf, g[0], g[1], g[2], g[3], // mov edi, gpa
        0xb9, n[0], n[1], n[2], n[3], // mov ecx, pieces
        0xba, t[0], t[1], t[2], t[3], // mov edx, tag
        0x89, 0x3f,                   // l: mov [edi], edi
        0x89, 0x57, 0x04,             //    mov [edi+4], edx
        0x81, 0xc7, 0x00, 0x00, 0x20, 0x00, // add edi, 0x200000
        0xe2, 0xf3,                   //    loop l
        0xf4,                         // hlt
    ];
    poke(code, CODE as usize, &prog);
    v.protected_mode_at(CODE)?;
    expect_exit(v, KVM_EXIT_HLT)
}

/// User space sees what `touch_2m_pieces(.., gpa, size, tag)` wrote.
fn check_2m_pieces(mem: *mut u8, gpa: u64, size: usize, tag: u32) -> TestResult {
    for i in 0..size / HUGE {
        let (a, t) = (read_u32(mem, i * HUGE), read_u32(mem, i * HUGE + 4));
        let want = (gpa as usize + i * HUGE) as u32;
        check!(a == want && t == tag, "2M piece {i}: user space reads {a:#x}, {t:#x}; the guest wrote {want:#x}, {tag:#x}");
    }
    Ok(())
}

/// A slot backed by one 1G hugetlbfs page, 1G-aligned in guest-physical and
/// host-virtual space, is mapped with one 1G leaf (pages_1g). Enabling dirty
/// logging splits it all the way to 4K at once (upstream's eager split walks
/// the table pre-order: 1G -> 512 2M -> 512 x 512 4K, so pages_4k grows by
/// 262144) and logs exactly the pages written; disabling logging zaps the
/// whole split table (kvm_mmu_zap_collapsible_sptes: the 1G-level non-leaf
/// entry can be a leaf again) and the next touch maps 1G again.
fn hugetlbfs_1g_maps_1g() -> TestResult {
    let _pool = reserve_1g_page()?;
    // SAFETY: an anonymous private mapping from the 1G hugetlb pool.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            GIG,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_1GB,
            -1,
            0,
        )
    };
    check!(p != libc::MAP_FAILED, "mmap MAP_HUGETLB|MAP_HUGE_1GB 1G: {}", std::io::Error::last_os_error());
    let m = Mapping { raw: p.cast(), len: GIG };
    let mem = m.raw;
    check!(mem as usize % GIG == 0, "the 1G hugetlb mapping is at {mem:?}, not 1G-aligned");
    let (vm, v, code) = vm_with(mem, GPA_1G, GIG)?;
    let s = VmStats::open(&vm)?;
    let (a4k, a2m, a1g) = s.pages3()?;
    check!(a2m == 0 && a1g == 0, "before any guest access: pages_4k {a4k}, pages_2m {a2m}, pages_1g {a1g}");

    touch_2m_pieces(&v, code, GPA_1G, GIG, 0x1617_0001)?;
    let (p4k, p2m, p1g) = s.pages3()?;
    // The whole slot is one 1G entry; only the code slot is mapped 4K.
    check!(p1g == 1 && p2m == 0, "after touching each 2M piece: pages_1g {p1g}, pages_2m {p2m} (pages_4k {p4k}); expected one 1G leaf and no 2M");
    check!(p4k <= 16, "pages_4k {p4k}: only the code slot (64K, 16 pages) should be mapped 4K");
    check_2m_pieces(mem, GPA_1G, GIG, 0x1617_0001)?;

    // Enabling dirty logging splits the 1G leaf down to 4K at once.
    vm.set_region(1, GPA_1G, GIG as u64, mem as u64, KVM_MEM_LOG_DIRTY_PAGES).map_err(|e| format!("enable logging: errno {e}"))?;
    let (q4k, q2m, q1g) = s.pages3()?;
    check!(q1g == 0 && q2m == 0, "after enabling dirty logging: pages_1g {q1g} (was {p1g}), pages_2m {q2m}; expected a full split to 4K");
    check!(q4k == p4k + PAGES_1G as u64, "pages_4k {p4k} -> {q4k} after splitting the 1G leaf, expected +{PAGES_1G}");

    let log = |vm: &Vm| get_dirty_log(vm, 1, PAGES_1G).map_err(|e| format!("KVM_GET_DIRTY_LOG: errno {e}"));
    let bits = |pages: &[usize]| dirty_bits(PAGES_1G, pages);
    let set = |b: &[u64]| dirty_set(PAGES_1G, b);
    let b = log(&vm)?;
    check!(b == bits(&[]), "dirty right after enabling: {:?}", set(&b));
    // The first two pages, both sides of the first 2M boundary, the last
    // page of the first half and the last page of the slot.
    let written = [0, 1, 511, 512, 131071, PAGES_1G - 1];
    write_pages(&v, code, GPA_1G, &[512, 0, 131071, 1, 511, 0, PAGES_1G - 1, 512], 0xd1d1)?;
    let b = log(&vm)?;
    check!(b == bits(&written), "dirty log {:?}, the guest wrote {written:?}", set(&b));
    for p in written {
        check_eq!(read_u32(mem, p * PAGE + 8), 0xd1d1);
    }
    // Untouched pages of the split mapping are still readable as written before.
    check_2m_pieces(mem, GPA_1G, GIG, 0x1617_0001)?;
    // KVM_GET_DIRTY_LOG cleared and write-protected them: only a new write shows.
    check!(log(&vm)? == bits(&[]), "dirty log not empty after a second KVM_GET_DIRTY_LOG without writes");
    write_pages(&v, code, GPA_1G, &[131071], 0xd2d2)?;
    let b = log(&vm)?;
    check!(b == bits(&[131071]), "dirty log {:?} after writing page 131071 again", set(&b));
    check_eq!(read_u32(mem, 131071 * PAGE + 8), 0xd2d2);

    // Logging off: the split table under the 1G entry is dropped as a whole
    // (all 262144 4K leaves), and the next touch maps one 1G leaf again.
    vm.set_region(1, GPA_1G, GIG as u64, mem as u64, 0).map_err(|e| format!("disable logging: errno {e}"))?;
    let (r4k, r2m, r1g) = s.pages3()?;
    check!(r1g == 0 && r2m == 0, "after disabling logging: pages_1g {r1g}, pages_2m {r2m}");
    check!(r4k == q4k - PAGES_1G as u64, "pages_4k {q4k} -> {r4k} after disabling logging, expected -{PAGES_1G} (the split table dropped)");
    touch_2m_pieces(&v, code, GPA_1G, GIG, 0x1617_0002)?;
    let (t4k, t2m, t1g) = s.pages3()?;
    check!(t1g == 1 && t2m == 0 && t4k == r4k, "after logging off and a new touch: pages_1g {t1g}, pages_2m {t2m}, pages_4k {t4k} (was {r4k}); expected one 1G leaf again");
    check_2m_pieces(mem, GPA_1G, GIG, 0x1617_0002)?;
    for p in written {
        let want = if p == 131071 { 0xd2d2 } else { 0xd1d1 };
        check_eq!(read_u32(mem, p * PAGE + 8), want);
    }
    drop(vm);
    drop(m);
    Ok(())
}
