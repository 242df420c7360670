// SPDX-License-Identifier: GPL-2.0
//! Control-register writes kvm.ko carries out for the guest (upstream's
//! kvm_set_cr0, kvm_set_cr4, kvm_set_cr8, kvm_lmsw, load_pdptrs and the common
//! half of handle_cr / cr_interception).
//!
//! The vendor decides which accesses exit: VMX exits for every CR0/CR4 bit the
//! guest does not own (all but CR0.TS/WP and the CR4 bits of upstream's
//! KVM_POSSIBLE_CR4_GUEST_BITS) and for CR8 without a TPR shadow; SVM exits for
//! CR8 writes. Whatever the vendor, the architectural checks and side effects
//! (EFER.LMA, PAE PDPTRs, TLB flushes) live here, once.

use crate::arch::regs::{cr0, cr4, efer};
use crate::arch::validity;
use crate::arch_state::ArchState;
use crate::emulate;
use crate::exit::CrOp;
use crate::run::{skip_instruction, Next};
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use kernel::prelude::*;

/// CR0 bits that exist (upstream's ~CR0_RESERVED_BITS); writes to the others
/// are ignored, as on hardware.
const CR0_DEFINED: u64 = cr0::PE | cr0::MP | cr0::EM | cr0::TS | cr0::ET | cr0::NE | cr0::WP
    | cr0::AM | cr0::NW | cr0::CD | cr0::PG;

/// CR0 bits whose change makes the CPU reload the PAE PDPTRs.
const CR0_PDPTR_BITS: u64 = cr0::CD | cr0::NW | cr0::PG;
/// CR4 bits whose change makes the CPU reload the PAE PDPTRs.
const CR4_PDPTR_BITS: u64 = cr4::PGE | cr4::PSE | cr4::PAE | cr4::SMEP;

/// The write was refused: the caller injects #GP(0).
pub(crate) struct Refused;

/// Reads the four PDPTEs that `cr3` points to into the state (upstream's
/// load_pdptrs). Fails if they are not in guest RAM or a present one has
/// reserved bits set, as the CPU's MOV to CR0/CR3/CR4 would (#GP).
pub(crate) fn load_pdptrs(vcpu: &Vcpu, inner: &mut VcpuInner, cr3: u64) -> Result<(), Refused> {
    let maxphy = crate::cpuid::guest_maxphyaddr(&inner.cpuid);
    let above_maxphy = if maxphy >= 64 { 0 } else { !0u64 << maxphy };
    let reserved = above_maxphy | 0x1e0 | 0x6;
    let mut raw = [0u8; 32];
    match emulate::read_gpa(vcpu, cr3 & 0xffff_ffe0, &mut raw) {
        Ok(true) => {}
        _ => return Err(Refused),
    }
    let mut pdptes = [0u64; 4];
    for (i, p) in pdptes.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[8 * i..8 * i + 8]);
        *p = u64::from_le_bytes(b);
        if *p & 1 != 0 && *p & reserved != 0 {
            return Err(Refused);
        }
    }
    inner.state.pdptrs = pdptes;
    Ok(())
}

/// MOV to CR0 (upstream's kvm_set_cr0 with the vendor's set_cr0 long-mode
/// switch, enter_lmode/exit_lmode).
pub(crate) fn set_cr0(vcpu: &Vcpu, inner: &mut VcpuInner, value: u64) -> Result<(), Refused> {
    if !validity::valid_cr0(value) {
        return Err(Refused);
    }
    let s = &inner.state;
    let old = s.cr0;
    let new = (value | cr0::ET) & CR0_DEFINED;
    let paging_on = old & cr0::PG == 0 && new & cr0::PG != 0;
    if s.efer & efer::LME != 0 && paging_on && (s.cr4 & cr4::PAE == 0 || s.cs.l != 0) {
        return Err(Refused);
    }
    let pae_legacy = s.efer & efer::LME == 0 && new & cr0::PG != 0 && s.cr4 & cr4::PAE != 0;
    if pae_legacy && (new ^ old) & CR0_PDPTR_BITS != 0 {
        let cr3 = s.cr3;
        load_pdptrs(vcpu, inner, cr3)?;
    }
    let s = &mut inner.state;
    let in_64bit_code = s.efer & efer::LMA != 0 && s.cs.l != 0;
    if new & cr0::PG == 0 && (in_64bit_code || s.cr4 & cr4::PCIDE != 0) {
        return Err(Refused);
    }
    if s.efer & efer::LME != 0 {
        if paging_on {
            s.efer |= efer::LMA;
        } else if old & cr0::PG != 0 && new & cr0::PG == 0 {
            s.efer &= !efer::LMA;
        }
    }
    s.cr0 = new;
    // Turning paging off flushes the guest's TLB.
    if old & cr0::PG != 0 && new & cr0::PG == 0 {
        inner.flush_guest_tlb = true;
    }
    Ok(())
}

/// MOV to CR4 (upstream's kvm_set_cr4 + kvm_post_set_cr4).
pub(crate) fn set_cr4(vcpu: &Vcpu, inner: &mut VcpuInner, value: u64) -> Result<(), Refused> {
    if !validity::valid_cr4(value, &inner.cr4_features) {
        return Err(Refused);
    }
    let s = &inner.state;
    let old = s.cr4;
    let changed = value ^ old;
    if s.efer & efer::LMA != 0 {
        if value & cr4::PAE == 0 || changed & cr4::LA57 != 0 {
            return Err(Refused);
        }
    } else if s.cr0 & cr0::PG != 0 && value & cr4::PAE != 0 && changed & CR4_PDPTR_BITS != 0 {
        let cr3 = s.cr3;
        load_pdptrs(vcpu, inner, cr3)?;
    }
    let s = &mut inner.state;
    if value & cr4::PCIDE != 0 && old & cr4::PCIDE == 0 && (s.cr3 & 0xfff != 0 || s.efer & efer::LMA == 0) {
        return Err(Refused);
    }
    s.cr4 = value;
    // The architectural flushes the intercepted write must do itself.
    let pcid_off = old & cr4::PCIDE != 0 && value & cr4::PCIDE == 0;
    let smep_on = old & cr4::SMEP == 0 && value & cr4::SMEP != 0;
    if changed & (cr4::PGE | cr4::PAE) != 0 || pcid_off || smep_on {
        inner.flush_guest_tlb = true;
    }
    Ok(())
}

/// MOV to CR8: the task-priority register, which user space owns without an
/// in-kernel LAPIC (it reads it from kvm_run.cr8).
pub(crate) fn set_cr8(s: &mut ArchState, value: u64) -> Result<(), Refused> {
    if value & !0xf != 0 {
        return Err(Refused);
    }
    s.cr8 = value;
    Ok(())
}

/// The value of general-purpose register `reg` as a MOV to CR reads it: all
/// 64 bits in 64-bit mode, the low 32 otherwise.
fn read_gpr(s: &ArchState, reg: u8) -> u64 {
    let v = s.gprs[reg as usize & 15];
    if s.efer & efer::LMA != 0 && s.cs.l != 0 {
        v
    } else {
        v & 0xffff_ffff
    }
}

/// Handles an intercepted control-register access (upstream's handle_cr and
/// cr_interception/cr8_write_interception).
pub(crate) fn handle_cr_access(vcpu: &Vcpu, inner: &mut VcpuInner, cr: u8, op: CrOp) -> Result<Next> {
    // A MOV CR at CPL > 0 faults before it can exit; be safe anyway.
    if inner.state.cpl() != 0 {
        inner.state.queue_exception(13, Some(0));
        return Ok(Next::Guest);
    }
    let op = match op {
        CrOp::Write { gpr: None } | CrOp::Read { gpr: None } => match emulate::decode_cr_access(vcpu, &inner.state) {
            Some((decoded_cr, decoded)) if decoded_cr == cr => decoded,
            _ => return emulate::emulation_failure_at_rip(vcpu, inner),
        },
        known => known,
    };
    crate::trace::kvm_cr(matches!(op, CrOp::Write { .. }), cr, || match op {
        CrOp::Write { gpr: Some(r) } => read_gpr(&inner.state, r),
        _ => match cr {
            0 => inner.state.cr0,
            2 => inner.state.cr2,
            3 => inner.state.cr3,
            4 => inner.state.cr4,
            _ => inner.state.cr8,
        },
    });
    let result = match (cr, op) {
        (0, CrOp::Write { gpr: Some(r) }) => {
            let v = read_gpr(&inner.state, r);
            set_cr0(vcpu, inner, v)
        }
        (4, CrOp::Write { gpr: Some(r) }) => {
            let v = read_gpr(&inner.state, r);
            set_cr4(vcpu, inner, v)
        }
        (8, CrOp::Write { gpr: Some(r) }) => {
            let previous = inner.state.cr8;
            let v = read_gpr(&inner.state, r);
            if set_cr8(&mut inner.state, v).is_err() {
                inner.state.queue_exception(13, Some(0));
                return Ok(Next::Guest);
            }
            skip_instruction(vcpu, inner, 3);
            if vcpu.shared.irq.in_kernel {
                // The TPR of the in-kernel APIC; a lowered one may let a held
                // interrupt in at the next entry.
                crate::irq::lapic::set_cr8(vcpu, v);
                return Ok(Next::Guest);
            }
            // A lowered TPR may unblock an interrupt user space holds back: tell it
            // (upstream's KVM_EXIT_SET_TPR without an in-kernel LAPIC).
            if v < previous {
                vcpu.run.set_simple(uapi::KVM_EXIT_SET_TPR);
                return Ok(Next::User);
            }
            return Ok(Next::Guest);
        }
        (0 | 4 | 8, CrOp::Read { gpr: Some(r) }) => {
            if cr == 8 && vcpu.shared.irq.in_kernel {
                inner.state.cr8 = (vcpu.shared.irq.apic.lock().tpr() >> 4) as u64;
            }
            let s = &mut inner.state;
            let v = match cr {
                0 => s.cr0,
                4 => s.cr4,
                _ => s.cr8,
            };
            s.gprs[r as usize & 15] = v;
            Ok(())
        }
        (0, CrOp::Clts) => {
            inner.state.cr0 &= !cr0::TS;
            Ok(())
        }
        (0, CrOp::Lmsw { msw }) => {
            // LMSW loads PE/MP/EM/TS but cannot clear PE; a refused value is ignored.
            let v = (inner.state.cr0 & !0xe) | (msw as u64 & 0xf);
            let _ = set_cr0(vcpu, inner, v);
            Ok(())
        }
        _ => {
            vcpu.run.set_internal_error(
                crate::run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON,
                &[0x1_0000 | cr as u64, inner.state.rip],
            );
            return Ok(Next::User);
        }
    };
    match result {
        Ok(()) => skip_instruction(vcpu, inner, 3),
        Err(Refused) => inner.state.queue_exception(13, Some(0)),
    }
    Ok(Next::Guest)
}
