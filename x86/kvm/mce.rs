// SPDX-License-Identifier: GPL-2.0
//! Machine-check architecture for guests (upstream's KVM_X86_SETUP_MCE,
//! KVM_X86_SET_MCE, KVM_X86_GET_MCE_CAP_SUPPORTED and set_msr_mce): the VMM
//! chooses MCG_CAP (bank count and capabilities) and injects machine checks;
//! the banks are kept in software (msrs.rs).

use crate::uapi;
use crate::user;
use crate::vcpu::VcpuInner;
use kernel::prelude::*;

/// Banks per vCPU at most (upstream's KVM_MAX_MCE_BANKS), also the default
/// MCG_CAP before KVM_X86_SETUP_MCE.
pub(crate) const MAX_BANKS: u64 = 32;
/// MCG_CAP.MCG_CTL_P: IA32_MCG_CTL exists.
pub(crate) const MCG_CTL_P: u64 = 1 << 8;
/// MCG_CAP.MCG_SER_P: software error recovery.
const MCG_SER_P: u64 = 1 << 24;
/// The capabilities offered (upstream's kvm_caps.supported_mce_cap without
/// the Intel-only LMCE/CMCI).
const SUPPORTED_CAP: u64 = MCG_CTL_P | MCG_SER_P;
/// MCG_STATUS.MCIP: a machine check is being handled.
const MCG_STATUS_MCIP: u64 = 1 << 2;
/// MCi_STATUS bits.
const MCI_STATUS_VAL: u64 = 1 << 63;
const MCI_STATUS_OVER: u64 = 1 << 62;
const MCI_STATUS_UC: u64 = 1 << 61;
/// CR4.MCE.
const CR4_MCE: u64 = 1 << 6;

/// KVM_X86_GET_MCE_CAP_SUPPORTED (a system ioctl): the MCG_CAP capability
/// bits (the bank count comes from KVM_CAP_MCE, as upstream).
pub(crate) fn get_mce_cap_supported(arg: usize) -> Result {
    user::write(arg, &SUPPORTED_CAP)
}

/// KVM_X86_SETUP_MCE: sets MCG_CAP; MCG_CTL and every bank's CTL start all-ones.
pub(crate) fn setup_mce(inner: &mut VcpuInner, arg: usize) -> Result {
    let cap: u64 = user::read(arg)?;
    let banks = cap & 0xff;
    if banks == 0 || banks > MAX_BANKS || cap & !(SUPPORTED_CAP | 0xff | 0xff_0000) != 0 {
        return Err(EINVAL);
    }
    let m = &mut inner.msrs;
    m.mcg_cap = cap;
    if cap & MCG_CTL_P != 0 {
        m.mcg_ctl = u64::MAX;
    }
    for bank in 0..banks as usize {
        if let Some(ctl) = m.mce_banks.get_mut(bank * 4) {
            *ctl = u64::MAX;
        }
    }
    Ok(())
}

/// KVM_X86_SET_MCE: an error in a bank; an uncorrected one is injected as #MC
/// (or shuts the guest down if it cannot take one, as the hardware does).
pub(crate) fn set_mce(inner: &mut VcpuInner, arg: usize) -> Result {
    let mce: uapi::kvm_x86_mce = user::read(arg)?;
    let banks = inner.msrs.mcg_cap & 0xff;
    if mce.bank as u64 >= banks || mce.status & MCI_STATUS_VAL == 0 {
        return Err(EINVAL);
    }
    let base = mce.bank as usize * 4;
    let cap = inner.msrs.mcg_cap;
    let mcg_ctl = inner.msrs.mcg_ctl;
    let mcg_status = inner.msrs.mcg_status;
    let cr4 = inner.state.cr4;
    let Some(bank) = inner.msrs.mce_banks.get_mut(base..base + 4) else { return Err(EINVAL) };
    let mut status = mce.status;
    if status & MCI_STATUS_UC != 0 {
        // Reporting of uncorrected errors is off unless MCG_CTL and the bank's
        // CTL are all ones.
        if (cap & MCG_CTL_P != 0 && mcg_ctl != u64::MAX) || bank[0] != u64::MAX {
            return Ok(());
        }
        if mcg_status & MCG_STATUS_MCIP != 0 || cr4 & CR4_MCE == 0 {
            inner.shutdown_requested = true;
            return Ok(());
        }
        if bank[1] & MCI_STATUS_VAL != 0 {
            status |= MCI_STATUS_OVER;
        }
        bank[2] = mce.addr;
        bank[3] = mce.misc;
        bank[1] = status;
        inner.msrs.mcg_status = mce.mcg_status;
        inner.state.queue_exception(18, None);
    } else if bank[1] & MCI_STATUS_VAL == 0 || bank[1] & MCI_STATUS_UC == 0 {
        if bank[1] & MCI_STATUS_VAL != 0 {
            status |= MCI_STATUS_OVER;
        }
        bank[2] = mce.addr;
        bank[3] = mce.misc;
        bank[1] = status;
    } else {
        bank[1] |= MCI_STATUS_OVER;
    }
    Ok(())
}
