// SPDX-License-Identifier: GPL-2.0
//! KVM's binary statistics as pure data (upstream's virt/kvm/binary_stats.c,
//! the STATS_DESC tables of arch/x86/kvm/x86.c and struct kvm_vm_stat /
//! kvm_vcpu_stat): the descriptor tables with upstream's names, order, flags
//! and data offsets, and the byte image of a stats file that KVM_GET_STATS_FD
//! returns:
//!
//! ```text
//! offset 0                      struct kvm_stats_header (24 bytes)
//! id_offset   = 24              id string, NAME_SIZE bytes ("kvm-<pid>", "kvm-<pid>/vcpu-<n>")
//! desc_offset = 24 + 48         num_desc descriptors of 16 + NAME_SIZE bytes each
//! data_offset = desc_offset + 64 * num_desc   the u64 data, in struct order
//! ```
//!
//! The data block is laid out as upstream's structs (a descriptor's `offset` is
//! the byte offset of its field), so the descriptors can be compared 1:1 with
//! upstream's. Counters the kernel side cannot produce stay 0, as upstream's
//! do on hardware without the feature they count.
#![cfg_attr(not(kvm_kernel), no_std)]
#![allow(missing_docs)]

/// KVM_STATS_NAME_SIZE.
pub const NAME_SIZE: usize = 48;
/// sizeof(struct kvm_stats_header).
pub const HEADER_SIZE: usize = 24;
/// sizeof(struct kvm_stats_desc) + KVM_STATS_NAME_SIZE (upstream's _kvm_stats_desc).
pub const DESC_SIZE: usize = 16 + NAME_SIZE;
/// HALT_POLL_HIST_COUNT.
pub const HALT_POLL_HIST_COUNT: usize = 32;

// linux/kvm.h's flag fields.
pub const TYPE_CUMULATIVE: u32 = 0;
pub const TYPE_INSTANT: u32 = 1;
pub const TYPE_PEAK: u32 = 2;
pub const TYPE_LOG_HIST: u32 = 4;
pub const TYPE_MASK: u32 = 0xf;
pub const UNIT_NONE: u32 = 0;
pub const UNIT_SECONDS: u32 = 2 << 4;
pub const UNIT_BOOLEAN: u32 = 4 << 4;
pub const BASE_POW10: u32 = 0;

/// One statistic: upstream's struct kvm_stats_desc with its name.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub name: &'static str,
    pub flags: u32,
    pub exponent: i16,
    /// Number of u64 values (1, or the buckets of a histogram).
    pub size: u16,
    /// Index of the first u64 of this statistic in the data block.
    pub word: u16,
    pub bucket_size: u32,
}

impl Desc {
    /// The debugfs mode upstream gives its file (kvm_stats_debugfs_mode):
    /// instant values are read-only, the others can be cleared.
    pub const fn debugfs_mode(&self) -> u16 {
        if self.flags & TYPE_MASK == TYPE_INSTANT {
            0o444
        } else {
            0o644
        }
    }

    /// Whether debugfs shows it (upstream's files hold one value: histograms
    /// are summed over their buckets like any other stat there).
    pub const fn is_hist(&self) -> bool {
        self.size > 1
    }
}

const fn d(name: &'static str, flags: u32, exponent: i16, size: u16, word: u16) -> Desc {
    Desc { name, flags, exponent, size, word, bucket_size: 0 }
}
/// STATS_DESC_COUNTER.
const fn counter(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_CUMULATIVE | UNIT_NONE | BASE_POW10, 0, 1, word)
}
/// STATS_DESC_ICOUNTER.
const fn icounter(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_INSTANT | UNIT_NONE | BASE_POW10, 0, 1, word)
}
/// STATS_DESC_PCOUNTER.
const fn pcounter(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_PEAK | UNIT_NONE | BASE_POW10, 0, 1, word)
}
/// STATS_DESC_IBOOLEAN.
const fn iboolean(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_INSTANT | UNIT_BOOLEAN | BASE_POW10, 0, 1, word)
}
/// STATS_DESC_TIME_NSEC.
const fn time_nsec(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_CUMULATIVE | UNIT_SECONDS | BASE_POW10, -9, 1, word)
}
/// STATS_DESC_LOGHIST_TIME_NSEC.
const fn loghist_time_nsec(name: &'static str, word: u16) -> Desc {
    d(name, TYPE_LOG_HIST | UNIT_SECONDS | BASE_POW10, -9, HALT_POLL_HIST_COUNT as u16, word)
}

/// struct kvm_vm_stat (x86): word indices and kvm_vm_stats_desc.
pub mod vm {
    use super::*;
    pub const REMOTE_TLB_FLUSH: usize = 0;
    pub const REMOTE_TLB_FLUSH_REQUESTS: usize = 1;
    pub const MMU_SHADOW_ZAPPED: usize = 2;
    pub const MMU_PTE_WRITE: usize = 3;
    pub const MMU_PDE_ZAPPED: usize = 4;
    pub const MMU_FLOODED: usize = 5;
    pub const MMU_RECYCLED: usize = 6;
    pub const MMU_CACHE_MISS: usize = 7;
    pub const MMU_UNSYNC: usize = 8;
    pub const PAGES_4K: usize = 9;
    pub const PAGES_2M: usize = 10;
    pub const PAGES_1G: usize = 11;
    pub const NX_LPAGE_SPLITS: usize = 12;
    pub const MAX_MMU_PAGE_HASH_COLLISIONS: usize = 13;
    pub const MAX_MMU_RMAP_SIZE: usize = 14;
    /// u64 words of the data block (sizeof(struct kvm_vm_stat) / 8).
    pub const WORDS: usize = 15;

    /// Upstream's order: KVM_GENERIC_VM_STATS, then x86's (note that
    /// max_mmu_rmap_size comes before max_mmu_page_hash_collisions here but
    /// after it in the struct).
    pub static DESCS: [Desc; 15] = [
        counter("remote_tlb_flush", REMOTE_TLB_FLUSH as u16),
        counter("remote_tlb_flush_requests", REMOTE_TLB_FLUSH_REQUESTS as u16),
        counter("mmu_shadow_zapped", MMU_SHADOW_ZAPPED as u16),
        counter("mmu_pte_write", MMU_PTE_WRITE as u16),
        counter("mmu_pde_zapped", MMU_PDE_ZAPPED as u16),
        counter("mmu_flooded", MMU_FLOODED as u16),
        counter("mmu_recycled", MMU_RECYCLED as u16),
        counter("mmu_cache_miss", MMU_CACHE_MISS as u16),
        icounter("mmu_unsync", MMU_UNSYNC as u16),
        icounter("pages_4k", PAGES_4K as u16),
        icounter("pages_2m", PAGES_2M as u16),
        icounter("pages_1g", PAGES_1G as u16),
        icounter("nx_lpage_splits", NX_LPAGE_SPLITS as u16),
        pcounter("max_mmu_rmap_size", MAX_MMU_RMAP_SIZE as u16),
        pcounter("max_mmu_page_hash_collisions", MAX_MMU_PAGE_HASH_COLLISIONS as u16),
    ];
}

/// struct kvm_vcpu_stat (x86): word indices and kvm_vcpu_stats_desc.
pub mod vcpu {
    use super::*;
    pub const HALT_SUCCESSFUL_POLL: usize = 0;
    pub const HALT_ATTEMPTED_POLL: usize = 1;
    pub const HALT_POLL_INVALID: usize = 2;
    pub const HALT_WAKEUP: usize = 3;
    pub const HALT_POLL_SUCCESS_NS: usize = 4;
    pub const HALT_POLL_FAIL_NS: usize = 5;
    pub const HALT_WAIT_NS: usize = 6;
    pub const HALT_POLL_SUCCESS_HIST: usize = 7;
    pub const HALT_POLL_FAIL_HIST: usize = HALT_POLL_SUCCESS_HIST + HALT_POLL_HIST_COUNT;
    pub const HALT_WAIT_HIST: usize = HALT_POLL_FAIL_HIST + HALT_POLL_HIST_COUNT;
    pub const BLOCKING: usize = HALT_WAIT_HIST + HALT_POLL_HIST_COUNT;
    pub const PF_TAKEN: usize = BLOCKING + 1;
    pub const PF_FIXED: usize = PF_TAKEN + 1;
    pub const PF_EMULATE: usize = PF_TAKEN + 2;
    pub const PF_SPURIOUS: usize = PF_TAKEN + 3;
    pub const PF_FAST: usize = PF_TAKEN + 4;
    pub const PF_MMIO_SPTE_CREATED: usize = PF_TAKEN + 5;
    pub const PF_GUEST: usize = PF_TAKEN + 6;
    pub const TLB_FLUSH: usize = PF_TAKEN + 7;
    pub const INVLPG: usize = PF_TAKEN + 8;
    pub const EXITS: usize = PF_TAKEN + 9;
    pub const IO_EXITS: usize = PF_TAKEN + 10;
    pub const MMIO_EXITS: usize = PF_TAKEN + 11;
    pub const SIGNAL_EXITS: usize = PF_TAKEN + 12;
    pub const IRQ_WINDOW_EXITS: usize = PF_TAKEN + 13;
    pub const NMI_WINDOW_EXITS: usize = PF_TAKEN + 14;
    pub const L1D_FLUSH: usize = PF_TAKEN + 15;
    pub const HALT_EXITS: usize = PF_TAKEN + 16;
    pub const REQUEST_IRQ_EXITS: usize = PF_TAKEN + 17;
    pub const IRQ_EXITS: usize = PF_TAKEN + 18;
    pub const HOST_STATE_RELOAD: usize = PF_TAKEN + 19;
    pub const FPU_RELOAD: usize = PF_TAKEN + 20;
    pub const INSN_EMULATION: usize = PF_TAKEN + 21;
    pub const INSN_EMULATION_FAIL: usize = PF_TAKEN + 22;
    pub const HYPERCALLS: usize = PF_TAKEN + 23;
    pub const IRQ_INJECTIONS: usize = PF_TAKEN + 24;
    pub const NMI_INJECTIONS: usize = PF_TAKEN + 25;
    pub const REQ_EVENT: usize = PF_TAKEN + 26;
    pub const NESTED_RUN: usize = PF_TAKEN + 27;
    pub const DIRECTED_YIELD_ATTEMPTED: usize = PF_TAKEN + 28;
    pub const DIRECTED_YIELD_SUCCESSFUL: usize = PF_TAKEN + 29;
    pub const PREEMPTION_REPORTED: usize = PF_TAKEN + 30;
    pub const PREEMPTION_OTHER: usize = PF_TAKEN + 31;
    pub const GUEST_MODE: usize = PF_TAKEN + 32;
    pub const NOTIFY_WINDOW_EXITS: usize = PF_TAKEN + 33;
    /// u64 words of the data block (sizeof(struct kvm_vcpu_stat) / 8).
    pub const WORDS: usize = NOTIFY_WINDOW_EXITS + 1;

    /// KVM_GENERIC_VCPU_STATS, then x86's, in upstream's order (which is the
    /// struct's order for vCPUs).
    pub static DESCS: [Desc; 45] = [
        counter("halt_successful_poll", HALT_SUCCESSFUL_POLL as u16),
        counter("halt_attempted_poll", HALT_ATTEMPTED_POLL as u16),
        counter("halt_poll_invalid", HALT_POLL_INVALID as u16),
        counter("halt_wakeup", HALT_WAKEUP as u16),
        time_nsec("halt_poll_success_ns", HALT_POLL_SUCCESS_NS as u16),
        time_nsec("halt_poll_fail_ns", HALT_POLL_FAIL_NS as u16),
        time_nsec("halt_wait_ns", HALT_WAIT_NS as u16),
        loghist_time_nsec("halt_poll_success_hist", HALT_POLL_SUCCESS_HIST as u16),
        loghist_time_nsec("halt_poll_fail_hist", HALT_POLL_FAIL_HIST as u16),
        loghist_time_nsec("halt_wait_hist", HALT_WAIT_HIST as u16),
        iboolean("blocking", BLOCKING as u16),
        counter("pf_taken", PF_TAKEN as u16),
        counter("pf_fixed", PF_FIXED as u16),
        counter("pf_emulate", PF_EMULATE as u16),
        counter("pf_spurious", PF_SPURIOUS as u16),
        counter("pf_fast", PF_FAST as u16),
        counter("pf_mmio_spte_created", PF_MMIO_SPTE_CREATED as u16),
        counter("pf_guest", PF_GUEST as u16),
        counter("tlb_flush", TLB_FLUSH as u16),
        counter("invlpg", INVLPG as u16),
        counter("exits", EXITS as u16),
        counter("io_exits", IO_EXITS as u16),
        counter("mmio_exits", MMIO_EXITS as u16),
        counter("signal_exits", SIGNAL_EXITS as u16),
        counter("irq_window_exits", IRQ_WINDOW_EXITS as u16),
        counter("nmi_window_exits", NMI_WINDOW_EXITS as u16),
        counter("l1d_flush", L1D_FLUSH as u16),
        counter("halt_exits", HALT_EXITS as u16),
        counter("request_irq_exits", REQUEST_IRQ_EXITS as u16),
        counter("irq_exits", IRQ_EXITS as u16),
        counter("host_state_reload", HOST_STATE_RELOAD as u16),
        counter("fpu_reload", FPU_RELOAD as u16),
        counter("insn_emulation", INSN_EMULATION as u16),
        counter("insn_emulation_fail", INSN_EMULATION_FAIL as u16),
        counter("hypercalls", HYPERCALLS as u16),
        counter("irq_injections", IRQ_INJECTIONS as u16),
        counter("nmi_injections", NMI_INJECTIONS as u16),
        counter("req_event", REQ_EVENT as u16),
        counter("nested_run", NESTED_RUN as u16),
        counter("directed_yield_attempted", DIRECTED_YIELD_ATTEMPTED as u16),
        counter("directed_yield_successful", DIRECTED_YIELD_SUCCESSFUL as u16),
        counter("preemption_reported", PREEMPTION_REPORTED as u16),
        counter("preemption_other", PREEMPTION_OTHER as u16),
        iboolean("guest_mode", GUEST_MODE as u16),
        counter("notify_window_exits", NOTIFY_WINDOW_EXITS as u16),
    ];
}

/// The bucket of a logarithmic histogram a value falls in
/// (KVM_STATS_LOG_HIST_UPDATE: fls64(value), capped at the last bucket).
pub const fn log_hist_bucket(value: u64, buckets: usize) -> usize {
    let b = (64 - value.leading_zeros()) as usize;
    if b >= buckets {
        buckets - 1
    } else {
        b
    }
}

/// Where the blocks of a stats file are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub num_desc: usize,
    pub words: usize,
}

impl Layout {
    pub const fn new(descs: &[Desc], words: usize) -> Self {
        Layout { num_desc: descs.len(), words }
    }
    pub const fn id_offset(&self) -> usize {
        HEADER_SIZE
    }
    pub const fn desc_offset(&self) -> usize {
        HEADER_SIZE + NAME_SIZE
    }
    pub const fn data_offset(&self) -> usize {
        self.desc_offset() + DESC_SIZE * self.num_desc
    }
    /// Size of the whole file image.
    pub const fn size(&self) -> usize {
        self.data_offset() + 8 * self.words
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes the file image (header, id, descriptors, data) into `out`, which
/// must be exactly `layout.size()` bytes long; returns false (writing
/// nothing) if it is not.
pub fn write_image(out: &mut [u8], id: &[u8; NAME_SIZE], descs: &[Desc], data: &[u64]) -> bool {
    let l = Layout::new(descs, data.len());
    if out.len() != l.size() {
        return false;
    }
    out.fill(0);
    // struct kvm_stats_header: flags, name_size, num_desc, id/desc/data offsets.
    put_u32(out, 4, NAME_SIZE as u32);
    put_u32(out, 8, l.num_desc as u32);
    put_u32(out, 12, l.id_offset() as u32);
    put_u32(out, 16, l.desc_offset() as u32);
    put_u32(out, 20, l.data_offset() as u32);
    out[l.id_offset()..l.id_offset() + NAME_SIZE].copy_from_slice(id);
    for (i, desc) in descs.iter().enumerate() {
        let at = l.desc_offset() + i * DESC_SIZE;
        put_u32(out, at, desc.flags);
        out[at + 4..at + 6].copy_from_slice(&desc.exponent.to_le_bytes());
        out[at + 6..at + 8].copy_from_slice(&desc.size.to_le_bytes());
        put_u32(out, at + 8, desc.word as u32 * 8);
        put_u32(out, at + 12, desc.bucket_size);
        let name = desc.name.as_bytes();
        let n = name.len().min(NAME_SIZE - 1);
        out[at + 16..at + 16 + n].copy_from_slice(&name[..n]);
    }
    for (i, v) in data.iter().enumerate() {
        let at = l.data_offset() + 8 * i;
        out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    true
}

/// The part of an image of `size` bytes that a read of `len` bytes at `pos`
/// returns (upstream's kvm_stats_read: short at the end, empty past it).
pub fn read_range(size: usize, pos: u64, len: usize) -> core::ops::Range<usize> {
    if pos >= size as u64 {
        return size..size;
    }
    let start = pos as usize;
    start..start + len.min(size - start)
}

/// Formats an id string ("kvm-<pid>" or "kvm-<pid>/vcpu-<n>"), NUL-padded.
pub fn format_id(pid: u32, vcpu: Option<u32>) -> [u8; NAME_SIZE] {
    let mut id = [0u8; NAME_SIZE];
    let mut n = 0;
    let mut push = |s: &[u8]| {
        for &c in s {
            if n < NAME_SIZE - 1 {
                id[n] = c;
                n += 1;
            }
        }
    };
    let mut num = [0u8; 10];
    push(b"kvm-");
    push(decimal(pid, &mut num));
    if let Some(v) = vcpu {
        push(b"/vcpu-");
        push(decimal(v, &mut num));
    }
    id
}

fn decimal(mut v: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_upstream_structs() {
        assert_eq!(vm::WORDS, 15);
        assert_eq!(vcpu::WORDS, 4 + 3 + 3 * 32 + 1 + 34);
        assert_eq!(vcpu::EXITS, 113);
        for (descs, words) in [(&vm::DESCS[..], vm::WORDS), (&vcpu::DESCS[..], vcpu::WORDS)] {
            let mut covered = [false; 200];
            for d in descs {
                assert!(d.name.len() < NAME_SIZE);
                for w in d.word as usize..d.word as usize + d.size as usize {
                    assert!(w < words && !covered[w], "{}", d.name);
                    covered[w] = true;
                }
            }
            assert!(covered[..words].iter().all(|&c| c));
        }
        // The struct order differs from the descriptor order at the end.
        assert_eq!(vm::DESCS[13].name, "max_mmu_rmap_size");
        assert_eq!(vm::DESCS[13].word as usize * 8, 14 * 8);
        assert_eq!(vcpu::DESCS[44].name, "notify_window_exits");
    }

    #[test]
    fn image_layout() {
        let id = format_id(1234, Some(3));
        assert_eq!(&id[..18], b"kvm-1234/vcpu-3\0\0\0");
        let data = [7u64; vm::WORDS];
        let l = Layout::new(&vm::DESCS, vm::WORDS);
        let mut img = [0u8; 24 + 48 + 64 * 15 + 8 * 15];
        assert_eq!(l.size(), img.len());
        assert!(write_image(&mut img, &format_id(1, None), &vm::DESCS, &data));
        assert_eq!(&img[4..8], &48u32.to_le_bytes());
        assert_eq!(&img[8..12], &15u32.to_le_bytes());
        assert_eq!(&img[16..20], &72u32.to_le_bytes());
        assert_eq!(&img[20..24], &(72u32 + 64 * 15).to_le_bytes());
        assert_eq!(&img[24..30], b"kvm-1\0");
        assert_eq!(&img[72 + 16..72 + 16 + 16], b"remote_tlb_flush");
        assert_eq!(img[l.data_offset()], 7);
        assert!(!write_image(&mut img[1..], &id, &vm::DESCS, &data));
    }

    #[test]
    fn reads_and_buckets() {
        assert_eq!(read_range(100, 0, 24), 0..24);
        assert_eq!(read_range(100, 90, 24), 90..100);
        assert_eq!(read_range(100, 100, 24), 100..100);
        assert_eq!(read_range(100, u64::MAX, 24), 100..100);
        assert_eq!(log_hist_bucket(0, 32), 0);
        assert_eq!(log_hist_bucket(1, 32), 1);
        assert_eq!(log_hist_bucket(1000, 32), 10);
        assert_eq!(log_hist_bucket(u64::MAX, 32), 31);
        assert_eq!(&format_id(0, None)[..6], b"kvm-0\0");
    }
}
