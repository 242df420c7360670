//! Compile-time checks of the UAPI layout against the C ABI of Linux 6.12 (x86_64).
//! Sizes and offsets come from `pahole` of the kernel's structs and from the
//! `_IOC_SIZE` fields of the ioctl numbers in linux/kvm.h.
use super::*;
use core::mem::{offset_of, size_of};

macro_rules! assert_size {
    ($t:ty, $n:expr) => {
        const _: () = assert!(size_of::<$t>() == $n);
    };
}
macro_rules! assert_offset {
    ($t:ty, $f:ident, $n:expr) => {
        const _: () = assert!(offset_of!($t, $f) == $n);
    };
}

assert_size!(kvm_regs, 144);
assert_size!(kvm_sregs, 312);
assert_size!(kvm_sregs2, 320);
assert_size!(kvm_segment, 24);
assert_size!(kvm_dtable, 16);
assert_size!(kvm_fpu, 416);
assert_size!(kvm_msr_list, 4);
assert_size!(kvm_msr_entry, 16);
assert_size!(kvm_msrs, 8);
assert_size!(kvm_cpuid_entry2, 40);
assert_size!(kvm_cpuid2, 8);
assert_size!(kvm_userspace_memory_region, 32);
assert_size!(kvm_userspace_memory_region2, 160);
assert_size!(kvm_run, 2352);
assert_size!(kvm_vcpu_events, 64);
assert_size!(kvm_debugregs, 128);
assert_size!(kvm_xsave, 4096);
assert_size!(kvm_xcrs, 392);
assert_size!(kvm_mp_state, 4);
assert_size!(kvm_dirty_log, 16);
assert_size!(kvm_interrupt, 4);
assert_size!(kvm_lapic_state, 1024);
assert_size!(kvm_clock_data, 48);
assert_size!(kvm_enable_cap, 104);
assert_size!(kvm_guest_debug, 72);
assert_size!(kvm_translation, 24);
assert_size!(kvm_coalesced_mmio_zone, 16);
assert_size!(kvm_coalesced_mmio, 24);
assert_size!(kvm_create_device, 12);
assert_size!(kvm_device_attr, 24);
assert_size!(kvm_nested_state, 128);

assert_offset!(kvm_run, exit_reason, 8);
assert_offset!(kvm_run, ready_for_interrupt_injection, 12);
assert_offset!(kvm_run, if_flag, 13);
assert_offset!(kvm_run, flags, 14);
assert_offset!(kvm_run, cr8, 16);
assert_offset!(kvm_run, apic_base, 24);
assert_offset!(kvm_run, __bindgen_anon_1, 32);
assert_offset!(kvm_run, kvm_valid_regs, 288);
assert_offset!(kvm_run, kvm_dirty_regs, 296);
assert_offset!(kvm_run, s, 304);
assert_offset!(kvm_cpuid_entry2, function, 0);
assert_offset!(kvm_cpuid_entry2, index, 4);
assert_offset!(kvm_cpuid_entry2, flags, 8);
assert_offset!(kvm_cpuid_entry2, eax, 12);
assert_offset!(kvm_cpuid_entry2, edx, 24);
assert_offset!(kvm_sregs, cr0, 224);
assert_offset!(kvm_sregs, efer, 264);
assert_offset!(kvm_sregs, apic_base, 272);
assert_offset!(kvm_sregs, interrupt_bitmap, 280);
assert_offset!(kvm_userspace_memory_region, guest_phys_addr, 8);
assert_offset!(kvm_userspace_memory_region, userspace_addr, 24);
assert_offset!(kvm_userspace_memory_region2, guest_memfd_offset, 32);
assert_offset!(kvm_userspace_memory_region2, guest_memfd, 40);
