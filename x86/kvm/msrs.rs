// SPDX-License-Identifier: GPL-2.0
//! Guest MSRs: KVM_GET/SET_MSRS and the guest's RDMSR/WRMSR (all MSR accesses
//! exit; upstream's kvm_get_msr_common/kvm_set_msr_common for the MSRs kept here).
//! An MSR not handled here is #GP for the guest and a failed entry for user space.

use crate::arch::msr;
use crate::arch::validity;
use crate::vcpu::VcpuInner;
use kernel::prelude::*;

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
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
        msr::IA32_TSC => rdtsc().wrapping_add(s.tsc_offset),
        msr::IA32_APIC_BASE => inner.apic_base,
        _ => return Err(EINVAL),
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
        msr::IA32_TSC => s.tsc_offset = v.wrapping_sub(rdtsc()),
        msr::IA32_APIC_BASE => {
            if v & !(0xffff_ffff_f000u64 | (1 << 8) | (1 << 10) | (1 << 11)) != 0 {
                return Err(EINVAL);
            }
            inner.apic_base = v;
        }
        _ => return Err(EINVAL),
    }
    Ok(())
}
