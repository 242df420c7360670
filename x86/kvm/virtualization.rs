// SPDX-License-Identifier: GPL-2.0
//! Turning hardware virtualization on and off on every CPU, as upstream 6.12 does
//! with enable_virt_at_load: on every online CPU when the vendor registers, on CPUs
//! that come online later (CPU hotplug), off on CPUs going offline, off everywhere at
//! shutdown/reboot and in emergencies (kexec/panic), and off everywhere when the
//! vendor module unloads.

use crate::bindings;
use crate::x86_ops::VendorOps;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::c_str;
use kernel::prelude::*;
use kernel::types::Opaque;

/// The registered vendor: set before any per-CPU callback can run and cleared after
/// the last one is unregistered.
struct VendorSlot(UnsafeCell<Option<&'static dyn VendorOps>>);

// SAFETY: written only by the vendor that holds `CLAIMED`, while no callback that
// reads it is registered (see `set_vendor`); read-only otherwise.
unsafe impl Sync for VendorSlot {}

static VENDOR: VendorSlot = VendorSlot(UnsafeCell::new(None));
static CLAIMED: AtomicBool = AtomicBool::new(false);
/// Set once the system is shutting down (upstream's kvm_rebooting): faults of
/// virtualization instructions are then expected.
static REBOOTING: AtomicBool = AtomicBool::new(false);

/// Claims the vendor slot; false if another vendor module holds it.
pub(crate) fn claim() -> bool {
    CLAIMED.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

/// Releases the vendor slot claimed by [`claim`].
pub(crate) fn release() {
    CLAIMED.store(false, Ordering::Release);
}

/// The registered vendor, if any.
pub(crate) fn vendor() -> Option<&'static dyn VendorOps> {
    // SAFETY: see `VendorSlot`: no write runs concurrently with readers.
    unsafe { *VENDOR.0.get() }
}

/// Installs or removes the vendor.
///
/// # Safety
/// The caller holds the claim, and no per-CPU callback, misc device or syscore
/// hook that calls [`vendor`] is registered. With `Some(ops)`, `ops` must stay
/// valid until `set_vendor(None)`.
pub(crate) unsafe fn set_vendor(ops: Option<&'static dyn VendorOps>) {
    // SAFETY: exclusive by the caller's contract.
    unsafe { *VENDOR.0.get() = ops };
}


unsafe extern "C" fn kvm_online_cpu(cpu: c_uint) -> c_int {
    let Some(ops) = vendor() else { return 0 };
    match ops.enable_virtualization_cpu() {
        Ok(()) => 0,
        Err(e) => {
            pr_warn!("enabling virtualization on CPU{} failed\n", cpu);
            e.to_errno()
        }
    }
}

unsafe extern "C" fn kvm_offline_cpu(_cpu: c_uint) -> c_int {
    if let Some(ops) = vendor() {
        ops.disable_virtualization_cpu();
    }
    0
}

unsafe extern "C" fn kvm_shutdown(_data: *mut c_void) {
    // Virtualization must be off before the machine is reset or kexec starts a new
    // kernel: SVM/VMX state left on would survive into firmware or the next kernel.
    pr_info!("exiting hardware virtualization\n");
    REBOOTING.store(true, Ordering::Relaxed);
    if let Some(ops) = vendor() {
        crate::cpu::on_each_cpu(&|| ops.disable_virtualization_cpu());
    }
}

unsafe extern "C" fn kvm_emergency_disable() {
    // Runs on each CPU in an NMI during an emergency reboot or crash kexec.
    if let Some(ops) = vendor() {
        ops.disable_virtualization_cpu();
    }
}

/// The syscore hook and its ops, at a fixed address while registered.
struct SyscoreHook {
    ops: Opaque<bindings::syscore_ops>,
    hook: Opaque<bindings::syscore>,
}

// SAFETY: after registration the hook is only read by the syscore core, which
// serializes its callbacks; it is unregistered once, in drop.
unsafe impl Send for SyscoreHook {}
// SAFETY: as above: no `&self` method mutates it.
unsafe impl Sync for SyscoreHook {}

/// Virtualization turned on everywhere; dropping it turns it off everywhere.
pub(crate) struct VirtualizationOn {
    hotplug_state: c_int,
    syscore: KBox<SyscoreHook>,
}

/// Turns virtualization on for every online CPU and keeps it on for CPUs that come
/// online later. Fails (with every CPU off again) if any CPU fails.
///
/// The vendor must be installed with [`set_vendor`] first.
pub(crate) fn enable_all() -> Result<VirtualizationOn> {
    let syscore = KBox::new(
        SyscoreHook { ops: Opaque::uninit(), hook: Opaque::uninit() },
        GFP_KERNEL,
    )?;
    REBOOTING.store(false, Ordering::Relaxed);
    // SAFETY: cpuhp_setup_state runs kvm_online_cpu on every online CPU and unwinds
    // with kvm_offline_cpu on failure; the callbacks only use `vendor()`. The name is
    // a static C string.
    let state = unsafe {
        bindings::kvm_rs_cpuhp_setup_dyn(
            c_str!("kvm/cpu:online").as_char_ptr(),
            Some(kvm_online_cpu),
            Some(kvm_offline_cpu),
        )
    };
    if state < 0 {
        return Err(Error::from_errno(state));
    }
    // SAFETY: the boxed hook is zeroed and then filled; it stays at its address until
    // unregister_syscore in drop.
    unsafe {
        let ops = syscore.ops.get();
        core::ptr::write_bytes(ops, 0, 1);
        (*ops).shutdown = Some(kvm_shutdown);
        let hook = syscore.hook.get();
        core::ptr::write_bytes(hook, 0, 1);
        (*hook).ops = ops;
        bindings::register_syscore(hook);
        bindings::cpu_emergency_register_virt_callback(Some(kvm_emergency_disable));
    }
    Ok(VirtualizationOn { hotplug_state: state, syscore })
}

impl Drop for VirtualizationOn {
    fn drop(&mut self) {
        // SAFETY: undoes the registrations of `enable_all`, in reverse order;
        // cpuhp_remove_state runs kvm_offline_cpu on every online CPU.
        unsafe {
            bindings::cpu_emergency_unregister_virt_callback(Some(kvm_emergency_disable));
            bindings::unregister_syscore(self.syscore.hook.get());
            bindings::kvm_rs_cpuhp_remove(self.hotplug_state);
        }
    }
}
