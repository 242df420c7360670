// SPDX-License-Identifier: GPL-2.0
//! The MSR filter of a VM (KVM_X86_SET_MSR_FILTER; upstream's
//! kvm_vm_ioctl_set_msr_filter, kvm_add_msr_filter, kvm_msr_allowed).
//!
//! User space gives up to 16 ranges, each a base MSR, a count, READ and/or
//! WRITE and a bitmap (bit set: allowed), plus a default for MSRs no range
//! covers. A guest RDMSR/WRMSR that the filter denies is not performed: it
//! becomes a KVM_EXIT_X86_RDMSR/WRMSR exit with reason FILTER if user space
//! asked for those (KVM_CAP_X86_USER_SPACE_MSR), otherwise a #GP. Accesses
//! by user space (KVM_GET/SET_MSRS) and the x2APIC MSRs (0x800-0x8ff) are
//! never filtered.
//!
//! A filter never changes once built: a new KVM_X86_SET_MSR_FILTER builds a
//! whole new one and swaps it in under the VM's spinlock, so a vCPU sees the
//! old filter or the new one, never a mix (upstream's RCU pointer swap).

use crate::uapi;
use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::types::FromBytes;
use kernel::uaccess::UserSlice;

/// `struct kvm_msr_filter_range` as user space lays it out (the bindgen type
/// holds a raw pointer, which cannot be read from user memory as bytes).
#[repr(C)]
#[derive(Clone, Copy)]
struct UserRange {
    flags: u32,
    nmsrs: u32,
    base: u32,
    _pad: u32,
    bitmap: u64,
}

/// `struct kvm_msr_filter`.
#[repr(C)]
#[derive(Clone, Copy)]
struct UserFilter {
    flags: u32,
    _pad: u32,
    ranges: [UserRange; uapi::KVM_MSR_FILTER_MAX_RANGES as usize],
}

const _: () = assert!(core::mem::size_of::<UserFilter>() == core::mem::size_of::<uapi::kvm_msr_filter>());
const _: () = assert!(core::mem::size_of::<UserRange>() == core::mem::size_of::<uapi::kvm_msr_filter_range>());

// SAFETY: integers only, padding explicit: every bit pattern is a valid value.
unsafe impl FromBytes for UserFilter {}

/// One range: MSRs `base..base+nmsrs` (32-bit arithmetic, as upstream) for
/// the accesses in `flags`.
struct Range {
    flags: u32,
    base: u32,
    nmsrs: u32,
    bitmap: KVec<u8>,
}

/// A built filter (immutable).
pub(crate) struct MsrFilter {
    default_allow: bool,
    ranges: KVec<Range>,
}

impl MsrFilter {
    /// Whether the guest may access MSR `index` for `kind`
    /// (KVM_MSR_FILTER_READ or KVM_MSR_FILTER_WRITE): the first range that
    /// covers the MSR for that kind decides, else the default.
    pub(crate) fn allows(&self, index: u32, kind: u32) -> bool {
        for r in self.ranges.iter() {
            let end = r.base.wrapping_add(r.nmsrs);
            if index >= r.base && index < end && r.flags & kind != 0 {
                let bit = (index - r.base) as usize;
                return r.bitmap.get(bit / 8).map_or(false, |b| b & (1 << (bit % 8)) != 0);
            }
        }
        self.default_allow
    }

    /// Whether the filter can deny anything (VMX then intercepts every MSR).
    pub(crate) fn may_deny(&self) -> bool {
        !self.default_allow || !self.ranges.is_empty()
    }
}

/// Bytes of a range's bitmap: whole longs, as upstream copies
/// (BITS_TO_LONGS(nmsrs) * sizeof(long)).
fn bitmap_bytes(nmsrs: u32) -> usize {
    (nmsrs as usize).div_ceil(64) * 8
}

/// Validates and copies one range (upstream's kvm_add_msr_filter): None for
/// a range with no MSRs, which is ignored.
fn build_range(u: &UserRange) -> Result<Option<Range>> {
    if u.nmsrs == 0 {
        return Ok(None);
    }
    if u.flags & !uapi::KVM_MSR_FILTER_RANGE_VALID_MASK != 0 || u.flags == 0 {
        return Err(EINVAL);
    }
    let size = bitmap_bytes(u.nmsrs);
    if size == 0 || size > uapi::KVM_MSR_FILTER_MAX_BITMAP_SIZE as usize {
        return Err(EINVAL);
    }
    let mut bitmap = KVec::from_elem(0u8, size, GFP_KERNEL_ACCOUNT)?;
    UserSlice::new(u.bitmap as usize, size).reader().read_slice(&mut bitmap[..])?;
    Ok(Some(Range { flags: u.flags, base: u.base, nmsrs: u.nmsrs, bitmap }))
}

/// Reads and checks a `struct kvm_msr_filter` at `arg` and builds the filter
/// (errnos and their order as upstream).
pub(super) fn build(arg: usize) -> Result<Arc<MsrFilter>> {
    let f: UserFilter = crate::user::read(arg)?;
    if f.flags & !uapi::KVM_MSR_FILTER_VALID_MASK != 0 {
        return Err(EINVAL);
    }
    let default_allow = f.flags & uapi::KVM_MSR_FILTER_DEFAULT_DENY == 0;
    let empty = f.ranges.iter().all(|r| r.nmsrs == 0);
    // Denying everything would leave the guest no MSR at all.
    if empty && !default_allow {
        return Err(EINVAL);
    }
    let mut ranges = KVec::with_capacity(f.ranges.len(), GFP_KERNEL_ACCOUNT)?;
    for u in f.ranges.iter() {
        if let Some(r) = build_range(u)? {
            ranges.push(r, GFP_KERNEL_ACCOUNT)?;
        }
    }
    Ok(Arc::new(MsrFilter { default_allow, ranges }, GFP_KERNEL_ACCOUNT)?)
}
