// SPDX-License-Identifier: GPL-2.0
//! Memory helpers: kernel addresses of pages, user pages for a fault, the owning mm.

use crate::bindings;
use kernel::page::Page;
use kernel::prelude::*;

/// The kernel (direct-map) address of a page we allocated.
pub fn page_address(page: &Page) -> *mut u8 {
    // SAFETY: the page is allocated and owned; page_address only computes.
    unsafe { bindings::kvm_rs_page_address(page.as_ptr().cast()).cast() }
}

/// A reference to the user page behind a guest frame, taken for one fault
/// (upstream's hva_to_pfn) and dropped once the leaf is installed (upstream's
/// kvm_release_faultin_page): not a pin that outlives the fault.
pub(crate) struct FaultPage {
    page: *mut bindings::page,
    writable: bool,
}

impl FaultPage {
    /// The page of the current process at `hva`: with FOLL_WRITE if
    /// `write_fault`; otherwise writable only if `want_writable` and user
    /// space's PTE is writable already (no fault taken to make it so).
    pub(crate) fn get(hva: u64, write_fault: bool, want_writable: bool) -> Result<Self> {
        let mut page: *mut bindings::page = core::ptr::null_mut();
        let mut writable = false;
        // SAFETY: takes at most one page reference into `page`; a bad address
        // returns an error instead of faulting.
        let n = unsafe { bindings::kvm_rs_hva_to_page(hva as _, write_fault, want_writable, &mut page, &mut writable) };
        if n != 1 || page.is_null() {
            return Err(if n < 0 { Error::from_errno(n) } else { EFAULT });
        }
        Ok(FaultPage { page, writable })
    }

    pub(crate) fn phys(&self) -> u64 {
        // SAFETY: the page reference is held.
        unsafe { bindings::kvm_rs_page_to_phys(self.page) }
    }

    /// Whether the page was taken writable (may be mapped writable).
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Marks the page dirty (it was mapped writable for the guest), as
    /// upstream's kvm_set_page_dirty: the flag, without the page lock.
    pub(crate) fn set_dirty(&self) {
        // SAFETY: the page reference is held.
        unsafe { bindings::kvm_rs_kvm_set_page_dirty(self.page) };
    }
}

impl Drop for FaultPage {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken in `get`.
        unsafe { bindings::kvm_rs_put_page(self.page) };
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
