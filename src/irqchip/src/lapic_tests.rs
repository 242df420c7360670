//! Host tests of the local APIC model: register semantics in xAPIC and x2APIC
//! mode, the base MSR, priorities, delivery, destination matching, the timer,
//! state save/restore, and a bounded random-input run.

use super::*;

const APIC_PAGE: u64 = APIC_DEFAULT_BASE;
const NO_RESERVED: u64 = 0xffff_fff0_0000_0000; // MAXPHYADDR 36

fn fixed(vector: u8, trigger: TriggerMode) -> IrqRequest {
    IrqRequest {
        vector,
        delivery_mode: DeliveryMode::Fixed,
        dest_mode: DestMode::Physical,
        shorthand: Shorthand::None,
        dest_id: 0,
        trigger,
        level: true,
        msi_redir_hint: false,
    }
}

fn w(a: &mut Lapic, off: u32, val: u32) -> WriteEffects {
    a.mmio_write(off, 4, u64::from(val), 0)
}

fn wt(a: &mut Lapic, off: u32, val: u32, now: u64) -> WriteEffects {
    a.mmio_write(off, 4, u64::from(val), now)
}

/// A local APIC whose vCPU has its CPUID set (periodic mode selectable), as
/// after KVM_SET_CPUID2.
fn new_apic(vcpu: u32, bsp: bool) -> Lapic {
    let mut a = Lapic::new(vcpu, bsp);
    a.set_tsc_deadline_allowed(false);
    a
}

#[test]
fn lvtt_stays_one_shot_before_cpuid() {
    // Upstream's timer-mode mask is 0 until KVM_SET_CPUID2.
    let mut a = Lapic::new(0, true);
    w(&mut a, APIC_SPIV, 0x1ff);
    w(&mut a, APIC_LVTT, 0x2_0073);
    assert_eq!(r(&a, APIC_LVTT), 0x73);
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    a.set_tsc_deadline_allowed(false);
    w(&mut a, APIC_LVTT, 0x2_0073);
    assert_eq!(a.timer_mode(), TimerMode::Periodic);
}

fn r(a: &Lapic, off: u32) -> u32 {
    a.mmio_read(off, 4, 0) as u32
}

/// An xAPIC, hardware- and software-enabled.
fn xapic(vcpu: u32) -> Lapic {
    let mut a = new_apic(vcpu, vcpu == 0);
    w(&mut a, APIC_SPIV, 0x1ff);
    assert!(a.enabled());
    a
}

/// An x2APIC, hardware- and software-enabled.
fn x2apic(vcpu: u32) -> Lapic {
    let mut a = new_apic(vcpu, vcpu == 0);
    let base = a.base() | MSR_IA32_APICBASE_X2APIC;
    a.set_base(base, false, true, NO_RESERVED).unwrap();
    assert!(a.x2apic_mode());
    a.msr_write(0x80f, 0x1ff, 0).unwrap();
    assert!(a.enabled());
    a
}

// ---- power-on / reset -------------------------------------------------------

#[test]
fn power_on_state_bsp_and_ap() {
    let bsp = new_apic(0, true);
    assert_eq!(bsp.base(), APIC_PAGE | MSR_IA32_APICBASE_ENABLE | MSR_IA32_APICBASE_BSP);
    let ap = new_apic(3, false);
    assert_eq!(ap.base(), APIC_PAGE | MSR_IA32_APICBASE_ENABLE);
    assert_eq!(ap.vcpu_id(), 3);
    assert_eq!(ap.id(), 3);
    assert_eq!(r(&ap, APIC_ID), 3 << 24);
    assert_eq!(r(&ap, APIC_LVR), 0x0005_0014);
    assert_eq!(r(&ap, APIC_SPIV), 0xff);
    assert!(ap.hw_enabled() && !ap.sw_enabled() && !ap.enabled());
    assert!(!ap.x2apic_mode());
    assert_eq!(r(&ap, APIC_DFR), 0xffff_ffff);
    assert_eq!(r(&ap, APIC_LDR), 0);
    assert_eq!(r(&ap, APIC_TASKPRI), 0);
    assert_eq!(r(&ap, APIC_PROCPRI), 0);
    for off in [APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR] {
        assert_eq!(r(&ap, off), APIC_LVT_MASKED, "lvt {off:#x}");
    }
    // LINT0_REENABLED quirk: the BSP's LVT0 is an unmasked ExtINT.
    assert_eq!(r(&bsp, APIC_LVT0), 0x700);
    assert!(bsp.accept_pic_intr());
    assert!(!ap.accept_pic_intr());
    assert_eq!(ap.timer_mode(), TimerMode::OneShot);
    assert_eq!(ap.divide_count(), 2);
    assert_eq!(ap.timer_deadline_ns(), None);
    assert_eq!(ap.pending_interrupt(), None);
    // vcpu ids above 255 truncate in the xAPIC ID.
    assert_eq!(new_apic(0x123, false).id(), 0x23);
}

#[test]
fn reset_clears_and_init_keeps_base() {
    let mut a = xapic(1);
    w(&mut a, APIC_ID, 7 << 24);
    w(&mut a, APIC_TASKPRI, 0x40);
    w(&mut a, APIC_LDR, 0x0100_0000);
    w(&mut a, APIC_DFR, 0x0fff_ffff);
    w(&mut a, APIC_TDCR, 0xb);
    w(&mut a, APIC_TMICT, 1000);
    assert!(a.accept_irq(&fixed(0x55, TriggerMode::Level)));
    a.ack_interrupt(0x55);
    assert!(a.accept_irq(&fixed(0x66, TriggerMode::Edge)));
    let base = APIC_PAGE | MSR_IA32_APICBASE_ENABLE | 0x1000_0000;
    a.set_base(base, false, true, NO_RESERVED).unwrap();

    a.reset(true, false);
    // INIT: base and ID kept.
    assert_eq!(a.base(), base);
    assert_eq!(a.id(), 7);
    assert_eq!(a.read_reg(APIC_TASKPRI), 0);
    assert_eq!(a.read_reg(APIC_LDR), 0);
    assert_eq!(a.read_reg(APIC_DFR), 0xffff_ffff);
    assert_eq!(a.read_reg(APIC_SPIV), 0xff);
    assert_eq!(a.read_reg(APIC_TMICT), 0);
    assert_eq!(a.divide_count(), 2);
    assert_eq!(a.highest_irr(), None);
    assert_eq!(a.highest_isr(), None);
    assert!(!a.tmr_set(0x55));
    assert_eq!(a.timer_deadline_ns(), None);

    a.reset(false, false);
    assert_eq!(a.base(), APIC_PAGE | MSR_IA32_APICBASE_ENABLE);
    assert_eq!(a.id(), 1);
}

#[test]
fn reset_from_x2apic() {
    let mut a = x2apic(5);
    a.reset(true, false);
    assert!(a.x2apic_mode(), "INIT keeps x2APIC mode");
    assert_eq!(a.msr_read(0x802, 0), Some(5));
    assert_eq!(a.msr_read(0x80d, 0), Some(u64::from(x2apic_ldr(5))));
    a.reset(false, false);
    assert!(!a.x2apic_mode());
    assert_eq!(a.read_reg(APIC_ID), 5 << 24);
    assert_eq!(a.read_reg(APIC_LDR), 0);
}

// ---- xAPIC MMIO register semantics ------------------------------------------

#[test]
fn mmio_read_sizes_and_unreadable() {
    let mut a = xapic(0x12);
    // Byte and word reads inside a register.
    assert_eq!(a.mmio_read(APIC_ID + 3, 1, 0), 0x12);
    assert_eq!(a.mmio_read(APIC_ID + 2, 2, 0), 0x1200);
    assert_eq!(a.mmio_read(APIC_ID, 2, 0), 0);
    assert_eq!(a.mmio_read(APIC_LVR, 1, 0), 0x14);
    assert_eq!(a.mmio_read(APIC_LVR + 2, 1, 0), 0x05);
    // Crossing the 4-byte register, oversized, odd sizes: 0.
    assert_eq!(a.mmio_read(APIC_ID + 3, 2, 0), 0);
    assert_eq!(a.mmio_read(APIC_ID, 8, 0), 0);
    assert_eq!(a.mmio_read(APIC_ID, 3, 0), 0);
    assert_eq!(a.mmio_read(APIC_ID + 4, 4, 0), 0);
    // Write-only, reserved and absent registers read 0.
    w(&mut a, APIC_TASKPRI, 0x20);
    for off in [0, 0x10, APIC_EOI, APIC_RRR, APIC_SELF_IPI, APIC_LVTCMCI, 0x3f4, 0x400, 0xff0, 0x1000, 0xffff_ffff] {
        assert_eq!(a.mmio_read(off, 4, 0), 0, "offset {off:#x}");
    }
    // APR reads 0 (KVM does not model arbitration priority).
    assert_eq!(r(&a, APIC_ARBPRI), 0);
}

#[test]
fn mmio_write_alignment_and_read_only() {
    let mut a = xapic(0);
    // Not a 4-byte access or not 16-byte aligned: ignored.
    a.mmio_write(APIC_TASKPRI, 1, 0x30, 0);
    a.mmio_write(APIC_TASKPRI, 2, 0x30, 0);
    a.mmio_write(APIC_TASKPRI, 8, 0x30, 0);
    a.mmio_write(APIC_TASKPRI + 4, 4, 0x30, 0);
    a.mmio_write(APIC_TASKPRI + 1, 4, 0x30, 0);
    assert_eq!(a.tpr(), 0);
    a.mmio_write(APIC_TASKPRI, 4, 0xffff_ffff_0000_0030, 0);
    assert_eq!(a.tpr(), 0x30);
    // Read-only registers ignore writes.
    for off in [APIC_LVR, APIC_ARBPRI, APIC_PROCPRI, APIC_RRR, APIC_ISR, APIC_TMR, APIC_IRR, APIC_TMCCT, APIC_LVTCMCI, 0x3d0, 0x400] {
        let before = a.read_reg(off);
        let fx = w(&mut a, off, 0xffff_ffff);
        assert_eq!(fx, WriteEffects::default(), "offset {off:#x}");
        assert_eq!(a.read_reg(off), before, "offset {off:#x}");
    }
    assert_eq!(r(&a, APIC_PROCPRI), 0x30);
}

#[test]
fn id_ldr_dfr_writes() {
    let mut a = xapic(2);
    w(&mut a, APIC_ID, 0xabcd_ef01);
    assert_eq!(r(&a, APIC_ID), 0xab00_0000);
    assert_eq!(a.id(), 0xab);
    w(&mut a, APIC_LDR, 0x1234_5678);
    assert_eq!(r(&a, APIC_LDR), 0x1200_0000);
    w(&mut a, APIC_DFR, 0);
    assert_eq!(r(&a, APIC_DFR), 0x0fff_ffff);
    w(&mut a, APIC_DFR, 0xf000_0000);
    assert_eq!(r(&a, APIC_DFR), 0xffff_ffff);
}

#[test]
fn tpr_ppr_apr() {
    let mut a = xapic(0);
    w(&mut a, APIC_TASKPRI, 0x1234_5678);
    assert_eq!(r(&a, APIC_TASKPRI), 0x78);
    assert_eq!(r(&a, APIC_PROCPRI), 0x78);
    assert_eq!(a.cr8(), 7);
    a.set_tpr(0x20);
    assert_eq!(a.tpr(), 0x20);
    assert_eq!(a.ppr(), 0x20);
    assert_eq!(r(&a, APIC_ARBPRI), 0);
}

#[test]
fn svr_and_software_disable() {
    let mut a = new_apic(1, false);
    // LVT writes while software-disabled are forced masked.
    w(&mut a, APIC_LVT1, 0x400);
    assert_eq!(r(&a, APIC_LVT1), 0x400 | APIC_LVT_MASKED);
    w(&mut a, APIC_LVTT, 0x20031);
    assert_eq!(r(&a, APIC_LVTT), 0x20031 | APIC_LVT_MASKED);
    // SVR keeps bits 9:0 only (no directed EOI).
    let fx = w(&mut a, APIC_SPIV, 0xffff_ffff);
    assert!(fx.lvt0_changed);
    assert_eq!(r(&a, APIC_SPIV), 0x3ff);
    assert!(a.sw_enabled());
    w(&mut a, APIC_LVT1, 0x400);
    w(&mut a, APIC_LVTT, 0x31);
    w(&mut a, APIC_LVT0, 0x700);
    w(&mut a, APIC_LVTERR, 0xfe);
    assert_eq!(r(&a, APIC_LVT1), 0x400);
    assert!(a.accept_pic_intr());
    // Clearing the enable bit masks every LVT.
    w(&mut a, APIC_SPIV, 0xf0);
    assert!(!a.sw_enabled());
    assert_eq!(r(&a, APIC_SPIV), 0xf0);
    for off in [APIC_LVTT, APIC_LVTTHMR, APIC_LVTPC, APIC_LVT0, APIC_LVT1, APIC_LVTERR] {
        assert_ne!(r(&a, off) & APIC_LVT_MASKED, 0);
    }
    assert_eq!(r(&a, APIC_LVT1), 0x400 | APIC_LVT_MASKED);
    assert!(!a.accept_pic_intr());
    // Software-disabled APICs drop fixed interrupts.
    assert!(!a.accept_irq(&fixed(0x40, TriggerMode::Edge)));
}

#[test]
fn lvt_write_masks() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, 0xffff_ffff);
    // Without TSC-deadline only bit 17 of the mode is kept.
    assert_eq!(r(&a, APIC_LVTT), 0x3_10ff);
    assert_eq!(a.timer_mode(), TimerMode::Periodic);
    w(&mut a, APIC_LVTTHMR, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVTTHMR), 0x1_17ff);
    w(&mut a, APIC_LVTPC, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVTPC), 0x1_17ff);
    // LINT0/1 keep everything but the reserved bit 11.
    w(&mut a, APIC_LVT0, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVT0), 0x1_f7ff);
    w(&mut a, APIC_LVT1, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVT1), 0x1_f7ff);
    w(&mut a, APIC_LVTERR, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVTERR), 0x1_10ff);
    // No CMCI LVT.
    w(&mut a, APIC_LVTCMCI, 0x30);
    assert_eq!(a.read_reg(APIC_LVTCMCI), 0);
    a.set_tsc_deadline_allowed(true);
    w(&mut a, APIC_LVTT, 0xffff_ffff);
    assert_eq!(r(&a, APIC_LVTT), 0x7_10ff);
}

#[test]
fn lvt0_nmi_mode_and_pic_acceptance() {
    let mut a = xapic(1);
    assert!(!a.lvt0_nmi_mode());
    let fx = w(&mut a, APIC_LVT0, 0x400);
    assert!(fx.lvt0_changed);
    assert!(a.lvt0_nmi_mode());
    assert!(!a.accept_pic_intr());
    w(&mut a, APIC_LVT0, 0x700);
    assert!(a.accept_pic_intr());
    w(&mut a, APIC_LVT0, 0x1_0700);
    assert!(!a.accept_pic_intr());
    // Hardware-disabled: the PIC reaches the CPU directly.
    a.set_base(APIC_PAGE, false, true, NO_RESERVED).unwrap();
    assert!(a.accept_pic_intr());
}

#[test]
fn local_lvt_requests() {
    let mut a = xapic(4);
    assert_eq!(a.local_lvt(1), None, "masked at reset");
    w(&mut a, APIC_LVT1, 0x400);
    let nmi = a.local_lvt(1).unwrap();
    assert_eq!(nmi.delivery_mode, DeliveryMode::Nmi);
    assert_eq!(nmi.shorthand, Shorthand::SelfOnly);
    assert_eq!(nmi.dest_id, 4);
    w(&mut a, APIC_LVT0, 0x8000 | 0x33);
    let l0 = a.local_lvt(0).unwrap();
    assert_eq!(l0.delivery_mode, DeliveryMode::Fixed);
    assert_eq!(l0.vector, 0x33);
    assert_eq!(l0.trigger, TriggerMode::Level);
    assert!(l0.level);
    assert_eq!(a.local_lvt(2), None);
    a.set_base(APIC_PAGE, false, true, NO_RESERVED).unwrap();
    assert_eq!(a.local_lvt(0), None);
    assert_eq!(a.local_lvt(1), None);
}

#[test]
fn esr_write_then_read() {
    let mut a = xapic(0);
    assert_eq!(r(&a, APIC_ESR), 0);
    w(&mut a, APIC_ESR, 0xffff_ffff);
    assert_eq!(r(&a, APIC_ESR), 0);
    // A restored non-zero ESR is cleared by the next write.
    let mut st = a.get_state(false, 0);
    st[APIC_ESR as usize] = 0x40;
    a.set_state(&st, false, 0).unwrap();
    assert_eq!(r(&a, APIC_ESR), 0x40);
    w(&mut a, APIC_ESR, 0);
    assert_eq!(r(&a, APIC_ESR), 0);
}

#[test]
fn xapic_icr() {
    let mut a = xapic(0);
    w(&mut a, APIC_ICR2, 0x1234_5678);
    assert_eq!(r(&a, APIC_ICR2), 0x1200_0000);
    let fx = w(&mut a, APIC_ICR, 0xfffc_dfff);
    let ipi = fx.ipi.unwrap();
    assert_eq!(ipi.vector, 0xff);
    assert_eq!(ipi.delivery_mode, DeliveryMode::ExtInt);
    assert_eq!(ipi.dest_mode, DestMode::Logical);
    assert_eq!(ipi.dest_id, 0x12);
    assert_eq!(ipi.trigger, TriggerMode::Level);
    assert!(ipi.level);
    assert_eq!(ipi.shorthand, Shorthand::AllExcludingSelf);
    // Busy bit always reads 0; xAPIC keeps reserved bits as written.
    assert_eq!(r(&a, APIC_ICR), 0xfffc_cfff);
    let fx = w(&mut a, APIC_ICR, 0x0000_4500);
    let ipi = fx.ipi.unwrap();
    assert_eq!(ipi.delivery_mode, DeliveryMode::Init);
    assert_eq!(ipi.dest_mode, DestMode::Physical);
    assert_eq!(ipi.shorthand, Shorthand::None);
    assert_eq!(ipi.trigger, TriggerMode::Edge);
    let ipi = w(&mut a, APIC_ICR, 0x0004_0631).ipi.unwrap();
    assert_eq!(ipi.delivery_mode, DeliveryMode::StartUp);
    assert_eq!(ipi.shorthand, Shorthand::SelfOnly);
    let ipi = w(&mut a, APIC_ICR, 0x0008_0100).ipi.unwrap();
    assert_eq!(ipi.delivery_mode, DeliveryMode::LowestPriority);
    assert_eq!(ipi.shorthand, Shorthand::AllIncludingSelf);
    // Writing ICR2 alone sends nothing.
    assert_eq!(w(&mut a, APIC_ICR2, 0xff00_0000).ipi, None);
    // The self-IPI register does not exist in xAPIC mode.
    assert_eq!(w(&mut a, APIC_SELF_IPI, 0x40), WriteEffects::default());
}

// ---- x2APIC MSRs -------------------------------------------------------------

#[test]
fn x2apic_msr_reads() {
    let mut a = x2apic(0x21);
    assert_eq!(a.msr_read(0x802, 0), Some(0x21));
    assert_eq!(a.id(), 0x21);
    assert_eq!(a.msr_read(0x803, 0), Some(0x5_0014));
    assert_eq!(a.msr_read(0x808, 0), Some(0));
    assert_eq!(a.msr_read(0x80a, 0), Some(0));
    assert_eq!(a.msr_read(0x80d, 0), Some((2 << 16) | 2));
    assert_eq!(a.msr_read(0x80f, 0), Some(0x1ff));
    for msr in 0x810..0x828 {
        assert_eq!(a.msr_read(msr, 0), Some(0));
    }
    assert_eq!(a.msr_read(0x828, 0), Some(0));
    assert_eq!(a.msr_read(0x830, 0), Some(0));
    assert_eq!(a.msr_read(0x832, 0), Some(u64::from(APIC_LVT_MASKED)));
    assert_eq!(a.msr_read(0x838, 0), Some(0));
    assert_eq!(a.msr_read(0x839, 0), Some(0));
    assert_eq!(a.msr_read(0x83e, 0), Some(0));
    // #GP: write-only, reserved, xAPIC-only registers, CMCI, out of range.
    for msr in [0x800, 0x801, 0x804, 0x809, 0x80b, 0x80c, 0x80e, 0x82f, 0x831, 0x83f, 0x840, 0x8ff, 0x7ff, 0x900] {
        assert_eq!(a.msr_read(msr, 0), None, "msr {msr:#x}");
    }
    // Not in x2APIC mode: every x2APIC MSR #GPs.
    let x = xapic(0);
    assert_eq!(x.msr_read(0x802, 0), None);
    let mut x = xapic(0);
    assert_eq!(x.msr_write(0x808, 0, 0), None);
    assert_eq!(x.tpr(), 0);
    // MMIO is inactive in x2APIC mode.
    assert!(!a.mmio_covers(APIC_PAGE));
    assert_eq!(a.mmio_read(APIC_LVR, 4, 0), 0xffff_ffff);
    assert_eq!(a.mmio_read(APIC_LVR, 1, 0), 0xff);
    a.mmio_write(APIC_TASKPRI, 4, 0x50, 0);
    assert_eq!(a.tpr(), 0);
}

#[test]
fn x2apic_msr_writes() {
    let mut a = x2apic(3);
    // Read-only or absent: #GP.
    for msr in [0x802, 0x803, 0x809, 0x80a, 0x80c, 0x80d, 0x80e, 0x810, 0x818, 0x820, 0x82f, 0x831, 0x839, 0x840] {
        assert_eq!(a.msr_write(msr, 0, 0), None, "msr {msr:#x}");
    }
    assert_eq!(a.msr_read(0x802, 0), Some(3));
    // TPR, SVR, LVTs.
    assert!(a.msr_write(0x808, 0x50, 0).is_some());
    assert_eq!(a.tpr(), 0x50);
    assert_eq!(a.msr_read(0x80a, 0), Some(0x50));
    assert!(a.msr_write(0x835, 0x700, 0).is_some());
    assert_eq!(a.msr_read(0x835, 0), Some(0x700));
    // Upper 32 bits are reserved for every register but ICR.
    assert_eq!(a.msr_write(0x808, 1 << 32, 0), None);
    assert_eq!(a.msr_write(0x80b, 1 << 32, 0), None);
    assert_eq!(a.msr_write(0x83f, 1 << 40, 0), None);
    // EOI.
    assert_eq!(a.msr_write(0x80b, 0, 0), Some(WriteEffects::default()));
    // ESR must be written with 0.
    assert_eq!(a.msr_write(0x828, 1, 0), None);
    assert!(a.msr_write(0x828, 0, 0).is_some());
    // SELF_IPI: vector only.
    let fx = a.msr_write(0x83f, 0x45, 0).unwrap();
    let ipi = fx.ipi.unwrap();
    assert_eq!(ipi.vector, 0x45);
    assert_eq!(ipi.shorthand, Shorthand::SelfOnly);
    assert_eq!(ipi.delivery_mode, DeliveryMode::Fixed);
    assert_eq!(ipi.trigger, TriggerMode::Edge);
    assert_eq!(a.msr_write(0x83f, 0x145, 0), None);
    // ICR is one 64-bit register.
    let fx = a.msr_write(0x830, (0x1234_5678u64 << 32) | 0x0000_d8ef | (1 << 12), 0).unwrap();
    let ipi = fx.ipi.unwrap();
    assert_eq!(ipi.dest_id, 0x1234_5678);
    assert_eq!(ipi.vector, 0xef);
    assert_eq!(ipi.dest_mode, DestMode::Logical);
    assert_eq!(ipi.trigger, TriggerMode::Level);
    assert!(ipi.level);
    assert_eq!(a.msr_read(0x830, 0), Some((0x1234_5678u64 << 32) | 0x0000_c8ef));
    // Reserved ICR bits: 31:20, 17:16, 13.
    for bit in [13u32, 16, 17, 20, 25, 31] {
        assert_eq!(a.msr_write(0x830, 1u64 << bit, 0), None, "bit {bit}");
    }
    assert_eq!(a.msr_read(0x830, 0), Some((0x1234_5678u64 << 32) | 0x0000_c8ef));
    // Shorthand bits 19:18 are fine.
    assert!(a.msr_write(0x830, 0xc_0000 | 0x30, 0).unwrap().ipi.is_some());
}

/// The selftests' self_smi(): an x2APIC ICR write with SMI delivery mode to
/// self, asserted; the IPI goes to the sender's own vCPU as an SMI (the
/// vector is ignored by the receiver) and nothing enters IRR.
#[test]
fn x2apic_self_smi() {
    let mut a = x2apic(3);
    let fx = a.msr_write(0x830, 0x4_0000 | 0x4000 | 0x200, 0).unwrap();
    let ipi = fx.ipi.unwrap();
    assert_eq!(ipi.delivery_mode, DeliveryMode::Smi);
    assert_eq!(ipi.shorthand, Shorthand::SelfOnly);
    assert_eq!(ipi.trigger, TriggerMode::Edge);
    assert!(ipi.level);
    assert_eq!(a.highest_irr(), None);
    // accept_irq is only for fixed/lowest priority: an SMI is the caller's.
    assert!(!a.accept_irq(&ipi));
    assert_eq!(a.highest_irr(), None);
    // xAPIC ICR with SMI delivery mode to a physical destination.
    let mut x = xapic(0);
    w(&mut x, APIC_ICR2, 0x0500_0000);
    let ipi = w(&mut x, APIC_ICR, 0x4200).ipi.unwrap();
    assert_eq!(ipi.delivery_mode, DeliveryMode::Smi);
    assert_eq!(ipi.shorthand, Shorthand::None);
    assert_eq!(ipi.dest_id, 5);
}

#[test]
fn x2apic_timer_and_priority_via_msrs() {
    let mut a = x2apic(0);
    a.msr_write(0x83e, 0xb, 0).unwrap(); // divide by 1
    a.msr_write(0x832, 0x40, 0).unwrap();
    let fx = a.msr_write(0x838, 1000, 100).unwrap();
    assert!(fx.timer_changed);
    assert_eq!(a.timer_deadline_ns(), Some(1100));
    assert_eq!(a.msr_read(0x839, 600), Some(500));
    assert!(a.timer_expired(1100));
    assert_eq!(a.msr_read(0x820 + 2, 0), Some(1));
    assert_eq!(a.pending_interrupt(), Some(0x40));
    a.ack_interrupt(0x40);
    assert_eq!(a.msr_read(0x812, 0), Some(1));
    assert_eq!(a.msr_read(0x80a, 0), Some(0x40));
    let fx = a.msr_write(0x80b, 0, 0).unwrap();
    assert_eq!(fx.eoi, Some((0x40, false)));
}

// ---- base MSR ----------------------------------------------------------------

#[test]
fn base_valid_transitions() {
    let mut a = new_apic(0x13, false);
    let en = APIC_PAGE | MSR_IA32_APICBASE_ENABLE;
    let x2 = en | MSR_IA32_APICBASE_X2APIC;
    // xAPIC -> x2APIC: ID and LDR from vcpu_id.
    let fx = a.set_base(x2, false, true, NO_RESERVED).unwrap();
    assert!(fx.lvt0_changed);
    assert!(a.x2apic_mode());
    assert_eq!(a.id(), 0x13);
    assert_eq!(a.msr_read(0x80d, 0), Some((1 << 16) | (1 << 3)));
    // x2APIC -> disabled.
    let fx = a.set_base(APIC_PAGE, false, true, NO_RESERVED).unwrap();
    assert!(fx.timer_changed);
    assert!(!a.hw_enabled() && !a.x2apic_mode());
    // disabled -> xAPIC: xAPIC ID back.
    a.set_base(en, false, true, NO_RESERVED).unwrap();
    assert_eq!(a.id(), 0x13);
    assert_eq!(a.read_reg(APIC_ID), 0x13 << 24);
    // BSP bit is writable; writing the same value is fine.
    a.set_base(en | MSR_IA32_APICBASE_BSP, false, false, NO_RESERVED).unwrap();
    assert_eq!(a.base(), en | MSR_IA32_APICBASE_BSP);
    assert!(a.set_base(en, false, false, NO_RESERVED).unwrap().lvt0_changed);
    // Relocation.
    let moved = 0xfe00_0000 | MSR_IA32_APICBASE_ENABLE;
    a.set_base(moved, false, false, NO_RESERVED).unwrap();
    assert!(a.mmio_covers(0xfe00_0000));
    assert!(a.mmio_covers(0xfe00_0fff));
    assert!(!a.mmio_covers(0xfe00_1000));
    assert!(!a.mmio_covers(APIC_PAGE));
    assert_eq!(a.base_address(), 0xfe00_0000);
}

#[test]
fn base_refused_transitions() {
    let en = APIC_PAGE | MSR_IA32_APICBASE_ENABLE;
    let x2 = en | MSR_IA32_APICBASE_X2APIC;
    let mut a = new_apic(1, false);
    // x2APIC without enable: invalid even for the host.
    assert_eq!(a.set_base(APIC_PAGE | MSR_IA32_APICBASE_X2APIC, true, true, NO_RESERVED), Err(ApicError::Invalid));
    // Reserved bits.
    for bit in [0u32, 1, 7, 9] {
        assert_eq!(a.set_base(en | (1 << bit), true, true, NO_RESERVED), Err(ApicError::Invalid), "bit {bit}");
    }
    assert_eq!(a.set_base(en | (1 << 36), true, true, NO_RESERVED), Err(ApicError::Invalid));
    assert!(a.set_base(en | (1 << 35), true, true, NO_RESERVED).is_ok());
    a.set_base(en, true, true, NO_RESERVED).unwrap();
    // EXTD without x2APIC in CPUID.
    assert_eq!(a.set_base(x2, false, false, NO_RESERVED), Err(ApicError::Invalid));
    assert_eq!(a.set_base(x2, true, false, NO_RESERVED), Err(ApicError::Invalid));
    // x2APIC -> xAPIC refused for the guest, allowed for the host.
    a.set_base(x2, false, true, NO_RESERVED).unwrap();
    assert_eq!(a.set_base(en, false, true, NO_RESERVED), Err(ApicError::Invalid));
    assert!(a.x2apic_mode());
    a.set_base(en, true, true, NO_RESERVED).unwrap();
    assert!(!a.x2apic_mode());
    assert_eq!(a.id(), 1);
    // disabled -> x2APIC refused for the guest, allowed for the host.
    a.set_base(APIC_PAGE, false, true, NO_RESERVED).unwrap();
    assert_eq!(a.set_base(x2, false, true, NO_RESERVED), Err(ApicError::Invalid));
    assert!(!a.hw_enabled());
    a.set_base(x2, true, true, NO_RESERVED).unwrap();
    assert!(a.x2apic_mode() && a.hw_enabled());
    assert_eq!(a.msr_read(0x802, 0), Some(1));
}

#[test]
fn base_disable_masks_and_stops_timer() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, 0x20040);
    w(&mut a, APIC_LVT0, 0x700);
    wt(&mut a, APIC_TMICT, 1_000_000, 0);
    assert!(a.timer_deadline_ns().is_some());
    assert!(a.accept_irq(&fixed(0x50, TriggerMode::Edge)));
    let fx = a.set_base(APIC_PAGE, false, true, NO_RESERVED).unwrap();
    assert!(fx.timer_changed && fx.lvt0_changed);
    assert!(!a.hw_enabled());
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.pending_interrupt(), None);
    assert!(!a.accept_irq(&fixed(0x51, TriggerMode::Edge)));
    assert!(!a.timer_expired(u64::MAX));
    assert!(!a.mmio_covers(APIC_PAGE));
    assert_eq!(a.mmio_read(APIC_LVR, 4, 0), 0xffff_ffff);
    assert_eq!(a.mmio_write(APIC_TASKPRI, 4, 0x10, 0), WriteEffects::default());
    let fx = a.set_base(APIC_PAGE | MSR_IA32_APICBASE_ENABLE, false, true, NO_RESERVED).unwrap();
    assert!(fx.timer_changed);
    assert_ne!(r(&a, APIC_LVTT) & APIC_LVT_MASKED, 0);
    assert_ne!(r(&a, APIC_LVT0) & APIC_LVT_MASKED, 0);
    assert_eq!(a.timer_deadline_ns(), None);
    // The interrupt accepted before stays requested.
    assert_eq!(a.pending_interrupt(), Some(0x50));
}

// ---- priorities, acceptance, ack/EOI -----------------------------------------

#[test]
fn accept_irq_tmr_and_coalescing() {
    let mut a = xapic(0);
    assert!(a.accept_irq(&fixed(0x31, TriggerMode::Level)));
    assert!(a.tmr_set(0x31) && a.irr_set(0x31));
    assert_eq!(r(&a, APIC_TMR + 0x10), 1 << 17);
    assert_eq!(r(&a, APIC_IRR + 0x10), 1 << 17);
    // Coalesced while pending.
    assert!(!a.accept_irq(&fixed(0x31, TriggerMode::Level)));
    // Edge on the same vector clears TMR.
    assert!(!a.accept_irq(&fixed(0x31, TriggerMode::Edge)));
    assert!(!a.tmr_set(0x31));
    // Level de-assert is dropped.
    let mut deassert = fixed(0x32, TriggerMode::Level);
    deassert.level = false;
    assert!(!a.accept_irq(&deassert));
    assert!(!a.irr_set(0x32));
    // Lowest priority is accepted like fixed.
    let mut lp = fixed(0x90, TriggerMode::Edge);
    lp.delivery_mode = DeliveryMode::LowestPriority;
    assert!(a.accept_irq(&lp));
    // Other delivery modes are the caller's.
    for dm in [DeliveryMode::Nmi, DeliveryMode::Smi, DeliveryMode::Init, DeliveryMode::StartUp, DeliveryMode::ExtInt, DeliveryMode::Reserved] {
        let mut req = fixed(0xa0, TriggerMode::Edge);
        req.delivery_mode = dm;
        assert!(!a.accept_irq(&req));
        assert!(!a.irr_set(0xa0));
    }
    // After ack the same vector can be requested again while in service.
    a.ack_interrupt(0x90);
    assert!(a.accept_irq(&lp));
    assert!(a.isr_set(0x90) && a.irr_set(0x90));
    assert!(a.pending_eoi(0x90));
    assert!(!a.pending_eoi(0x91));
}

#[test]
fn ppr_gates_pending_interrupt() {
    let mut a = xapic(0);
    a.set_tpr(0x50);
    assert!(a.accept_irq(&fixed(0x5f, TriggerMode::Edge)));
    assert_eq!(a.pending_interrupt(), None, "same class as TPR is blocked");
    assert!(a.accept_irq(&fixed(0x61, TriggerMode::Edge)));
    assert_eq!(a.pending_interrupt(), Some(0x61));
    a.ack_interrupt(0x61);
    assert_eq!(a.ppr(), 0x60);
    assert_eq!(a.pending_interrupt(), None);
    assert!(a.accept_irq(&fixed(0x6f, TriggerMode::Edge)));
    assert_eq!(a.pending_interrupt(), None, "same class as ISR is blocked");
    assert!(a.accept_irq(&fixed(0x70, TriggerMode::Edge)));
    assert_eq!(a.pending_interrupt(), Some(0x70));
    // Nested.
    a.ack_interrupt(0x70);
    assert_eq!(a.ppr(), 0x70);
    assert_eq!(a.highest_isr(), Some(0x70));
    // TPR above ISR class wins, with its sub-class.
    a.set_tpr(0x85);
    assert_eq!(a.ppr(), 0x85);
    a.set_tpr(0x50);
    assert_eq!(a.ppr(), 0x70);
    // EOI retires the highest in-service vector first.
    assert_eq!(w(&mut a, APIC_EOI, 0).eoi, Some((0x70, false)));
    assert_eq!(a.ppr(), 0x60);
    assert_eq!(a.pending_interrupt(), None, "0x61 still in service");
    assert_eq!(w(&mut a, APIC_EOI, 0).eoi, Some((0x61, false)));
    assert_eq!(a.ppr(), 0x50);
    assert_eq!(a.pending_interrupt(), Some(0x6f));
    a.ack_interrupt(0x6f);
    assert_eq!(w(&mut a, APIC_EOI, 0).eoi, Some((0x6f, false)));
    // EOI with nothing in service is harmless.
    assert_eq!(w(&mut a, APIC_EOI, 0).eoi, None);
    assert_eq!(a.ppr(), 0x50);
    assert_eq!(a.pending_interrupt(), None, "0x5f still below TPR");
    a.set_tpr(0);
    assert_eq!(a.pending_interrupt(), Some(0x5f));
}

#[test]
fn eoi_reports_level_trigger() {
    let mut a = xapic(0);
    assert!(a.accept_irq(&fixed(0x41, TriggerMode::Level)));
    a.ack_interrupt(0x41);
    assert_eq!(r(&a, APIC_ISR + 0x20), 1 << 1);
    assert_eq!(w(&mut a, APIC_EOI, 0x1234).eoi, Some((0x41, true)));
    assert_eq!(r(&a, APIC_ISR + 0x20), 0);
}

#[test]
fn low_vectors_never_injected() {
    let mut a = xapic(0);
    assert!(a.accept_irq(&fixed(0x0f, TriggerMode::Edge)));
    assert_eq!(a.pending_interrupt(), None);
}

#[test]
fn software_disabled_keeps_pending() {
    let mut a = xapic(0);
    assert!(a.accept_irq(&fixed(0x80, TriggerMode::Edge)));
    w(&mut a, APIC_SPIV, 0xff);
    // As upstream: held interrupts are still delivered, new ones dropped.
    assert_eq!(a.pending_interrupt(), Some(0x80));
    assert!(!a.accept_irq(&fixed(0x81, TriggerMode::Edge)));
}

// ---- destinations --------------------------------------------------------------

#[test]
fn dest_physical_and_shorthands() {
    let a = xapic(5);
    assert!(a.matches_dest(false, Shorthand::None, 5, DestMode::Physical));
    assert!(!a.matches_dest(false, Shorthand::None, 6, DestMode::Physical));
    assert!(a.matches_dest(false, Shorthand::None, 0xff, DestMode::Physical));
    assert!(!a.matches_dest(false, Shorthand::None, 0xffff_ffff, DestMode::Physical));
    // Hotplug hack: IDs above 0xff match the x2APIC ID.
    let b = xapic(0x105);
    assert!(b.matches_dest(false, Shorthand::None, 0x105, DestMode::Physical));
    assert!(b.matches_dest(false, Shorthand::None, 0x05, DestMode::Physical));
    assert!(!a.matches_dest(false, Shorthand::None, 0x105, DestMode::Physical));
    // Shorthands.
    assert!(a.matches_dest(true, Shorthand::SelfOnly, 0, DestMode::Physical));
    assert!(!a.matches_dest(false, Shorthand::SelfOnly, 5, DestMode::Physical));
    assert!(a.matches_dest(true, Shorthand::AllIncludingSelf, 0, DestMode::Physical));
    assert!(a.matches_dest(false, Shorthand::AllIncludingSelf, 0, DestMode::Logical));
    assert!(!a.matches_dest(true, Shorthand::AllExcludingSelf, 0, DestMode::Physical));
    assert!(a.matches_dest(false, Shorthand::AllExcludingSelf, 0, DestMode::Physical));
}

#[test]
fn dest_logical_flat_and_cluster() {
    let mut a = xapic(1);
    assert!(!a.matches_dest(false, Shorthand::None, 0x01, DestMode::Logical), "LDR 0");
    w(&mut a, APIC_LDR, 0x0400_0000);
    assert!(a.matches_dest(false, Shorthand::None, 0x04, DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0x0f, DestMode::Logical));
    assert!(!a.matches_dest(false, Shorthand::None, 0x0b, DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0xff, DestMode::Logical));
    // Cluster model: cluster 3, member bit 2.
    w(&mut a, APIC_DFR, 0);
    w(&mut a, APIC_LDR, 0x3400_0000);
    assert!(a.matches_dest(false, Shorthand::None, 0x34, DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0x3c, DestMode::Logical));
    assert!(!a.matches_dest(false, Shorthand::None, 0x38, DestMode::Logical));
    assert!(!a.matches_dest(false, Shorthand::None, 0x24, DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0xff, DestMode::Logical));
    // An invalid DFR model matches nothing but broadcast.
    let mut st = a.get_state(false, 0);
    st[APIC_DFR as usize + 3] = 0x5f;
    a.set_state(&st, false, 0).unwrap();
    assert!(!a.matches_dest(false, Shorthand::None, 0x34, DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0xff, DestMode::Logical));
}

#[test]
fn dest_x2apic() {
    let a = x2apic(0x25); // cluster 2, bit 5
    assert!(a.matches_dest(false, Shorthand::None, 0x25, DestMode::Physical));
    assert!(!a.matches_dest(false, Shorthand::None, 0xff, DestMode::Physical), "0xff is not broadcast in x2APIC");
    assert!(a.matches_dest(false, Shorthand::None, 0xffff_ffff, DestMode::Physical));
    assert!(a.matches_dest(false, Shorthand::None, (2 << 16) | (1 << 5), DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, (2 << 16) | 0xffff, DestMode::Logical));
    assert!(!a.matches_dest(false, Shorthand::None, (2 << 16) | (1 << 4), DestMode::Logical));
    assert!(!a.matches_dest(false, Shorthand::None, (1 << 16) | (1 << 5), DestMode::Logical));
    assert!(a.matches_dest(false, Shorthand::None, 0xffff_ffff, DestMode::Logical));
}

// ---- timer ------------------------------------------------------------------

#[test]
fn divide_configuration() {
    let mut a = xapic(0);
    let table = [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xa, 128), (0xb, 1)];
    for (tdcr, div) in table {
        w(&mut a, APIC_TDCR, tdcr);
        assert_eq!(a.divide_count(), div, "tdcr {tdcr:#x}");
        // Bit 2 and upper bits are not kept.
        w(&mut a, APIC_TDCR, tdcr | 0xffff_fff4);
        assert_eq!(r(&a, APIC_TDCR), tdcr);
        assert_eq!(a.divide_count(), div);
    }
}

#[test]
fn one_shot_timer() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, 0xec);
    w(&mut a, APIC_TDCR, 0x3); // divide by 16
    let fx = wt(&mut a, APIC_TMICT, 1000, 5_000);
    assert!(fx.timer_changed);
    assert_eq!(a.timer_period_ns(), 16_000);
    assert_eq!(a.timer_deadline_ns(), Some(21_000));
    assert_eq!(r(&a, APIC_TMICT), 1000);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 5_016), 999);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 13_000), 500);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 20_999), 0);
    // A stale/early callback does nothing.
    assert!(!a.timer_expired(20_000));
    assert!(a.timer_expired(21_000));
    assert!(a.irr_set(0xec));
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 21_000), 0);
    assert_eq!(r(&a, APIC_TMICT), 1000);
    assert!(!a.timer_expired(50_000));
    // TMICT 0 stops.
    wt(&mut a, APIC_TMICT, 10, 60_000);
    assert_eq!(a.timer_deadline_ns(), Some(60_160));
    wt(&mut a, APIC_TMICT, 0, 60_001);
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 60_002), 0);
}

#[test]
fn masked_timer_still_counts() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, APIC_LVT_MASKED | 0x30);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 100, 0);
    assert_eq!(a.timer_deadline_ns(), Some(100));
    assert!(!a.timer_expired(100));
    assert!(!a.irr_set(0x30));
    assert_eq!(a.timer_deadline_ns(), None);
}

#[test]
fn periodic_timer_rearms_and_wraps() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 1_000_000, 0);
    assert_eq!(a.timer_mode(), TimerMode::Periodic);
    assert_eq!(a.timer_deadline_ns(), Some(1_000_000));
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 250_000), 750_000);
    assert!(a.timer_expired(1_000_010));
    assert_eq!(a.timer_deadline_ns(), Some(2_000_000));
    // Counting down again from the initial count.
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 1_100_000), 900_000);
    // Coalesced while the vector is pending.
    assert!(!a.timer_expired(2_000_000));
    assert_eq!(a.timer_deadline_ns(), Some(3_000_000));
    a.ack_interrupt(0x40);
    // Very late: next expiry is now, not a catch-up series.
    assert!(a.timer_expired(10_500_000));
    assert_eq!(a.timer_deadline_ns(), Some(10_500_000));
    a.timer_expired(10_500_000);
    assert_eq!(a.timer_deadline_ns(), Some(11_500_000));
    // TMCCT of a late timer wraps through the period.
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 11_500_000 - 1), 1);
    // Past the expiry before the vCPU re-armed it: already counting in the
    // next period (upstream's hrtimer re-arms at once), also periods later.
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 11_600_000), 900_000);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 15_750_000), 750_000);
}

#[test]
fn periodic_clamp() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 10, 1_000);
    assert_eq!(a.timer_period_ns(), MIN_TIMER_PERIOD_NS);
    assert_eq!(a.timer_deadline_ns(), Some(1_000 + MIN_TIMER_PERIOD_NS));
    a.timer_expired(1_000 + MIN_TIMER_PERIOD_NS);
    assert_eq!(a.timer_deadline_ns(), Some(1_000 + 2 * MIN_TIMER_PERIOD_NS));
    // One-shot is not clamped.
    w(&mut a, APIC_LVTT, 0x40);
    wt(&mut a, APIC_TMICT, 10, 0);
    assert_eq!(a.timer_deadline_ns(), Some(10));
    // Switching a short one-shot to periodic clamps the period.
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    assert_eq!(a.timer_period_ns(), MIN_TIMER_PERIOD_NS);
}

#[test]
fn periodic_timer_min_period_follows_setting() {
    // kvm's min_timer_period_us, as set through the module parameter.
    let mut a = xapic(0);
    a.set_min_timer_period_ns(1_000_000);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 300_000, 0);
    assert_eq!(a.timer_period_ns(), 1_000_000);
    // 0 lets any period through; it applies from the next programming.
    a.set_min_timer_period_ns(0);
    assert_eq!(a.timer_period_ns(), 1_000_000);
    wt(&mut a, APIC_TMICT, 10, 0);
    assert_eq!(a.timer_period_ns(), 10);
}

#[test]
fn oneshot_periodic_switch_keeps_count() {
    let mut a = xapic(0);
    w(&mut a, APIC_TDCR, 0xb);
    w(&mut a, APIC_LVTT, 0x40);
    wt(&mut a, APIC_TMICT, 1_000_000, 0);
    let fx = w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    assert!(fx.timer_changed);
    assert_eq!(a.timer_deadline_ns(), Some(1_000_000));
    assert_eq!(r(&a, APIC_TMICT), 1_000_000);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 600_000), 400_000);
    assert!(a.timer_expired(1_000_000));
    assert_eq!(a.timer_deadline_ns(), Some(2_000_000));
    w(&mut a, APIC_LVTT, 0x40);
    assert!(!a.timer_expired(2_000_000), "vector still pending");
    assert_eq!(a.timer_deadline_ns(), None);
    // Expired one-shot switched to periodic stays stopped.
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 2_100_000), 0);
}

#[test]
fn tdcr_change_rescales_remaining() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, 0x40);
    w(&mut a, APIC_TDCR, 0x0); // /2
    wt(&mut a, APIC_TMICT, 1000, 0); // 2000 ns
    assert_eq!(a.timer_deadline_ns(), Some(2000));
    let fx = wt(&mut a, APIC_TDCR, 0x1, 1000); // /4: 1000 ns left -> 2000
    assert!(fx.timer_changed);
    assert_eq!(a.timer_period_ns(), 4000);
    assert_eq!(a.timer_deadline_ns(), Some(3000));
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 1000), 500);
    // Same divisor: nothing to do.
    assert!(!wt(&mut a, APIC_TDCR, 0x1, 1500).timer_changed);
    // After expiry a divisor change does not fire the one-shot again.
    assert!(a.timer_expired(3000));
    wt(&mut a, APIC_TDCR, 0xb, 4000);
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.timer_period_ns(), 1000);
}

#[test]
fn tsc_deadline_gating() {
    let mut a = xapic(0);
    // Not allowed: mode bit 18 is dropped.
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_TSCDEADLINE | 0x50);
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    assert_eq!(r(&a, APIC_LVTT), 0x50);
    assert_eq!(a.write_tsc_deadline(1234), WriteEffects::default());
    assert_eq!(a.read_tsc_deadline(), 0);
    assert_eq!(a.tsc_deadline(), None);

    a.set_tsc_deadline_allowed(true);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 5000, 0);
    assert!(a.timer_deadline_ns().is_some());
    // Entering TSC-deadline mode cancels the count and clears TMICT.
    let fx = w(&mut a, APIC_LVTT, APIC_LVT_TIMER_TSCDEADLINE | 0x50);
    assert!(fx.timer_changed);
    assert_eq!(a.timer_mode(), TimerMode::TscDeadline);
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(r(&a, APIC_TMICT), 0);
    // TMICT writes are ignored, TMCCT reads 0.
    let fx = wt(&mut a, APIC_TMICT, 100, 10);
    assert!(!fx.timer_changed);
    assert_eq!(r(&a, APIC_TMICT), 0);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 20), 0);
    assert_eq!(a.timer_deadline_ns(), None);

    assert!(a.write_tsc_deadline(0x1_0000_0000).timer_changed);
    assert_eq!(a.read_tsc_deadline(), 0x1_0000_0000);
    assert_eq!(a.tsc_deadline(), Some(0x1_0000_0000));
    assert!(a.timer_expired(0));
    assert!(a.irr_set(0x50));
    assert_eq!(a.tsc_deadline(), None);
    assert_eq!(a.read_tsc_deadline(), 0);
    assert!(!a.timer_expired(0));
    // 0 disarms.
    a.write_tsc_deadline(77);
    a.write_tsc_deadline(0);
    assert_eq!(a.tsc_deadline(), None);
    // Leaving TSC-deadline mode clears the deadline.
    a.write_tsc_deadline(99);
    w(&mut a, APIC_LVTT, 0x50);
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    assert_eq!(a.read_tsc_deadline(), 0);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_TSCDEADLINE | 0x50);
    assert_eq!(a.tsc_deadline(), None);
}

#[test]
fn reserved_timer_mode_never_starts() {
    let mut a = xapic(0);
    a.set_tsc_deadline_allowed(true);
    w(&mut a, APIC_LVTT, (3 << 17) | 0x50);
    assert_eq!(a.timer_mode(), TimerMode::OneShot);
    wt(&mut a, APIC_TMICT, 100, 0);
    assert_eq!(a.timer_deadline_ns(), None);
    assert_eq!(a.mmio_read(APIC_TMCCT, 4, 1), 0);
    assert!(!a.timer_expired(1000));
}

// ---- state save / restore ----------------------------------------------------

fn word(st: &[u8; LAPIC_STATE_SIZE], off: u32) -> u32 {
    let o = off as usize;
    u32::from_le_bytes([st[o], st[o + 1], st[o + 2], st[o + 3]])
}

fn set_word(st: &mut [u8; LAPIC_STATE_SIZE], off: u32, v: u32) {
    let o = off as usize;
    st[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn state_round_trip_xapic() {
    let mut a = xapic(2);
    w(&mut a, APIC_TASKPRI, 0x20);
    w(&mut a, APIC_LDR, 0x0800_0000);
    w(&mut a, APIC_LVT0, 0x700);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    w(&mut a, APIC_TDCR, 0xb);
    wt(&mut a, APIC_TMICT, 1_000_000, 0);
    a.accept_irq(&fixed(0x91, TriggerMode::Level));
    a.ack_interrupt(0x91);
    a.accept_irq(&fixed(0x33, TriggerMode::Edge));
    let st = a.get_state(false, 400_000);
    assert_eq!(word(&st, APIC_TMCCT), 600_000);
    assert_eq!(word(&st, APIC_ID), 2 << 24);
    assert_eq!(word(&st, APIC_PROCPRI), 0x90);
    assert_eq!(word(&st, APIC_ISR + 0x40), 1 << 17);
    assert_eq!(word(&st, APIC_TMR + 0x40), 1 << 17);
    assert_eq!(word(&st, APIC_IRR + 0x10), 1 << 19);

    let mut b = new_apic(2, false);
    let fx = b.set_state(&st, false, 10_000_000).unwrap();
    assert!(fx.timer_changed && fx.lvt0_changed);
    assert!(b.enabled());
    // The restored count continues from TMCCT.
    assert_eq!(b.timer_deadline_ns(), Some(10_600_000));
    assert_eq!(b.timer_mode(), TimerMode::Periodic);
    assert_eq!(b.ppr(), 0x90);
    assert_eq!(b.highest_isr(), Some(0x91));
    assert!(b.tmr_set(0x91));
    assert_eq!(b.read_reg(APIC_TMCCT), 0);
    let st2 = b.get_state(false, 10_000_000);
    assert_eq!(&st2[..], &st[..]);
}

#[test]
fn state_restore_timer_edge_cases() {
    let mut a = xapic(0);
    w(&mut a, APIC_LVTT, 0x40);
    w(&mut a, APIC_TDCR, 0xb);
    let mut st = a.get_state(false, 0);
    set_word(&mut st, APIC_TMICT, 1000);
    // TMCCT above TMICT: a full period.
    set_word(&mut st, APIC_TMCCT, 5000);
    a.set_state(&st, false, 100).unwrap();
    assert_eq!(a.timer_deadline_ns(), Some(1100));
    // One-shot with TMCCT 0 expires at once, as upstream.
    set_word(&mut st, APIC_TMCCT, 0);
    a.set_state(&st, false, 100).unwrap();
    assert_eq!(a.timer_deadline_ns(), Some(100));
    // Periodic with TMCCT 0 starts a period.
    set_word(&mut st, APIC_LVTT, APIC_LVT_TIMER_PERIODIC | 0x40);
    set_word(&mut st, APIC_TMICT, 1_000_000);
    a.set_state(&st, false, 100).unwrap();
    assert_eq!(a.timer_deadline_ns(), Some(1_000_100));
    // LVR is forced to the model's version; PPR is recomputed.
    set_word(&mut st, APIC_LVR, 0xdead_beef);
    set_word(&mut st, APIC_PROCPRI, 0xff);
    a.set_state(&st, false, 0).unwrap();
    assert_eq!(r(&a, APIC_LVR), 0x5_0014);
    assert_eq!(a.ppr(), 0);
}

#[test]
fn state_tsc_deadline_survives_restore() {
    let mut a = xapic(0);
    a.set_tsc_deadline_allowed(true);
    w(&mut a, APIC_LVTT, APIC_LVT_TIMER_TSCDEADLINE | 0x50);
    a.write_tsc_deadline(5000);
    let st = a.get_state(false, 0);
    a.set_state(&st, false, 0).unwrap();
    assert_eq!(a.tsc_deadline(), Some(5000));
}

#[test]
fn state_x2apic_id_fixup() {
    let mut a = x2apic(0x1234);
    a.msr_write(0x830, (7u64 << 32) | 0x4030, 0).unwrap();
    // Legacy format: ID reads id << 24 (truncated); ICR split into ICR2.
    let st = a.get_state(false, 0);
    assert_eq!(word(&st, APIC_ID), 0x34 << 24);
    assert_eq!(word(&st, APIC_LDR), x2apic_ldr(0x1234));
    assert_eq!(word(&st, APIC_ICR), 0x4030);
    assert_eq!(word(&st, APIC_ICR2), 7);
    // 32-bit IDs.
    let st32 = a.get_state(true, 0);
    assert_eq!(word(&st32, APIC_ID), 0x1234);

    // Legacy set: the ID is ignored, LDR re-derived.
    let mut bad = st;
    set_word(&mut bad, APIC_ID, 0x99 << 24);
    set_word(&mut bad, APIC_LDR, 0);
    a.set_state(&bad, false, 0).unwrap();
    assert_eq!(a.msr_read(0x802, 0), Some(0x1234));
    assert_eq!(a.msr_read(0x80d, 0), Some(u64::from(x2apic_ldr(0x1234))));
    assert_eq!(a.msr_read(0x830, 0), Some((7u64 << 32) | 0x4030));

    // 32-bit IDs: must match the vcpu_id, else nothing changes.
    let mut wrong = st32;
    set_word(&mut wrong, APIC_ID, 0x1235);
    set_word(&mut wrong, APIC_TASKPRI, 0x70);
    assert_eq!(a.set_state(&wrong, true, 0), Err(ApicError::Invalid));
    assert_eq!(a.tpr(), 0);
    let mut ok = st32;
    set_word(&mut ok, APIC_TASKPRI, 0x70);
    set_word(&mut ok, APIC_PROCPRI, 0x70);
    a.set_state(&ok, true, 0).unwrap();
    assert_eq!(a.tpr(), 0x70);
    assert_eq!(a.get_state(true, 0)[..], ok[..]);
}

#[test]
fn state_xapic_takes_id() {
    let mut a = xapic(1);
    let mut st = a.get_state(true, 0);
    set_word(&mut st, APIC_ID, 9 << 24);
    a.set_state(&st, true, 0).unwrap();
    assert_eq!(a.id(), 9);
    assert!(a.matches_dest(false, Shorthand::None, 9, DestMode::Physical));
}

// ---- bounded random input ----------------------------------------------------

use crate::test_rng::XorShift;

fn check_invariants(a: &Lapic) {
    // PPR is always consistent with TPR and ISR.
    let tpr = u32::from(a.tpr());
    let isr = a.highest_isr().map_or(0, u32::from);
    let expect = if (tpr & 0xf0) >= (isr & 0xf0) { tpr } else { isr & 0xf0 };
    assert_eq!(u32::from(a.ppr()), expect);
    if let Some(v) = a.pending_interrupt() {
        assert!(u32::from(v & 0xf0) > u32::from(a.ppr()));
        assert!(a.irr_set(v));
    }
    if a.x2apic_mode() {
        assert!(a.hw_enabled());
        assert_eq!(a.id(), a.vcpu_id());
    }
    assert!(a.timer_deadline_ns().is_none() || a.tsc_deadline().is_none());
    assert!((1..=128).contains(&a.divide_count()));
}

#[test]
fn random_ops_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut apics = [new_apic(0, true), new_apic(0x1ff, false), new_apic(u32::MAX, false)];
    let mut now: u64 = 0;
    for i in 0..100_000u32 {
        let x = rng.next();
        let y = rng.next();
        let a = &mut apics[(i % 3) as usize];
        // Time mostly moves forward, sometimes jumps to extremes.
        now = match x % 97 {
            0 => u64::MAX - (y % 1000),
            1 => 0,
            _ => now.saturating_add(y % 300_000),
        };
        // Favour the register area so the semantics are actually exercised.
        let off = if y & 1 == 0 { ((y >> 8) as u32) & 0x3ff } else { (y >> 8) as u32 };
        let val = rng.next();
        match x % 23 {
            0..=2 => {
                let _ = a.mmio_write(off & 0xff0, 4, val, now);
            }
            3 => {
                let _ = a.mmio_write(off, (val % 10) as u8, val, now);
            }
            4 | 5 => {
                let _ = a.mmio_read(off, (val % 10) as u8, now);
            }
            6 | 7 => {
                let msr = 0x7f0 + (off % 0x120);
                let _ = a.msr_write(msr, if val & 1 == 0 { val & 0xffff_ffff } else { val }, now);
            }
            8 => {
                let _ = a.msr_read(0x7f0 + (off % 0x120), now);
            }
            9 => {
                let base = match val % 4 {
                    0 => APIC_PAGE | MSR_IA32_APICBASE_ENABLE,
                    1 => APIC_PAGE | MSR_IA32_APICBASE_ENABLE | MSR_IA32_APICBASE_X2APIC,
                    2 => APIC_PAGE,
                    _ => y,
                };
                let _ = a.set_base(base, x & 2 != 0, x & 4 != 0, NO_RESERVED);
            }
            10 | 11 => {
                let req = IrqRequest {
                    vector: val as u8,
                    delivery_mode: DeliveryMode::from_bits((val >> 8) as u32),
                    dest_mode: DestMode::Physical,
                    shorthand: Shorthand::None,
                    dest_id: 0,
                    trigger: if val & (1 << 12) != 0 { TriggerMode::Level } else { TriggerMode::Edge },
                    level: val & (1 << 13) != 0,
                    msi_redir_hint: false,
                };
                let _ = a.accept_irq(&req);
            }
            12 => {
                if let Some(v) = a.pending_interrupt() {
                    a.ack_interrupt(v);
                } else {
                    a.ack_interrupt(val as u8);
                }
            }
            13 => {
                let _ = a.eoi();
            }
            14 => {
                let _ = a.timer_expired(now);
                if let Some(d) = a.timer_deadline_ns() {
                    if val & 1 == 0 {
                        let _ = a.timer_expired(d);
                    }
                }
            }
            15 => {
                let _ = a.write_tsc_deadline(val);
                let _ = a.read_tsc_deadline();
            }
            16 => a.set_tpr(val as u8),
            17 => {
                let sh = match val % 4 {
                    0 => Shorthand::None,
                    1 => Shorthand::SelfOnly,
                    2 => Shorthand::AllIncludingSelf,
                    _ => Shorthand::AllExcludingSelf,
                };
                let dm = if val & 4 != 0 { DestMode::Logical } else { DestMode::Physical };
                let _ = a.matches_dest(val & 8 != 0, sh, (val >> 32) as u32, dm);
                let _ = a.accept_pic_intr();
                let _ = a.local_lvt((val >> 4) as u8 % 3);
                let _ = a.mmio_covers(val);
            }
            18 => {
                let st = a.get_state(val & 1 != 0, now);
                let _ = a.set_state(&st, val & 1 != 0, now);
            }
            19 => {
                let mut st = [0u8; LAPIC_STATE_SIZE];
                for b in st.iter_mut() {
                    *b = rng.next() as u8;
                }
                let _ = a.set_state(&st, val & 1 != 0, now);
            }
            20 => {
                if val.is_multiple_of(50) {
                    a.reset(val & 2 != 0, val & 4 != 0);
                }
            }
            21 => a.set_tsc_deadline_allowed(val & 1 != 0),
            _ => {
                // Keep the APIC usable: software-enable and enable the timer.
                if a.x2apic_mode() {
                    let _ = a.msr_write(0x80f, 0x1ff, now);
                    let _ = a.msr_write(0x832, val & 0x6_00ff, now);
                    let _ = a.msr_write(0x838, val >> 48, now);
                } else {
                    let _ = a.mmio_write(APIC_SPIV, 4, 0x1ff, now);
                    let _ = a.mmio_write(APIC_LVTT, 4, val & 0x6_00ff, now);
                    let _ = a.mmio_write(APIC_TMICT, 4, val >> 48, now);
                }
            }
        }
        check_invariants(a);
        let _ = a.get_state(false, now);
        let _ = a.mmio_read(APIC_TMCCT, 4, now);
    }
}
