// SPDX-License-Identifier: GPL-2.0
//! The two-dimensional paging MMU: nested (NPT) or extended (EPT) page tables that
//! map guest-physical to host-physical memory, built on demand as the guest
//! touches memory. Four levels, 4K leaves; the entry format is the vendor's
//! ([`TdpFormat`]).
//!
//! Table pages live until the VM dies; leaves are zapped when slots change. The
//! caller (the VM, under its lock) flushes the guests' TLBs after a zap and only
//! then releases the pages the zapped leaves pointed to.

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
    /// Every table page below the root, freed with the MMU.
    tables: KVec<Page>,
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
        Ok(TdpMmu { fmt, root, root_pa, tables: KVec::new() })
    }

    /// Physical address of the root table (nCR3 / EPTP address).
    pub(crate) fn root_pa(&self) -> u64 {
        self.root_pa
    }

    /// Maps the 4K guest page at `gpa` to host-physical `pa`.
    /// Returns whether the leaf is new (it was not present before).
    pub(crate) fn map(&mut self, gpa: u64, pa: u64, writable: bool) -> Result<bool> {
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
                let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
                let next_pa = crate::cpu::page_phys(&page);
                table = page_address(&page);
                self.tables.push(page, GFP_KERNEL)?;
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
    fn walk_leaves(&mut self, start: u64, end: u64, f: &dyn Fn(u64) -> u64) -> bool {
        let root = page_address(&self.root);
        self.walk(root, LEVELS, 0, start, end, f)
    }

    fn walk(&self, table: *mut u8, level: u32, base_gfn: u64, start: u64, end: u64, f: &dyn Fn(u64) -> u64) -> bool {
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
        let n = core::cell::Cell::new(0u64);
        self.walk_leaves(start_gfn, end_gfn, &|_| {
            n.set(n.get() + 1);
            0
        });
        n.get()
    }

    /// Makes the mappings of guest frames [start, end) read-only.
    pub(crate) fn write_protect(&mut self, start_gfn: u64, end_gfn: u64) -> bool {
        let fmt = self.fmt;
        self.walk_leaves(start_gfn, end_gfn, &|pte| fmt.write_protect(pte))
    }
}
