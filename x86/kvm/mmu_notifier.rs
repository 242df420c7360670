// SPDX-License-Identifier: GPL-2.0
//! The VM's MMU notifier on its creator's mm (upstream's kvm_init_mmu_notifier
//! and kvm_mmu_notifier_*): registered at KVM_CREATE_VM, unregistered when the
//! VM is destroyed. The struct mmu_notifier and its ops table are C
//! (x86/kvm/mmu_notifier.c); the callbacks below are thin entries into
//! x86/kvm/mmu_invalidate.rs, which has the protocol and its locking.

use crate::bindings;
use crate::mmu_invalidate;
use crate::vm::Vm;
use kernel::ffi::{c_ulong, c_void};
use kernel::prelude::*;

/// The registration; unregistered and freed on drop.
pub(crate) struct MmuNotifier(*mut bindings::kvm_rs_mmu_notifier);

// SAFETY: the C object is only registered and freed through this handle; the
// callbacks it makes only read the VM through shared references.
unsafe impl Send for MmuNotifier {}
// SAFETY: as above (no method takes &self to mutate).
unsafe impl Sync for MmuNotifier {}

impl MmuNotifier {
    /// An unregistered notifier.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: a plain allocation, null on failure.
        let n = unsafe { bindings::kvm_rs_mmu_notifier_alloc() };
        if n.is_null() {
            return Err(ENOMEM);
        }
        Ok(MmuNotifier(n))
    }

    /// Registers the notifier on the current process's mm for `vm`, which
    /// owns this handle (so the VM outlives the registration).
    pub(crate) fn register(&self, vm: &Vm) -> Result {
        // SAFETY: `self.0` is our unregistered object; `vm` is pinned in its
        // Arc and drops this handle (unregistering) before its other fields.
        let r = unsafe { bindings::kvm_rs_mmu_notifier_register(self.0, (vm as *const Vm).cast()) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(())
    }
}

impl Drop for MmuNotifier {
    fn drop(&mut self) {
        // SAFETY: unregisters (waiting for callbacks in flight) and frees the
        // object allocated in `new`. Sleeps: a VM is dropped in process
        // context (file release).
        unsafe { bindings::kvm_rs_mmu_notifier_free(self.0) };
    }
}

/// # Safety
/// `vm` is the pointer given to `register`, whose VM is alive while the
/// notifier is registered.
unsafe fn vm_ref<'a>(vm: *const c_void) -> &'a Vm {
    // SAFETY: per the function's contract.
    unsafe { &*vm.cast::<Vm>() }
}

#[no_mangle]
unsafe extern "C" fn kvm_rs_mn_invalidate_start(vm: *const c_void, start: c_ulong, end: c_ulong) {
    // SAFETY: called by the notifier registered for this VM.
    mmu_invalidate::invalidate_start(unsafe { vm_ref(vm) }, start as u64, end as u64);
}

#[no_mangle]
unsafe extern "C" fn kvm_rs_mn_invalidate_end(vm: *const c_void, start: c_ulong, end: c_ulong) {
    // SAFETY: as above.
    mmu_invalidate::invalidate_end(unsafe { vm_ref(vm) }, start as u64, end as u64);
}

#[no_mangle]
unsafe extern "C" fn kvm_rs_mn_age(vm: *const c_void, start: c_ulong, end: c_ulong, clear: bool, flush: bool) -> bool {
    // SAFETY: as above.
    mmu_invalidate::age(unsafe { vm_ref(vm) }, start as u64, end as u64, clear, flush)
}

#[no_mangle]
unsafe extern "C" fn kvm_rs_mn_release(vm: *const c_void) {
    // SAFETY: as above.
    mmu_invalidate::release(unsafe { vm_ref(vm) });
}
