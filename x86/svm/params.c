// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_amd's module parameters. The 6.12 `kernel` crate's module! macro has no
 * parameters, so they are declared here; the Rust code reads the values
 * (x86/svm/params.rs). Only parameters that mean something are declared.
 */
#include <linux/moduleparam.h>

/* Nested paging (NPT). Shadow paging is not implemented: npt=0 refuses to load. */
bool kvm_amd_npt = true;
module_param_named(npt, kvm_amd_npt, bool, 0444);
