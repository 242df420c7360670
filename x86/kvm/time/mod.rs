// SPDX-License-Identifier: GPL-2.0
//! Time for guests: the VM clock (KVM_GET/SET_CLOCK), the guest TSC (offsets,
//! synchronization of vCPUs, IA32_TSC and IA32_TSC_ADJUST, KVM_SET_TSC_KHZ)
//! and kvmclock, the pvclock records kvm.ko keeps in guest memory.
//!
//! Locking: VmClock's master snapshot and the VM's TscSync are spinlocks
//! taken under a vCPU's mutex or with no lock held, never nested in each
//! other; nothing sleeps under them. Records are written with no spinlock
//! held (guest memory is written through user mappings, which may fault).

pub(crate) mod kvmclock;
pub(crate) mod steal_time;
pub(crate) mod tsc;
pub(crate) mod vm_clock;
