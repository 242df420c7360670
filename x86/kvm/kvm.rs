// SPDX-License-Identifier: GPL-2.0
//! kvm.ko: the vendor-neutral core of KVM for x86.
//!
//! Loaded alone it only offers its API to a vendor module: /dev/kvm appears when
//! kvm-amd.ko or kvm-intel.ko calls [`kvm_init::kvm_init`] with its [`KvmX86Ops`]
//! implementation, as upstream's vendor modules call kvm_x86_vendor_init + kvm_init.
//!
//! Layout of this crate:
//! - `uapi`, `arch`, `supported_cpuid`: the kernel-independent crates of src/,
//!   compiled here as modules (host-tested with cargo);
//! - `bindings` (raw bindgen output) and the small safe wrappers over it: `cpu`,
//!   `misc_device`, `user`;
//! - `x86_ops` (the vendor trait), `virtualization` (per-CPU enabling), `kvm_init`
//!   (registration), `dev_ioctl` (the /dev/kvm system ioctls), `caps`, `msr_list`.

// pin_init! of Vm (many fields) needs more than the default 128.
#![recursion_limit = "256"]

use kernel::prelude::*;

#[path = "../../src/kvm-uapi/src/lib.rs"]
pub mod uapi;

#[path = "../../src/x86-arch/src/lib.rs"]
pub mod arch;

#[path = "../../src/supported-cpuid/src/lib.rs"]
pub mod supported_cpuid;

#[path = "../../src/memslots/src/lib.rs"]
pub mod memslots;

#[path = "../../src/x86-emulator/src/lib.rs"]
pub mod emulator;

#[path = "../../src/irqchip/src/lib.rs"]
pub mod irqchip;

#[path = "../../src/kvm-stats/src/lib.rs"]
pub mod stats_desc;

pub mod arch_state;
mod bindings;
pub mod caps;
pub mod cpu;
mod cpuid;
mod coalesced_mmio;
mod cr;
mod dev_ioctl;
mod dirty_ring;
mod disable_exits;
pub mod feature_msrs;
mod emulate;
mod emulation_failure;
pub mod exit;
mod files;
mod forced_emulation;
mod fpu;
mod guest_debug;
mod heap;
mod hypercall;
mod irq;
mod mce;
pub mod kvm_init;
mod kvec_ext;
mod misc_device;
mod mmu_invalidate;
mod mmu_notifier;
pub mod mm;
pub mod msr_list;
mod msrs;
mod nested_state;
pub mod params;
mod quirks;
mod pre_fault;
mod platform_info;
mod pv_cpuid;
mod run;
mod run_page;
mod sigmask;
mod smm;
mod stats;
mod sync_regs;
mod tdp_mmu;
mod time;
mod trace;
pub mod user;
mod user_msr;
mod vcpu;
mod vfio_device;
mod virtualization;
mod vm;
pub mod x86_ops;

pub use kvm_init::{kvm_init, Registration};
pub use arch_state::ArchState;
pub use exit::{CrOp, Exit};
pub use x86_ops::{EntryParams, KvmX86Ops, TdpFormat, VendorVcpu};

module! {
    type: KvmModule,
    name: "kvm",
    author: "kvm-rs developers",
    description: "Kernel-based Virtual Machine core, in Rust",
    license: "GPL",
}

struct KvmModule;

impl kernel::Module for KvmModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        params::init();
        Ok(KvmModule)
    }
}
