// SPDX-License-Identifier: GPL-2.0
//! System Management Mode (upstream's arch/x86/kvm/smm.c and the SMM parts of
//! x86.c: process_smi, enter_smm, emulator_leave_smm, kvm_smm_changed, the
//! smi fields of KVM_GET/SET_VCPU_EVENTS, MSR_IA32_SMBASE, KVM_SMI).
//!
//! An SMI (KVM_SMI, KVM_SET_VCPU_EVENTS' smi.pending, or an IPI with SMI
//! delivery mode from the in-kernel local APIC) stays pending until an entry
//! at which no event is being (re)injected and the vCPU is not in SMM
//! already. It is taken before NMIs and interrupts: the state is saved in the
//! state-save area at SMBASE + 0xFE00 (src/x86-arch smram.rs: the AMD64 layout
//! if the guest's CPUID has long mode, else the 32-bit one), and the vCPU
//! starts at SMBASE + 0x8000 in a real-mode-like state with NMIs blocked.
//! RSM (intercepted by the vendor) loads the state back with upstream's
//! checks; a state that does not load is a triple fault (KVM_EXIT_SHUTDOWN).
//!
//! While in SMM the vCPU sees memory address space 1 (memory slots with
//! `slot >> 16 == 1`; KVM_CAP_MULTI_ADDRESS_SPACE), as upstream: the VMM maps
//! SMRAM there together with whatever else SMM code may touch. INITs are
//! latched while in SMM and taken after RSM.
//!
//! Which vendors offer SMM: those that virtualize MSR_IA32_SMBASE
//! (`has_emulated_msr`, as upstream decides KVM_CAP_X86_SMM); a vendor that
//! does not gets KVM_CAP_X86_SMM 0, KVM_SMI ENOTTY and SMM states refused.
//! kvm-amd intercepts RSM. kvm-intel cannot: a guest's RSM is a #UD there,
//! so #UD is intercepted while in SMM and an RSM found at RIP is carried out
//! (upstream emulates it from its #UD handler); SMM's real-mode-like state
//! runs under unrestricted guest, which kvm-intel requires.
//! Nested virtualization is not offered, so the SVM "SMI in guest mode"
//! parts (svm_enter_smm/svm_leave_smm's nested state) never apply: a
//! state-save area claiming guest mode fails RSM, as upstream's does for a
//! guest without SVM.

use crate::arch::msr;
use crate::arch::regs::{cr0, cr4, efer};
use crate::arch::smram::{self, Seg, SegAttrs};
use crate::arch_state::{rflags, ArchState};
use crate::run::Next;
use crate::uapi::{self, kvm_dtable, kvm_segment};
use crate::vcpu::{Vcpu, VcpuInner};
use core::sync::atomic::Ordering;
use kernel::prelude::*;

/// A vCPU's SMM state (upstream's HF_SMM_MASK, HF_SMM_INSIDE_NMI_MASK,
/// smi_pending, smi_count, smbase). Kept in `VcpuInner`, under the vCPU's
/// mutex; whether the vCPU is in SMM is mirrored in `VcpuShared::smm` for the
/// guest-memory accessors, which pick the address space from it.
pub(crate) struct VcpuSmm {
    pub in_smm: bool,
    /// The SMI arrived while NMIs were blocked: RSM leaves them blocked.
    pub inside_nmi: bool,
    pub smi_pending: bool,
    pub smi_count: u64,
    pub smbase: u64,
    /// Entering SMM at this entry failed: KVM_RUN returns this error (EIO
    /// when SMRAM is not writable in address space 1, where upstream marks
    /// the VM dead; ENOMEM).
    entry_failed: Option<Error>,
}

impl Default for VcpuSmm {
    fn default() -> Self {
        VcpuSmm {
            in_smm: false,
            inside_nmi: false,
            smi_pending: false,
            smi_count: 0,
            smbase: smram::DEFAULT_SMBASE,
            entry_failed: None,
        }
    }
}

/// Whether the vendor module offers SMM (KVM_CAP_X86_SMM's answer).
pub(crate) fn vendor_supports() -> bool {
    crate::virtualization::vendor().map_or(false, |v| v.runs_guests() && v.has_emulated_msr(msr::IA32_SMBASE))
}

/// The memory address space the vCPU uses now (upstream's kvm_arch_vcpu_memslots_id).
pub(crate) fn as_id(vcpu: &Vcpu) -> usize {
    vcpu.shared.smm.load(Ordering::Relaxed) as usize
}

/// kvm_run->flags after KVM_RUN.
pub(crate) fn run_flags(inner: &VcpuInner) -> u16 {
    if inner.smm.in_smm {
        uapi::KVM_RUN_X86_SMM as u16
    } else {
        0
    }
}

/// Upstream's kvm_smm_changed: the mode bit, the address space, and the
/// requests that follow (after RSM, a latched INIT or a pending SMI is looked
/// at again).
fn smm_changed(vcpu: &Vcpu, inner: &mut VcpuInner, entering: bool) {
    inner.smm.in_smm = entering;
    if !entering {
        inner.smm.inside_nmi = false;
        if vcpu.shared.irq.in_kernel {
            vcpu.shared.irq.requests.fetch_or(1, Ordering::SeqCst);
        }
    }
    vcpu.shared.smm.store(entering, Ordering::Relaxed);
    // Another set of page tables: flush what the TLB may hold of the old
    // one (upstream's kvm_mmu_reset_context + kvm_mmu_load).
    inner.flushed_gen = u64::MAX;
    inner.flush_guest_tlb = true;
}

/// INIT or RESET (upstream's kvm_vcpu_reset): no SMI stays pending; SMBASE
/// returns to its default only at RESET.
pub(crate) fn vcpu_reset(inner: &mut VcpuInner, init: bool) {
    inner.smm.smi_pending = false;
    inner.smm.smi_count = 0;
    if !init {
        inner.smm.smbase = smram::DEFAULT_SMBASE;
    }
}

/// KVM_SMI (upstream's kvm_vcpu_ioctl_smi: a request, which becomes
/// smi_pending at the next entry or KVM_GET_VCPU_EVENTS).
pub(crate) fn ioctl_smi(vcpu: &Vcpu) -> Result<isize> {
    if !vendor_supports() {
        return Err(ENOTTY);
    }
    vcpu.shared.irq.smi_queued.store(true, Ordering::SeqCst);
    Ok(0)
}

/// Folds an SMI posted by KVM_SMI or a local APIC into the vCPU (upstream's
/// KVM_REQ_SMI -> process_smi).
pub(crate) fn take_posted(vcpu: &Vcpu, inner: &mut VcpuInner) {
    if vcpu.shared.irq.smi_queued.swap(false, Ordering::SeqCst) {
        inner.smm.smi_pending = true;
    }
}

/// Whether a halted vCPU wakes for a pending SMI (svm_smi_allowed: not
/// while in SMM; GIF is always set without nested virtualization).
pub(crate) fn smi_wakes(inner: &VcpuInner) -> bool {
    inner.smm.smi_pending && !inner.smm.in_smm
}

/// Whether INIT and SIPI are blocked now (kvm_apic_init_sipi_allowed): INIT
/// stays latched, SIPIs are dropped.
pub(crate) fn init_blocked(inner: &VcpuInner) -> bool {
    inner.smm.in_smm
}

/// KVM_SET_MP_STATE: INIT_RECEIVED/SIPI_RECEIVED are refused while INIT is
/// blocked or an SMI is pending (upstream prioritizes the SMI).
pub(crate) fn mp_state_refused(inner: &VcpuInner, state: u32) -> bool {
    (init_blocked(inner) || inner.smm.smi_pending)
        && (state == uapi::KVM_MP_STATE_SIPI_RECEIVED || state == uapi::KVM_MP_STATE_INIT_RECEIVED)
}

/// The SMI step of choosing this entry's event (kvm_check_and_inject_events,
/// called once no exception or re-injected event holds the slot): enters SMM
/// if an SMI is pending and allowed. Returns whether it did (the slot is
/// then taken: no NMI or interrupt goes in at this entry).
pub(crate) fn inject_smi(vcpu: &Vcpu, inner: &mut VcpuInner) -> bool {
    take_posted(vcpu, inner);
    if !smi_wakes(inner) {
        return false;
    }
    inner.smm.smi_pending = false;
    inner.smm.smi_count += 1;
    if let Err(e) = enter_smm(vcpu, inner) {
        inner.smm.entry_failed = Some(e);
    }
    true
}

/// After the events were chosen: the error if entering SMM failed (see
/// `VcpuSmm::entry_failed`).
pub(crate) fn check_entry(inner: &mut VcpuInner) -> Result {
    match inner.smm.entry_failed.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn attrs_of(s: &kvm_segment) -> SegAttrs {
    SegAttrs { type_: s.type_, s: s.s, dpl: s.dpl, present: s.present, avl: s.avl, l: s.l, db: s.db, g: s.g }
}

fn save_seg(s: &kvm_segment) -> Seg {
    Seg { selector: s.selector, flags: smram::seg_flags(&attrs_of(s)), limit: s.limit, base: s.base }
}

fn load_seg(s: &Seg) -> kvm_segment {
    let a = smram::seg_attrs(s.flags);
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: a.type_,
        present: a.present,
        dpl: a.dpl,
        db: a.db,
        s: a.s,
        l: a.l,
        g: a.g,
        avl: a.avl,
        unusable: (a.present == 0) as u8,
        padding: 0,
    }
}

fn save_dt(d: &kvm_dtable) -> Seg {
    Seg { base: d.base, limit: d.limit as u32, ..Default::default() }
}

fn load_dt(s: &Seg) -> kvm_dtable {
    kvm_dtable { base: s.base, limit: s.limit as u16, ..Default::default() }
}

/// What enter_smm_save_state_32/64 record.
fn save_state(inner: &VcpuInner) -> smram::State {
    let s = &inner.state;
    smram::State {
        gprs: s.gprs,
        rip: s.rip,
        rflags: s.rflags,
        cr0: s.cr0,
        cr3: s.cr3,
        cr4: s.cr4,
        efer: s.efer,
        dr6: s.dr6,
        dr7: s.dr7,
        es: save_seg(&s.es),
        cs: save_seg(&s.cs),
        ss: save_seg(&s.ss),
        ds: save_seg(&s.ds),
        fs: save_seg(&s.fs),
        gs: save_seg(&s.gs),
        ldtr: save_seg(&s.ldt),
        tr: save_seg(&s.tr),
        gdtr: save_dt(&s.gdt),
        idtr: save_dt(&s.idt),
        smbase: inner.smm.smbase as u32,
        revision: 0,
        int_shadow: s.interrupt_shadow as u8,
        svm_guest_flag: 0,
        svm_guest_vmcb_gpa: 0,
    }
}

/// The state-save area's bytes, on the heap: SMM is entered and left from
/// deep inside KVM_RUN, whose stack is already large.
fn area_buffer() -> Result<KBox<[u8; smram::SIZE]>> {
    crate::heap::zeroed_bytes::<{ smram::SIZE }>()
}

/// Upstream's enter_smm. On failure to write SMRAM nothing has changed.
#[inline(never)]
fn enter_smm(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result {
    let lm = inner.features.lm;
    let mut area = area_buffer()?;
    {
        let saved = save_state(inner);
        if lm {
            smram::encode_64(&saved, &mut area);
        } else {
            smram::encode_32(&saved, &mut area);
        }
    }
    let smbase = inner.smm.smbase;
    // SMRAM is written in the SMM address space.
    if !matches!(crate::emulate::write_gpa_in(vcpu, 1, smbase.wrapping_add(smram::SAVE_AREA), &area[..]), Ok(true)) {
        return Err(EIO);
    }
    smm_changed(vcpu, inner, true);
    let s = &mut inner.state;
    if s.nmi_masked {
        inner.smm.inside_nmi = true;
    } else {
        s.nmi_masked = true;
    }
    s.rflags = rflags::FIXED;
    s.rip = smram::HANDLER;
    s.interrupt_shadow = false;
    s.cr0 &= !(cr0::PE | cr0::EM | cr0::TS | cr0::PG);
    s.cr4 = 0;
    // Undocumented, as upstream: the IDT limit is 0 in SMM.
    s.idt = kvm_dtable::default();
    s.dr7 = 0x400;
    let seg = |selector: u16, base: u64| kvm_segment {
        base,
        limit: 0xffff_ffff,
        selector,
        type_: 3,
        present: 1,
        s: 1,
        g: 1,
        ..Default::default()
    };
    s.cs = seg(((smbase >> 4) & 0xffff) as u16, smbase);
    let data = seg(0, 0);
    (s.ds, s.es, s.fs, s.gs, s.ss) = (data, data, data, data, data);
    if lm {
        s.efer = 0;
    }
    Ok(())
}

/// The guest executed RSM (the vendor intercepts it; upstream's em_rsm).
pub(crate) fn rsm(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    if !inner.smm.in_smm {
        inner.state.queue_exception(6, None);
        return Ok(Next::Guest);
    }
    // An allocation failure is KVM_RUN's ENOMEM, not the guest's problem.
    let mut area = area_buffer()?;
    if leave_smm(vcpu, inner, &mut area).is_err() {
        // Upstream's triple fault (KVM_REQ_TRIPLE_FAULT): a shutdown exit.
        inner.shutdown_requested = true;
        return Ok(Next::Guest);
    }
    inner.flush_guest_tlb = true;
    crate::guest_debug::instruction_completed(inner);
    Ok(Next::Guest)
}

/// An intercepted #UD in SMM (#UD is always intercepted): RSM (with any
/// legacy prefixes) leaves SMM; anything else is an ordinary #UD
/// (forced_emulation::handle_ud).
pub(crate) fn ud_in_smm(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    let is_rsm = crate::emulate::fetch_at_rip(vcpu, &inner.state).map_or(false, |(b, n)| {
        let b = &b[..n];
        let p = b.iter().take_while(|x| matches!(x, 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3)).count();
        b.get(p..p + 2) == Some(&[0x0f, 0xaa][..])
    });
    if is_rsm {
        return rsm(vcpu, inner);
    }
    crate::forced_emulation::handle_ud(vcpu, inner)
}

/// The state could not be loaded.
struct Bad;

/// Upstream's emulator_leave_smm.
#[inline(never)]
fn leave_smm(vcpu: &Vcpu, inner: &mut VcpuInner, area: &mut [u8; smram::SIZE]) -> Result<(), Bad> {
    let at = inner.smm.smbase.wrapping_add(smram::SAVE_AREA);
    if !matches!(crate::emulate::read_gpa_in(vcpu, 1, at, &mut area[..]), Ok(true)) {
        return Err(Bad);
    }
    if !inner.smm.inside_nmi {
        inner.state.nmi_masked = false;
    }
    smm_changed(vcpu, inner, false);
    let lm = inner.features.lm;
    // Back to a real-mode-like state from which CR0/CR3/CR4/EFER can be
    // loaded in the architectural order.
    let s = &mut inner.state;
    if lm {
        s.cr4 &= !cr4::PCIDE;
        // A 32-bit code segment is needed to clear EFER.LMA.
        s.cs = kvm_segment { type_: 0xb, s: 1, g: 1, present: 1, ..Default::default() };
    }
    if s.cr0 & cr0::PE != 0 {
        s.cr0 &= !(cr0::PG | cr0::PE);
        s.efer &= !efer::LMA;
    }
    if lm {
        s.cr4 &= !cr4::PAE;
        s.efer = 0;
    }
    if lm {
        let st = smram::decode_64(area);
        // svm_leave_smm: an SMI taken in guest mode needs nested
        // virtualization, which is not offered.
        if st.svm_guest_flag != 0 {
            return Err(Bad);
        }
        load_state_64(vcpu, inner, &st)
    } else {
        load_state_32(vcpu, inner, &smram::decode_32(area))
    }
}

/// kvm_set_dr for DR6/DR7 from SMRAM: the upper halves must be clear.
fn load_drs(s: &mut ArchState, dr6: u64, dr7: u64) -> Result<(), Bad> {
    if dr6 >> 32 != 0 || dr7 >> 32 != 0 {
        return Err(Bad);
    }
    s.dr6 = (dr6 | 0xffff_0ff0) & !0x1000;
    s.dr7 = (dr7 | 0x400) & !0xd000;
    Ok(())
}

/// Upstream's rsm_enter_protected_mode: CR3, then CR4 without PCIDE (PAE
/// before paging), CR0, then PCIDE and the PCID, each with the checks of a
/// MOV to that register.
fn enter_protected_mode(vcpu: &Vcpu, inner: &mut VcpuInner, cr0v: u64, cr3v: u64, cr4v: u64) -> Result<(), Bad> {
    let (mut cr3v, mut pcid) = (cr3v, 0);
    if cr4v & cr4::PCIDE != 0 {
        pcid = cr3v & 0xfff;
        cr3v &= !0xfff;
    }
    // Paging is off here, so CR3 takes any value (kvm_set_cr3 checks it
    // against MAXPHYADDR only in long mode).
    inner.state.cr3 = cr3v;
    crate::cr::set_cr4(vcpu, inner, cr4v & !cr4::PCIDE).map_err(|_| Bad)?;
    crate::cr::set_cr0(vcpu, inner, cr0v).map_err(|_| Bad)?;
    if cr4v & cr4::PCIDE != 0 {
        crate::cr::set_cr4(vcpu, inner, cr4v).map_err(|_| Bad)?;
        if pcid != 0 {
            let maxphy = crate::cpuid::guest_maxphyaddr(&inner.cpuid);
            let new = cr3v | pcid;
            if maxphy < 64 && (new & !0xfff) >> maxphy != 0 {
                return Err(Bad);
            }
            inner.state.cr3 = new;
        }
    }
    Ok(())
}

/// Upstream's rsm_load_state_64.
fn load_state_64(vcpu: &Vcpu, inner: &mut VcpuInner, st: &smram::State) -> Result<(), Bad> {
    let s = &mut inner.state;
    s.gprs = st.gprs;
    s.rip = st.rip;
    s.rflags = st.rflags | rflags::FIXED;
    load_drs(s, st.dr6, st.dr7)?;
    inner.smm.smbase = st.smbase as u64;
    // kvm_set_msr(EFER) as the guest would write it (LMA follows CR0.PG).
    let new_efer = st.efer & !efer::LMA;
    if !crate::arch::validity::valid_efer(new_efer, &inner.features) {
        return Err(Bad);
    }
    let s = &mut inner.state;
    s.efer = new_efer;
    s.tr = load_seg(&st.tr);
    s.idt = load_dt(&st.idtr);
    s.ldt = load_seg(&st.ldtr);
    s.gdt = load_dt(&st.gdtr);
    enter_protected_mode(vcpu, inner, st.cr0, st.cr3, st.cr4)?;
    let s = &mut inner.state;
    load_segs(s, st);
    s.interrupt_shadow = st.int_shadow != 0;
    Ok(())
}

/// The six segment registers from the save area.
fn load_segs(s: &mut ArchState, st: &smram::State) {
    s.es = load_seg(&st.es);
    s.cs = load_seg(&st.cs);
    s.ss = load_seg(&st.ss);
    s.ds = load_seg(&st.ds);
    s.fs = load_seg(&st.fs);
    s.gs = load_seg(&st.gs);
}

/// Upstream's rsm_load_state_32 (only the low eight registers exist).
fn load_state_32(vcpu: &Vcpu, inner: &mut VcpuInner, st: &smram::State) -> Result<(), Bad> {
    let s = &mut inner.state;
    s.rflags = st.rflags | rflags::FIXED;
    s.rip = st.rip;
    // Element by element: objtool does not know the length-mismatch panic
    // of a u64 copy_from_slice returns never, and warns of a fall-through.
    for (d, v) in s.gprs.iter_mut().zip(st.gprs.iter()).take(8) {
        *d = *v;
    }
    load_drs(s, st.dr6, st.dr7)?;
    s.tr = load_seg(&st.tr);
    s.ldt = load_seg(&st.ldtr);
    s.gdt = load_dt(&st.gdtr);
    s.idt = load_dt(&st.idtr);
    load_segs(s, st);
    inner.smm.smbase = st.smbase as u64;
    enter_protected_mode(vcpu, inner, st.cr0, st.cr3, st.cr4)?;
    inner.state.interrupt_shadow = st.int_shadow != 0;
    Ok(())
}

/// The smi part of KVM_GET_VCPU_EVENTS (an SMI posted by an APIC counts as
/// pending, as upstream processes KVM_REQ_SMI first).
pub(crate) fn get_events(vcpu: &Vcpu, inner: &VcpuInner, e: &mut uapi::kvm_vcpu_events) {
    e.smi.smm = inner.smm.in_smm as u8;
    e.smi.pending = (inner.smm.smi_pending || vcpu.shared.irq.smi_queued.load(Ordering::SeqCst)) as u8;
    e.smi.smm_inside_nmi = inner.smm.inside_nmi as u8;
    e.smi.latched_init = (vcpu.shared.irq.in_kernel && vcpu.shared.irq.latched_init()) as u8;
    e.flags |= uapi::KVM_VCPUEVENT_VALID_SMM;
}

/// KVM_SET_VCPU_EVENTS' checks on the smi part, before anything changes.
pub(crate) fn check_events(inner: &VcpuInner, e: &uapi::kvm_vcpu_events) -> Result {
    if e.flags & uapi::KVM_VCPUEVENT_VALID_SMM == 0 {
        return Ok(());
    }
    // INITs are latched while in SMM: not with an INIT already received.
    if (e.smi.smm != 0 || e.smi.pending != 0) && inner.mp_state == uapi::KVM_MP_STATE_INIT_RECEIVED {
        return Err(EINVAL);
    }
    // Without SMM support (upstream without CONFIG_KVM_SMM).
    if !vendor_supports() && (e.smi.smm != 0 || e.smi.pending != 0 || e.smi.smm_inside_nmi != 0) {
        return Err(EINVAL);
    }
    Ok(())
}

/// KVM_SET_VCPU_EVENTS' smi part (after `check_events`). Entering or leaving
/// SMM this way only switches the mode (no SMRAM access), as upstream.
pub(crate) fn set_events(vcpu: &Vcpu, inner: &mut VcpuInner, e: &uapi::kvm_vcpu_events) {
    if e.flags & uapi::KVM_VCPUEVENT_VALID_SMM == 0 {
        return;
    }
    let smm = e.smi.smm != 0;
    if inner.smm.in_smm != smm {
        smm_changed(vcpu, inner, smm);
    }
    inner.smm.smi_pending = e.smi.pending != 0;
    if smm {
        inner.smm.inside_nmi = e.smi.smm_inside_nmi != 0;
    }
    if vcpu.shared.irq.in_kernel {
        vcpu.shared.irq.set_latched_init(e.smi.latched_init != 0);
    }
}

/// MSR_IA32_SMBASE: only user space reads and writes it (upstream); the
/// guest gets #GP. MSR_SMI_COUNT, the SMIs taken since RESET or INIT:
/// anyone reads it, only user space writes it. None for other MSRs, or for
/// SMBASE when SMM is not offered.
pub(crate) fn get_msr(inner: &VcpuInner, index: u32, host: bool) -> Option<Result<u64>> {
    match index {
        msr::SMI_COUNT => Some(Ok(inner.smm.smi_count)),
        msr::IA32_SMBASE if vendor_supports() => Some(if host { Ok(inner.smm.smbase) } else { Err(EINVAL) }),
        _ => None,
    }
}

/// See [`get_msr`].
pub(crate) fn set_msr(inner: &mut VcpuInner, index: u32, value: u64, host: bool) -> Option<Result> {
    let field = match index {
        msr::SMI_COUNT => &mut inner.smm.smi_count,
        msr::IA32_SMBASE if vendor_supports() => &mut inner.smm.smbase,
        _ => return None,
    };
    if !host {
        return Some(Err(EINVAL));
    }
    *field = value;
    Some(Ok(()))
}
