//! The x86 instruction emulator of kvm.ko: a decoder for all prefixes and
//! addressing modes in real, protected and long mode, the guest page-table walk,
//! and the execution of the instructions guests use on MMIO (MOV forms incl.
//! moffs, MOVZX/MOVSX, STOS/MOVS incl. REP, ALU ops with memory operands, XCHG,
//! BT*).
//!
//! Generic over [`Env`] (registers are passed by value; memory through the
//! trait), so host tests drive it with plain arrays. Execution is all-or-nothing:
//! registers are only updated when the instruction completes, so the caller can
//! stop at an MMIO read, fetch the data from user space and execute again.
//! Never panics on any input (see the bounded random-bytes test).
#![cfg_attr(not(kvm_kernel), no_std)]
#![allow(missing_docs)]

pub mod decode;
pub mod exec;
pub mod flags;
pub mod paging;

pub use decode::{decode, Insn, Mode, Operand, Seg};
pub use exec::{execute, Env, Regs, Stop};

#[cfg(test)]
mod tests;
