// SPDX-License-Identifier: GPL-2.0
//! Guest MSRs: KVM_GET/SET_MSRS and the guest's RDMSR/WRMSR (all MSR accesses
//! exit; upstream's kvm_get_msr_common/kvm_set_msr_common for the MSRs kept here).
//! An MSR not handled here is #GP for the guest and a failed entry for user space.

use crate::arch::msr;
use crate::arch::validity;
use crate::vcpu::VcpuInner;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;

/// Variable-range MTRR pairs reported in MTRRcap (upstream's KVM_NR_VAR_MTRR).
const NR_VAR_MTRR: usize = 8;
/// MTRRcap: 8 variable ranges, fixed ranges (bit 8), write-combining (bit 10).
const MTRR_CAP: u64 = 0x500 | NR_VAR_MTRR as u64;
const FIXED_MTRRS: [u32; 11] = [0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f];

/// Machine-check banks per vCPU (upstream's KVM_MAX_MCE_BANKS, also its default
/// MCG_CAP when user space does not set one up).
const MCE_BANKS: usize = 32;

/// MSRs kvm.ko keeps in software for the guest: MTRRs, the machine-check
/// registers (MCG_CAP = 32 banks, as upstream's default), kvmclock's.
#[derive(Clone, Copy)]
pub(crate) struct SoftMsrs {
    pub(crate) mce_banks: [u64; 4 * MCE_BANKS],
    /// MCG_CAP: bank count and capabilities (KVM_X86_SETUP_MCE).
    pub(crate) mcg_cap: u64,
    mtrr_def_type: u64,
    mtrr_fixed: [u64; 11],
    mtrr_var: [u64; 2 * NR_VAR_MTRR],
    pub(crate) mcg_status: u64,
    pub(crate) mcg_ctl: u64,
    hwcr: u64,
    /// IA32_MISC_ENABLE: read by Intel guests early (Linux's verify_cpu clears
    /// XD_DISABLE in it); PEBS/BTS unavailable are set and read-only.
    misc_enable: u64,
    /// DE_CFG: guests set bit 1 (LFENCE is dispatch serializing).
    de_cfg: u64,
    /// MSR_IA32_POWER_CTL: kept as written (upstream).
    power_ctl: u64,
    /// MSR_PLATFORM_INFO and MSR_MISC_FEATURES_ENABLES.
    pub(crate) platform: crate::platform_info::VcpuPlatform,
}

impl SoftMsrs {
    pub(crate) fn new() -> Self {
        SoftMsrs {
            mce_banks: [0; 4 * MCE_BANKS],
            mcg_cap: crate::mce::MAX_BANKS,
            mtrr_def_type: 0,
            mtrr_fixed: [0; 11],
            mtrr_var: [0; 2 * NR_VAR_MTRR],
            mcg_status: 0,
            mcg_ctl: u64::MAX,
            hwcr: 0,
            misc_enable: MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL,
            de_cfg: 0,
            power_ctl: 0,
            platform: crate::platform_info::VcpuPlatform::new(),
        }
    }
}

/// The error of an access to an MSR kvm.ko does not know (upstream's
/// KVM_MSR_RET_UNSUPPORTED; a user-space MSR exit reports it as
/// KVM_MSR_EXIT_REASON_UNKNOWN). Any other error is a known MSR refusing
/// the access or the value (KVM_MSR_RET_INVALID: EXIT_REASON_INVAL). A
/// kernel-internal errno: it never reaches user space.
pub(crate) const UNSUPPORTED: Error = ENOTSUPP;

/// MSR_IA32_POWER_CTL.
const MSR_IA32_POWER_CTL: u32 = 0x1fc;

/// IA32_MISC_ENABLE bits with a meaning for KVM (upstream's msr-index.h).
const MISC_ENABLE_EMON: u64 = 1 << 7;
const MISC_ENABLE_BTS_UNAVAIL: u64 = 1 << 11;
const MISC_ENABLE_PEBS_UNAVAIL: u64 = 1 << 12;

fn valid_memtype(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Reports the first MSRs the guest uses that are not implemented (as upstream's
/// "unhandled rdmsr/wrmsr" lines), so a missing one can be found from dmesg.
fn report_unhandled(write: bool, index: u32, value: u64) {
    static REPORTED: AtomicU32 = AtomicU32::new(0);
    if REPORTED.fetch_add(1, Ordering::Relaxed) < 32 {
        if write {
            pr_info!("unhandled wrmsr {:#x} <- {:#x} (#GP)\n", index, value);
        } else {
            pr_info!("unhandled rdmsr {:#x} (#GP)\n", index);
        }
    }
}

/// MSRs that read as 0 and ignore writes of 0 on the AMD CPUs KVM presents
/// (upstream's kvm_get/set_msr_common does the same for these).
fn is_read_as_zero(index: u32) -> bool {
    matches!(index,
        0xc001_0000..=0xc001_0007 // K7 performance counters and event selects
        | 0xc001_0010 // SYSCFG
        | 0xc001_0055 // interrupt pending message
        | 0xc001_0140 | 0xc001_0141 // OSVW length and status
        | 0xc001_102a // BU_CFG2
        | 0x0000_01d9 // DEBUGCTL
    )
}

fn canonical(v: u64) -> bool {
    ((v as i64) << 16 >> 16) as u64 == v
}

/// PAT: every byte a valid memory type (0, 1, 4, 5, 6, 7).
fn valid_pat(v: u64) -> bool {
    v.to_le_bytes().iter().all(|b| matches!(b, 0 | 1 | 4 | 5 | 6 | 7))
}

pub(crate) fn get_msr(inner: &VcpuInner, index: u32, _host: bool) -> Result<u64> {
    let s = &inner.state;
    Ok(match index {
        msr::IA32_SYSENTER_CS => s.sysenter_cs,
        msr::IA32_SYSENTER_ESP => s.sysenter_esp,
        msr::IA32_SYSENTER_EIP => s.sysenter_eip,
        msr::STAR => s.star,
        msr::LSTAR => s.lstar,
        msr::CSTAR => s.cstar,
        msr::SYSCALL_MASK => s.sfmask,
        msr::KERNEL_GS_BASE => s.kernel_gs_base,
        msr::FS_BASE => s.fs.base,
        msr::GS_BASE => s.gs.base,
        msr::EFER => s.efer,
        msr::IA32_PAT => s.pat,
        msr::IA32_APIC_BASE => inner.apic_base,
        msr::IA32_MTRRCAP => MTRR_CAP,
        msr::IA32_MTRR_DEF_TYPE => inner.msrs.mtrr_def_type,
        0x200..=0x20f => inner.msrs.mtrr_var[(index - 0x200) as usize],
        i if FIXED_MTRRS.contains(&i) => {
            inner.msrs.mtrr_fixed[FIXED_MTRRS.iter().position(|&f| f == i).unwrap_or(0)]
        }
        msr::IA32_MCG_CAP => inner.msrs.mcg_cap,
        // Only the banks MCG_CAP announces exist.
        0x400..=0x47f if ((index - 0x400) / 4) as u64 >= inner.msrs.mcg_cap & 0xff => return Err(EINVAL),
        0x400..=0x47f => inner.msrs.mce_banks[(index - 0x400) as usize],
        msr::IA32_MCG_STATUS => inner.msrs.mcg_status,
        msr::IA32_MCG_CTL => inner.msrs.mcg_ctl,
        // Microcode revision: upstream's default for a vCPU.
        msr::IA32_BIOS_SIGN_ID => 0x1_0000_0000,
        0xc001_0015 => inner.msrs.hwcr,
        msr::IA32_MISC_ENABLE => inner.msrs.misc_enable,
        0xc001_1029 => inner.msrs.de_cfg,
        MSR_IA32_POWER_CTL => inner.msrs.power_ctl,
        i if is_read_as_zero(i) => 0,
        // x2APIC MSRs without an in-kernel APIC: known, refused (upstream).
        0x800..=0x8ff => return Err(EINVAL),
        _ if crate::params::msr_ignored(index, 0, false) => 0,
        _ => {
            if !_host {
                report_unhandled(false, index, 0);
            }
            return Err(UNSUPPORTED);
        }
    })
}

pub(crate) fn set_msr(inner: &mut VcpuInner, index: u32, v: u64, host: bool) -> Result {
    let features = inner.features;
    let s = &mut inner.state;
    match index {
        msr::IA32_SYSENTER_CS => s.sysenter_cs = v & 0xffff_ffff,
        msr::IA32_SYSENTER_ESP | msr::IA32_SYSENTER_EIP | msr::LSTAR | msr::CSTAR
        | msr::KERNEL_GS_BASE | msr::FS_BASE | msr::GS_BASE => {
            if !canonical(v) {
                return Err(EINVAL);
            }
            match index {
                msr::IA32_SYSENTER_ESP => s.sysenter_esp = v,
                msr::IA32_SYSENTER_EIP => s.sysenter_eip = v,
                msr::LSTAR => s.lstar = v,
                msr::CSTAR => s.cstar = v,
                msr::KERNEL_GS_BASE => s.kernel_gs_base = v,
                msr::FS_BASE => s.fs.base = v,
                _ => s.gs.base = v,
            }
        }
        msr::STAR => s.star = v,
        msr::SYSCALL_MASK => s.sfmask = v & 0xffff_ffff,
        msr::EFER => {
            if !validity::valid_efer(v, &features) {
                return Err(EINVAL);
            }
            // The guest cannot toggle LME while paging is on; LMA is read-only
            // for the guest (set by hardware when paging turns on).
            if !host {
                let paging = s.cr0 & crate::arch::regs::cr0::PG != 0;
                let lme = crate::arch::regs::efer::LME;
                if paging && (v ^ s.efer) & lme != 0 {
                    return Err(EINVAL);
                }
                let lma = crate::arch::regs::efer::LMA;
                s.efer = (v & !lma) | (s.efer & lma);
            } else {
                s.efer = v;
            }
        }
        msr::IA32_PAT => {
            if !valid_pat(v) {
                return Err(EINVAL);
            }
            s.pat = v;
        }
        msr::IA32_APIC_BASE => {
            if v & !(0xffff_ffff_f000u64 | (1 << 8) | (1 << 10) | (1 << 11)) != 0 {
                return Err(EINVAL);
            }
            inner.apic_base = v;
        }
        msr::IA32_MTRR_DEF_TYPE => {
            if v & !0xcff != 0 || !valid_memtype(v & 0xff) {
                return Err(EINVAL);
            }
            inner.msrs.mtrr_def_type = v;
        }
        0x200..=0x20f => {
            // Base: memory type in 7:0; mask: valid bit 11; reserved 10:8.
            let is_base = index % 2 == 0;
            if (is_base && (!valid_memtype(v & 0xff) || v & 0xf00 != 0)) || (!is_base && v & 0x7ff != 0) {
                return Err(EINVAL);
            }
            inner.msrs.mtrr_var[(index - 0x200) as usize] = v;
        }
        i if FIXED_MTRRS.contains(&i) => {
            if !v.to_le_bytes().iter().all(|&b| valid_memtype(b as u64)) {
                return Err(EINVAL);
            }
            inner.msrs.mtrr_fixed[FIXED_MTRRS.iter().position(|&f| f == i).unwrap_or(0)] = v;
        }
        msr::IA32_MCG_STATUS => inner.msrs.mcg_status = v,
        // Without MCG_CTL_P only the host may write, and only 0 (upstream).
        msr::IA32_MCG_CTL if inner.msrs.mcg_cap & crate::mce::MCG_CTL_P == 0 && (v != 0 || !host) => {
            return Err(EINVAL)
        }
        msr::IA32_MCG_CTL if v != 0 && v != u64::MAX => return Err(EINVAL),
        msr::IA32_MCG_CTL => inner.msrs.mcg_ctl = v,
        // MCG_CAP is read-only; the host may write back what it read.
        msr::IA32_MCG_CAP if host && v == inner.msrs.mcg_cap => {}
        0x400..=0x47f if ((index - 0x400) / 4) as u64 >= inner.msrs.mcg_cap & 0xff => return Err(EINVAL),
        0x400..=0x47f => {
            let i = (index - 0x400) as usize;
            // MCi_CTL: all or nothing; MCi_STATUS: only 0 from the guest (upstream).
            match i % 4 {
                0 if v != 0 && v != u64::MAX => return Err(EINVAL),
                1 if !host && v != 0 => return Err(EINVAL),
                _ => {}
            }
            inner.msrs.mce_banks[i] = v;
        }
        msr::IA32_BIOS_SIGN_ID => {}
        // HWCR: flush-filter disable, IGNNE emulation and TLB cache disable
        // are ignored; only McStatusWrEn (18) and TscFreqSel (24) are kept;
        // anything else is refused (upstream's rules).
        0xc001_0015 => {
            let v = v & !(0x40 | 0x100 | 0x8);
            if v & !((1 << 18) | (1 << 24)) != 0 {
                return Err(EINVAL);
            }
            inner.msrs.hwcr = v;
        }
        msr::IA32_MISC_ENABLE => {
            let old = inner.msrs.misc_enable;
            let read_only = MISC_ENABLE_BTS_UNAVAIL | MISC_ENABLE_PEBS_UNAVAIL;
            if host {
                inner.msrs.misc_enable = v;
            } else if (old ^ v) & read_only != 0 {
                return Err(EINVAL);
            } else {
                // EMON is read-only too, but writes to it are ignored (upstream).
                inner.msrs.misc_enable = (v & !MISC_ENABLE_EMON) | (old & MISC_ENABLE_EMON);
            }
        }
        0xc001_1029 if v & !2 == 0 => inner.msrs.de_cfg = v,
        MSR_IA32_POWER_CTL => inner.msrs.power_ctl = v,
        i if is_read_as_zero(i) && (v == 0 || host) => {}
        // Known MSRs refusing the value or the access (not "unknown" for a
        // user-space MSR exit, nor for ignore_msrs).
        0xc001_1029 | msr::IA32_MCG_CAP | msr::IA32_MTRRCAP | 0x800..=0x8ff => return Err(EINVAL),
        i if is_read_as_zero(i) => return Err(EINVAL),
        _ if crate::params::msr_ignored(index, v, true) => {}
        _ => {
            if !host {
                report_unhandled(true, index, v);
            }
            return Err(UNSUPPORTED);
        }
    }
    Ok(())
}

/// An MSR access with the vCPU at hand: the in-kernel APIC's MSRs first
/// (IA32_APIC_BASE, x2APIC), the TSC's and kvmclock's, then the rest.
fn get_msr_vcpu_inner(vcpu: &crate::vcpu::Vcpu, inner: &VcpuInner, index: u32, host: bool) -> Result<u64> {
    crate::pv_cpuid::check_msr(inner, index)?;
    crate::irq::lapic::get_msr(vcpu, index)
        .or_else(|| crate::time::tsc::get_msr(inner, index))
        .or_else(|| crate::time::kvmclock::get_msr(vcpu, inner, index))
        .or_else(|| crate::platform_info::get_msr(vcpu, inner, index, host))
        .or_else(|| crate::time::steal_time::get_msr(inner, index))
        .or_else(|| crate::smm::get_msr(inner, index, host))
        .unwrap_or_else(|| get_msr(inner, index, host))
}

/// See [`get_msr_vcpu_inner`].
fn set_msr_vcpu_inner(vcpu: &crate::vcpu::Vcpu, inner: &mut VcpuInner, index: u32, value: u64, host: bool) -> Result {
    crate::pv_cpuid::check_msr(inner, index)?;
    if let Some(r) = crate::irq::lapic::set_msr(vcpu, inner, index, value, host) {
        return r;
    }
    if let Some(r) = crate::time::tsc::set_msr(vcpu, inner, index, value, host) {
        return r;
    }
    if let Some(r) = crate::time::kvmclock::set_msr(vcpu, inner, index, value) {
        return r;
    }
    if let Some(r) = crate::platform_info::set_msr(inner, index, value, host) {
        return r;
    }
    if let Some(r) = crate::time::steal_time::set_msr(inner, index, value) {
        return r;
    }
    if let Some(r) = crate::smm::set_msr(inner, index, value, host) {
        return r;
    }
    set_msr(inner, index, value, host)
}

/// An MSR read for the guest (`host` false) or KVM_GET_MSRS (`host`): as
/// upstream's kvm_do_msr_access, user space may read an MSR that
/// KVM_GET_MSR_INDEX_LIST reports even when it does not exist for this vCPU
/// (a PV MSR whose feature the vCPU may not use): it reads 0.
pub(crate) fn get_msr_vcpu(vcpu: &crate::vcpu::Vcpu, inner: &VcpuInner, index: u32, host: bool) -> Result<u64> {
    match get_msr_vcpu_inner(vcpu, inner, index, host) {
        Err(e) if e == UNSUPPORTED && host && crate::msr_list::is_reported(index) => Ok(0),
        r => r,
    }
}

/// An MSR write for the guest or KVM_SET_MSRS: user space may write 0 to a
/// reported MSR that does not exist for this vCPU (see [`get_msr_vcpu`]).
pub(crate) fn set_msr_vcpu(vcpu: &crate::vcpu::Vcpu, inner: &mut VcpuInner, index: u32, value: u64, host: bool) -> Result {
    match set_msr_vcpu_inner(vcpu, inner, index, value, host) {
        Err(e) if e == UNSUPPORTED && host && value == 0 && crate::msr_list::is_reported(index) => Ok(()),
        r => r,
    }
}

/// Upstream's MAX_IO_MSRS: one KVM_GET/SET_MSRS call handles fewer entries.
const MAX_IO_MSRS: u32 = 256;

/// The entry walk of KVM_GET_MSRS / KVM_SET_MSRS (vCPU and /dev/kvm;
/// upstream's msr_io): `access` handles one entry (filling in `data` for a
/// read) and says whether it succeeded; the walk stops at the first failure
/// and returns how many succeeded. Entries read are written back.
pub(crate) fn msr_io(
    arg: usize,
    writes_back: bool,
    mut access: impl FnMut(&mut crate::uapi::kvm_msr_entry) -> bool,
) -> Result<isize> {
    let hdr: crate::uapi::kvm_msrs = crate::user::read(arg)?;
    if hdr.nmsrs >= MAX_IO_MSRS {
        return Err(E2BIG);
    }
    let base = arg + core::mem::size_of::<crate::uapi::kvm_msrs>();
    let esize = core::mem::size_of::<crate::uapi::kvm_msr_entry>();
    let mut done = 0;
    for i in 0..hdr.nmsrs as usize {
        let mut e: crate::uapi::kvm_msr_entry = crate::user::read(base + i * esize)?;
        if !access(&mut e) {
            break;
        }
        if writes_back {
            crate::user::write(base + i * esize, &e)?;
        }
        done += 1;
    }
    Ok(done)
}
