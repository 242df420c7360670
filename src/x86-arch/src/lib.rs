//! x86 architectural definitions shared by kvm.ko and the vendor modules.
//!
//! Values come from the AMD APM vol. 2/3 and the Intel SDM vol. 3/4. As a crate
//! (cargo) this is `no_std`; inside kvm.ko it is compiled as a module (cfg kvm_kernel).
#![cfg_attr(not(kvm_kernel), no_std)]
// Register and bit names are the manuals' own; each table says where it comes from.
#![allow(missing_docs)]

pub mod cpuid;
pub mod msr;
pub mod pvclock;
pub mod regs;
pub mod smram;
pub mod validity;
pub mod vmcb;
