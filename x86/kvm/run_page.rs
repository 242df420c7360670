// SPDX-License-Identifier: GPL-2.0
//! The `struct kvm_run` page and the PIO data page of a vCPU, shared with user
//! space through mmap. User space may write these pages at any time, so every
//! access is a volatile read or write of a plain integer field: the kernel never
//! forms a reference into them and never trusts what it reads back beyond its type.

use crate::uapi;
use core::mem::offset_of;
use core::ptr::{addr_of, addr_of_mut};
use kernel::page::Page;
use kernel::prelude::*;

/// The two pages: `kvm_run` at offset 0 of the mapping, PIO data at one page.
pub(crate) struct RunPages {
    pub run: Page,
    pub pio: Page,
}

/// Offset of the PIO data page within the vCPU mapping (`io.data_offset`).
pub(crate) const PIO_DATA_OFFSET: u64 = kernel::page::PAGE_SIZE as u64;

impl RunPages {
    pub(crate) fn new() -> Result<Self> {
        Ok(RunPages {
            run: Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?,
            pio: Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?,
        })
    }

    fn run_ptr(&self) -> *mut uapi::kvm_run {
        crate::mm::page_address(&self.run).cast()
    }

    /// The PIO data page as a raw pointer (for copies of at most a page).
    pub(crate) fn pio_ptr(&self) -> *mut u8 {
        crate::mm::page_address(&self.pio).cast()
    }
}

macro_rules! field_rw {
    ($get:ident, $set:ident, $t:ty, $($f:tt)+) => {
        impl RunPages {
            #[allow(dead_code)]
            pub(crate) fn $get(&self) -> $t {
                // SAFETY: the page holds a kvm_run; a volatile read of an integer
                // field is valid whatever user space wrote.
                unsafe { addr_of!((*self.run_ptr()).$($f)+).read_volatile() }
            }
            #[allow(dead_code)]
            pub(crate) fn $set(&self, v: $t) {
                // SAFETY: as above, for a write.
                unsafe { addr_of_mut!((*self.run_ptr()).$($f)+).write_volatile(v) }
            }
        }
    };
}

field_rw!(request_interrupt_window, set_request_interrupt_window, u8, request_interrupt_window);
field_rw!(immediate_exit, set_immediate_exit, u8, immediate_exit);
field_rw!(exit_reason, set_exit_reason, u32, exit_reason);
field_rw!(ready_for_interrupt_injection, set_ready_for_interrupt_injection, u8, ready_for_interrupt_injection);
field_rw!(if_flag, set_if_flag, u8, if_flag);
field_rw!(flags, set_flags, u16, flags);
field_rw!(cr8, set_cr8, u64, cr8);
field_rw!(apic_base, set_apic_base, u64, apic_base);
field_rw!(kvm_valid_regs, set_kvm_valid_regs, u64, kvm_valid_regs);
field_rw!(kvm_dirty_regs, set_kvm_dirty_regs, u64, kvm_dirty_regs);

impl RunPages {
    /// A snapshot of kvm_run's synced registers (`s.regs`): user space may be
    /// writing them right now, so they are read once and only the copy is used.
    pub(crate) fn sync_regs(&self) -> uapi::kvm_sync_regs {
        // SAFETY: the page holds a kvm_run; kvm_sync_regs is plain integers, so
        // a volatile copy is valid whatever user space wrote.
        unsafe { addr_of!((*self.run_ptr()).s.regs).read_volatile() }
    }

    pub(crate) fn set_sync_regs_regs(&self, r: &uapi::kvm_regs) {
        // SAFETY: a write of integers into the kvm_run page we own.
        unsafe { addr_of_mut!((*self.run_ptr()).s.regs.regs).write_volatile(*r) }
    }

    pub(crate) fn set_sync_regs_sregs(&self, r: &uapi::kvm_sregs) {
        // SAFETY: as above.
        unsafe { addr_of_mut!((*self.run_ptr()).s.regs.sregs).write_volatile(*r) }
    }

    pub(crate) fn set_sync_regs_events(&self, e: &uapi::kvm_vcpu_events) {
        // SAFETY: as above.
        unsafe { addr_of_mut!((*self.run_ptr()).s.regs.events).write_volatile(*e) }
    }
}

/// Byte offset of the exit union in kvm_run.
const EXIT_UNION: usize = offset_of!(uapi::kvm_run, __bindgen_anon_1);

impl RunPages {
    /// Writes `value` at `offset` into the exit union (bounds-checked).
    fn put<T: Copy>(&self, offset: usize, value: T) {
        let size = core::mem::size_of::<T>();
        if offset + size > 256 {
            return;
        }
        // SAFETY: within the 256-byte union of the kvm_run page; unaligned write.
        unsafe { (self.run_ptr() as *mut u8).add(EXIT_UNION + offset).cast::<T>().write_unaligned(value) }
    }

    fn get<T: Copy>(&self, offset: usize) -> T {
        // SAFETY: within the union (callers use fixed in-bounds offsets); any bit
        // pattern is a valid integer.
        unsafe { (self.run_ptr() as *const u8).add(EXIT_UNION + offset).cast::<T>().read_unaligned() }
    }

    /// KVM_EXIT_IO: `{ u8 direction; u8 size; u16 port; u32 count; u64 data_offset }`.
    pub(crate) fn set_io(&self, input: bool, size: u8, port: u16, count: u32) {
        self.set_exit_reason(uapi::KVM_EXIT_IO);
        self.put::<u8>(0, if input { uapi::KVM_EXIT_IO_IN as u8 } else { uapi::KVM_EXIT_IO_OUT as u8 });
        self.put::<u8>(1, size);
        self.put::<u16>(2, port);
        self.put::<u32>(4, count);
        self.put::<u64>(8, PIO_DATA_OFFSET);
    }

    /// The port of the last KVM_EXIT_IO (for the kvm:kvm_pio event).
    pub(crate) fn io_port(&self) -> u16 {
        self.get::<u16>(2)
    }

    /// KVM_EXIT_MMIO: `{ u64 phys_addr; u8 data[8]; u32 len; u8 is_write }`.
    pub(crate) fn set_mmio(&self, gpa: u64, data: [u8; 8], len: u32, is_write: bool) {
        self.set_exit_reason(uapi::KVM_EXIT_MMIO);
        self.put::<u64>(0, gpa);
        self.put::<[u8; 8]>(8, data);
        self.put::<u32>(16, len);
        self.put::<u8>(20, is_write as u8);
    }

    /// The data user space left in the MMIO exit (for a read).
    pub(crate) fn mmio_data(&self) -> [u8; 8] {
        self.get::<[u8; 8]>(8)
    }

    /// KVM_EXIT_FAIL_ENTRY: `{ u64 hardware_entry_failure_reason; u32 cpu; }`.
    pub(crate) fn set_fail_entry(&self, reason: u64, cpu: u32) {
        self.set_exit_reason(uapi::KVM_EXIT_FAIL_ENTRY);
        self.put::<u64>(0, reason);
        self.put::<u32>(8, cpu);
    }

    /// KVM_EXIT_INTERNAL_ERROR: `{ u32 suberror; u32 ndata; u64 data[16]; }`.
    pub(crate) fn set_internal_error(&self, suberror: u32, data: &[u64]) {
        self.set_exit_reason(uapi::KVM_EXIT_INTERNAL_ERROR);
        let n = data.len().min(16);
        self.put::<u32>(0, suberror);
        self.put::<u32>(4, n as u32);
        for (i, d) in data.iter().take(n).enumerate() {
            self.put::<u64>(8 + 8 * i, *d);
        }
    }

    /// KVM_EXIT_DEBUG: `{ u32 exception; u32 pad; u64 pc; u64 dr6; u64 dr7; }`.
    pub(crate) fn set_debug(&self, exception: u32, pc: u64, dr6: u64, dr7: u64) {
        self.set_exit_reason(uapi::KVM_EXIT_DEBUG);
        self.put::<u32>(0, exception);
        self.put::<u32>(4, 0);
        self.put::<u64>(8, pc);
        self.put::<u64>(16, dr6);
        self.put::<u64>(24, dr7);
    }

    /// KVM_EXIT_IOAPIC_EOI: `{ u8 vector; }` (split irqchip: the user-space
    /// IOAPIC learns of a level-triggered EOI).
    pub(crate) fn set_ioapic_eoi(&self, vector: u8) {
        self.set_exit_reason(uapi::KVM_EXIT_IOAPIC_EOI);
        self.put::<u8>(0, vector);
    }

    /// KVM_EXIT_X86_RDMSR/WRMSR: `{ u8 error; u8 pad[7]; u32 reason; u32 index;
    /// u64 data; }`, error cleared for user space to set.
    pub(crate) fn set_msr_exit(&self, exit_reason: u32, reason: u32, index: u32, data: u64) {
        self.set_exit_reason(exit_reason);
        self.put::<[u8; 8]>(0, [0; 8]);
        self.put::<u32>(8, reason);
        self.put::<u32>(12, index);
        self.put::<u64>(16, data);
    }

    /// What user space answered to a KVM_EXIT_X86_RDMSR/WRMSR: (error, data).
    pub(crate) fn msr_exit_result(&self) -> (u8, u64) {
        (self.get::<u8>(0), self.get::<u64>(16))
    }

    /// KVM_EXIT_HYPERCALL data is not used; KVM_EXIT_SHUTDOWN/HLT/INTR/IRQ window
    /// carry no data.
    pub(crate) fn set_simple(&self, reason: u32) {
        self.set_exit_reason(reason);
    }
}
