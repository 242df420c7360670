// SPDX-License-Identifier: GPL-2.0
//! The two-dimensional paging MMU: nested (NPT) or extended (EPT) page tables that
//! map guest-physical to host-physical memory, built on demand as the guest
//! touches memory. Four levels; leaves of 4K, or 2M and 1G ("huge" leaves: the
//! page-size bit at level 2 or 3) where the host maps the memory with pages of
//! that size (upstream's kvm_mmu_hugepage_adjust decides, see
//! `Vm::handle_tdp_fault`). The entry format is the vendor's ([`TdpFormat`]).
//!
//! Table pages live until the VM dies, except those a huge leaf replaces
//! (freed after a TLB flush, see [`Mapped::detached`]); leaves are zapped when
//! slots change or the MMU notifier invalidates the host mapping. The caller
//! (the VM, under its `mmu` spinlock, see x86/kvm/mmu_invalidate.rs) flushes
//! the guests' TLBs after a zap before the host may free or reuse the pages the
//! leaves pointed to.
//!
//! Everything here runs under that spinlock and never sleeps: the table pages a
//! new mapping needs are allocated beforehand ([`TableCache`], upstream's
//! kvm_mmu_memory_cache topped up before taking mmu_lock).

use crate::bindings;
use crate::mm::{page_address, phys_to_virt};
use crate::x86_ops::TdpFormat;
use kernel::page::Page;
use kernel::prelude::*;

const LEVELS: u32 = 4;
const ENTRIES: usize = 512;
/// Guest-physical addresses the four-level tables can map (48 bits).
pub(crate) const MAX_GPA_BITS: u32 = 48;

pub(crate) struct TdpMmu {
    fmt: &'static dyn TdpFormat,
    root: Page,
    root_pa: u64,
}

/// Zeroed table pages allocated before the MMU lock is taken: enough for one
/// mapping (a table per level below the root, [`FAULT_TABLES`]), or for
/// splitting a slot's huge leaves when dirty logging starts. The VM keeps one
/// (under its `inner` lock, which faults hold) so that unused pages serve the
/// next fault; they are freed on drop.
pub(crate) struct TableCache {
    pages: KVec<*mut bindings::page>,
}

/// Table pages one fault may link (one per level below the root).
pub(crate) const FAULT_TABLES: usize = (LEVELS - 1) as usize;

// SAFETY: the pages are owned by the cache; freeing is allowed from any thread.
unsafe impl Send for TableCache {}

impl TableCache {
    pub(crate) const fn new() -> Self {
        TableCache { pages: KVec::new() }
    }

    /// Refills the cache to at least `n` pages (may sleep: call without the
    /// MMU lock).
    pub(crate) fn topup(&mut self, n: usize) -> Result {
        if self.pages.len() >= n {
            return Ok(());
        }
        self.pages.reserve(n - self.pages.len(), GFP_KERNEL)?;
        while self.pages.len() < n {
            // SAFETY: a zeroed order-0 allocation, null on failure.
            let p = unsafe { bindings::kvm_rs_alloc_pages(0) };
            if p.is_null() {
                return Err(ENOMEM);
            }
            self.pages.push(p, GFP_KERNEL)?;
        }
        Ok(())
    }

    fn take(&mut self) -> Option<*mut bindings::page> {
        crate::kvec_ext::pop(&mut self.pages)
    }
}

impl Drop for TableCache {
    fn drop(&mut self) {
        for p in self.pages.iter() {
            // SAFETY: allocated in `topup` with order 0 and never linked.
            unsafe { bindings::kvm_rs_free_pages(*p, 0) };
        }
    }
}

/// Leaves added (positive) or removed (negative) per page size: index 0 for
/// 4K, 1 for 2M, 2 for 1G (the pages_4k/2m/1g statistics, upstream's
/// kvm_update_page_stats).
#[derive(Clone, Copy, Default)]
pub(crate) struct LeafDelta(pub [i64; 3]);

impl LeafDelta {
    fn add(&mut self, level: u32, n: i64) {
        if let Some(c) = self.0.get_mut(level as usize - 1) {
            *c += n;
        }
    }

    pub(crate) fn merge(&mut self, other: LeafDelta) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Whether any leaf was added or removed.
    pub(crate) fn any(&self) -> bool {
        self.0.iter().any(|&n| n != 0)
    }
}

/// The result of aging a range of leaves (the MMU notifier's young callbacks).
pub(crate) struct Aged {
    /// Some leaf had been accessed since the last clear.
    pub young: bool,
    /// Leaves were changed (a TLB flush makes the change visible at once).
    pub changed: bool,
    /// Leaves removed (a format without accessed bits ages by zapping).
    pub zapped: LeafDelta,
}

/// What [`TdpMmu::map`] did.
pub(crate) struct Mapped {
    /// Leaves added and removed (a new leaf, a huge leaf split on the way, or
    /// the small leaves a new huge leaf replaced).
    pub leaves: LeafDelta,
    /// A table (its physical address and level) that a huge leaf replaced:
    /// the hardware may still walk it until the guests' TLBs are flushed, so
    /// the caller flushes and then frees it with [`TdpMmu::free_detached`].
    pub detached: Option<(u64, u32)>,
}

/// The permissions of a new leaf.
#[derive(Clone, Copy)]
pub(crate) struct Perm {
    pub writable: bool,
    /// False for a huge leaf under kvm.nx_huge_pages (iTLB multihit): the
    /// guest's instruction fetches from it fault and map 4K pieces.
    pub exec: bool,
}

/// Guest frames one leaf at `level` maps (1, 512, 512 * 512).
pub(crate) const fn level_pages(level: u32) -> u64 {
    1 << (9 * (level - 1))
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize
}

/// A pointer to entry `i` of the table at kernel address `table`.
fn entry(table: *mut u8, i: usize) -> *mut u64 {
    // SAFETY: `i` < 512 (masked by `index`), inside the table page.
    unsafe { (table as *mut u64).add(i) }
}

impl TdpMmu {
    pub(crate) fn new(fmt: &'static dyn TdpFormat) -> Result<Self> {
        let root = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
        let root_pa = crate::cpu::page_phys(&root);
        Ok(TdpMmu { fmt, root, root_pa })
    }

    /// Physical address of the root table (nCR3 / EPTP address).
    pub(crate) fn root_pa(&self) -> u64 {
        self.root_pa
    }

    /// Maps the guest page of size `level` (1: 4K, 2: 2M, 3: 1G) at `gpa` to
    /// host-physical `pa` (both aligned to that size) with `perm`, linking missing tables
    /// from `cache` (never allocates: runs under the MMU spinlock).
    ///
    /// A huge leaf met above `level` is split into a table of leaves one size
    /// down that map the same memory with the same permissions (upstream's
    /// tdp_mmu_split_huge_page; the translations are unchanged, so no flush).
    /// A table found at `level` is replaced by the new leaf, which maps what
    /// its leaves mapped (the host maps the whole range with one page now);
    /// the table is handed back in [`Mapped::detached`].
    pub(crate) fn map(&mut self, gpa: u64, pa: u64, level: u32, perm: Perm, cache: &mut TableCache) -> Result<Mapped> {
        if gpa >> MAX_GPA_BITS != 0 || !(1..LEVELS).contains(&level) {
            return Err(EFAULT);
        }
        let mut out = Mapped { leaves: LeafDelta::default(), detached: None };
        let mut table = page_address(&self.root);
        for l in (level + 1..=LEVELS).rev() {
            let e = entry(table, index(gpa, l));
            // SAFETY: `e` is inside a table page we own; the hardware may read it
            // concurrently, so the access is a volatile 64-bit read/write.
            let cur = unsafe { e.read_volatile() };
            if self.fmt.present(cur) && !self.fmt.is_huge(cur) {
                table = phys_to_virt(self.fmt.address(cur));
                continue;
            }
            let next = if self.fmt.present(cur) {
                // A huge leaf at `l`: the new table maps the same memory.
                split_leaf(self.fmt, cur, l, l - 1, cache, &mut out.leaves).ok_or(ENOMEM)?
            } else {
                let page = cache.take().ok_or(ENOMEM)?;
                // SAFETY: a page of the cache, now owned by the table tree
                // (freed by `free_tables`).
                self.fmt.table(unsafe { bindings::kvm_rs_page_to_phys(page) })
            };
            table = phys_to_virt(self.fmt.address(next));
            // SAFETY: as above; the new table is filled before it is linked.
            unsafe { e.write_volatile(next) };
        }
        let leaf = entry(table, index(gpa, level));
        // SAFETY: as the accesses above: an entry of a table we own.
        let cur = unsafe { leaf.read_volatile() };
        let new = self.fmt.leaf(pa, perm.writable);
        let new = if level > 1 { self.fmt.huge(new) } else { new };
        let new = if perm.exec { new } else { self.fmt.no_exec(new) };
        // SAFETY: as above.
        unsafe { leaf.write_volatile(new) };
        if !self.fmt.present(cur) {
            out.leaves.add(level, 1);
        } else if level > 1 && !self.fmt.is_huge(cur) {
            let table_pa = self.fmt.address(cur);
            self.count_leaves(phys_to_virt(table_pa), level - 1, &mut out.leaves);
            out.leaves.add(level, 1);
            out.detached = Some((table_pa, level - 1));
        }
        Ok(out)
    }

    /// Whether guest frames [first_gfn, first_gfn + the size of `level`) have
    /// leaves smaller than `level` (a huge leaf there would replace them:
    /// the fault maps 4K instead, so that 4K executable pieces of a split
    /// non-executable huge leaf are not collapsed again by a data access).
    pub(crate) fn has_smaller_leaves(&mut self, first_gfn: u64, level: u32) -> bool {
        let mut any = false;
        self.walk_leaves(first_gfn, first_gfn + level_pages(level), &mut |pte, l| {
            any |= l < level;
            pte
        });
        any
    }

    /// Table pages that splitting every huge leaf overlapping guest frames
    /// [start, end) into 4K leaves takes (see [`TdpMmu::split_huge`]).
    pub(crate) fn split_cost(&mut self, start_gfn: u64, end_gfn: u64) -> usize {
        let mut n = 0usize;
        self.walk_leaves(start_gfn, end_gfn, &mut |pte, level| {
            // A 2M leaf takes one table; a 1G leaf one of 2M leaves and 512 of 4K.
            n += match level {
                2 => 1,
                3 => 1 + ENTRIES,
                _ => 0,
            };
            pte
        });
        n
    }

    /// Splits every huge leaf overlapping guest frames [start, end) into 4K
    /// leaves that map the same memory with the same permissions (upstream's
    /// eager page splitting when dirty logging starts: the guest keeps its
    /// mappings, and write protection then works page by page). Takes its
    /// tables from `cache`; a leaf the cache cannot cover stays as it is
    /// (the caller zaps what remains). No flush is needed: the translations
    /// are unchanged.
    pub(crate) fn split_huge(&mut self, start_gfn: u64, end_gfn: u64, cache: &mut TableCache) -> LeafDelta {
        let fmt = self.fmt;
        let mut delta = LeafDelta::default();
        self.walk_leaves(start_gfn, end_gfn, &mut |pte, level| {
            if level == 1 {
                return pte;
            }
            split_leaf(fmt, pte, level, 1, cache, &mut delta).unwrap_or(pte)
        });
        delta
    }

    /// Subtracts the leaves below `table` (at `level`) from `delta`.
    fn count_leaves(&self, table: *mut u8, level: u32, delta: &mut LeafDelta) {
        for i in 0..ENTRIES {
            // SAFETY: inside a table page we own.
            let cur = unsafe { entry(table, i).read_volatile() };
            if !self.fmt.present(cur) {
                continue;
            }
            if level == 1 || self.fmt.is_huge(cur) {
                delta.add(level, -1);
            } else {
                self.count_leaves(phys_to_virt(self.fmt.address(cur)), level - 1, delta);
            }
        }
    }

    /// Frees a table that [`TdpMmu::map`] detached, once no vCPU can walk it
    /// any more (after the TLB flush).
    pub(crate) fn free_detached(&self, (pa, level): (u64, u32)) {
        self.free_tables(phys_to_virt(pa), level);
        // SAFETY: the table page came from a TableCache (order 0) and is
        // linked nowhere any more.
        unsafe { bindings::kvm_rs_free_pages(bindings::kvm_rs_phys_to_page(pa), 0) };
    }

    /// Applies `f` to every present leaf (of any size) overlapping guest frames
    /// [start, end); `f` gets the entry and its level and returns the new
    /// entry. Returns whether any leaf was changed. A huge leaf only partly in
    /// the range is passed whole: callers zap or protect more, never less.
    fn walk_leaves(&mut self, start: u64, end: u64, f: &mut dyn FnMut(u64, u32) -> u64) -> bool {
        let root = page_address(&self.root);
        self.walk(root, LEVELS, 0, start, end, f)
    }

    fn walk(&self, table: *mut u8, level: u32, base_gfn: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, u32) -> u64) -> bool {
        let span = level_pages(level);
        let mut changed = false;
        // Only the entries overlapping [start, end): a single page costs one
        // entry per level, not a scan of every table on the way.
        let first = (start.saturating_sub(base_gfn) / span).min(ENTRIES as u64) as usize;
        let last = end.saturating_sub(base_gfn).div_ceil(span).min(ENTRIES as u64) as usize;
        for i in first..last {
            let lo = base_gfn + i as u64 * span;
            let e = entry(table, i);
            // SAFETY: inside a table page we own (volatile: hardware reads it).
            let cur = unsafe { e.read_volatile() };
            if !self.fmt.present(cur) {
                continue;
            }
            if level == 1 || self.fmt.is_huge(cur) {
                let new = f(cur, level);
                if new != cur {
                    // SAFETY: as above.
                    unsafe { e.write_volatile(new) };
                    changed = true;
                }
            } else {
                changed |= self.walk(phys_to_virt(self.fmt.address(cur)), level - 1, lo, start, end, f);
            }
        }
        changed
    }

    /// Removes the mappings of guest frames [start, end) (a huge leaf that
    /// overlaps the range goes whole); returns the leaves removed.
    pub(crate) fn zap(&mut self, start_gfn: u64, end_gfn: u64) -> LeafDelta {
        self.zap_if(start_gfn, end_gfn, 1)
    }

    /// Removes the leaves of `min_level` or larger overlapping guest frames
    /// [start, end): `min_level` 2 drops the huge leaves, so that the range
    /// faults back in 4K pieces (dirty logging tracks 4K pages).
    pub(crate) fn zap_if(&mut self, start_gfn: u64, end_gfn: u64, min_level: u32) -> LeafDelta {
        let mut n = LeafDelta::default();
        self.walk_leaves(start_gfn, end_gfn, &mut |pte, level| {
            if level < min_level {
                return pte;
            }
            n.add(level, -1);
            0
        });
        n
    }

    /// Makes the mappings of guest frames [start, end) read-only.
    pub(crate) fn write_protect(&mut self, start_gfn: u64, end_gfn: u64) -> bool {
        let fmt = self.fmt;
        self.walk_leaves(start_gfn, end_gfn, &mut |pte, _| fmt.write_protect(pte))
    }

    /// Makes read-only the pages `base_gfn + i` for each bit i set in
    /// `mask` (a dirty-log word), one walk per run of set bits.
    pub(crate) fn write_protect_mask(&mut self, base_gfn: u64, mask: u64) -> bool {
        let mut protected = false;
        let mut bits = mask;
        while bits != 0 {
            let b = bits.trailing_zeros();
            let run = (bits >> b).trailing_ones();
            bits = if b + run >= 64 { 0 } else { bits & !(((1u64 << run) - 1) << b) };
            let gfn = base_gfn + b as u64;
            protected |= self.write_protect(gfn, gfn + run as u64);
        }
        protected
    }

    /// Reports whether any leaf of guest frames [start, end) was accessed and,
    /// with `clear`, clears the accessed bits (upstream's kvm_age_gfn and
    /// kvm_test_age_gfn). A format without accessed bits (EPT without A/D)
    /// counts every present leaf as young and clears by zapping it, so the
    /// next access faults in again (upstream's access tracking).
    pub(crate) fn age(&mut self, start_gfn: u64, end_gfn: u64, clear: bool) -> Aged {
        let fmt = self.fmt;
        let mask = fmt.accessed_mask();
        let mut young = false;
        let mut zapped = LeafDelta::default();
        let changed = self.walk_leaves(start_gfn, end_gfn, &mut |pte, level| {
            let accessed = mask == 0 || pte & mask != 0;
            young |= accessed;
            match (clear && accessed, mask) {
                (false, _) => pte,
                (true, 0) => {
                    zapped.add(level, -1);
                    0
                }
                (true, m) => pte & !m,
            }
        });
        Aged { young, changed, zapped }
    }

    /// Frees the tables below `table` (a table at `level`).
    fn free_tables(&self, table: *mut u8, level: u32) {
        for i in 0..ENTRIES {
            // SAFETY: inside a table page we own; no CPU uses the tables any
            // more (the VM is being destroyed, or the table was detached and
            // the TLBs flushed since).
            let cur = unsafe { entry(table, i).read_volatile() };
            if level > 1 && self.fmt.present(cur) && !self.fmt.is_huge(cur) {
                let pa = self.fmt.address(cur);
                self.free_tables(phys_to_virt(pa), level - 1);
                // SAFETY: the table page came from a TableCache (order 0) and
                // is linked nowhere else.
                unsafe { bindings::kvm_rs_free_pages(bindings::kvm_rs_phys_to_page(pa), 0) };
            }
        }
    }
}

/// A table entry for a new table that maps what the huge leaf `huge` at
/// `level` maps, with leaves of `to_level` (one level down, or down to 4K,
/// with tables in between), pages taken from `cache`; the leaves' counts go
/// into `delta`. None (nothing taken, nothing counted) if the cache has too
/// few pages. The tables are filled before the caller links them.
fn split_leaf(fmt: &dyn TdpFormat, huge: u64, level: u32, to_level: u32, cache: &mut TableCache, delta: &mut LeafDelta) -> Option<u64> {
    let child = level - 1;
    let needed = if child > to_level { 1 + ENTRIES } else { 1 };
    if cache.pages.len() < needed {
        return None;
    }
    let page = cache.take()?;
    // SAFETY: a page of the cache, owned by the table tree once linked.
    let table_pa = unsafe { bindings::kvm_rs_page_to_phys(page) };
    let table = phys_to_virt(table_pa);
    let base = fmt.address(huge) & !(level_pages(level) * 4096 - 1);
    for i in 0..ENTRIES {
        let child_leaf = fmt.split_child(huge, base + i as u64 * level_pages(child) * 4096, child);
        let e = if child > to_level {
            // The intermediate leaf counts while it exists; its own split
            // takes it off again.
            delta.add(child, 1);
            split_leaf(fmt, child_leaf, child, to_level, cache, delta)?
        } else {
            delta.add(child, 1);
            child_leaf
        };
        // SAFETY: the new table page, not linked yet.
        unsafe { entry(table, i).write_volatile(e) };
    }
    delta.add(level, -1);
    Some(fmt.table(table_pa))
}

impl Drop for TdpMmu {
    fn drop(&mut self) {
        self.free_tables(page_address(&self.root), LEVELS);
    }
}
