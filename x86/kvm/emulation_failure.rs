// SPDX-License-Identifier: GPL-2.0
//! An instruction kvm.ko had to emulate and could not (upstream's
//! handle_emulation_failure and prepare_emulation_failure_exit), and
//! KVM_CAP_EXIT_ON_EMULATION_FAILURE.
//!
//! As upstream: the guest gets #UD, and when it runs at CPL 0 (where a #UD
//! from an instruction that works on hardware is most likely fatal) user space
//! is also told with KVM_EXIT_INTERNAL_ERROR (suberror EMULATION), the #UD
//! still queued. With the capability enabled user space is always told and no
//! #UD is queued: it decides (the selftests skip the instruction).

use crate::run::Next;
use crate::uapi;
use crate::vcpu::{Vcpu, VcpuInner};
use crate::vm::Vm;
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// The instruction bytes the exit carries at most (kvm_run's insn_bytes).
const MAX_INSN_BYTES: usize = 15;

/// KVM_ENABLE_CAP(KVM_CAP_EXIT_ON_EMULATION_FAILURE): args[0] is 0 or 1.
pub(crate) fn enable_cap(vm: &Vm, cap: &uapi::kvm_enable_cap) -> Result {
    if cap.args[0] & !1 != 0 {
        return Err(EINVAL);
    }
    vm.switches.exit_on_emulation_error.store(cap.args[0] != 0, Ordering::Relaxed);
    Ok(())
}

/// Upstream's handle_emulation_failure: `insn` holds the instruction bytes
/// fetched (empty if none could be).
pub(crate) fn handle_emulation_failure(vcpu: &Vcpu, inner: &mut VcpuInner, insn: &[u8]) -> Result<Next> {
    if vcpu.vm.switches.exit_on_emulation_error.load(Ordering::Relaxed) {
        prepare_exit(vcpu, inner, insn);
        return Ok(Next::User);
    }
    inner.state.queue_exception(6, None);
    if inner.state.cpl() == 0 {
        prepare_exit(vcpu, inner, insn);
        return Ok(Next::User);
    }
    Ok(Next::Guest)
}

/// KVM_EXIT_INTERNAL_ERROR with suberror KVM_INTERNAL_ERROR_EMULATION laid out
/// as upstream's prepare_emulation_failure_exit: data[0] the flags; with
/// instruction bytes, data[1..3] hold insn_size and insn_bytes (padded with
/// NOPs); then the vendor's five exit-information words.
fn prepare_exit(vcpu: &Vcpu, inner: &VcpuInner, insn: &[u8]) {
    let mut data = [0u64; 8];
    let mut n = 1;
    let insn = &insn[..insn.len().min(MAX_INSN_BYTES)];
    if !insn.is_empty() {
        data[0] = uapi::KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES as u64;
        let mut bytes = [0x90u8; 16];
        bytes[0] = insn.len() as u8;
        for (d, b) in bytes[1..].iter_mut().zip(insn) {
            *d = *b;
        }
        let (lo, hi) = bytes.split_at(8);
        let word = |b: &[u8]| b.iter().rev().fold(0u64, |acc, x| (acc << 8) | *x as u64);
        data[1] = word(lo);
        data[2] = word(hi);
        n = 3;
    }
    let e = inner.vendor.exit_info();
    let info = [e.reason as u64, e.info1, e.info2, e.intr_info as u64, e.error_code as u64];
    for (d, i) in data[n..].iter_mut().zip(info) {
        *d = i;
    }
    vcpu.run.set_internal_error(uapi::KVM_INTERNAL_ERROR_EMULATION, &data[..n + 5]);
}
