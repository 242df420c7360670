// SPDX-License-Identifier: GPL-2.0
//! Coalesced MMIO and PIO (upstream's virt/kvm/coalesced_mmio.c): guest writes
//! to zones user space registers (KVM_REGISTER_COALESCED_MMIO) do not exit;
//! kvm.ko appends them to a ring that user space reads later, in order, before
//! it handles any other exit or access (QEMU uses this for VGA memory and
//! other write-mostly regions). Reads in a zone still exit.
//!
//! The ring is one page per VM, mapped through every vCPU file at page
//! KVM_COALESCED_MMIO_PAGE_OFFSET: `struct kvm_coalesced_mmio_ring { u32
//! first, last; struct kvm_coalesced_mmio entries[]; }`. kvm.ko appends at
//! `last`; user space consumes from `first`. User space may write anything
//! to the page, so `last` and `first` are bounded before use; a full ring
//! makes the write exit as usual.

use crate::uapi;
use kernel::new_mutex;
use kernel::page::{Page, PAGE_SIZE};
use kernel::prelude::*;
use kernel::sync::Mutex;

/// The vCPU mmap page of the ring (x86's KVM_COALESCED_MMIO_PAGE_OFFSET).
pub(crate) const PAGE_OFFSET: u64 = uapi::KVM_COALESCED_MMIO_PAGE_OFFSET as u64;
/// `struct kvm_coalesced_mmio`: phys_addr u64, len u32, pio u32, data[8].
const ENTRY_SIZE: usize = 24;
/// Entries that fit after the 8-byte header (upstream's KVM_COALESCED_MMIO_MAX).
const MAX_ENTRIES: u32 = ((PAGE_SIZE - 8) / ENTRY_SIZE) as u32;
/// Zones per VM: upstream's I/O bus holds at most NR_IOBUS_DEVS (1000)
/// devices, so more registrations fail there (ENOSPC) too.
const MAX_ZONES: usize = 1000;

#[derive(Clone, Copy)]
struct Zone {
    addr: u64,
    size: u64,
    pio: bool,
}

impl Zone {
    /// Whether `[addr, addr + len)` lies inside the zone (upstream's
    /// coalesced_mmio_in_range).
    fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.addr && end <= self.addr.saturating_add(self.size),
            None => false,
        }
    }
}

/// The ring page of a new VM (allocated before the VM is initialized).
pub(crate) fn alloc_ring() -> Result<Page> {
    Ok(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?)
}

/// The VM's coalesced zones and ring.
#[pin_data]
pub(crate) struct CoalescedMmio {
    ring: Page,
    /// The zones. Taken by vCPUs in their exit handling (under their own
    /// mutex) and by the VM ioctls; nothing is taken under it; the ring is
    /// appended to only under it, so appends are serialized.
    #[pin]
    zones: Mutex<KVec<Zone>>,
}

impl CoalescedMmio {
    /// `ring`: a zeroed page from [`alloc_ring`].
    pub(crate) fn new(ring: Page) -> impl PinInit<Self> {
        pin_init!(CoalescedMmio {
            ring,
            zones <- new_mutex!(KVec::new(), "CoalescedMmio::zones"),
        })
    }

    /// The page user space maps.
    pub(crate) fn ring_page(&self) -> &Page {
        &self.ring
    }

    /// KVM_REGISTER_COALESCED_MMIO.
    pub(crate) fn register(&self, z: &uapi::kvm_coalesced_mmio_zone) -> Result {
        let pio = pio_flag(z)?;
        let mut zones = self.zones.lock();
        if zones.len() >= MAX_ZONES {
            return Err(ENOSPC);
        }
        zones.push(Zone { addr: z.addr, size: z.size as u64, pio }, GFP_KERNEL_ACCOUNT)?;
        Ok(())
    }

    /// KVM_UNREGISTER_COALESCED_MMIO: drops every zone of the same kind that
    /// contains the given range (upstream's rule); success even if none does.
    pub(crate) fn unregister(&self, z: &uapi::kvm_coalesced_mmio_zone) -> Result {
        let pio = pio_flag(z)?;
        let mut zones = self.zones.lock();
        let mut i = 0;
        while i < zones.len() {
            if zones[i].pio == pio && zones[i].contains(z.addr, z.size as u64) {
                crate::kvec_ext::swap_remove(&mut zones, i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// A guest write of `data` at `addr` (port or guest-physical): appended to
    /// the ring if a zone covers it and the ring has room. Returns whether it
    /// was taken (the guest then continues without an exit).
    pub(crate) fn write(&self, pio: bool, addr: u64, data: &[u8]) -> bool {
        let len = data.len();
        if len == 0 || len > 8 {
            return false;
        }
        let zones = self.zones.lock();
        if !zones.iter().any(|z| z.pio == pio && z.contains(addr, len as u64)) {
            return false;
        }
        let base = crate::mm::page_address(&self.ring);
        // SAFETY: the header words are in the ring page, which lives as long
        // as `self`; user space may change them at any time (volatile reads).
        let (first, last) = unsafe {
            (core::ptr::read_volatile(base.cast::<u32>()), core::ptr::read_volatile(base.cast::<u32>().add(1)))
        };
        if last >= MAX_ENTRIES || (last + 1) % MAX_ENTRIES == first {
            return false;
        }
        let mut entry = [0u8; ENTRY_SIZE];
        entry[0..8].copy_from_slice(&addr.to_le_bytes());
        entry[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        entry[12..16].copy_from_slice(&(pio as u32).to_le_bytes());
        entry[16..16 + len].copy_from_slice(data);
        let off = 8 + last as usize * ENTRY_SIZE;
        // SAFETY: last < MAX_ENTRIES, so the entry ends within the page.
        unsafe { core::ptr::copy_nonoverlapping(entry.as_ptr(), base.add(off), ENTRY_SIZE) };
        // The entry must be visible before `last` moves past it.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        // SAFETY: the header word `last`, as above.
        unsafe { core::ptr::write_volatile(base.cast::<u32>().add(1), (last + 1) % MAX_ENTRIES) };
        true
    }
}

/// `pio` must be 0 (MMIO) or 1 (port I/O), as upstream checks.
fn pio_flag(z: &uapi::kvm_coalesced_mmio_zone) -> Result<bool> {
    // SAFETY: both union members are u32.
    match unsafe { z.__bindgen_anon_1.pio } {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(EINVAL),
    }
}
