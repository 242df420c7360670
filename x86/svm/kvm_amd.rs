// SPDX-License-Identifier: GPL-2.0
//! kvm-amd.ko: AMD SVM support for kvm.ko.
//!
//! Module init follows upstream's svm_init: check that this CPU can do SVM, then
//! kvm_init with the SVM ops, which runs hardware_setup, enables SVM on every CPU
//! and creates /dev/kvm.

use kernel::prelude::*;

mod dump;
mod npt;
mod params;
mod svm;
mod vcpu;

module! {
    type: KvmAmd,
    name: "kvm_amd",
    author: "kvm-rs developers",
    description: "KVM support for AMD SVM, in Rust",
    license: "GPL",
}

struct KvmAmd {
    _registration: kvm::Registration<svm::Svm>,
}

impl kernel::Module for KvmAmd {
    fn init(module: &'static ThisModule) -> Result<Self> {
        if !svm::kvm_is_svm_supported() {
            return Err(kvm::cpu::eopnotsupp());
        }
        let registration = kvm::kvm_init::<svm::Svm>(module)?;
        params::LIVE.store(true, core::sync::atomic::Ordering::Release);
        Ok(KvmAmd { _registration: registration })
    }
}
