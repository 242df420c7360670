// SPDX-License-Identifier: GPL-2.0
//! The two-dimensional paging MMU: nested (NPT) or extended (EPT) page tables that
//! map guest-physical to host-physical memory, built on demand as the guest
//! touches memory. Four levels, 4K leaves; the entry format is the vendor's
//! ([`TdpFormat`]).
//!
//! Table pages live until the VM dies; leaves are zapped when slots change or
//! the MMU notifier invalidates the host mapping. The caller (the VM, under its
//! `mmu` spinlock, see x86/kvm/mmu_invalidate.rs) flushes the guests' TLBs after
//! a zap before the host may free or reuse the pages the leaves pointed to.
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
/// 4K mapping (a table per level below the root). The VM keeps one (under its
/// `inner` lock, which faults hold) so that unused pages serve the next fault;
/// they are freed on drop.
pub(crate) struct TableCache {
    pages: [*mut bindings::page; (LEVELS - 1) as usize],
}

// SAFETY: the pages are owned by the cache; freeing is allowed from any thread.
unsafe impl Send for TableCache {}

impl TableCache {
    pub(crate) const fn new() -> Self {
        TableCache { pages: [core::ptr::null_mut(); (LEVELS - 1) as usize] }
    }

    /// Refills the cache (may sleep: call without the MMU lock).
    pub(crate) fn topup(&mut self) -> Result {
        for p in self.pages.iter_mut().filter(|p| p.is_null()) {
            // SAFETY: a zeroed order-0 allocation, null on failure.
            *p = unsafe { bindings::kvm_rs_alloc_pages(0) };
            if p.is_null() {
                return Err(ENOMEM);
            }
        }
        Ok(())
    }

    fn take(&mut self) -> Option<*mut bindings::page> {
        let p = self.pages.iter_mut().find(|p| !p.is_null())?;
        Some(core::mem::replace(p, core::ptr::null_mut()))
    }
}

impl Drop for TableCache {
    fn drop(&mut self) {
        for p in self.pages.iter().filter(|p| !p.is_null()) {
            // SAFETY: allocated in `topup` with order 0 and never linked.
            unsafe { bindings::kvm_rs_free_pages(*p, 0) };
        }
    }
}

/// The result of aging a range of leaves (the MMU notifier's young callbacks).
pub(crate) struct Aged {
    /// Some leaf had been accessed since the last clear.
    pub young: bool,
    /// Leaves were changed (a TLB flush makes the change visible at once).
    pub changed: bool,
    /// Leaves removed (a format without accessed bits ages by zapping; for
    /// the pages_4k statistic).
    pub zapped: u64,
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

    /// Maps the 4K guest page at `gpa` to host-physical `pa`, linking missing
    /// tables from `cache` (never allocates: runs under the MMU spinlock).
    /// Returns whether the leaf is new (it was not present before).
    pub(crate) fn map(&mut self, gpa: u64, pa: u64, writable: bool, cache: &mut TableCache) -> Result<bool> {
        if gpa >> MAX_GPA_BITS != 0 {
            return Err(EFAULT);
        }
        let mut table = page_address(&self.root);
        for level in (2..=LEVELS).rev() {
            let e = entry(table, index(gpa, level));
            // SAFETY: `e` is inside a table page we own; the hardware may read it
            // concurrently, so the access is a volatile 64-bit read/write.
            let cur = unsafe { e.read_volatile() };
            if self.fmt.present(cur) {
                table = phys_to_virt(self.fmt.address(cur));
            } else {
                let page = cache.take().ok_or(ENOMEM)?;
                // SAFETY: a page of the cache, now owned by the table tree
                // (freed by `free_tables`).
                let next_pa = unsafe { bindings::kvm_rs_page_to_phys(page) };
                table = phys_to_virt(next_pa);
                // SAFETY: as above; the new table is zeroed before it is linked.
                unsafe { e.write_volatile(self.fmt.table(next_pa)) };
            }
        }
        // SAFETY: as above.
        let leaf = entry(table, index(gpa, 1));
        // SAFETY: as the writes above: an entry of a table we own.
        let was_present = self.fmt.present(unsafe { leaf.read_volatile() });
        // SAFETY: as above.
        unsafe { leaf.write_volatile(self.fmt.leaf(pa, writable)) };
        Ok(!was_present)
    }

    /// Applies `f` to every present leaf for guest frames in [start, end); returns
    /// whether any leaf was changed.
    fn walk_leaves(&mut self, start: u64, end: u64, f: &mut dyn FnMut(u64) -> u64) -> bool {
        let root = page_address(&self.root);
        self.walk(root, LEVELS, 0, start, end, f)
    }

    fn walk(&self, table: *mut u8, level: u32, base_gfn: u64, start: u64, end: u64, f: &mut dyn FnMut(u64) -> u64) -> bool {
        let span = 1u64 << (9 * (level - 1));
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
            if level == 1 {
                let new = f(cur);
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

    /// Removes the mappings of guest frames [start, end); returns how many
    /// leaves were present (for the pages_4k statistic).
    pub(crate) fn zap(&mut self, start_gfn: u64, end_gfn: u64) -> u64 {
        let mut n = 0u64;
        self.walk_leaves(start_gfn, end_gfn, &mut |_| {
            n += 1;
            0
        });
        n
    }

    /// Makes the mappings of guest frames [start, end) read-only.
    pub(crate) fn write_protect(&mut self, start_gfn: u64, end_gfn: u64) -> bool {
        let fmt = self.fmt;
        self.walk_leaves(start_gfn, end_gfn, &mut |pte| fmt.write_protect(pte))
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
        let mut zapped = 0u64;
        let changed = self.walk_leaves(start_gfn, end_gfn, &mut |pte| {
            let accessed = mask == 0 || pte & mask != 0;
            young |= accessed;
            match (clear && accessed, mask) {
                (false, _) => pte,
                (true, 0) => {
                    zapped += 1;
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
            // more (the VM is being destroyed).
            let cur = unsafe { entry(table, i).read_volatile() };
            if level > 1 && self.fmt.present(cur) {
                let pa = self.fmt.address(cur);
                self.free_tables(phys_to_virt(pa), level - 1);
                // SAFETY: the table page came from a TableCache (order 0) and
                // is linked nowhere else.
                unsafe { bindings::kvm_rs_free_pages(bindings::kvm_rs_phys_to_page(pa), 0) };
            }
        }
    }
}

impl Drop for TdpMmu {
    fn drop(&mut self) {
        self.free_tables(page_address(&self.root), LEVELS);
    }
}
