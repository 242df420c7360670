// SPDX-License-Identifier: GPL-2.0
//! Safe wrappers for the CPU-level operations the modules need: CPUID, MSRs, CR4,
//! CPU identity and cross-CPU calls. The raw helpers live in include-compat/helpers.c.

use crate::bindings;
use kernel::ffi::c_void;
use kernel::prelude::*;

/// CPUID(leaf, subleaf) on the current CPU: `[eax, ebx, ecx, edx]`.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let mut r = [0u32; 4];
    let [a, b, c, d] = &mut r;
    // SAFETY: CPUID has no side effects; the four pointers are valid for writes.
    unsafe { bindings::kvm_rs_cpuid_count(leaf, subleaf, a, b, c, d) };
    r
}

/// The host CPU as a source of CPUID values for [`crate::supported_cpuid`].
pub struct HostCpu;

impl crate::supported_cpuid::HostCpuid for HostCpu {
    /// The CPU's CPUID, less the feature bits the kernel turned off: upstream
    /// starts its capabilities from boot_cpu_data (kvm_set_cpu_caps), so a
    /// host booted with `noxsave`, or whose XSAVE setup failed, offers no
    /// XSAVE to guests either.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let mut r = cpuid(leaf, subleaf);
        for &(reg, word) in kernel_cap_words(leaf, subleaf) {
            // SAFETY: reads boot_cpu_data, which is constant after boot.
            r[reg] &= unsafe { bindings::kvm_rs_boot_cpu_cap_word(word) };
        }
        r
    }
}

/// The registers of CPUID(leaf, subleaf) that the kernel mirrors in
/// boot_cpu_data, as (register index: EAX=0..EDX=3, capability word) pairs
/// (the CPUID_* words of asm/cpufeatures.h).
fn kernel_cap_words(leaf: u32, subleaf: u32) -> &'static [(usize, u32)] {
    match (leaf, subleaf) {
        (1, _) => &[(3, 0), (2, 4)],
        (0x8000_0001, _) => &[(3, 1), (2, 6)],
        (7, 0) => &[(1, 9), (2, 16), (3, 18)],
        (7, 1) => &[(0, 12)],
        (0xd, 1) => &[(0, 10)],
        (0x8000_0008, _) => &[(1, 13)],
        _ => &[],
    }
}

/// Reads an MSR, returning `EIO` if the CPU raises #GP for it (rdmsrl_safe).
pub fn rdmsr_safe(msr: u32) -> Result<u64> {
    let mut v = 0u64;
    // SAFETY: rdmsrl_safe catches the #GP of a missing MSR through the exception
    // table; `v` is valid for writes.
    let r = unsafe { bindings::kvm_rs_rdmsr_safe(msr, &mut v) };
    if r == 0 {
        Ok(v)
    } else {
        Err(EIO)
    }
}

/// Writes an MSR of the host CPU.
///
/// # Safety
/// The caller must know the write keeps the host kernel consistent (for example
/// EFER.SVME or VM_HSAVE_PA while the module owns virtualization on this CPU).
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { bindings::kvm_rs_wrmsr(msr, value) }
}

/// Writes an MSR, returning `EIO` on #GP instead of faulting.
///
/// # Safety
/// As for [`wrmsr`].
pub unsafe fn wrmsr_safe(msr: u32, value: u64) -> Result {
    // SAFETY: forwarded to the caller.
    match unsafe { bindings::kvm_rs_wrmsr_safe(msr, value) } {
        0 => Ok(()),
        _ => Err(EIO),
    }
}

/// Reads CR3 (the current address space's page-table root).
pub fn read_cr3() -> u64 {
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    cr3
}

/// Reads CR4 from the kernel's per-CPU shadow.
pub fn read_cr4() -> u64 {
    // SAFETY: reading the CR4 shadow has no side effects.
    unsafe { bindings::kvm_rs_read_cr4() as u64 }
}

/// Sets bits in CR4 (through the kernel's shadow, as cr4_set_bits()).
///
/// # Safety
/// The caller must own the bits it sets (e.g. CR4.VMXE for VMXON).
pub unsafe fn cr4_set_bits(mask: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { bindings::kvm_rs_cr4_set_bits(mask as _) }
}

/// Clears bits in CR4.
///
/// # Safety
/// As for [`cr4_set_bits`].
pub unsafe fn cr4_clear_bits(mask: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { bindings::kvm_rs_cr4_clear_bits(mask as _) }
}

/// The number of the CPU this code runs on (raw: callers that need it stable run
/// with migration or preemption disabled).
pub fn smp_processor_id() -> u32 {
    // SAFETY: reads a per-CPU variable.
    unsafe { bindings::kvm_rs_smp_processor_id() }
}

/// One more than the highest possible CPU number.
pub fn nr_cpu_ids() -> u32 {
    // SAFETY: reads a variable fixed at boot.
    unsafe { bindings::kvm_rs_nr_cpu_ids() }
}

/// Runs `f` with migration to another CPU disabled, so CPU-local state read by `f`
/// belongs to one CPU.
pub fn with_migration_disabled<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: paired with the enable below.
    unsafe { bindings::kvm_rs_migrate_disable() };
    let r = f();
    // SAFETY: paired with the disable above.
    unsafe { bindings::kvm_rs_migrate_enable() };
    r
}

/// Runs `f` with interrupts disabled on this CPU (restoring the previous state).
pub fn with_irqs_disabled<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: paired with the restore below.
    let flags = unsafe { bindings::kvm_rs_local_irq_save() };
    let r = f();
    // SAFETY: the flags saved above.
    unsafe { bindings::kvm_rs_local_irq_restore(flags) };
    r
}

/// Runs `f` on every online CPU (with interrupts off there) and waits for all.
pub fn on_each_cpu(f: &(dyn Fn() + Sync)) {
    unsafe extern "C" fn trampoline(info: *mut c_void) {
        // SAFETY: `info` is the `&&dyn Fn` passed below, alive until on_each_cpu
        // returns, since it waits for every CPU.
        let f = unsafe { &*(info as *const &(dyn Fn() + Sync)) };
        f()
    }
    let fref: &(dyn Fn() + Sync) = f;
    // SAFETY: the callback only reads `fref`, which outlives the synchronous call.
    unsafe { bindings::kvm_rs_on_each_cpu(Some(trampoline), &fref as *const _ as *mut c_void) };
}

/// Runs `f` on CPU `cpu` (with interrupts off there) and waits for it; `ENXIO`
/// if that CPU is offline. Must not be called with interrupts disabled.
pub fn call_on_cpu(cpu: u32, f: &(dyn Fn() + Sync)) -> Result {
    unsafe extern "C" fn trampoline(info: *mut c_void) {
        // SAFETY: `info` is the `&&dyn Fn` passed below, alive until the
        // synchronous call returns.
        let f = unsafe { &*(info as *const &(dyn Fn() + Sync)) };
        f()
    }
    let fref: &(dyn Fn() + Sync) = f;
    // SAFETY: the callback only reads `fref`, which outlives the waiting call.
    let r = unsafe { bindings::kvm_rs_call_on_cpu(cpu as i32, Some(trampoline), &fref as *const _ as *mut c_void) };
    if r == 0 { Ok(()) } else { Err(Error::from_errno(r)) }
}

/// The size of a page.
pub fn page_size() -> usize {
    kernel::page::PAGE_SIZE
}

/// Physical address of a page allocated with [`kernel::page::Page`].
pub fn page_phys(page: &kernel::page::Page) -> u64 {
    // SAFETY: `page` owns a valid struct page; page_to_phys only computes.
    unsafe { bindings::kvm_rs_page_to_phys(page.as_ptr().cast()) }
}

/// EOPNOTSUPP (95), which 6.12's `kernel::error::code` does not name; upstream's
/// vendor modules fail to load with it when the CPU lacks SVM/VMX.
pub fn eopnotsupp() -> Error {
    Error::from_errno(-95)
}

/// XCR0 of the current CPU (XGETBV with ECX = 0); 1 (x87 only) without XSAVE.
pub fn xgetbv0() -> u64 {
    if read_cr4() & crate::arch::regs::cr4::OSXSAVE == 0 {
        return 1;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set, so XGETBV(0) is defined.
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// The number of online CPUs.
pub fn num_online_cpus() -> u32 {
    // SAFETY: reads a counter.
    unsafe { bindings::kvm_rs_num_online_cpus() }
}

/// Reads DR0..DR3.
pub fn read_db() -> [u64; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: reading debug registers in ring 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, dr0", out(reg) a, options(nomem, nostack));
        core::arch::asm!("mov {}, dr1", out(reg) b, options(nomem, nostack));
        core::arch::asm!("mov {}, dr2", out(reg) c, options(nomem, nostack));
        core::arch::asm!("mov {}, dr3", out(reg) d, options(nomem, nostack));
    }
    [a, b, c, d]
}

/// Writes DR0..DR3.
///
/// # Safety
/// The caller restores the host's values before the host can use them
/// (interrupts off around the guest's use).
pub unsafe fn write_db(v: &[u64; 4]) {
    // SAFETY: forwarded to the caller.
    unsafe {
        core::arch::asm!("mov dr0, {}", in(reg) v[0], options(nomem, nostack));
        core::arch::asm!("mov dr1, {}", in(reg) v[1], options(nomem, nostack));
        core::arch::asm!("mov dr2, {}", in(reg) v[2], options(nomem, nostack));
        core::arch::asm!("mov dr3, {}", in(reg) v[3], options(nomem, nostack));
    }
}

/// Whether the host uses XSAVE (CR4.OSXSAVE), so guests can have an XCR0.
pub fn host_has_xsave() -> bool {
    read_cr4() & crate::arch::regs::cr4::OSXSAVE != 0
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}
