// SPDX-License-Identifier: GPL-2.0
//! KVM_IOEVENTFD (upstream virt/kvm/eventfd.c): a guest write to a port or
//! an MMIO address (optionally only with a given value) signals an eventfd
//! instead of exiting to user space. Writes that match no ioeventfd take the
//! normal path (in-kernel device or exit).

use super::irqfd::EventfdCtx;
use crate::uapi;
use crate::user;
use crate::vm::Vm;
use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;

/// `KVM_IOEVENTFD_FLAG_*` (linux/kvm.h).
const FLAG_DATAMATCH: u32 = 1 << 0;
const FLAG_PIO: u32 = 1 << 1;
const FLAG_DEASSIGN: u32 = 1 << 2;
const FLAG_VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
const VALID_FLAGS: u32 = FLAG_DATAMATCH | FLAG_PIO | FLAG_DEASSIGN | FLAG_VIRTIO_CCW_NOTIFY;
/// Upstream's NR_IOBUS_DEVS: devices per bus.
const MAX_IOEVENTFDS: usize = 1000;

/// One registered ioeventfd.
pub(crate) struct Ioeventfd {
    pio: bool,
    addr: u64,
    /// 0: any access length (and no data match).
    len: u32,
    datamatch: Option<u64>,
    eventfd: EventfdCtx,
}

impl Ioeventfd {
    /// Whether a guest write of `len` bytes of `data` at `addr` triggers it.
    fn matches(&self, pio: bool, addr: u64, len: u32, data: u64) -> bool {
        if self.pio != pio || self.addr != addr {
            return false;
        }
        if self.len == 0 {
            return true;
        }
        if self.len != len {
            return false;
        }
        match self.datamatch {
            None => true,
            Some(v) => {
                let mask = if len >= 8 { u64::MAX } else { (1u64 << (len * 8)) - 1 };
                v & mask == data & mask
            }
        }
    }

    /// Upstream ioeventfd_check_collision: same bus, address and length, and
    /// data matches that could both fire.
    fn collides(&self, other: &Ioeventfd) -> bool {
        self.pio == other.pio
            && self.addr == other.addr
            && (self.len == 0 || other.len == 0 || self.len == other.len)
            && (self.datamatch.is_none() || other.datamatch.is_none() || self.datamatch == other.datamatch)
    }
}

/// The VM's ioeventfds. `count` lets the exit paths skip the mutex when none
/// are registered.
#[pin_data]
pub(crate) struct Ioeventfds {
    count: AtomicU32,
    /// The registered ioeventfds (KVM_IOEVENTFD changes it; guest writes read
    /// it). Nothing is taken under it but the eventfd's own lock.
    #[pin]
    list: kernel::sync::Mutex<KVec<Ioeventfd>>,
}

impl Ioeventfds {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Ioeventfds {
            count: AtomicU32::new(0),
            list <- kernel::new_mutex!(KVec::new(), "Ioeventfds::list"),
        })
    }

    /// A guest write: signals the matching ioeventfd, if any. Returns whether
    /// one matched (the write is then complete).
    pub(crate) fn write(&self, pio: bool, addr: u64, len: u32, data: u64) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let list = self.list.lock();
        match list.iter().find(|e| e.matches(pio, addr, len, data)) {
            Some(e) => {
                e.eventfd.signal();
                true
            }
            None => false,
        }
    }
}

/// KVM_IOEVENTFD.
pub(crate) fn kvm_ioeventfd(vm: &Vm, arg: usize) -> Result {
    let a: uapi::kvm_ioeventfd = user::read(arg)?;
    if a.flags & !VALID_FLAGS != 0 {
        return Err(EINVAL);
    }
    if !matches!(a.len, 0 | 1 | 2 | 4 | 8) {
        return Err(EINVAL);
    }
    if a.addr.checked_add(a.len as u64).is_none() {
        return Err(EINVAL);
    }
    if a.len == 0 && a.flags & FLAG_DATAMATCH != 0 {
        return Err(EINVAL);
    }
    // The virtio-ccw bus is s390's.
    if a.flags & FLAG_VIRTIO_CCW_NOTIFY != 0 {
        return Err(EINVAL);
    }
    let eventfd = EventfdCtx::from_fd(a.fd)?;
    let new = Ioeventfd {
        pio: a.flags & FLAG_PIO != 0,
        addr: a.addr,
        len: a.len,
        datamatch: if a.flags & FLAG_DATAMATCH != 0 { Some(a.datamatch) } else { None },
        eventfd,
    };
    let fds = &vm.irq.ioeventfds;
    let mut list = fds.list.lock();
    if a.flags & FLAG_DEASSIGN != 0 {
        let i = list
            .iter()
            .position(|e| {
                e.pio == new.pio
                    && e.addr == new.addr
                    && e.len == new.len
                    && e.datamatch == new.datamatch
                    && e.eventfd.is(&new.eventfd)
            })
            .ok_or(ENOENT)?;
        let removed = crate::kvec_ext::swap_remove(&mut list, i);
        fds.count.store(list.len() as u32, Ordering::Release);
        drop(list);
        drop(removed);
        return Ok(());
    }
    if list.iter().any(|e| e.collides(&new)) {
        return Err(EEXIST);
    }
    if list.len() >= MAX_IOEVENTFDS {
        return Err(ENOSPC);
    }
    list.push(new, GFP_KERNEL)?;
    fds.count.store(list.len() as u32, Ordering::Release);
    Ok(())
}
