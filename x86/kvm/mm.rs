// SPDX-License-Identifier: GPL-2.0
//! Memory helpers: kernel addresses of pages, pinning user pages, the owning mm.

use crate::bindings;
use kernel::page::Page;
use kernel::prelude::*;

/// The kernel (direct-map) address of a page we allocated.
pub fn page_address(page: &Page) -> *mut u8 {
    // SAFETY: the page is allocated and owned; page_address only computes.
    unsafe { bindings::kvm_rs_page_address(page.as_ptr().cast()).cast() }
}

/// A user page pinned with get_user_pages_fast; unpinned (and marked dirty if it
/// was pinned for writing) when dropped.
pub(crate) struct PinnedPage {
    page: *mut bindings::page,
    writable: bool,
}

// SAFETY: a page reference can be dropped from any thread.
unsafe impl Send for PinnedPage {}
// SAFETY: no interior mutability is exposed.
unsafe impl Sync for PinnedPage {}

impl PinnedPage {
    /// Pins the page of the current process at `hva` (for writing if `write`).
    pub(crate) fn pin(hva: u64, write: bool) -> Result<Self> {
        let mut page: *mut bindings::page = core::ptr::null_mut();
        // SAFETY: pins at most one page into `page`; a bad address returns an
        // error instead of faulting.
        let n = unsafe { bindings::kvm_rs_pin_user_page(hva as _, write, &mut page) };
        if n != 1 || page.is_null() {
            return Err(if n < 0 { Error::from_errno(n) } else { EFAULT });
        }
        Ok(PinnedPage { page, writable: write })
    }

    pub(crate) fn phys(&self) -> u64 {
        // SAFETY: the page is pinned.
        unsafe { bindings::kvm_rs_page_to_phys(self.page) }
    }

    pub(crate) fn writable(&self) -> bool {
        self.writable
    }
}

impl Drop for PinnedPage {
    fn drop(&mut self) {
        // SAFETY: releases the pin taken in `pin`; the guest may have written the
        // page through the nested page tables, so it is marked dirty first.
        unsafe {
            if self.writable {
                bindings::kvm_rs_set_page_dirty_lock(self.page);
            }
            bindings::kvm_rs_put_page(self.page);
        }
    }
}

/// The mm of the process that created a VM (held so the pointer stays unique).
pub(crate) struct OwnerMm(*mut bindings::mm_struct);

// SAFETY: only compared and dropped.
unsafe impl Send for OwnerMm {}
// SAFETY: as above.
unsafe impl Sync for OwnerMm {}

impl OwnerMm {
    pub(crate) fn current() -> Self {
        // SAFETY: current->mm of a user process issuing an ioctl is valid; the
        // grab keeps the struct (not the address space) alive.
        unsafe {
            let mm = bindings::kvm_rs_current_mm();
            if !mm.is_null() {
                bindings::kvm_rs_mmgrab(mm);
            }
            OwnerMm(mm)
        }
    }

    /// Whether the calling process is the owner (upstream refuses VM and vCPU
    /// ioctls from other processes with EIO).
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: reads current->mm.
        !self.0.is_null() && unsafe { bindings::kvm_rs_current_mm() } == self.0
    }
}

impl Drop for OwnerMm {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the grab of `current`.
            unsafe { bindings::kvm_rs_mmdrop(self.0) };
        }
    }
}

/// Converts a physical address of a page we own (a page-table page) to its kernel
/// address.
/// Whether the current process maps the page at `hva` writable now (no fault
/// is taken to find out).
pub(crate) fn host_page_writable(hva: u64) -> bool {
    // SAFETY: a lockless page-table lookup of the current mm; takes and drops
    // a page reference.
    unsafe { crate::bindings::kvm_rs_host_page_writable(hva as usize) }
}

pub(crate) fn phys_to_virt(pa: u64) -> *mut u8 {
    // SAFETY: only computes the direct-map address.
    unsafe { bindings::kvm_rs_phys_to_virt(pa) as *mut u8 }
}

/// 2^order physically contiguous, zeroed pages (SVM's I/O and MSR permission
/// maps), freed on drop.
pub struct ContigPages {
    page: *mut bindings::page,
    order: u32,
}

// SAFETY: the pages are owned; freeing is allowed from any thread.
unsafe impl Send for ContigPages {}
// SAFETY: shared access only reads the addresses.
unsafe impl Sync for ContigPages {}

impl ContigPages {
    /// Allocates 2^order pages.
    pub fn alloc(order: u32) -> Result<Self> {
        // SAFETY: allocation; null on failure.
        let page = unsafe { bindings::kvm_rs_alloc_pages(order) };
        if page.is_null() {
            return Err(ENOMEM);
        }
        Ok(ContigPages { page, order })
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        kernel::page::PAGE_SIZE << self.order
    }

    /// Fills every byte with `value`.
    pub fn fill(&mut self, value: u8) {
        // SAFETY: the pages are owned, contiguous in the direct map, len() bytes.
        unsafe { core::ptr::write_bytes(bindings::kvm_rs_page_address(self.page) as *mut u8, value, self.len()) };
    }

    /// Physical address of the first page.
    pub fn phys(&self) -> u64 {
        // SAFETY: the page is allocated.
        unsafe { bindings::kvm_rs_page_to_phys(self.page) }
    }
}

impl Drop for ContigPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `alloc` with this order.
        unsafe { bindings::kvm_rs_free_pages(self.page, self.order) };
    }
}

/// The kernel address of a page as a typed pointer (for vendor structures such
/// as the VMCB that live in a page of their own).
pub fn page_ptr<T>(page: &Page) -> *mut T {
    page_address(page).cast()
}
