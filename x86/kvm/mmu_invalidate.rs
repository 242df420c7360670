// SPDX-License-Identifier: GPL-2.0
//! Guest memory that follows the process (upstream's mmu_invalidate_seq /
//! mmu_invalidate_in_progress protocol of virt/kvm/kvm_main.c and the
//! is_page_fault_stale check of arch/x86/kvm/mmu/mmu.c).
//!
//! No guest page is pinned. A fault takes a reference to the user page only
//! until its leaf is installed; what keeps the guest from using a page the
//! host has since freed, swapped or replaced is the MMU notifier
//! (x86/kvm/mmu_notifier.rs): before the host changes a user mapping, its
//! `invalidate_range_start` zaps the nested-page-table leaves of every slot
//! that maps the range, in both address spaces (System Management Mode's
//! address space 1 maps the same HVAs as address space 0), and flushes the
//! vCPUs' TLBs; `invalidate_range_end` follows once the host page tables are
//! updated.
//!
//! # Locks
//! - `Vm::inner` (mutex): slots, vCPU list, dirty bitmaps. A fault holds it
//!   from the slot lookup to the end, across get_user_pages (which may sleep
//!   or itself trigger an invalidation, e.g. breaking CoW). The notifier never
//!   takes it, so that cannot deadlock, and user copies under it are fine.
//! - `Vm::mmu` (spinlock, [`MmuState`]): the page tables of each address
//!   space, the copies of the slots' descriptors and of the vCPU list the notifier needs, and the
//!   invalidation counters. Taken under `inner` or alone (the notifier, which
//!   may run in non-blockable context: the OOM reaper); nothing is taken under
//!   it, nothing sleeps under it (table pages are allocated before, see
//!   `TableCache`). TLB flushes under it spin until the kicked vCPUs left the
//!   guest, which never needs a lock.
//!
//! # Why a racing fault cannot install a stale page
//! A fault reads `invalidate_seq` under `mmu`, looks the page up without
//! `mmu`, then takes `mmu` again and installs the leaf only if no
//! invalidation covering its address is in progress and the sequence did not
//! move. An invalidation raises the in-progress count under `mmu` before the
//! host changes its page tables and bumps the sequence under `mmu` after.
//! So a lookup that saw the old host mapping either finishes before the
//! invalidation's start (whose zap then removes its leaf) or is checked while
//! the count is raised or after the sequence moved (and retries). The page
//! reference taken by the lookup is dropped after installing: from then on the
//! notifier, not a reference, guarantees the guest stops using the page before
//! the host frees it.

use crate::memslots::{SlotDesc, ADDRESS_SPACES, PAGE_SHIFT};
use crate::tdp_mmu::{LeafDelta, TdpMmu};
use crate::vcpu::VcpuShared;
use crate::vm::{Vm, VmInner};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

/// The state behind `Vm::mmu` (see the module documentation for the lock).
pub(crate) struct MmuState {
    /// The two-dimensional page tables, indexed by address-space id (0:
    /// normal, 1: System Management Mode).
    pub tdp: [TdpMmu; ADDRESS_SPACES as usize],
    /// The descriptors of each address space's slots (a copy of
    /// `VmInner::spaces[i].slots`, replaced whole under both locks), to turn
    /// the notifier's HVA ranges into GFNs.
    slots: [KVec<SlotDesc>; ADDRESS_SPACES as usize],
    /// The VM's vCPUs (a copy of `VmInner::vcpus`), whose TLBs a flush kicks.
    vcpus: KVec<Arc<VcpuShared>>,
    /// Invalidations between start and end (upstream's
    /// mmu_invalidate_in_progress).
    in_progress: u64,
    /// The union of their HVA ranges, while `in_progress` > 0.
    range: (u64, u64),
    /// Bumped at the end of each invalidation (upstream's mmu_invalidate_seq).
    seq: u64,
}

impl MmuState {
    pub(crate) fn new(tdp: [TdpMmu; ADDRESS_SPACES as usize]) -> Self {
        MmuState { tdp, slots: [KVec::new(), KVec::new()], vcpus: KVec::new(), in_progress: 0, range: (0, 0), seq: 0 }
    }

    /// The sequence a fault reads before it looks its page up.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether a fault that read `seq`, looked up its page and would map
    /// HVAs [start, end) (one page, or the huge page around it) must retry
    /// (upstream's mmu_invalidate_retry_gfn).
    pub(crate) fn fault_is_stale(&self, seq: u64, start: u64, end: u64) -> bool {
        (self.in_progress > 0 && start < self.range.1 && end > self.range.0) || self.seq != seq
    }

    /// Makes every vCPU drop the guest translations it may cache, and waits
    /// until none can still use the old ones (upstream's kvm_flush_remote_tlbs
    /// with its kick and wait). Spins; never sleeps.
    pub(crate) fn flush_remote_tlbs(&self, vm: &Vm) {
        let gen = vm.tlb_gen.fetch_add(1, Ordering::SeqCst) + 1;
        let kicked = self.vcpus.iter().fold(false, |k, v| v.kick_and_wait(gen) | k);
        crate::stats::remote_tlb_flush(vm, kicked);
    }

    /// Applies `f` to the GFN range of every slot, in every address space,
    /// overlapping HVAs [start, end).
    fn for_each_gfn_range(&mut self, start: u64, end: u64, f: &mut dyn FnMut(&mut TdpMmu, u64, u64)) {
        for (tdp, slots) in self.tdp.iter_mut().zip(self.slots.iter()) {
            for s in slots.iter() {
                let slot_end = s.hva + (s.npages << PAGE_SHIFT);
                let (lo, hi) = (start.max(s.hva), end.min(slot_end));
                if lo >= hi {
                    continue;
                }
                let first = s.base_gfn + ((lo - s.hva) >> PAGE_SHIFT);
                let last = s.base_gfn + ((hi - s.hva + (1 << PAGE_SHIFT) - 1) >> PAGE_SHIFT);
                f(tdp, first, last);
            }
        }
    }

    /// Removes the leaves of `min_level` (1: all, 2: the huge ones) or
    /// larger overlapping guest frames [start, end) of address space `as_id`,
    /// keeping the page statistics; returns whether any was present (a TLB
    /// flush is then needed).
    pub(crate) fn zap(&mut self, vm: &Vm, as_id: usize, start_gfn: u64, end_gfn: u64, min_level: u32) -> bool {
        let Some(tdp) = self.tdp.get_mut(as_id) else { return false };
        let n = tdp.zap_if(start_gfn, end_gfn, min_level);
        crate::stats::pages(vm, n);
        n.any()
    }

    /// Zaps every leaf mapping HVAs [start, end), in every slot and address
    /// space, and flushes the TLBs if any was present.
    fn zap_hva_range(&mut self, vm: &Vm, start: u64, end: u64) {
        let mut zapped = LeafDelta::default();
        self.for_each_gfn_range(start, end, &mut |tdp, first, last| zapped.merge(tdp.zap(first, last)));
        crate::stats::pages(vm, zapped);
        if zapped.any() {
            self.flush_remote_tlbs(vm);
        }
    }
}

/// invalidate_range_start: from now until the matching end, faults on the
/// range retry; its leaves are zapped and the TLBs flushed before returning.
pub(crate) fn invalidate_start(vm: &Vm, start: u64, end: u64) {
    let mut m = vm.mmu.lock();
    m.range = if m.in_progress == 0 { (start, end) } else { (m.range.0.min(start), m.range.1.max(end)) };
    m.in_progress += 1;
    m.zap_hva_range(vm, start, end);
}

/// invalidate_range_end: the host's page tables are updated; faults that
/// looked pages up before this retry.
pub(crate) fn invalidate_end(vm: &Vm, _start: u64, _end: u64) {
    let mut m = vm.mmu.lock();
    m.seq = m.seq.wrapping_add(1);
    // Paired with the start (the core calls end only after a start of ours
    // returned); saturating so an imbalance cannot block faults forever.
    m.in_progress = m.in_progress.saturating_sub(1);
}

/// clear_flush_young / clear_young / test_young: whether the guest accessed a
/// page of HVAs [start, end) since the last clear, clearing with `clear`.
pub(crate) fn age(vm: &Vm, start: u64, end: u64, clear: bool, flush: bool) -> bool {
    let mut m = vm.mmu.lock();
    let (mut young, mut changed, mut zapped) = (false, false, LeafDelta::default());
    m.for_each_gfn_range(start, end, &mut |tdp, first, last| {
        let a = tdp.age(first, last, clear);
        young |= a.young;
        changed |= a.changed;
        zapped.merge(a.zapped);
    });
    crate::stats::pages(vm, zapped);
    if changed && flush {
        m.flush_remote_tlbs(vm);
    }
    young
}

/// release: the address space is going away; nothing may stay mapped.
pub(crate) fn release(vm: &Vm) {
    vm.mmu.lock().zap_hva_range(vm, 0, u64::MAX);
}

/// The copy of address space `as_id`'s slot descriptors for a new slot list
/// (allocated before `mmu` is taken; install it with [`MmuState::set_slots`]).
pub(crate) fn slot_descs(inner: &VmInner, as_id: usize) -> Result<KVec<SlotDesc>> {
    let space = inner.spaces.get(as_id).ok_or(EINVAL)?;
    let mut v = KVec::with_capacity(space.slots.len(), GFP_KERNEL)?;
    for s in space.slots.iter() {
        v.push(s.desc, GFP_KERNEL)?;
    }
    Ok(v)
}

impl MmuState {
    /// Installs a new copy of address space `as_id`'s slot descriptors;
    /// returns the old one (to be freed after `mmu` is dropped). `as_id` is
    /// checked by the caller (`slot_descs`); an out-of-range one changes
    /// nothing and hands `descs` back.
    pub(crate) fn set_slots(&mut self, as_id: usize, descs: KVec<SlotDesc>) -> KVec<SlotDesc> {
        match self.slots.get_mut(as_id) {
            Some(s) => core::mem::replace(s, descs),
            None => descs,
        }
    }
}

/// Refreshes the notifier's copy of the vCPU list after `inner.vcpus`
/// changed. On allocation failure the old copy stays (the caller undoes an
/// addition; a removed vCPU left in the copy costs nothing but a check).
pub(crate) fn sync_vcpus(vm: &Vm, inner: &VmInner) -> Result {
    let mut v = KVec::with_capacity(inner.vcpus.len(), GFP_KERNEL)?;
    for c in inner.vcpus.iter() {
        v.push(c.clone(), GFP_KERNEL)?;
    }
    let old = core::mem::replace(&mut vm.mmu.lock().vcpus, v);
    drop(old);
    Ok(())
}
