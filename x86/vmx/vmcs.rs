// SPDX-License-Identifier: GPL-2.0
//! The current VMCS of this CPU as a typed [`Vmcs`]: a [`CurrentVmcs`] exists only
//! between a successful VMPTRLD and the VMCLEAR that ends its use, so every
//! VMREAD/VMWRITE made through it has a current VMCS.

use crate::vmcs_config::fields::{Vmcs, WriteFailed};
use crate::vmx_insn;
use core::marker::PhantomData;
use kernel::prelude::*;

/// Proof that a VMCS is current on this CPU (interrupts are off, so
/// it stays so), with typed field access.
pub(crate) struct CurrentVmcs<'a> {
    /// Not Send: the VMCS is current on this CPU only.
    _cpu_bound: PhantomData<*const ()>,
    _region: PhantomData<&'a mut ()>,
}

impl<'a> CurrentVmcs<'a> {
    /// VMCLEAR + VMPTRLD of the VMCS region at `pa`.
    ///
    /// # Safety
    /// VMX operation is on, interrupts are off for the lifetime of the result,
    /// `pa` is a VMCS region with the revision ID owned by the caller for `'a`,
    /// and it is not current or active on another CPU.
    pub(crate) unsafe fn load(pa: u64) -> Result<Self> {
        // SAFETY: per the caller's guarantee.
        unsafe { vmx_insn::vmclear(pa).and_then(|_| vmx_insn::vmptrld(pa))? };
        Ok(CurrentVmcs { _cpu_bound: PhantomData, _region: PhantomData })
    }

    /// The VMCS already current on this CPU.
    ///
    /// # Safety
    /// A VMCS is current on this CPU, interrupts are off for the lifetime of the
    /// result, and its region is owned by the caller for `'a`.
    pub(crate) unsafe fn assume_current() -> Self {
        CurrentVmcs { _cpu_bound: PhantomData, _region: PhantomData }
    }

}

impl Vmcs for CurrentVmcs<'_> {
    fn read_raw(&self, encoding: u32) -> u64 {
        // SAFETY: the VMCS is current (the invariant of `self`).
        unsafe { vmx_insn::vmread(encoding) }
    }

    fn write_raw(&mut self, encoding: u32, value: u64) -> core::result::Result<(), WriteFailed> {
        // SAFETY: as above.
        unsafe { vmx_insn::vmwrite(encoding, value) }.map_err(|_| WriteFailed(encoding))
    }
}
