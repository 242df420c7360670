// SPDX-License-Identifier: GPL-2.0
//! KVM's statistics (upstream's struct kvm_vm_stat / kvm_vcpu_stat, the
//! binary stats of virt/kvm/binary_stats.c and the debugfs files of
//! kvm_main.c).
//!
//! - `counters`: the values, as arrays of atomics in upstream's struct order
//!   (the descriptor tables and the file image are the host-tested crate
//!   src/kvm-stats, compiled here as `crate::stats_desc`);
//! - `hooks`: the one-line calls that the run loop, the emulator and the MMU
//!   make where an event happens;
//! - `fd`: KVM_GET_STATS_FD on the VM and vCPU files;
//! - `debugfs`: /sys/kernel/debug/kvm/<stat> (summed over VMs) and the
//!   per-VM directories <pid>-<fd>/<stat>.
//!
//! Concurrency: a vCPU's counters are written only by the thread running
//! that vCPU (it holds the vCPU's mutex), with a relaxed load and store, no
//! locked instruction; readers (the stats file, debugfs) read them without
//! a lock and may see a value a few events old, as upstream's readers do.
//! VM counters are changed with atomic adds (several vCPUs and ioctls write
//! them).

pub(crate) mod counters;
pub(crate) mod debugfs;
pub(crate) mod fd;
mod hooks;

pub(crate) use counters::{VcpuStats, VmStats};
pub(crate) use hooks::*;
