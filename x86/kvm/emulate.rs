// SPDX-License-Identifier: GPL-2.0
//! Glue between the vCPU and the instruction emulator (src/x86-emulator): guest
//! memory by linear address (through the guest's page tables and the memory
//! slots), MMIO exits to user space and their completion, string I/O, and the
//! length of an instruction when the hardware does not report the next RIP.

use crate::arch::regs::{cr0, cr4, efer};
use crate::arch_state::{gpr, rflags, ArchState};
use crate::exit::CrOp;
use crate::emulator::paging::{self, Access, PagingMode, WalkError};
use crate::emulator::{self, Env, Mode, Regs, Seg, Stop};
use crate::run::{set_rip, Next};
use crate::vcpu::{Pending, Vcpu, VcpuInner};
use kernel::prelude::*;
use kernel::uaccess::UserSlice;

/// An MMIO read waiting for (or holding) the data user space provides; the
/// instruction is executed again with it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingMmio {
    pub gpa: u64,
    pub len: u8,
    pub data: Option<[u8; 8]>,
}

fn mode_of(s: &ArchState) -> Mode {
    if s.cr0 & cr0::PE == 0 || s.rflags & rflags::VM != 0 {
        Mode::Bits16
    } else if s.long_mode() && s.cs.l != 0 {
        Mode::Bits64
    } else if s.cs.db != 0 {
        Mode::Bits32
    } else {
        Mode::Bits16
    }
}

fn paging_of(s: &ArchState) -> PagingMode {
    PagingMode {
        cr0_pg: s.cr0 & cr0::PG != 0,
        cr0_wp: s.cr0 & cr0::WP != 0,
        cr3: s.cr3,
        cr4_pae: s.cr4 & cr4::PAE != 0,
        cr4_pse: s.cr4 & cr4::PSE != 0,
        efer_lma: s.efer & efer::LMA != 0,
        efer_nxe: s.efer & efer::NXE != 0,
        user: s.cpl() == 3,
    }
}

/// Reads guest-physical memory backed by a memory slot of the vCPU's current
/// address space (upstream's kvm_vcpu_read_guest; through the VMM's mapping,
/// so a bad address is EFAULT, never a kernel fault).
pub(crate) fn read_gpa(vcpu: &Vcpu, gpa: u64, buf: &mut [u8]) -> Result<bool> {
    read_gpa_in(vcpu, crate::smm::as_id(vcpu), gpa, buf)
}

/// Reads guest memory of address space 0 whatever the vCPU's mode (upstream's
/// kvm_read_guest on the VM, as kvmclock and the vAPIC page use it).
pub(crate) fn read_gpa_as0(vcpu: &Vcpu, gpa: u64, buf: &mut [u8]) -> Result<bool> {
    read_gpa_in(vcpu, 0, gpa, buf)
}

/// Reads guest memory of address space `as_id`.
pub(crate) fn read_gpa_in(vcpu: &Vcpu, as_id: usize, gpa: u64, buf: &mut [u8]) -> Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let a = gpa.wrapping_add(done as u64);
        let n = (buf.len() - done).min(4096 - (a & 0xfff) as usize);
        let Some((hva, _)) = vcpu.vm.gfn_to_hva(as_id, a >> 12) else { return Ok(false) };
        UserSlice::new((hva + (a & 0xfff)) as usize, n).reader().read_slice(&mut buf[done..done + n])?;
        done += n;
    }
    Ok(true)
}

/// The guest-physical address of linear address `lin` for a supervisor read
/// through the guest's page tables (upstream's kvm_mmu_gva_to_gpa_system, as
/// KVM_TRANSLATE uses it): None if the walk faults or a table is not in RAM.
/// Without paging the address is its own translation.
pub(crate) fn gva_to_gpa_system(vcpu: &Vcpu, st: &ArchState, lin: u64) -> Option<u64> {
    let mut pm = paging_of(st);
    if !pm.cr0_pg {
        return Some(lin);
    }
    pm.user = false;
    let mut rd = |gpa: u64, n: u8| {
        let mut b = [0u8; 8];
        match read_gpa(vcpu, gpa, &mut b[..n as usize]) {
            Ok(true) => Some(u64::from_le_bytes(b)),
            _ => None,
        }
    };
    paging::translate(lin, Access::Read, &pm, &mut rd).ok()
}

/// Writes guest-physical memory backed by a writable slot of the vCPU's
/// current address space; logs the pages dirty.
pub(crate) fn write_gpa(vcpu: &Vcpu, gpa: u64, data: &[u8]) -> Result<bool> {
    write_gpa_in(vcpu, crate::smm::as_id(vcpu), gpa, data)
}

/// Writes guest memory of address space 0 (see [`read_gpa_as0`]).
pub(crate) fn write_gpa_as0(vcpu: &Vcpu, gpa: u64, data: &[u8]) -> Result<bool> {
    write_gpa_in(vcpu, 0, gpa, data)
}

/// Writes guest memory of address space `as_id`.
pub(crate) fn write_gpa_in(vcpu: &Vcpu, as_id: usize, gpa: u64, data: &[u8]) -> Result<bool> {
    let mut done = 0;
    while done < data.len() {
        let a = gpa.wrapping_add(done as u64);
        let n = (data.len() - done).min(4096 - (a & 0xfff) as usize);
        match vcpu.vm.gfn_to_hva(as_id, a >> 12) {
            Some((hva, true)) => {
                UserSlice::new((hva + (a & 0xfff)) as usize, n).writer().write_slice(&data[done..done + n])?;
                vcpu.vm.mark_page_dirty(as_id, a >> 12, vcpu.shared.dirty_ring.as_ref());
            }
            _ => return Ok(false),
        }
        done += n;
    }
    Ok(true)
}

/// The emulator's view of the vCPU: memory by linear address; RAM directly, the
/// pending MMIO access through user space.
struct VcpuEnv<'a> {
    vcpu: &'a Vcpu,
    st: &'a ArchState,
    mmio: Option<PendingMmio>,
    /// The MMIO read this execution needs (set on NeedMmioRead).
    wanted_read: Option<(u64, u8)>,
    /// The MMIO write this execution made.
    write: Option<(u64, [u8; 8], u8)>,
}

impl VcpuEnv<'_> {
    fn translate(&self, lin: u64, access: Access) -> core::result::Result<u64, Stop> {
        let pm = paging_of(self.st);
        let vcpu = self.vcpu;
        let mut rd = |gpa: u64, n: u8| {
            let mut b = [0u8; 8];
            match read_gpa(vcpu, gpa, &mut b[..n as usize]) {
                Ok(true) => Some(u64::from_le_bytes(b)),
                _ => None,
            }
        };
        paging::translate(lin, access, &pm, &mut rd).map_err(|e| match e {
            WalkError::Fault(f) => Stop::PageFault(f),
            WalkError::TableUnreadable(_) => Stop::Internal,
        })
    }

    fn is_ram(&self, gpa: u64) -> bool {
        self.vcpu.vm.gfn_to_hva(crate::smm::as_id(self.vcpu), gpa >> 12).is_some()
    }
}

impl Env for VcpuEnv<'_> {
    fn seg_base(&self, seg: Seg) -> u64 {
        let s = self.st;
        let long64 = s.long_mode() && s.cs.l != 0;
        match seg {
            Seg::Fs => s.fs.base,
            Seg::Gs => s.gs.base,
            _ if long64 => 0,
            Seg::Es => s.es.base,
            Seg::Cs => s.cs.base,
            Seg::Ss => s.ss.base,
            Seg::Ds => s.ds.base,
        }
    }

    fn long_mode(&self) -> bool {
        self.st.long_mode() && self.st.cs.l != 0
    }

    fn read(&mut self, lin: u64, buf: &mut [u8]) -> core::result::Result<(), Stop> {
        // Accesses that cross a page are split, each half translated.
        let first = buf.len().min(4096 - (lin & 0xfff) as usize);
        for (off, len) in [(0usize, first), (first, buf.len() - first)] {
            if len == 0 {
                continue;
            }
            let gpa = self.translate(lin.wrapping_add(off as u64), Access::Read)?;
            if self.is_ram(gpa) {
                // As upstream's read_emulate: a read that fails is MMIO. The
                // slot went away since is_ram (another thread deleted or moved
                // it), or its user memory did (EFAULT from the copy).
                if let Ok(true) = read_gpa(self.vcpu, gpa, &mut buf[off..off + len]) {
                    continue;
                }
            }
            if let Some(v) = kernel_mmio_read(self.vcpu, gpa, len as u8) {
                buf[off..off + len].copy_from_slice(&v.to_le_bytes()[..len]);
                continue;
            }
            match self.mmio {
                Some(PendingMmio { gpa: g, len: l, data: Some(d) }) if g == gpa && l as usize == len => {
                    buf[off..off + len].copy_from_slice(&d[..len]);
                }
                _ => {
                    self.wanted_read = Some((gpa, len as u8));
                    return Err(Stop::NeedMmioRead);
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, lin: u64, data: &[u8]) -> core::result::Result<(), Stop> {
        if (lin & 0xfff) as usize + data.len() > 4096 {
            return Err(Stop::Unsupported);
        }
        let gpa = self.translate(lin, Access::Write)?;
        if self.is_ram(gpa) {
            // As upstream's write_emulate: a write that fails is MMIO (a
            // read-only slot, a slot gone since is_ram, or its user memory
            // gone: EFAULT from the copy).
            return match write_gpa(self.vcpu, gpa, data) {
                Ok(true) => Ok(()),
                Ok(false) | Err(_) => self.record_write(gpa, data),
            };
        }
        self.record_write(gpa, data)
    }
}

impl VcpuEnv<'_> {
    fn record_write(&mut self, gpa: u64, data: &[u8]) -> core::result::Result<(), Stop> {
        if self.write.is_some() || data.len() > 8 {
            return Err(Stop::Unsupported);
        }
        let mut d = [0u8; 8];
        d[..data.len()].copy_from_slice(data);
        self.write = Some((gpa, d, data.len() as u8));
        Ok(())
    }
}

/// MMIO the kernel answers itself: the vCPU's local APIC page and the IOAPIC.
fn kernel_mmio_read(vcpu: &Vcpu, gpa: u64, len: u8) -> Option<u64> {
    if len > 8 {
        return None;
    }
    crate::irq::lapic::mmio_read(vcpu, gpa, len).or_else(|| crate::irq::chips::ioapic_mmio_read(&vcpu.vm, gpa, len))
}

/// MMIO writes the kernel completes itself: ioeventfds, the local APIC page,
/// the IOAPIC, coalesced zones. Returns whether the write was taken.
fn kernel_mmio_write(vcpu: &Vcpu, gpa: u64, data: &[u8; 8], len: u8) -> bool {
    let value = u64::from_le_bytes(*data);
    vcpu.vm.irq.ioeventfds.write(false, gpa, len as u32, value)
        || crate::irq::lapic::mmio_write(vcpu, gpa, len, value)
        || crate::irq::chips::ioapic_mmio_write(&vcpu.vm, gpa, len, value)
        || vcpu.vm.coalesced.write(false, gpa, &data[..(len as usize).min(8)])
}

/// Fetches up to 15 instruction bytes at CS:RIP.
fn fetch(vcpu: &Vcpu, st: &ArchState) -> core::result::Result<([u8; 15], usize), Stop> {
    let env = VcpuEnv { vcpu, st, mmio: None, wanted_read: None, write: None };
    let lin = env.seg_base(Seg::Cs).wrapping_add(st.rip);
    let lin = if env.long_mode() { lin } else { lin & 0xffff_ffff };
    let mut bytes = [0u8; 15];
    let mut got = 0;
    while got < 15 {
        let a = lin.wrapping_add(got as u64);
        let n = (15 - got).min(4096 - (a & 0xfff) as usize);
        let gpa = match env.translate(a, Access::Fetch) {
            Ok(g) => g,
            Err(e) if got == 0 => return Err(e),
            Err(_) => break,
        };
        match read_gpa(vcpu, gpa, &mut bytes[got..got + n]) {
            Ok(true) => got += n,
            _ if got == 0 => return Err(Stop::Internal),
            _ => break,
        }
    }
    Ok((bytes, got))
}

/// Up to 15 instruction bytes at CS:RIP (fewer at the end of what is
/// mapped), or None if not even the first byte can be fetched.
pub(crate) fn fetch_at_rip(vcpu: &Vcpu, st: &ArchState) -> Option<([u8; 15], usize)> {
    fetch(vcpu, st).ok()
}

/// Whether the instruction at RIP can be fetched and decoded.
pub(crate) fn decodes_at_rip(vcpu: &Vcpu, st: &ArchState) -> bool {
    instruction_length(vcpu, st).is_some()
}

/// Emulates the instruction at RIP (forced emulation): as for MMIO, an access
/// to MMIO exits to user space and the instruction completes on the next
/// KVM_RUN.
pub(crate) fn emulate_instruction(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    inner.mmio_insn = None;
    run_emulator(vcpu, inner)
}

/// Writes `data` over the instruction at CS:RIP (the hypercall fix-up): RAM
/// through the guest's page tables, a #PF if they do not allow the write, an
/// emulation failure if it is not RAM.
pub(crate) fn write_at_rip(vcpu: &Vcpu, inner: &mut VcpuInner, data: &[u8]) -> Result<Next> {
    let mut env = VcpuEnv { vcpu, st: &inner.state, mmio: None, wanted_read: None, write: None };
    let lin = env.seg_base(Seg::Cs).wrapping_add(inner.state.rip);
    let lin = if env.long_mode() { lin } else { lin & 0xffff_ffff };
    let r = env.write(lin, data);
    let mmio = env.write.is_some();
    match r {
        Ok(()) if !mmio => Ok(Next::Guest),
        Err(Stop::PageFault(f)) => {
            inner.state.cr2 = f.address;
            inner.state.queue_exception(14, Some(f.error_code));
            Ok(Next::Guest)
        }
        _ => emulation_failure_at_rip(vcpu, inner),
    }
}

/// The length of the instruction at RIP, if it can be fetched and decoded.
pub(crate) fn instruction_length(vcpu: &Vcpu, st: &ArchState) -> Option<u64> {
    let (bytes, n) = fetch(vcpu, st).ok()?;
    emulator::decode(&bytes[..n], mode_of(st)).ok().map(|i| i.len as u64)
}

fn regs_of(s: &ArchState) -> Regs {
    Regs { gprs: s.gprs, rip: s.rip, rflags: s.rflags }
}

fn commit(s: &mut ArchState, r: &Regs) {
    // RF: clear once an instruction completes; set while a REP string
    // instruction stays at its RIP for more elements, so that resuming it does
    // not hit its instruction breakpoint again (upstream's x86_emulate_insn).
    let rf = if r.rip == s.rip { rflags::RF } else { 0 };
    s.gprs = r.gprs;
    set_rip(s, r.rip);
    s.rflags = (r.rflags & !rflags::RF) | rf | rflags::FIXED;
    s.interrupt_shadow = false;
}

/// An instruction that could not be emulated (upstream's
/// handle_emulation_failure; see emulation_failure.rs).
fn emulation_failure(vcpu: &Vcpu, inner: &mut VcpuInner, bytes: &[u8]) -> Result<Next> {
    crate::stats::insn_emulation_fail(vcpu);
    crate::emulation_failure::handle_emulation_failure(vcpu, inner, bytes)
}

/// Runs the instruction at RIP through the emulator and turns the outcome into
/// the next step: back to the guest, or an MMIO exit.
fn run_emulator(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    crate::stats::insn_emulation(vcpu);
    let (bytes, n) = match fetch(vcpu, &inner.state) {
        Ok(f) => f,
        Err(Stop::PageFault(f)) => {
            inner.state.cr2 = f.address;
            inner.state.queue_exception(14, Some(f.error_code));
            return Ok(Next::Guest);
        }
        Err(_) => return emulation_failure(vcpu, inner, &[]),
    };
    let insn = match emulator::decode(&bytes[..n], mode_of(&inner.state)) {
        Ok(i) => i,
        Err(_) => return emulation_failure(vcpu, inner, &bytes[..n]),
    };
    let mut regs = regs_of(&inner.state);
    let mut env = VcpuEnv { vcpu, st: &inner.state, mmio: inner.mmio_insn, wanted_read: None, write: None };
    let r = emulator::execute(&insn, &mut regs, &mut env);
    let (wanted, write) = (env.wanted_read, env.write);
    match r {
        Ok(()) => {
            commit(&mut inner.state, &regs);
            inner.mmio_insn = None;
            if let Some((gpa, data, len)) = write {
                if kernel_mmio_write(vcpu, gpa, &data, len) {
                    return Ok(Next::Guest);
                }
                crate::stats::mmio_exit(vcpu, gpa, len as u32, true, data);
                vcpu.run.set_mmio(gpa, data, len as u32, true);
                inner.pending = Pending::MmioWrite;
                return Ok(Next::User);
            }
            Ok(Next::Guest)
        }
        Err(Stop::NeedMmioRead) => {
            let Some((gpa, len)) = wanted else { return emulation_failure(vcpu, inner, &bytes[..n]) };
            crate::stats::mmio_exit(vcpu, gpa, len as u32, false, [0; 8]);
            vcpu.run.set_mmio(gpa, [0; 8], len as u32, false);
            inner.mmio_insn = Some(PendingMmio { gpa, len, data: None });
            inner.pending = Pending::MmioRead { len };
            Ok(Next::User)
        }
        Err(Stop::PageFault(f)) => {
            inner.state.cr2 = f.address;
            inner.state.queue_exception(14, Some(f.error_code));
            inner.mmio_insn = None;
            Ok(Next::Guest)
        }
        Err(Stop::GeneralProtection) => {
            inner.state.queue_exception(13, Some(0));
            inner.mmio_insn = None;
            Ok(Next::Guest)
        }
        Err(Stop::Unsupported) | Err(Stop::Internal) => {
            inner.mmio_insn = None;
            emulation_failure(vcpu, inner, &bytes[..n])
        }
    }
}

/// A guest access to `gpa` that no RAM backs: emulate the instruction.
pub(crate) fn emulate_mmio(vcpu: &Vcpu, inner: &mut VcpuInner, _gpa: u64) -> Result<Next> {
    inner.mmio_insn = None;
    run_emulator(vcpu, inner)
}

/// User space answered an MMIO read: execute the instruction again with the data.
pub(crate) fn complete_mmio_read(vcpu: &Vcpu, inner: &mut VcpuInner, len: u8) -> Result<Next> {
    let data = vcpu.run.mmio_data();
    match inner.mmio_insn.as_mut() {
        Some(p) if p.len == len => {
            crate::stats::mmio_read_done(p.gpa, len as u32, data);
            p.data = Some(data);
        }
        _ => return Ok(Next::Guest),
    }
    run_emulator(vcpu, inner)
}

/// User space took an MMIO write: the instruction was already completed.
pub(crate) fn complete_mmio_write(_vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    inner.mmio_insn = None;
    Ok(Next::Guest)
}

/// The linear address and element count of the next chunk of a string I/O.
struct StringChunk {
    lin: u64,
    count: u32,
    len: u64,
}

fn string_chunk(vcpu: &Vcpu, st: &ArchState, size: u8, input: bool, rep: bool) -> Option<StringChunk> {
    let (bytes, n) = fetch(vcpu, st).ok()?;
    let insn = emulator::decode(&bytes[..n], mode_of(st)).ok()?;
    let am = emulator::flags::mask(insn.addr_size);
    let env = VcpuEnv { vcpu, st, mmio: None, wanted_read: None, write: None };
    let (base, off) = if input {
        (env.seg_base(Seg::Es), st.gprs[gpr::RDI] & am)
    } else {
        (env.seg_base(insn.seg_override.unwrap_or(Seg::Ds)), st.gprs[gpr::RSI] & am)
    };
    let lin = base.wrapping_add(off);
    let lin = if env.long_mode() { lin } else { lin & 0xffff_ffff };
    let remaining = if rep { st.gprs[gpr::RCX] & am } else { 1 };
    let size = size.max(1) as u64;
    let mut count = remaining.min(4096 / size);
    if st.rflags & rflags::DF != 0 {
        count = 1;
    } else {
        // Stay within the guest page so one translation covers the chunk.
        count = count.min(((4096 - (lin & 0xfff)) / size).max(1));
    }
    Some(StringChunk { lin, count: count as u32, len: insn.len as u64 })
}

/// INS/OUTS (with REP): moves up to a page of elements per exit through the PIO
/// data page (upstream emulates them the same way, with the PIO page as buffer).
pub(crate) fn string_io(vcpu: &Vcpu, inner: &mut VcpuInner, port: u16, size: u8, input: bool, rep: bool) -> Result<Next> {
    let st = &inner.state;
    if rep && st.gprs[gpr::RCX] & emulator_addr_mask(vcpu, st) == 0 {
        crate::run::skip_instruction(vcpu, inner, 2);
        return Ok(Next::Guest);
    }
    let Some(chunk) = string_chunk(vcpu, st, size, input, rep) else {
        return emulation_failure(vcpu, inner, &[]);
    };
    let bytes = chunk.count as usize * size as usize;
    if !input {
        let env = VcpuEnv { vcpu, st, mmio: None, wanted_read: None, write: None };
        let mut buf = crate::heap::zeroed_bytes::<4096>()?;
        let mut ok = true;
        let mut done = 0;
        while done < bytes {
            let a = chunk.lin.wrapping_add(done as u64);
            let n = (bytes - done).min(4096 - (a & 0xfff) as usize);
            match env.translate(a, Access::Read) {
                Ok(gpa) => {
                    if !matches!(read_gpa(vcpu, gpa, &mut buf[done..done + n]), Ok(true)) {
                        ok = false;
                        break;
                    }
                }
                Err(Stop::PageFault(f)) => {
                    inner.state.cr2 = f.address;
                    inner.state.queue_exception(14, Some(f.error_code));
                    return Ok(Next::Guest);
                }
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            done += n;
        }
        if !ok {
            return emulation_failure(vcpu, inner, &[]);
        }
        // SAFETY: at most a page into the PIO page we own.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), vcpu.run.pio_ptr(), bytes) };
        vcpu.run.set_io(false, size, port, chunk.count);
        inner.pending = Pending::PioOutString { size, count: chunk.count };
    } else {
        vcpu.run.set_io(true, size, port, chunk.count);
        inner.pending = Pending::PioInString { size, count: chunk.count };
    }
    inner.string_insn_len = chunk.len;
    Ok(Next::User)
}

fn emulator_addr_mask(vcpu: &Vcpu, st: &ArchState) -> u64 {
    fetch(vcpu, st)
        .ok()
        .and_then(|(b, n)| emulator::decode(&b[..n], mode_of(st)).ok())
        .map(|i| emulator::flags::mask(i.addr_size))
        .unwrap_or(u64::MAX)
}

/// The REP string instruction at RIP: its length and, for a REP, the count
/// left in RCX (masked to the address size).
fn string_insn_at_rip(vcpu: &Vcpu, inner: &VcpuInner) -> (u64, Option<u64>) {
    let am = emulator_addr_mask(vcpu, &inner.state);
    let (bytes, n) = fetch(vcpu, &inner.state).unwrap_or(([0; 15], 0));
    let insn = emulator::decode(&bytes[..n], mode_of(&inner.state)).ok();
    let len = insn.map_or(inner.string_insn_len, |i| i.len as u64);
    let rep = insn.map_or(false, |i| i.rep);
    (len, rep.then(|| inner.state.gprs[gpr::RCX] & am))
}

/// Advances RSI or RDI (and RCX for REP) after `count` elements; RIP moves on
/// once the count is exhausted. User space may have changed RCX during the
/// exit: as upstream, no more elements than RCX still asks for are consumed,
/// so a lowered count ends the instruction instead of wrapping RCX.
fn advance_string(vcpu: &Vcpu, inner: &mut VcpuInner, size: u8, count: u32, input: bool) {
    let am = emulator_addr_mask(vcpu, &inner.state);
    let (len, rep_left) = string_insn_at_rip(vcpu, inner);
    let count = rep_left.map_or(count as u64, |left| left.min(count as u64));
    let s = &mut inner.state;
    let delta = count * size as u64;
    let reg = if input { gpr::RDI } else { gpr::RSI };
    let v = s.gprs[reg];
    let nv = if s.rflags & rflags::DF != 0 { v.wrapping_sub(delta) } else { v.wrapping_add(delta) };
    s.gprs[reg] = (v & !am) | (nv & am);
    let mut done = true;
    if let Some(left) = rep_left {
        let c = left - count;
        s.gprs[gpr::RCX] = (s.gprs[gpr::RCX] & !am) | c;
        done = c == 0;
    }
    if done {
        let rip = s.rip.wrapping_add(len);
        set_rip(s, rip);
    }
    s.interrupt_shadow = false;
}

pub(crate) fn complete_string_out(vcpu: &Vcpu, inner: &mut VcpuInner, size: u8, count: u32) {
    advance_string(vcpu, inner, size, count, false);
}

pub(crate) fn complete_string_in(vcpu: &Vcpu, inner: &mut VcpuInner, size: u8, count: u32) -> Result<Next> {
    // Only the elements RCX still asks for land in memory (see advance_string).
    let count = match string_insn_at_rip(vcpu, inner).1 {
        Some(left) => (count as u64).min(left) as u32,
        None => count,
    };
    let st = &inner.state;
    let Some(chunk) = string_chunk(vcpu, st, size, true, false) else { return Ok(Next::Guest) };
    let bytes = count as usize * size as usize;
    let mut buf = crate::heap::zeroed_bytes::<4096>()?;
    // SAFETY: at most a page from the PIO page we own.
    unsafe { core::ptr::copy_nonoverlapping(vcpu.run.pio_ptr(), buf.as_mut_ptr(), bytes.min(4096)) };
    let bytes = bytes.min(4096);
    // The chunk stays within a page, except a single element that straddles
    // one: translate every piece before writing any.
    let env = VcpuEnv { vcpu, st, mmio: None, wanted_read: None, write: None };
    let mut pieces = [(0u64, 0usize, 0usize); 2];
    let (mut npieces, mut done) = (0, 0);
    while done < bytes && npieces < pieces.len() {
        let a = chunk.lin.wrapping_add(done as u64);
        let n = (bytes - done).min(4096 - (a & 0xfff) as usize);
        match env.translate(a, Access::Write) {
            Ok(gpa) => pieces[npieces] = (gpa, done, done + n),
            Err(Stop::PageFault(f)) => {
                inner.state.cr2 = f.address;
                inner.state.queue_exception(14, Some(f.error_code));
                return Ok(Next::Guest);
            }
            Err(_) => return emulation_failure(vcpu, inner, &[]),
        }
        npieces += 1;
        done += n;
    }
    for &(gpa, from, to) in &pieces[..npieces] {
        if !matches!(write_gpa(vcpu, gpa, &buf[from..to]), Ok(true)) {
            return emulation_failure(vcpu, inner, &[]);
        }
    }
    advance_string(vcpu, inner, size, count, true);
    Ok(Next::Guest)
}

/// A decoded MOV to/from a control or debug register (0F 20-23 /r).
struct MovCtl {
    /// The second opcode byte (0x20 read CR, 0x21 read DR, 0x22 write CR, 0x23 write DR).
    opcode: u8,
    /// CR/DR number: ModRM.reg, plus 8 with REX.R (or a LOCK prefix for CR8 on AMD).
    ctl: u8,
    /// The general-purpose register: ModRM.rm, plus 8 with REX.B.
    gpr: u8,
    len: u64,
}

/// Decodes the MOV CR/DR at RIP (the vendors' exits do not always say which
/// register is involved: no decode assists are assumed).
fn decode_mov_ctl(vcpu: &Vcpu, st: &ArchState) -> core::result::Result<MovCtl, ([u8; 15], usize)> {
    let (bytes, n) = fetch(vcpu, st).map_err(|_| ([0u8; 15], 0))?;
    let b = &bytes[..n];
    let mut i = 0;
    let mut rex = 0u8;
    let mut lock = false;
    while i < b.len() && matches!(b[i], 0x66 | 0x67 | 0xf2 | 0xf3 | 0xf0 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65) {
        lock |= b[i] == 0xf0;
        i += 1;
    }
    if mode_of(st) == Mode::Bits64 && i < b.len() && (0x40..=0x4f).contains(&b[i]) {
        rex = b[i];
        i += 1;
    }
    if i + 3 > b.len() || b[i] != 0x0f || !(0x20..=0x23).contains(&b[i + 1]) {
        return Err((bytes, n));
    }
    let modrm = b[i + 2];
    let high = rex & 4 != 0 || lock;
    Ok(MovCtl {
        opcode: b[i + 1],
        ctl: ((modrm >> 3) & 7) | if high { 8 } else { 0 },
        gpr: (modrm & 7) | if rex & 1 != 0 { 8 } else { 0 },
        len: (i + 3) as u64,
    })
}

/// Decodes the control-register instruction at RIP for an exit that did not
/// say which register it involves: MOV to/from CR (CR number and operation), or
/// LMSW from a register (CR0). `None` for anything else, LMSW from memory
/// included.
pub(crate) fn decode_cr_access(vcpu: &Vcpu, st: &ArchState) -> Option<(u8, CrOp)> {
    match decode_mov_ctl(vcpu, st) {
        Ok(m) if m.opcode == 0x22 => return Some((m.ctl, CrOp::Write { gpr: Some(m.gpr) })),
        Ok(m) if m.opcode == 0x20 => return Some((m.ctl, CrOp::Read { gpr: Some(m.gpr) })),
        Ok(_) => return None,
        Err(_) => {}
    }
    // LMSW r16: [prefixes] [REX] 0F 01 /6 with a register operand.
    let (bytes, n) = fetch(vcpu, st).ok()?;
    let b = &bytes[..n];
    let mut i = b.iter().take_while(|x| matches!(x, 0x66 | 0x67 | 0xf2 | 0xf3 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65)).count();
    let mut rex_b = 0;
    if mode_of(st) == Mode::Bits64 && i < n && (0x40..=0x4f).contains(&b[i]) {
        rex_b = (b[i] & 1) << 3;
        i += 1;
    }
    if i + 3 <= n && b[i] == 0x0f && b[i + 1] == 0x01 && b[i + 2] >> 3 == 0b11_110 {
        let reg = ((b[i + 2] & 7) | rex_b) as usize;
        return Some((0, CrOp::Lmsw { msw: st.gprs[reg] as u16 }));
    }
    None
}

/// Reports an instruction kvm.ko could not make sense of (the bytes at RIP).
pub(crate) fn emulation_failure_at_rip(vcpu: &Vcpu, inner: &mut VcpuInner) -> Result<Next> {
    match fetch(vcpu, &inner.state) {
        Ok((bytes, n)) => emulation_failure(vcpu, inner, &bytes[..n]),
        Err(_) => emulation_failure(vcpu, inner, &[]),
    }
}

/// MOV to/from a debug register (every DR access exits): decodes the GPR operand
/// and applies the architectural rules.
pub(crate) fn mov_dr(vcpu: &Vcpu, inner: &mut VcpuInner, dr: u8, write: bool) -> Result<Next> {
    let m = match decode_mov_ctl(vcpu, &inner.state) {
        Ok(m) if m.opcode == 0x21 || m.opcode == 0x23 => m,
        Ok(_) => return emulation_failure_at_rip(vcpu, inner),
        Err((bytes, n)) => return emulation_failure(vcpu, inner, &bytes[..n]),
    };
    let long64 = mode_of(&inner.state) == Mode::Bits64;
    let gpr = m.gpr as usize;
    let len = m.len;
    let s = &mut inner.state;
    if s.cpl() != 0 {
        s.queue_exception(13, Some(0));
        return Ok(Next::Guest);
    }
    let dr = match dr {
        4 | 5 if s.cr4 & cr4::DE != 0 => {
            s.queue_exception(6, None);
            return Ok(Next::Guest);
        }
        4 => 6,
        5 => 7,
        d => d,
    };
    if write {
        let v = if long64 { s.gprs[gpr] } else { s.gprs[gpr] & 0xffff_ffff };
        match dr {
            0..=3 => s.db[dr as usize] = v,
            6 | 7 if v >> 32 != 0 => {
                s.queue_exception(13, Some(0));
                return Ok(Next::Guest);
            }
            6 => s.dr6 = (v | 0xffff_0ff0) & !0x1000,
            _ => s.dr7 = (v | 0x400) & !0xd000,
        }
    } else {
        let v = match dr {
            0..=3 => s.db[dr as usize],
            6 => s.dr6,
            _ => s.dr7,
        };
        s.gprs[gpr] = if long64 { v } else { v & 0xffff_ffff };
    }
    let rip = s.rip.wrapping_add(len);
    set_rip(s, rip);
    s.interrupt_shadow = false;
    Ok(Next::Guest)
}
