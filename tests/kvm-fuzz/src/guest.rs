//! `kvm-fuzz guest`: hostile guests. Each run builds a small VM, puts its vCPU
//! in real, protected (with or without paging), PAE or long mode (or a garbled
//! mixture) with random page-table entries, fills RAM with random code that
//! touches ports, unbacked MMIO, CRs, DRs and MSRs, and runs it for a bounded
//! number of KVM_RUNs, answering IO/MMIO reads with random data. Every KVM_RUN
//! must come back with a defined exit and sane exit fields, or an errno.

use crate::gen;
use crate::util::*;
use kvm_uapi::ioctl::*;
use kvm_uapi::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

const RAM: usize = 4 << 20;
/// The huge-page-backed slot 4 (THP or hugetlb): 2M-aligned on both sides.
const HUGE_LEN: usize = 4 << 20;
const HUGE_GPA: u64 = 0x100_0000;

#[derive(Default)]
pub struct Stats {
    pub runs: u64,
    pub exits: u64,
    pub by_exit: BTreeMap<u32, u64>,
    pub by_errno: BTreeMap<i64, u64>,
    pub setup_rejected: u64,
    pub bad: Vec<String>,
    /// Dirty ring: VMs with one, DIRTY_RING_FULL exits, harvest+reset rounds,
    /// entries harvested, full exits left unreset, corruption rounds; madvise
    /// calls and dirty-logging toggles on the huge slot.
    pub ring_vms: u64,
    pub ring_full: u64,
    pub ring_resets: u64,
    pub ring_entries: u64,
    pub ring_noreset: u64,
    pub ring_corrupt: u64,
    pub madvises: u64,
    pub log_toggles: u64,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.runs += o.runs;
        self.exits += o.exits;
        for (k, v) in o.by_exit {
            *self.by_exit.entry(k).or_default() += v;
        }
        for (k, v) in o.by_errno {
            *self.by_errno.entry(k).or_default() += v;
        }
        self.setup_rejected += o.setup_rejected;
        self.bad.extend(o.bad);
        self.ring_vms += o.ring_vms;
        self.ring_full += o.ring_full;
        self.ring_resets += o.ring_resets;
        self.ring_entries += o.ring_entries;
        self.ring_noreset += o.ring_noreset;
        self.ring_corrupt += o.ring_corrupt;
        self.madvises += o.madvises;
        self.log_toggles += o.log_toggles;
    }
}

pub fn exit_name(r: u32) -> &'static str {
    match r {
        KVM_EXIT_UNKNOWN => "UNKNOWN",
        KVM_EXIT_EXCEPTION => "EXCEPTION",
        KVM_EXIT_IO => "IO",
        KVM_EXIT_HYPERCALL => "HYPERCALL",
        KVM_EXIT_DEBUG => "DEBUG",
        KVM_EXIT_HLT => "HLT",
        KVM_EXIT_MMIO => "MMIO",
        KVM_EXIT_IRQ_WINDOW_OPEN => "IRQ_WINDOW_OPEN",
        KVM_EXIT_SHUTDOWN => "SHUTDOWN",
        KVM_EXIT_FAIL_ENTRY => "FAIL_ENTRY",
        KVM_EXIT_INTR => "INTR",
        KVM_EXIT_SET_TPR => "SET_TPR",
        KVM_EXIT_TPR_ACCESS => "TPR_ACCESS",
        KVM_EXIT_NMI => "NMI",
        KVM_EXIT_INTERNAL_ERROR => "INTERNAL_ERROR",
        KVM_EXIT_SYSTEM_EVENT => "SYSTEM_EVENT",
        KVM_EXIT_IOAPIC_EOI => "IOAPIC_EOI",
        KVM_EXIT_HYPERV => "HYPERV",
        KVM_EXIT_X86_RDMSR => "X86_RDMSR",
        KVM_EXIT_X86_WRMSR => "X86_WRMSR",
        KVM_EXIT_DIRTY_RING_FULL => "DIRTY_RING_FULL",
        KVM_EXIT_X86_BUS_LOCK => "X86_BUS_LOCK",
        KVM_EXIT_XEN => "XEN",
        KVM_EXIT_NOTIFY => "NOTIFY",
        KVM_EXIT_MEMORY_FAULT => "MEMORY_FAULT",
        _ => "UNDEFINED",
    }
}

struct GuestVm {
    vm: i32,
    vcpu: i32,
    run: *mut u8,
    map_size: usize,
    /// The vCPU's dirty ring (null without one), its entries, the next entry
    /// to harvest, and whether we wrote garbage into it (then its contents
    /// are not checked any more).
    ring: *mut u8,
    ring_entries: u32,
    hidx: u32,
    corrupted: bool,
    slot0_flags: u32,
    /// Slot 4's flags, if it exists.
    huge_flags: Option<u32>,
    /// Start the guest with a loop that writes page after page.
    dirtier: bool,
}

impl Drop for GuestVm {
    fn drop(&mut self) {
        if !self.ring.is_null() {
            // SAFETY: our ring mapping.
            unsafe { libc::munmap(self.ring as *mut _, self.ring_entries as usize * GFN_SIZE) };
        }
        if !self.run.is_null() {
            // SAFETY: our vCPU mapping.
            unsafe { libc::munmap(self.run as *mut _, self.map_size) };
        }
        close_fd(self.vcpu);
        close_fd(self.vm);
    }
}

fn seg(base: u64, limit: u32, sel: u16, ty: u8, db: u8, l: u8, g: u8) -> kvm_segment {
    kvm_segment { base, limit, selector: sel, type_: ty, present: 1, dpl: 0, db, s: 1, l, g, avl: 0, unusable: 0, padding: 0 }
}

pub struct Worker<'a> {
    kvm: i32,
    mmap_size: usize,
    cpuid: &'a [u8],
    ram: *mut u8,
    /// HUGE_LEN bytes, 2M-aligned, THP-advised or from the hugetlb pool.
    huge: *mut u8,
    slot: &'a Slot,
    stats: Stats,
    op: u64,
}

impl<'a> Worker<'a> {
    fn poke(&self, off: usize, b: &[u8]) {
        if off < RAM {
            let n = b.len().min(RAM - off);
            // SAFETY: inside our RAM mapping.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ram.add(off), n) };
        }
    }

    fn set_region(&self, vm: i32, slot: u32, flags: u32, gpa: u64, size: u64, hva: u64) -> i64 {
        let reg = kvm_userspace_memory_region { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva };
        kioctl(vm, KVM_SET_USER_MEMORY_REGION, &reg as *const _ as u64)
    }

    fn build(&mut self, r: &mut Rng) -> Option<(GuestVm, bool)> {
        let vm = kioctl(self.kvm, KVM_CREATE_VM, 0);
        if vm < 0 {
            *self.stats.by_errno.entry(vm).or_default() += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
            return None;
        }
        let vm = vm as i32;
        // SAFETY: our RAM mapping; zeroed before the new guest's contents.
        unsafe { std::ptr::write_bytes(self.ram, 0, RAM) };
        let base = self.ram as u64;
        // Some VMs log through the dirty ring (small rings fill fast).
        let mut ring_bytes = 0u32;
        if r.chance(30) {
            let bytes = r.pick(&[4096u32, 4096, 4096, 8192, 16384, 65536]);
            let cap = r.pick(&[crate::util::KVM_CAP_DIRTY_LOG_RING, crate::util::KVM_CAP_DIRTY_LOG_RING_ACQ_REL]);
            let e = enable_dirty_ring(vm, cap, bytes as u64);
            if e == 0 {
                ring_bytes = bytes;
                self.stats.ring_vms += 1;
            } else {
                *self.stats.by_errno.entry(e).or_default() += 1;
            }
        }
        let slot0_flags = if ring_bytes != 0 && r.chance(60) { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
        self.set_region(vm, 0, slot0_flags, 0, RAM as u64, base);
        let mut huge_flags = None;
        if r.chance(70) {
            let f = if r.chance(if ring_bytes != 0 { 80 } else { 30 }) { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
            if self.set_region(vm, 4, f, HUGE_GPA, HUGE_LEN as u64, self.huge as u64) == 0 {
                huge_flags = Some(f);
            }
            // Fault the huge pages in from our side (hugetlb: an error, not SIGBUS, if the pool is dry).
            for c in (0..HUGE_LEN).step_by(2 << 20) {
                self_write(self.huge as u64 + c as u64, &r.next().to_le_bytes());
            }
        }
        if r.chance(30) {
            // read-only window: writes to it are MMIO exits
            self.set_region(vm, 1, KVM_MEM_READONLY, 0x40_0000, 0x1_0000, base + 0x30_0000);
        }
        if r.chance(30) {
            // the reset vector region
            self.set_region(vm, 2, if r.chance(50) { KVM_MEM_READONLY } else { 0 }, 0xffff_0000, 0x1_0000, base + 0x3f_0000);
        }
        if r.chance(10) {
            self.set_region(vm, 3, KVM_MEM_LOG_DIRTY_PAGES, 0x1_0000_0000, 0x10_0000, base + 0x20_0000);
        }
        let irqchip = r.chance(25);
        if irqchip {
            kioctl(vm, KVM_CREATE_IRQCHIP, 0);
            if r.chance(40) {
                let cfg = [0u8; 64];
                kioctl(vm, KVM_CREATE_PIT2, cfg.as_ptr() as u64);
            }
        }
        let vcpu = kioctl(vm, KVM_CREATE_VCPU, 0);
        if vcpu < 0 {
            *self.stats.by_errno.entry(vcpu).or_default() += 1;
            close_fd(vm);
            return None;
        }
        let vcpu = vcpu as i32;
        // SAFETY: maps the vCPU file.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), self.mmap_size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, vcpu, 0) };
        let mut g = GuestVm {
            vm,
            vcpu,
            run: if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p as *mut u8 },
            map_size: self.mmap_size,
            ring: std::ptr::null_mut(),
            ring_entries: 0,
            hidx: 0,
            corrupted: false,
            slot0_flags,
            huge_flags,
            dirtier: (ring_bytes != 0 || huge_flags.is_some()) && r.chance(50),
        };
        if g.run.is_null() {
            return None;
        }
        if ring_bytes != 0 {
            // SAFETY: maps the vCPU's ring pages, shared and not executable.
            let q = unsafe { libc::mmap(std::ptr::null_mut(), ring_bytes as usize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, vcpu, (DIRTY_RING_PGOFF * 4096) as i64) };
            if q == libc::MAP_FAILED {
                self.bad(format!("mmap of a {ring_bytes}-byte dirty ring: {}", std::io::Error::last_os_error()));
                return None;
            }
            g.ring = q as *mut u8;
            g.ring_entries = ring_bytes / GFN_SIZE as u32;
        }
        if r.chance(85) {
            let mut b = vec![0u8; 8];
            put32(&mut b, 0, (self.cpuid.len() / 40) as u32);
            b.extend_from_slice(self.cpuid);
            if r.chance(15) {
                let n = self.cpuid.len() / 40;
                if n > 0 {
                    let e = 8 + 40 * r.below(n as u64) as usize + 12 + 4 * r.below(4) as usize;
                    let v = get32(&b, e) ^ (1 << r.below(32));
                    put32(&mut b, e, v);
                }
            }
            kioctl(vcpu, KVM_SET_CPUID2, b.as_ptr() as u64);
        }
        Some((g, irqchip))
    }

    /// Lays out code, descriptor tables and page tables, then sets the mode.
    fn setup(&mut self, r: &mut Rng, g: &GuestVm) {
        // Code at the entry point and in a few other places jumps may land.
        let entry = 0x1000 + r.below(0x100) * 16;
        let n = r.range(256, 8192) as usize;
        let mut code = gen::code(r, n);
        if g.dirtier && r.chance(80) {
            let mut d = dirtier(r);
            d.extend_from_slice(&code);
            code = d;
        }
        self.poke(entry as usize, &code);
        for _ in 0..r.range(1, 6) {
            let at = r.below(RAM as u64 - 0x1000) as usize;
            let n = r.range(16, 1024) as usize;
            let c = gen::code(r, n);
            self.poke(at, &c);
        }
        self.poke(0x3f_fff0, &gen::code(r, 16)); // reset vector (via slot 2)
        // Interrupt handlers: report through a port, then IRET (or garbage).
        let mut h = vec![0xe6, 0x99, 0xcf];
        if r.chance(30) {
            h = gen::code(r, 64);
        }
        self.poke(0x9000, &h);
        // GDT at 0x500: null, code32, data, code64, code16, data16, random, TSS
        let gdt: [u64; 8] = [
            0,
            0x00cf_9b00_0000_ffff,
            0x00cf_9300_0000_ffff,
            0x00af_9b00_0000_ffff,
            0x0000_9b00_0000_ffff,
            0x0000_9300_0000_ffff,
            r.next(),
            0x0000_8b00_0a00_0067,
        ];
        for (i, d) in gdt.iter().enumerate() {
            self.poke(0x500 + 8 * i, &d.to_le_bytes());
        }
        // IDT at 0x800 (room for 256 16-byte gates), mostly pointing at 0x9000.
        for v in 0..256usize {
            let mut gate = [0u8; 16];
            let (lo, hi) = (0x9000u64 & 0xffff, 0x9000u64 >> 16);
            let sel = if r.chance(95) { 8u16 } else { r.u32() as u16 };
            put16(&mut gate, 0, lo as u16);
            put16(&mut gate, 2, sel);
            gate[5] = if r.chance(95) { 0x8e } else { r.u8() };
            put16(&mut gate, 6, hi as u16);
            if r.chance(3) {
                r.fill(&mut gate);
            }
            self.poke(0x800 + 16 * v, &gate);
        }

        let mut s = kvm_sregs::default();
        if kioctl(g.vcpu, KVM_GET_SREGS, &mut s as *mut _ as u64) < 0 {
            return;
        }
        let mode = r.below(6);
        let pt = 0x10_0000usize;
        match mode {
            0 => {
                s.cs = seg(0, 0xffff, 0, 0xb, 0, 0, 0);
                if r.chance(20) {
                    s.cr0 |= 1 << r.below(32);
                }
            }
            1..=3 => {
                let code = seg(0, 0xffff_ffff, 8, 0xb, 1, 0, 1);
                let data = seg(0, 0xffff_ffff, 0x10, 3, 1, 0, 1);
                s.cs = code;
                s.ds = data;
                s.es = data;
                s.fs = data;
                s.gs = data;
                s.ss = data;
                s.cr0 = 0x11 | if r.chance(30) { 0x5_0020 } else { 0 };
                if mode == 2 {
                    // 32-bit paging with 4 MiB pages (PSE)
                    for i in 0..1024u64 {
                        self.poke(pt + 8 * 0 + 4 * i as usize, &(((i << 22) | 0x87) as u32).to_le_bytes());
                    }
                    s.cr3 = pt as u64;
                    s.cr4 = 0x10;
                    s.cr0 |= 0x8000_0000;
                } else if mode == 3 {
                    // PAE: PDPT -> 4 PDs of 2 MiB pages
                    for i in 0..4u64 {
                        self.poke(pt + 8 * i as usize, &((pt as u64 + 0x1000 * (i + 1)) | 1).to_le_bytes());
                        for j in 0..512u64 {
                            self.poke(pt + 0x1000 * (i as usize + 1) + 8 * j as usize, &((i << 30) | (j << 21) | 0x87).to_le_bytes());
                        }
                    }
                    s.cr3 = pt as u64;
                    s.cr4 = 0x20;
                    s.cr0 |= 0x8000_0000;
                }
            }
            _ => {
                // 4-level paging, 4 GiB identity mapped with 2 MiB pages
                self.poke(pt, &((pt as u64 + 0x1000) | 7).to_le_bytes());
                for i in 0..4u64 {
                    self.poke(pt + 0x1000 + 8 * i as usize, &((pt as u64 + 0x2000 + 0x1000 * i) | 7).to_le_bytes());
                    for j in 0..512u64 {
                        self.poke(pt + 0x2000 + 0x1000 * i as usize + 8 * j as usize, &((i << 30) | (j << 21) | 0x87).to_le_bytes());
                    }
                }
                let code = seg(0, 0xffff_ffff, 0x18, 0xb, 0, 1, 1);
                let data = seg(0, 0xffff_ffff, 0x10, 3, 1, 0, 1);
                s.cs = code;
                s.ds = data;
                s.es = data;
                s.fs = data;
                s.gs = data;
                s.ss = data;
                s.cr3 = pt as u64;
                s.cr4 = 0x20 | if r.chance(30) { r.pick(&[0x80, 0x200, 0x40000, 0x100000, 0x200000, 0x400000, 0x10000]) } else { 0 };
                s.cr0 = 0x8000_0011 | if r.chance(30) { 0x1_0000 } else { 0 };
                s.efer = 0x500 | if r.chance(50) { 0x800 } else { 0 } | if r.chance(30) { 1 } else { 0 };
            }
        }
        s.gdt.base = 0x500;
        s.gdt.limit = 0x3f;
        s.idt.base = 0x800;
        s.idt.limit = if r.chance(80) { 0xfff } else { r.pick(&[0, 0x7, 0x3ff, 0xffff]) };
        s.tr = kvm_segment { base: 0xa00, limit: 0x67, selector: 0x38, type_: 0xb, present: 1, s: 0, ..s.tr };
        // Random page-table entries.
        if mode >= 2 {
            for _ in 0..r.below(8) {
                let off = pt + 8 * r.below(0x6000 / 8) as usize;
                let v = match r.below(4) {
                    0 => r.next(),
                    1 => (r.below(1 << 20) << 12) | r.below(0x1000), // anywhere, random flags
                    2 => 0xfee0_0000 | 0x87,
                    _ => (1u64 << r.range(40, 62)) | 0x87, // reserved bits
                };
                self.poke(off, &v.to_le_bytes());
            }
        }
        if mode == 5 {
            // garble: a few fields of the long-mode state
            let mut b = as_bytes(&s);
            r.mutate(&mut b[..280]);
            // SAFETY: b has the size of kvm_sregs.
            s = unsafe { std::ptr::read_unaligned(b.as_ptr() as *const kvm_sregs) };
        }
        let mut b = as_bytes(&s);
        tcg_safe_sregs(&mut b);
        // SAFETY: b has the size of kvm_sregs.
        s = unsafe { std::ptr::read_unaligned(b.as_ptr() as *const kvm_sregs) };
        if kioctl(g.vcpu, KVM_SET_SREGS, &s as *const _ as u64) < 0 {
            self.stats.setup_rejected += 1;
        }
        let mut regs = kvm_regs::default();
        regs.rax = r.val64();
        regs.rbx = r.val64();
        regs.rcx = r.val64();
        regs.rdx = r.val64();
        regs.rsi = r.below(RAM as u64);
        regs.rdi = r.below(RAM as u64);
        regs.rsp = if r.chance(80) { 0x8000 } else { r.val64() };
        regs.rbp = r.val64();
        regs.rip = entry;
        regs.rflags = 2 | if r.chance(10) { 0x100 } else { 0 } | if r.chance(30) { 0x200 } else { 0 } | if r.chance(5) { r.u32() as u64 & 0x3f7fd5 } else { 0 };
        kioctl(g.vcpu, KVM_SET_REGS, &regs as *const _ as u64);

        // Extra hostile state from user space.
        if r.chance(10) {
            let mut d = [0u64; 9];
            d[0] = (if r.chance(50) { 1 } else { 0 }) | (if r.chance(50) { 2 } else { 0 }) | if r.chance(30) { 0x2_0000 } else { 0 };
            for k in 1..9 {
                d[k] = if r.chance(50) { entry + r.below(64) } else { r.val64() };
            }
            d[8] = r.u32() as u64 & 0xffff_03ff | 0x400;
            kioctl(g.vcpu, KVM_SET_GUEST_DEBUG, d.as_ptr() as u64);
        }
        if r.chance(10) {
            let mut d = [0u64; 16];
            for k in 0..4 {
                d[k] = entry + r.below(256);
            }
            d[4] = 0xffff_0ff0;
            d[5] = 0x400 | (r.u32() as u64 & 0xffff_00ff);
            kioctl(g.vcpu, KVM_SET_DEBUGREGS, d.as_ptr() as u64);
        }
        if r.chance(10) {
            let mut e = [0u8; 64];
            e[0] = 1;
            e[1] = r.below(32) as u8;
            e[2] = r.below(2) as u8;
            put32(&mut e, 4, r.u32());
            if r.chance(30) {
                e[12] = 0;
                e[13] = 1; // nmi pending
                put32(&mut e, 20, KVM_VCPUEVENT_VALID_NMI_PENDING);
            }
            kioctl(g.vcpu, KVM_SET_VCPU_EVENTS, e.as_ptr() as u64);
        }
        if r.chance(15) {
            let n = r.range(1, 4) as usize;
            let mut b = vec![0u8; 8 + 16 * n];
            put32(&mut b, 0, n as u32);
            for i in 0..n {
                let m = gen::msr(r);
                put32(&mut b, 8 + 16 * i, m);
                put64(&mut b, 16 + 16 * i, tcg_safe_msr(m, r.val64()));
            }
            kioctl(g.vcpu, KVM_SET_MSRS, b.as_ptr() as u64);
        }
        if r.chance(5) {
            kioctl(g.vcpu, KVM_NMI, 0);
        }
        if r.chance(5) {
            let v = r.below(256) as u32;
            kioctl(g.vcpu, KVM_INTERRUPT, &v as *const u32 as u64);
        }
    }

    fn bad(&mut self, what: String) {
        let what = format!("{what} [worker op {}]", self.op);
        if self.stats.bad.len() < 20 {
            println!("BAD {what}");
        }
        self.stats.bad.push(what);
    }

    /// Huge-page and dirty-logging mischief between two KVM_RUNs: dirty
    /// logging toggled on the huge slot, parts of it zapped, collapsed or
    /// split by madvise, GET_DIRTY_LOG on a ring VM (ENXIO), a harvest.
    fn between_runs(&mut self, r: &mut Rng, g: &mut GuestVm) {
        if let Some(f) = g.huge_flags {
            if r.chance(4) {
                let nf = f ^ KVM_MEM_LOG_DIRTY_PAGES;
                if self.set_region(g.vm, 4, nf, HUGE_GPA, HUGE_LEN as u64, self.huge as u64) == 0 {
                    g.huge_flags = Some(nf);
                }
                self.stats.log_toggles += 1;
            }
            if r.chance(5) {
                let (a, l) = huge_subrange(r, self.huge as u64, HUGE_LEN as u64);
                let adv = huge_advice(r);
                // SAFETY: a range of our own huge region.
                unsafe { libc::madvise(a as *mut _, l as usize, adv) };
                self.stats.madvises += 1;
            }
        }
        if !g.ring.is_null() {
            if r.chance(3) {
                let slot = r.pick(&[0u32, 4, 3, 1 << 16]);
                let bm = vec![0u64; (RAM / 4096) / 64 + 8];
                let log = [slot as u64, bm.as_ptr() as u64];
                let e = kioctl(g.vm, KVM_GET_DIRTY_LOG, log.as_ptr() as u64);
                if e != -6 {
                    self.bad(format!("KVM_GET_DIRTY_LOG on a dirty-ring VM (slot {slot:#x}) = {}, not ENXIO", result_str(e)));
                }
            }
            if r.chance(10) {
                self.harvest_and_reset(g);
            }
        }
    }

    /// Collects the F_DIRTY entries from the next one on (checking that the
    /// kernel only logs pages of our logged slots), marks them F_RESET and
    /// calls KVM_RESET_DIRTY_RINGS, which must take back as many.
    fn harvest_and_reset(&mut self, g: &mut GuestVm) {
        let mut n = 0u32;
        while n < g.ring_entries {
            let i = (g.hidx & (g.ring_entries - 1)) as usize;
            // SAFETY: an entry of our ring mapping; the flags word is shared with the kernel.
            let e = unsafe { g.ring.add(i * GFN_SIZE) };
            // SAFETY: as above (4-aligned).
            let flags = unsafe { &*(e as *const AtomicU32) };
            if flags.load(Ordering::Acquire) & F_DIRTY == 0 {
                break;
            }
            // SAFETY: as above.
            let (slot, offset) = unsafe { (std::ptr::read_volatile(e.add(4) as *const u32), std::ptr::read_volatile(e.add(8) as *const u64)) };
            let pages = match slot {
                0 => (RAM / 4096) as u64,
                3 => 256,
                4 => (HUGE_LEN / 4096) as u64,
                _ => 0,
            };
            if !g.corrupted && offset >= pages {
                self.bad(format!("dirty ring entry {} (index {}) names slot {slot:#x} page {offset:#x}, not a page of a logged slot", i, g.hidx));
                g.corrupted = true;
            }
            flags.store(F_RESET, Ordering::Release);
            g.hidx = g.hidx.wrapping_add(1);
            n += 1;
        }
        let ret = kioctl(g.vm, nr::KVM_RESET_DIRTY_RINGS, 0);
        self.stats.ring_resets += 1;
        self.stats.ring_entries += n as u64;
        if ret == -4 {
            return;
        }
        if ret < 0 {
            self.bad(format!("KVM_RESET_DIRTY_RINGS on a dirty-ring VM = {}", result_str(ret)));
        } else if !g.corrupted && ret != n as i64 {
            self.bad(format!("KVM_RESET_DIRTY_RINGS took back {ret} entries, {n} were harvested"));
            g.corrupted = true;
        }
    }

    /// Writes garbage into a few entries (near the next one or anywhere), then resets.
    fn corrupt_ring(&mut self, r: &mut Rng, g: &mut GuestVm) {
        for _ in 0..r.range(1, 8) {
            let i = if r.chance(60) { g.hidx.wrapping_add(r.below(8) as u32) } else { r.u32() } & (g.ring_entries - 1);
            let e = ring_entry(r);
            let n = if r.chance(30) { 4 } else { GFN_SIZE };
            // SAFETY: an entry of our ring mapping.
            unsafe { std::ptr::copy_nonoverlapping(e.as_ptr(), g.ring.add(i as usize * GFN_SIZE), n) };
        }
        g.corrupted = true;
        self.stats.ring_corrupt += 1;
        let ret = kioctl(g.vm, nr::KVM_RESET_DIRTY_RINGS, 0);
        if ret < 0 && ret != -4 {
            self.bad(format!("KVM_RESET_DIRTY_RINGS after corrupting entries = {}", result_str(ret)));
        }
        if r.chance(50) {
            // and then harvest what looks harvestable
            self.harvest_and_reset(g);
        }
    }

    fn one(&mut self, r: &mut Rng, stop: &AtomicBool) {
        let Some((mut g, irqchip)) = self.build(r) else { return };
        let _ = irqchip;
        self.setup(r, &g);
        self.stats.runs += 1;
        let steps = r.range(4, 96);
        let run = g.run;
        for _ in 0..steps {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            // SAFETY: our vCPU mapping; immediate_exit is byte 1.
            unsafe { std::ptr::write_volatile(run.add(1), 0) };
            if r.chance(3) {
                // user space changes memory under the guest between runs
                let size = if r.chance(50) { 0 } else { RAM as u64 };
                self.set_region(g.vm, 0, g.slot0_flags, if r.chance(70) { 0 } else { 0x80_0000 }, size, self.ram as u64);
            }
            self.between_runs(r, &mut g);
            self.op += 1;
            let kicks0 = self.slot.kicks.load(Ordering::Relaxed);
            self.slot.run_page.store(run as usize, Ordering::SeqCst);
            self.slot.begin(self.op, 0);
            let res = kioctl(g.vcpu, KVM_RUN, 0);
            self.slot.end();
            self.slot.run_page.store(0, Ordering::SeqCst);
            let kicked = self.slot.kicks.load(Ordering::Relaxed) != kicks0;
            if res < 0 {
                *self.stats.by_errno.entry(res).or_default() += 1;
                // A run the watchdog had to interrupt has had its chance.
                if (res == -4 || res == -11) && !kicked {
                    continue;
                }
                break;
            }
            self.stats.exits += 1;
            // SAFETY: exit_reason at offset 8 of the mapped kvm_run.
            let reason = unsafe { std::ptr::read_volatile(run.add(8) as *const u32) };
            *self.stats.by_exit.entry(reason).or_default() += 1;
            // SAFETY: the exit union at offset 32, inside the mapping.
            let u = unsafe { run.add(32) };
            match reason {
                KVM_EXIT_IO => {
                    // SAFETY: the io member of the union.
                    let (dir, size, port, count, off) = unsafe {
                        (*u, *u.add(1), (u.add(2) as *const u16).read_unaligned(), (u.add(4) as *const u32).read_unaligned(), (u.add(8) as *const u64).read_unaligned())
                    };
                    let n = size as u64 * count as u64;
                    if dir > 1 || ![1, 2, 4].contains(&size) || count == 0 || off < 64 || off + n > g.map_size as u64 {
                        self.bad(format!("IO exit with dir {dir} size {size} port {port:#x} count {count} data_offset {off:#x} (mmap size {:#x})", g.map_size));
                        break;
                    }
                    if dir == 0 {
                        let d = r.bytes(n as usize);
                        // SAFETY: checked above to lie inside the mapping.
                        unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), run.add(off as usize), d.len()) };
                    }
                }
                KVM_EXIT_MMIO => {
                    // SAFETY: the mmio member.
                    let (addr, len, w) = unsafe { ((u as *const u64).read_unaligned(), (u.add(16) as *const u32).read_unaligned(), *u.add(20)) };
                    if !(1..=8).contains(&len) || w > 1 {
                        self.bad(format!("MMIO exit with addr {addr:#x} len {len} is_write {w}"));
                        break;
                    }
                    if w == 0 {
                        // SAFETY: the 8-byte data field.
                        unsafe { (u.add(8) as *mut u64).write_unaligned(r.val64()) };
                    }
                }
                KVM_EXIT_HLT | KVM_EXIT_IRQ_WINDOW_OPEN => {
                    if !irqchip && r.chance(40) {
                        let v = r.range(32, 255) as u32;
                        kioctl(g.vcpu, KVM_INTERRUPT, &v as *const u32 as u64);
                    }
                    if reason == KVM_EXIT_HLT && r.chance(30) {
                        break;
                    }
                }
                KVM_EXIT_SHUTDOWN | KVM_EXIT_FAIL_ENTRY | KVM_EXIT_INTERNAL_ERROR | KVM_EXIT_SYSTEM_EVENT => {
                    if r.chance(70) {
                        break;
                    }
                    if r.chance(50) {
                        // user space repairs (or not) the state and tries again
                        self.setup(r, &g);
                    }
                }
                KVM_EXIT_DIRTY_RING_FULL => {
                    if g.ring.is_null() {
                        self.bad("KVM_EXIT_DIRTY_RING_FULL from a VM without a dirty ring".to_string());
                        break;
                    }
                    self.stats.ring_full += 1;
                    match r.below(100) {
                        0..=74 => self.harvest_and_reset(&mut g),
                        // not resetting: the vCPU must keep exiting, not hang
                        75..=89 => self.stats.ring_noreset += 1,
                        _ => self.corrupt_ring(r, &mut g),
                    }
                }
                _ if exit_name(reason) == "UNDEFINED" => {
                    self.bad(format!("undefined exit reason {reason}"));
                    break;
                }
                _ => {}
            }
            if r.chance(3) {
                // hostile user space between runs
                let mut s = kvm_sregs::default();
                if kioctl(g.vcpu, KVM_GET_SREGS, &mut s as *mut _ as u64) == 0 {
                    let mut b = as_bytes(&s);
                    r.mutate(&mut b[..280]);
                    tcg_safe_sregs(&mut b);
                    kioctl(g.vcpu, KVM_SET_SREGS, b.as_ptr() as u64);
                }
            }
        }
    }
}

pub fn main(seed: u64, threads: usize, seconds: u64, hang_s: u64, kick_ms: u64) -> i32 {
    install_kick_handler();
    // SAFETY: opening /dev/kvm.
    let kvm = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if kvm < 0 {
        eprintln!("kvm-fuzz: open /dev/kvm: {}", std::io::Error::last_os_error());
        return 2;
    }
    let mmap_size = kioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0).max(4096) as usize;
    let mut buf = vec![0u8; 8 + 40 * 256];
    put32(&mut buf, 0, 256);
    let n = if kioctl(kvm, KVM_GET_SUPPORTED_CPUID, buf.as_mut_ptr() as u64) == 0 { get32(&buf, 0) as usize } else { 0 };
    let cpuid = buf[8..8 + 40 * n.min(256)].to_vec();
    // hugetlb backing for odd workers' huge slot (2 pages each, plus spares
    // for refaults after MADV_DONTNEED) when pages can be reserved.
    let hugetlb = reserve_hugepages(2 * threads as u64 + 4);
    let slots: Vec<Slot> = (0..threads).map(|_| Slot::new()).collect();
    let stop = AtomicBool::new(false);
    let deadline = now_ms() + seconds * 1000;
    let mut total = Stats::default();
    let mut ioctls = 0;
    std::thread::scope(|sc| {
        let mut hs = vec![];
        for (t, slot) in slots.iter().enumerate() {
            let (cpuid, stop) = (&cpuid, &stop);
            hs.push(sc.spawn(move || {
                slot.register();
                let ram = mmap_anon(RAM, libc::PROT_READ | libc::PROT_WRITE, 0);
                assert!(!ram.is_null());
                let mut huge = if hugetlb && t % 2 == 1 { huge_mem(HUGE_LEN, true) } else { std::ptr::null_mut() };
                if huge.is_null() {
                    huge = huge_mem(HUGE_LEN, false);
                }
                assert!(!huge.is_null());
                let mut w = Worker { kvm, mmap_size, cpuid, ram, huge, slot, stats: Stats::default(), op: 0 };
                let mut rng = Rng::new(splitmix(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                while !stop.load(Ordering::Relaxed) {
                    let mut r = rng.fork();
                    w.one(&mut r, stop);
                }
                slot.done.store(true, Ordering::SeqCst);
                (w.stats, IOCTLS.with(|c| c.get()))
            }));
        }
        watchdog(&slots, &["KVM_RUN"], &stop, deadline, kick_ms, hang_s * 1000, "guest");
        for h in hs {
            let (s, n) = h.join().expect("worker panicked");
            total.merge(s);
            ioctls += n;
        }
    });
    let kicks: u64 = slots.iter().map(|s| s.kicks.load(Ordering::Relaxed)).sum();
    let exits: Vec<String> = total.by_exit.iter().map(|(k, v)| format!("{}={v}", exit_name(*k))).collect();
    let errnos: Vec<String> = total.by_errno.iter().map(|(k, v)| format!("{}={v}", errno_name(*k))).collect();
    println!("EXIT_REASONS {}", exits.join(" "));
    println!("ERRNOS {}", errnos.join(" "));
    println!("KICKS {kicks} SETUP_REJECTED {} IOCTLS {ioctls}", total.setup_rejected);
    println!(
        "RING vms={} full_exits={} resets={} harvested={} noreset={} corrupted={} HUGE madvise={} log_toggles={} hugetlb={hugetlb}",
        total.ring_vms, total.ring_full, total.ring_resets, total.ring_entries, total.ring_noreset, total.ring_corrupt, total.madvises, total.log_toggles
    );
    println!("RUNS {} EXITS {}", total.runs, total.exits);
    if total.bad.is_empty() {
        println!("OK");
        0
    } else {
        println!("FAILED: {} bad exits", total.bad.len());
        1
    }
}

/// Guest code (32/64-bit) that writes one dword per page, page after page,
/// through a window of the huge slot or of RAM's upper half, `count` times:
///   mov ebx, base; mov ecx, count
///   L: mov [ebx], eax; add ebx, stride; and ebx, mask; or ebx, base; dec ecx; jnz L
fn dirtier(r: &mut Rng) -> Vec<u8> {
    let (base, mask) = r.pick(&[(HUGE_GPA as u32, (HUGE_LEN - 1) as u32), (HUGE_GPA as u32, 0x1f_ffff), (HUGE_GPA as u32 + 0x20_0000, 0x1f_ffff), (0x20_0000u32, 0x1f_ffff)]);
    let count = r.pick(&[64u32, 200, 300, 1100, 5000]);
    let stride = r.pick(&[0x1000u32, 0x1000, 0x1040, 0x3000, 0x20_1000]);
    let mut c = vec![0xbb];
    c.extend_from_slice(&base.to_le_bytes());
    c.push(0xb9);
    c.extend_from_slice(&count.to_le_bytes());
    c.extend_from_slice(&[0x89, 0x03, 0x81, 0xc3]);
    c.extend_from_slice(&stride.to_le_bytes());
    c.extend_from_slice(&[0x81, 0xe3]);
    c.extend_from_slice(&mask.to_le_bytes());
    c.extend_from_slice(&[0x81, 0xcb]);
    c.extend_from_slice(&base.to_le_bytes());
    c.extend_from_slice(&[0xff, 0xc9, 0x75, 0xe8]);
    c
}
