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

use kernel::prelude::*;

#[path = "../../src/kvm-uapi/src/lib.rs"]
pub mod uapi;

#[path = "../../src/x86-arch/src/lib.rs"]
pub mod arch;

#[path = "../../src/supported-cpuid/src/lib.rs"]
pub mod supported_cpuid;

mod bindings;
pub mod caps;
pub mod cpu;
mod dev_ioctl;
pub mod kvm_init;
mod misc_device;
pub mod msr_list;
pub mod user;
mod virtualization;
pub mod x86_ops;

pub use kvm_init::{kvm_init, Registration};
pub use x86_ops::KvmX86Ops;

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
        Ok(KvmModule)
    }
}
