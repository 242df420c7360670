// SPDX-License-Identifier: GPL-2.0
//! The in-kernel irqchip (upstream's lapic.c, ioapic.c, i8259.c, i8254.c,
//! irq_comm.c and virt/kvm/eventfd.c, as glue around the device models of
//! src/irqchip):
//! - `chips`: the VM's PIC, IOAPIC and GSI routing, kvm_set_irq, port/MMIO
//!   dispatch to them;
//! - `lapic`: each vCPU's local APIC, its timer, injection at entry, HLT and
//!   wait-for-SIPI blocking, INIT/SIPI;
//! - `delivery`: interrupt requests to local APICs, kicks;
//! - `pit`: the 8254 on an hrtimer;
//! - `irqfd`, `ioeventfd`: eventfd-driven interrupts and notifications;
//! - `ioctl`: the VM ioctls;
//! - `sys`: hrtimer, work item and wait queue wrappers.
//!
//! Lock order: vCPU mutex -> VM mutex (vCPU list) -> irqfd list -> routing
//! table -> PIC / IOAPIC / PIT / local APIC spinlocks (each a leaf: none is
//! held while another is taken). Timers and eventfd wake-ups only touch
//! atomics and queue work.

pub(crate) mod chips;
pub(crate) mod delivery;
pub(crate) mod ioctl;
pub(crate) mod ioeventfd;
pub(crate) mod irqfd;
pub(crate) mod lapic;
pub(crate) mod pit;
pub(crate) mod sys;

pub(crate) use chips::VmIrq;
pub(crate) use lapic::VcpuIrq;
