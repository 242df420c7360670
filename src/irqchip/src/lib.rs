//! The in-kernel irqchip's device models: register semantics and state only.
//!
//! Each model is a plain state machine: no locks, no timers, no allocation, no
//! panics on any input. Time comes in as a `now_ns` argument (host monotonic
//! nanoseconds), and what a register access causes beyond the model's own state
//! (an IPI, an EOI broadcast, a timer to re-arm, an output line that changed) is
//! returned to the caller. kvm.ko (x86/kvm/irq/) adds the hrtimers, locking,
//! kicks and eventfds; cargo tests the models on the host.
//!
//! The upstream counterparts: lapic.c, ioapic.c, i8259.c, i8254.c, irq_comm.c.
//! As a crate (cargo) this is `no_std`; kvm.ko includes it as a module, so the
//! files refer to each other with `super::`, never `crate::`.
#![cfg_attr(not(kvm_kernel), no_std)]
#![allow(missing_docs)]

pub mod types;
pub mod lapic;
pub mod ioapic;
pub mod pic;
pub mod pit;
pub mod routing;

#[cfg(test)]
mod test_rng;

pub use types::{DeliveryMode, DestMode, IrqRequest, Shorthand, TriggerMode};
