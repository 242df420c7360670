// SPDX-License-Identifier: GPL-2.0
//! KVM_GET/SET_NESTED_STATE for vCPUs that cannot run nested guests.
//!
//! kvm.ko does not offer SVM or VMX to guests, so a vCPU's nested state is
//! always "not in guest mode, no VMXON, GIF set": the 128-byte header of
//! `struct kvm_nested_state` with no payload, in the vendor's format. That is
//! what GET returns, and SET accepts exactly such states with upstream's
//! checks and errnos (upstream answers the same for a vCPU whose CPUID lacks
//! SVM/VMX). KVM_CAP_NESTED_STATE gives upstream's buffer size for the
//! vendor, so VMMs allocate as much as upstream's modules need.

use crate::uapi;
use crate::user;
use kernel::prelude::*;

/// `sizeof(struct kvm_nested_state)`: the header.
const HEADER: usize = 128;
const FORMAT_SVM: u16 = uapi::KVM_STATE_NESTED_FORMAT_SVM as u16;
const GUEST_MODE: u16 = uapi::KVM_STATE_NESTED_GUEST_MODE as u16;
const RUN_PENDING: u16 = uapi::KVM_STATE_NESTED_RUN_PENDING as u16;
const EVMCS: u16 = uapi::KVM_STATE_NESTED_EVMCS as u16;
const MTF_PENDING: u16 = uapi::KVM_STATE_NESTED_MTF_PENDING as u16;
const GIF_SET: u16 = uapi::KVM_STATE_NESTED_GIF_SET as u16;
/// The VMX header's "no such region" address (INVALID_GPA).
const INVALID_GPA: u64 = u64::MAX;

fn vendor_format() -> Result<u16> {
    crate::virtualization::vendor().map(|v| v.nested_state_format()).ok_or(ENODEV)
}

/// KVM_CAP_NESTED_STATE: the largest state upstream's vendor module returns
/// (header + VMCB12, or header + VMCS12 + shadow VMCS12).
pub(crate) fn max_size() -> isize {
    match vendor_format() {
        Ok(FORMAT_SVM) => (HEADER + uapi::KVM_STATE_NESTED_SVM_VMCB_SIZE as usize) as isize,
        Ok(_) => (HEADER + 2 * uapi::KVM_STATE_NESTED_VMX_VMCS_SIZE as usize) as isize,
        Err(_) => 0,
    }
}

/// The header of a vCPU outside guest mode.
fn header(format: u16) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[2..4].copy_from_slice(&format.to_le_bytes());
    h[4..8].copy_from_slice(&(HEADER as u32).to_le_bytes());
    if format == FORMAT_SVM {
        h[0..2].copy_from_slice(&GIF_SET.to_le_bytes());
    } else {
        h[8..16].copy_from_slice(&INVALID_GPA.to_le_bytes());
        h[16..24].copy_from_slice(&INVALID_GPA.to_le_bytes());
    }
    h
}

/// KVM_GET_NESTED_STATE: E2BIG (with the size written back) if the buffer
/// announced in `size` is smaller than the header.
pub(crate) fn get(arg: usize) -> Result<isize> {
    let h = header(vendor_format()?);
    // `size` is the first thing read, at arg + 4: a pointer at the very end of
    // the address space must be EFAULT (as upstream's get_user), not an
    // arithmetic overflow (a panic with CONFIG_RUST_OVERFLOW_CHECKS).
    let size_at = arg.checked_add(4).ok_or(EFAULT)?;
    let user_size: u32 = user::read(size_at)?;
    if (user_size as usize) < HEADER {
        user::write(size_at, &(HEADER as u32))?;
        return Err(E2BIG);
    }
    user::write_slice(arg, &h[..])?;
    Ok(0)
}

fn u16_at(h: &[u8; HEADER], off: usize) -> u16 {
    u16::from_le_bytes([h[off], h[off + 1]])
}

fn u64_at(h: &[u8; HEADER], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[off..off + 8]);
    u64::from_le_bytes(b)
}

/// KVM_SET_NESTED_STATE: only "not in guest mode" states are valid here.
pub(crate) fn set(arg: usize) -> Result<isize> {
    let format = vendor_format()?;
    let mut h = [0u8; HEADER];
    kernel::uaccess::UserSlice::new(arg, HEADER).reader().read_slice(&mut h)?;
    let flags = u16_at(&h, 0);
    let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if (size as usize) < HEADER
        || flags & !(RUN_PENDING | GUEST_MODE | EVMCS | MTF_PENDING | GIF_SET) != 0
        || (flags & RUN_PENDING != 0 && flags & GUEST_MODE == 0)
        || u16_at(&h, 2) != format
    {
        return Err(EINVAL);
    }
    let valid = if format == FORMAT_SVM {
        // Without SVM for the guest: GIF set and nothing else.
        flags == GIF_SET
    } else {
        // No VMXON region: no VMCS12, no SMM state, at most the EVMCS flag.
        u64_at(&h, 8) == INVALID_GPA && u64_at(&h, 16) == INVALID_GPA && u16_at(&h, 24) == 0 && flags & !EVMCS == 0
    };
    if !valid {
        return Err(EINVAL);
    }
    Ok(0)
}
