// SPDX-License-Identifier: GPL-2.0
//! The dirty ring (KVM_CAP_DIRTY_LOG_RING and _ACQ_REL; upstream's
//! virt/kvm/dirty_ring.c): instead of a bitmap per slot, each vCPU logs the
//! pages it dirties in a ring of `struct kvm_dirty_gfn` that user space maps
//! from the vCPU file at page KVM_DIRTY_LOG_PAGE_OFFSET.
//!
//! The protocol with user space, per entry: the kernel writes slot and offset,
//! then publishes the entry by storing KVM_DIRTY_GFN_F_DIRTY with release
//! order; user space reads the flags with acquire order, collects the page and
//! sets KVM_DIRTY_GFN_F_RESET; KVM_RESET_DIRTY_RINGS then takes the harvested
//! entries back in ring order (flags to 0), write-protects their pages again
//! so that the next write is logged, and flushes the TLBs.
//!
//! A vCPU whose ring holds `soft_limit` entries (the size less 64 reserved
//! entries, upstream's KVM_DIRTY_RING_RSVD_ENTRIES: room for what one exit
//! may still push) exits to user space with KVM_EXIT_DIRTY_RING_FULL before
//! each entry until user space has reset enough of it.
//!
//! # Locks
//! Entries are pushed and reset only under `Vm::inner` (the fault path and
//! the kernel's guest writes hold it, and so does the reset ioctl), which
//! orders the two indices' writers; the indices are atomics because the vCPU's
//! run loop reads them without it. User space may write anything into the
//! entries at any time: slot and offset are checked before use, as upstream's
//! kvm_reset_dirty_gfn does.

use crate::bindings;
use crate::tdp_mmu::TdpMmu;
use crate::mm::page_address;
use crate::uapi;
use crate::vm::{AddressSpace, Vm};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use kernel::page::{Page, PAGE_SIZE};
use kernel::prelude::*;

/// Entries user space may ask for at most (upstream's
/// KVM_DIRTY_RING_MAX_ENTRIES); KVM_CHECK_EXTENSION answers this many bytes.
const MAX_ENTRIES: u32 = 65536;
/// Entries kept free for pushes between the soft-full check and the exit
/// (upstream's KVM_DIRTY_RING_RSVD_ENTRIES; x86 without PML adds none).
const RSVD_ENTRIES: u32 = 64;
const ENTRY_SIZE: u32 = core::mem::size_of::<uapi::kvm_dirty_gfn>() as u32;

/// KVM_CHECK_EXTENSION(KVM_CAP_DIRTY_LOG_RING / _ACQ_REL): the largest ring
/// in bytes.
pub(crate) const CAP_BYTES: isize = (MAX_ENTRIES * ENTRY_SIZE) as isize;

/// The first vCPU mmap page of the ring.
pub(crate) const PAGE_OFFSET: u64 = uapi::KVM_DIRTY_LOG_PAGE_OFFSET as u64;

/// One vCPU's ring: zeroed pages shared with user space.
pub(crate) struct DirtyRing {
    pages: KVec<Page>,
    /// Entries (a power of two).
    entries: u32,
    /// Entries in use at which the vCPU exits (entries - RSVD_ENTRIES).
    soft_limit: u32,
    /// Pushes so far (upstream's dirty_index); the next entry is this one
    /// modulo `entries`.
    dirty_index: AtomicU32,
    /// Entries taken back by resets so far (upstream's reset_index).
    reset_index: AtomicU32,
}

/// KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING or _ACQ_REL) with `size` bytes per
/// vCPU (upstream's kvm_vm_ioctl_enable_dirty_log_ring): a power of two, at
/// least a page and the reserved entries, at most CAP_BYTES (else E2BIG);
/// once, before any vCPU.
pub(crate) fn enable_cap(vm: &Vm, size: u64) -> Result {
    let size = size as u32; // upstream takes the argument as a u32
    if size == 0 || !size.is_power_of_two() {
        return Err(EINVAL);
    }
    if size < RSVD_ENTRIES * ENTRY_SIZE || (size as usize) < PAGE_SIZE {
        return Err(EINVAL);
    }
    if size as isize > CAP_BYTES {
        return Err(E2BIG);
    }
    let mut inner = vm.inner.lock();
    if inner.dirty_ring_size != 0 || inner.created_vcpus != 0 {
        return Err(EINVAL);
    }
    inner.dirty_ring_size = size;
    Ok(())
}

impl DirtyRing {
    /// A ring of `size` bytes (checked by [`enable_cap`]).
    pub(crate) fn new(size: u32) -> Result<Self> {
        let npages = size as usize / PAGE_SIZE;
        let mut pages = KVec::with_capacity(npages, GFP_KERNEL)?;
        for _ in 0..npages {
            pages.push(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?, GFP_KERNEL)?;
        }
        let entries = size / ENTRY_SIZE;
        Ok(DirtyRing {
            pages,
            entries,
            soft_limit: entries - RSVD_ENTRIES,
            dirty_index: AtomicU32::new(0),
            reset_index: AtomicU32::new(0),
        })
    }

    /// Page `i` of the ring (for the vCPU mmap).
    pub(crate) fn page(&self, i: usize) -> Option<&Page> {
        self.pages.get(i)
    }

    /// Pages of the ring.
    pub(crate) fn npages(&self) -> usize {
        self.pages.len()
    }

    /// Entry `index` modulo the ring size.
    fn entry(&self, index: u32) -> *mut uapi::kvm_dirty_gfn {
        let byte = ((index & (self.entries - 1)) * ENTRY_SIZE) as usize;
        let page = &self.pages[byte / PAGE_SIZE];
        // SAFETY: `byte % PAGE_SIZE` + ENTRY_SIZE stays inside the page
        // (entries do not straddle pages: PAGE_SIZE is a multiple of 16).
        unsafe { page_address(page).add(byte % PAGE_SIZE).cast() }
    }

    /// The flags word of entry `index`, shared with user space.
    fn flags(&self, index: u32) -> &AtomicU32 {
        // SAFETY: `flags` is the first, 4-aligned u32 of an entry in a page
        // the ring owns for as long as `self` lives; user space writes it
        // concurrently, hence the atomic.
        unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*self.entry(index)).flags)) }
    }

    fn used(&self) -> u32 {
        self.dirty_index.load(Ordering::Acquire).wrapping_sub(self.reset_index.load(Ordering::Acquire))
    }

    /// Whether the vCPU must exit with KVM_EXIT_DIRTY_RING_FULL before it
    /// enters the guest again (upstream's kvm_dirty_ring_soft_full).
    pub(crate) fn soft_full(&self) -> bool {
        self.used() >= self.soft_limit
    }

    /// Logs page `offset` of slot `slot` ((address space << 16) | slot id)
    /// (upstream's kvm_dirty_ring_push). Caller holds `Vm::inner`.
    pub(crate) fn push(&self, slot: u32, offset: u64) {
        if self.used() >= self.entries {
            // Cannot happen while the vCPU exits at the soft limit (each exit
            // pushes a few entries at most); never overwrite an entry user
            // space has not collected.
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                pr_warn!("kvm: dirty ring full, a dirty page is not logged\n");
            }
            return;
        }
        let index = self.dirty_index.load(Ordering::Relaxed);
        let e = self.entry(index);
        // SAFETY: an entry of our pages (see `entry`); user space reads it
        // only after the release store of its flags below.
        unsafe {
            core::ptr::addr_of_mut!((*e).slot).write_volatile(slot);
            core::ptr::addr_of_mut!((*e).offset).write_volatile(offset);
        }
        self.flags(index).store(uapi::KVM_DIRTY_GFN_F_DIRTY, Ordering::Release);
        self.dirty_index.store(index.wrapping_add(1), Ordering::Release);
    }

    /// Takes back the entries user space harvested, in ring order up to the
    /// first one it has not (upstream's kvm_dirty_ring_reset), and calls
    /// `protect(slot, first offset, mask)` for runs of pages of one slot
    /// within 64 pages of each other. Returns the entries taken back. Only
    /// pushed entries are looked at: flags user space set on others are
    /// ignored. Caller holds `Vm::inner`.
    pub(crate) fn reset(&self, protect: &mut dyn FnMut(u32, u64, u64)) -> u32 {
        let mut count = 0u32;
        let mut run: Option<(u32, u64, u64)> = None;
        let end = self.dirty_index.load(Ordering::Acquire);
        let mut index = self.reset_index.load(Ordering::Relaxed);
        while index != end {
            if self.flags(index).load(Ordering::Acquire) & uapi::KVM_DIRTY_GFN_F_RESET == 0 {
                break;
            }
            let e = self.entry(index);
            // SAFETY: an entry of our pages; any values user space left there
            // are only compared and bounds-checked by `protect`.
            let (slot, offset) = unsafe {
                (core::ptr::addr_of!((*e).slot).read_volatile(), core::ptr::addr_of!((*e).offset).read_volatile())
            };
            self.flags(index).store(0, Ordering::Relaxed);
            index = index.wrapping_add(1);
            count += 1;
            // Coalesce pages of one slot up to 63 apart, forwards or backwards
            // (a guest scanning memory either way), as upstream does.
            if let Some((s, first, mask)) = run.as_mut() {
                if *s == slot {
                    let delta = offset.wrapping_sub(*first) as i64;
                    if (0..64).contains(&delta) {
                        *mask |= 1 << delta;
                        continue;
                    }
                    if (-63..0).contains(&delta) && (*mask << -delta) >> -delta == *mask {
                        *first = offset;
                        *mask = (*mask << -delta) | 1;
                        continue;
                    }
                }
            }
            if let Some((s, first, mask)) = run.replace((slot, offset, 1)) {
                protect(s, first, mask);
            }
        }
        if let Some((s, first, mask)) = run {
            protect(s, first, mask);
        }
        self.reset_index.store(index, Ordering::Release);
        count
    }
}

/// KVM_RESET_DIRTY_RINGS: takes back every vCPU's harvested entries and
/// write-protects their pages again; returns how many entries. `mmu` is taken
/// per run of pages, not across the rings (a VM may have 1024 rings of 65536
/// entries), and the TLBs are flushed once at the end, as upstream does.
pub(crate) fn reset_rings(vm: &Vm) -> Result<isize> {
    let inner = vm.inner.lock();
    if inner.dirty_ring_size == 0 {
        return Err(EINVAL);
    }
    let mut cleared = 0u64;
    let mut protected = false;
    for v in inner.vcpus.iter() {
        let Some(ring) = v.dirty_ring.as_ref() else { continue };
        cleared += ring.reset(&mut |slot, first, mask| {
            let mut mmu = vm.mmu.lock();
            protected |= protect_masked(&inner.spaces, &mut mmu.tdp, slot, first, mask);
        }) as u64;
        // SAFETY: may sleep; only the `inner` mutex is held.
        unsafe { bindings::kvm_rs_cond_resched() };
    }
    if protected {
        vm.mmu.lock().flush_remote_tlbs(vm);
    }
    Ok(cleared as isize)
}

/// Write-protects the pages `first + i` for each bit i of `mask` in the slot
/// user space named (upstream's kvm_reset_dirty_gfn): nothing if the address
/// space, slot or offsets are not the VM's.
fn protect_masked(spaces: &[AddressSpace], tdp: &mut [TdpMmu], slot: u32, first: u64, mask: u64) -> bool {
    let (as_id, id) = ((slot >> 16) as usize, slot & 0xffff);
    let (Some(space), Some(tdp)) = (spaces.get(as_id), tdp.get_mut(as_id)) else { return false };
    let Some(s) = space.slots.iter().find(|s| s.desc.id as u32 == id) else { return false };
    let last = 63 - mask.leading_zeros() as u64;
    if mask == 0 || first.checked_add(last).map_or(true, |l| l >= s.desc.npages) {
        return false;
    }
    tdp.write_protect_mask(s.desc.base_gfn + first, mask)
}

/// Whether the vCPU's mmap of pages [pgoff, pgoff + npages) may include the
/// ring: a shared, non-executable mapping only (upstream's kvm_vcpu_mmap).
pub(crate) fn mmap_allowed(vma: *mut bindings::vm_area_struct) -> bool {
    // SAFETY: the area being mapped, valid during mmap.
    unsafe { bindings::kvm_rs_vma_shared_noexec(vma) }
}
