//! Memory slots: validating KVM_SET_USER_MEMORY_REGION(2) requests as upstream's
//! __kvm_set_memory_region does, and finding the slot of a guest frame.
//!
//! Pure logic: the kernel glue owns the slots (with their pinned pages and dirty
//! bitmaps) and asks this module what a request means. As a crate (cargo) this is
//! `no_std`; kvm.ko includes it as a module.
#![cfg_attr(not(kvm_kernel), no_std)]
// Slot fields and limits are named as in linux/kvm.h.
#![allow(missing_docs)]

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// `KVM_MEM_LOG_DIRTY_PAGES`.
pub const MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// `KVM_MEM_READONLY`.
pub const MEM_READONLY: u32 = 1 << 1;
/// `KVM_MEM_GUEST_MEMFD` (not supported: no guest_memfd).
pub const MEM_GUEST_MEMFD: u32 = 1 << 2;
/// The flags this implementation accepts.
pub const VALID_FLAGS: u32 = MEM_LOG_DIRTY_PAGES | MEM_READONLY;

/// Address spaces (KVM_CAP_MULTI_ADDRESS_SPACE): 0 is the normal one, 1 what
/// a vCPU in System Management Mode sees (upstream's KVM_MAX_NR_ADDRESS_SPACES
/// on x86). Bits 31:16 of a slot number pick the address space; each has its
/// own slots (ids and ranges are only compared within one).
pub const ADDRESS_SPACES: u32 = 2;

/// Slots per VM and address space (KVM_CAP_NR_MEMSLOTS).
pub const MAX_SLOTS: u16 = 509;
/// Upstream's KVM_MEM_MAX_NR_PAGES on 64-bit hosts: (1 << 31) - 1 pages.
pub const MAX_NR_PAGES: u64 = (1 << 31) - 1;
/// Highest user-space address + 1 (x86-64, 4-level paging: TASK_SIZE_MAX).
pub const USER_ADDR_END: u64 = (1 << 47) - PAGE_SIZE;

/// A slot as user space described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDesc {
    pub id: u16,
    pub base_gfn: u64,
    pub npages: u64,
    pub hva: u64,
    pub flags: u32,
}

impl SlotDesc {
    pub fn end_gfn(&self) -> u64 {
        self.base_gfn + self.npages
    }
    pub fn contains(&self, gfn: u64) -> bool {
        gfn >= self.base_gfn && gfn < self.end_gfn()
    }
    /// The user address backing guest frame `gfn` (which must be in the slot).
    pub fn hva_of(&self, gfn: u64) -> u64 {
        self.hva + ((gfn - self.base_gfn) << PAGE_SHIFT)
    }
}

/// A request (`struct kvm_userspace_memory_region2`, the fields that matter).
#[derive(Clone, Copy, Debug, Default)]
pub struct Request {
    pub slot: u32,
    pub flags: u32,
    pub guest_phys_addr: u64,
    pub memory_size: u64,
    pub userspace_addr: u64,
}

/// What a valid request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Create(SlotDesc),
    Delete(SlotDesc),
    /// Same memory, new guest-physical base.
    Move { old: SlotDesc, new: SlotDesc },
    /// Only the flags (dirty logging) change.
    FlagsOnly { old: SlotDesc, new: SlotDesc },
    /// Identical to the existing slot.
    Unchanged,
}

/// Why a request is refused; the errno upstream returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// EINVAL
    Invalid,
    /// EEXIST: overlaps another slot.
    Overlap,
}

/// Checks `req` against the existing slots of its address space (`req.slot >> 16`;
/// upstream's __kvm_set_memory_region).
pub fn check_request(req: &Request, slots: &[SlotDesc]) -> Result<Change, Refusal> {
    use Refusal::*;
    if req.flags & !VALID_FLAGS != 0 {
        return Err(Invalid);
    }
    let as_id = req.slot >> 16;
    let id = (req.slot & 0xffff) as u16;
    if as_id >= ADDRESS_SPACES || id >= MAX_SLOTS {
        return Err(Invalid);
    }
    if req.memory_size % PAGE_SIZE != 0
        || req.guest_phys_addr % PAGE_SIZE != 0
        || req.userspace_addr % PAGE_SIZE != 0
    {
        return Err(Invalid);
    }
    if req.guest_phys_addr.checked_add(req.memory_size).is_none() {
        return Err(Invalid);
    }
    // access_ok(): the whole range is user space.
    match req.userspace_addr.checked_add(req.memory_size) {
        Some(end) if end <= USER_ADDR_END => {}
        _ => return Err(Invalid),
    }
    let npages = req.memory_size >> PAGE_SHIFT;
    if npages > MAX_NR_PAGES {
        return Err(Invalid);
    }
    let old = slots.iter().copied().find(|s| s.id == id);
    if npages == 0 {
        return old.map(Change::Delete).ok_or(Invalid);
    }
    let new = SlotDesc {
        id,
        base_gfn: req.guest_phys_addr >> PAGE_SHIFT,
        npages,
        hva: req.userspace_addr,
        flags: req.flags,
    };
    let overlaps = |n: &SlotDesc| {
        slots.iter().any(|s| s.id != id && s.base_gfn < n.end_gfn() && n.base_gfn < s.end_gfn())
    };
    match old {
        None => {
            if overlaps(&new) {
                return Err(Overlap);
            }
            Ok(Change::Create(new))
        }
        Some(old) => {
            // The memory of a slot cannot change, nor can READONLY.
            if new.hva != old.hva || new.npages != old.npages || (new.flags ^ old.flags) & MEM_READONLY != 0 {
                return Err(Invalid);
            }
            if new.base_gfn != old.base_gfn {
                if overlaps(&new) {
                    return Err(Overlap);
                }
                Ok(Change::Move { old, new })
            } else if new.flags != old.flags {
                Ok(Change::FlagsOnly { old, new })
            } else {
                Ok(Change::Unchanged)
            }
        }
    }
}

/// The slot holding `gfn`, if any.
pub fn find<'a>(slots: &'a [SlotDesc], gfn: u64) -> Option<&'a SlotDesc> {
    slots.iter().find(|s| s.contains(gfn))
}

#[cfg(test)]
mod tests;
