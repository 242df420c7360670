// SPDX-License-Identifier: GPL-2.0
//! VPIDs (upstream's allocate_vpid/free_vpid): a tag per vCPU for the TLB
//! entries the guest creates, so VM entry and exit need not flush them. VPID 0
//! is the host's; a vCPU that gets none runs untagged (every entry and exit then
//! flushes its translations, as without VPID support).

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::prelude::*;

/// VPIDs are 16 bits wide.
const NR_VPIDS: usize = 1 << 16;

pub(crate) struct VpidAllocator {
    /// One bit per VPID, set while allocated; bit 0 (the host's) is always set.
    bits: KVec<AtomicU64>,
}

impl VpidAllocator {
    pub(crate) fn new() -> Result<Self> {
        let mut bits = KVec::with_capacity(NR_VPIDS / 64, GFP_KERNEL)?;
        for i in 0..NR_VPIDS / 64 {
            bits.push(AtomicU64::new(if i == 0 { 1 } else { 0 }), GFP_KERNEL)?;
        }
        Ok(VpidAllocator { bits })
    }

    /// A free VPID, or `None` when all 65535 are taken.
    pub(crate) fn alloc(&self) -> Option<u16> {
        for (i, word) in self.bits.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(cur, cur | 1 << bit, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return Some((i * 64 + bit as usize) as u16),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Returns `vpid` to the pool. The caller has flushed nothing: the next owner
    /// flushes on its first entry on each CPU (a new vCPU has no last CPU).
    pub(crate) fn free(&self, vpid: u16) {
        if vpid != 0 {
            if let Some(word) = self.bits.get(vpid as usize / 64) {
                word.fetch_and(!(1 << (vpid % 64)), Ordering::Release);
            }
        }
    }
}
