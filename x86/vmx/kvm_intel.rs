// SPDX-License-Identifier: GPL-2.0
//! kvm-intel.ko: Intel VMX support for kvm.ko.

use kernel::prelude::*;

// A host-tested crate: its public items are public for cargo, crate-private here.
#[allow(unreachable_pub)]
#[path = "../../src/vmcs-config/src/lib.rs"]
mod vmcs_config;

mod dump;
mod ept;
mod loaded_vmcs;
mod params;
mod vcpu;
mod vmcs;
mod vmx;
mod vmx_insn;
mod vpid;

module! {
    type: KvmIntel,
    name: "kvm_intel",
    author: "kvm-rs developers",
    description: "KVM support for Intel VMX, in Rust",
    license: "GPL",
}

struct KvmIntel {
    _registration: kvm::Registration<vmx::Vmx>,
}

impl kernel::Module for KvmIntel {
    fn init(module: &'static ThisModule) -> Result<Self> {
        if !vmx::kvm_is_vmx_supported() {
            return Err(kvm::cpu::eopnotsupp());
        }
        let registration = kvm::kvm_init::<vmx::Vmx>(module)?;
        params::LIVE.store(true, core::sync::atomic::Ordering::Release);
        Ok(KvmIntel { _registration: registration })
    }
}
