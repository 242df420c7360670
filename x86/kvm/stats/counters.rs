// SPDX-License-Identifier: GPL-2.0
//! The counters of a VM and of a vCPU.

use crate::stats_desc::{vcpu, vm, Desc};
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::new_mutex;

/// `N` u64 statistics in upstream's struct order.
pub(crate) struct Counters<const N: usize>([AtomicU64; N]);

impl<const N: usize> Counters<N> {
    pub(crate) const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        Counters([ZERO; N])
    }

    /// Adds `n` to word `i`. Single writer only (a vCPU's own thread): a
    /// relaxed load and store, no locked instruction.
    #[inline]
    pub(crate) fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.0.get(i) {
            c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
        }
    }

    #[inline]
    pub(crate) fn inc(&self, i: usize) {
        self.add(i, 1);
    }

    /// Adds `n` (two's complement for a decrease) with an atomic add: for
    /// counters several threads write.
    #[inline]
    pub(crate) fn add_shared(&self, i: usize, n: u64) {
        if let Some(c) = self.0.get(i) {
            c.fetch_add(n, Relaxed);
        }
    }

    #[inline]
    pub(crate) fn set(&self, i: usize, v: u64) {
        if let Some(c) = self.0.get(i) {
            c.store(v, Relaxed);
        }
    }

    pub(crate) fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Relaxed))
    }

    /// The sum of a statistic's words (one, or a histogram's buckets).
    pub(crate) fn value(&self, d: &Desc) -> u64 {
        let w = d.word as usize;
        (w..w + d.size as usize).fold(0u64, |s, i| s.wrapping_add(self.get(i)))
    }

    /// Zeroes a statistic (debugfs write of 0).
    pub(crate) fn clear(&self, d: &Desc) {
        let w = d.word as usize;
        for i in w..w + d.size as usize {
            self.set(i, 0);
        }
    }

    pub(crate) fn snapshot(&self, out: &mut [u64]) {
        for (o, c) in out.iter_mut().zip(self.0.iter()) {
            *o = c.load(Relaxed);
        }
    }
}

/// A vCPU's statistics. Shared (`Arc`) by the vCPU, its stats files and its
/// VM's list (which keeps them after the vCPU's file is closed, as upstream's
/// vCPUs live until their VM goes).
pub(crate) struct VcpuStats {
    pub(crate) c: Counters<{ vcpu::WORDS }>,
    pub(crate) vcpu_id: u32,
    /// The thread that last entered the guest (debugfs vcpuN/pid; 0 before).
    pub(crate) pid: AtomicI32,
    /// The TSC offset of the last entry (debugfs vcpuN/tsc-offset).
    pub(crate) tsc_offset: AtomicU64,
}

/// A VM's statistics, and what the debugfs files need to sum its vCPUs'.
#[pin_data(PinnedDrop)]
pub(crate) struct VmStats {
    pub(crate) c: Counters<{ vm::WORDS }>,
    /// The creating process (upstream's stats id "kvm-<pid>" and the debugfs
    /// directory name "<pid>-<fd>").
    pub(crate) pid: u32,
    /// Every vCPU ever created in this VM. A leaf lock: taken under the VM's
    /// mutex (vCPU creation) and under the debugfs VM list; nothing is taken
    /// under it; never held across guest entry.
    #[pin]
    pub(crate) vcpus: Mutex<KVec<Arc<VcpuStats>>>,
    /// This VM's debugfs directory and the data of its files (set once the
    /// VM has its fd number).
    #[pin]
    pub(crate) debugfs: Mutex<Option<super::debugfs::VmDir>>,
}

impl VmStats {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(VmStats {
            c: Counters::new(),
            pid: kernel::current!().pid() as u32,
            vcpus <- new_mutex!(KVec::new(), "VmStats::vcpus"),
            debugfs <- new_mutex!(None, "VmStats::debugfs"),
        })
    }

    /// The counters of a new vCPU, listed in the VM.
    pub(crate) fn new_vcpu(&self, vcpu_id: u32) -> Result<Arc<VcpuStats>> {
        let s = Arc::new(
            VcpuStats { c: Counters::new(), vcpu_id, pid: AtomicI32::new(0), tsc_offset: AtomicU64::new(0) },
            GFP_KERNEL,
        )?;
        self.vcpus.lock().push(s.clone(), GFP_KERNEL)?;
        // Only the directory is lost if this fails, as upstream's.
        let _ = super::debugfs::vcpu_created(self, &s);
        Ok(s)
    }

    /// A vCPU statistic summed over this VM's vCPUs.
    pub(crate) fn vcpu_sum(&self, d: &Desc) -> u64 {
        self.vcpus.lock().iter().fold(0u64, |s, v| s.wrapping_add(v.c.value(d)))
    }
}

#[pinned_drop]
impl PinnedDrop for VmStats {
    fn drop(self: Pin<&mut Self>) {
        // Off the debugfs VM list, then the directory (which waits for reads
        // in progress), before the counters go.
        super::debugfs::vm_destroyed(&self);
    }
}
