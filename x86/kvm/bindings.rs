// SPDX-License-Identifier: GPL-2.0
//! Raw bindings from our own bindgen run over include/kvm_kernel.h (see Kbuild).
//!
//! Nothing outside the wrapper modules of this crate (`cpu`, `misc_device`,
//! `virtualization`) touches these directly.
#![allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    unreachable_pub,
    unknown_lints,
    unnecessary_transmutes,
    clippy::all
)]

use kernel::ffi;

include!("generated/kernel_bindings.rs");
