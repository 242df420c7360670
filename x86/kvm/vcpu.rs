// SPDX-License-Identifier: GPL-2.0
//! A virtual CPU: its file, the shared kvm_run page, and the state ioctls
//! (upstream's kvm_vm_ioctl_create_vcpu, kvm_vcpu_ioctl, kvm_arch_vcpu_ioctl).
//! KVM_RUN itself is in run.rs.

use crate::arch::validity::{self, GuestFeatures};
use crate::arch_state::{ArchState, PendingEvent};
use crate::bindings;
use crate::files;
use crate::fpu::{self, GuestFpu};
use crate::run_page::RunPages;
use crate::uapi::{self, ioctl};
use crate::user;
use crate::vm::{self, Vm};
use crate::x86_ops::VendorVcpu;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use kernel::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::{c_str, new_mutex};

/// Upstream's KVM_MAX_CPUID_ENTRIES.
const MAX_CPUID_ENTRIES: u32 = 256;

/// What the VM keeps of each vCPU: enough to kick it out of the guest, to know
/// which TLB generation it runs with, and its local APIC (what other vCPUs and
/// the interrupt controllers reach without the vCPU's mutex).
#[pin_data]
pub(crate) struct VcpuShared {
    /// The in-kernel irqchip's per-vCPU half (its timer is cancelled first
    /// when this is dropped).
    #[pin]
    pub(crate) irq: crate::irq::VcpuIrq,
    pub(crate) id: u32,
    in_guest: AtomicBool,
    cpu: AtomicI32,
    seen_gen: AtomicU64,
    /// The kvmclock record must be rewritten before the next entry
    /// (time::kvmclock::request_update).
    pub(crate) clock_update: AtomicBool,
    /// The vCPU is in SMM, so its guest-memory accesses use address space 1
    /// (a mirror of VcpuInner::smm.in_smm, written only by the vCPU's own
    /// thread under its mutex; see smm::as_id).
    pub(crate) smm: AtomicBool,
    /// Statistics (written by the vCPU's thread; see stats/mod.rs).
    pub(crate) stats: Arc<crate::stats::VcpuStats>,
    /// The vCPU's dirty ring, if the VM enabled rings before creating it
    /// (pushed and reset under `Vm::inner`; see dirty_ring.rs).
    pub(crate) dirty_ring: Option<crate::dirty_ring::DirtyRing>,
}

impl VcpuShared {
    /// Makes the vCPU notice a posted event (upstream kvm_vcpu_kick): marks a
    /// request, sends a reschedule IPI if it is in guest mode (the exit makes
    /// it look), and wakes it if it sleeps in HLT. Callable from any context.
    pub(crate) fn kick(&self) {
        self.irq.requests.fetch_or(1, Ordering::SeqCst);
        if self.in_guest.load(Ordering::SeqCst) {
            crate::irq::sys::send_reschedule(self.cpu.load(Ordering::Relaxed));
        }
        self.irq.wq.wake();
    }

    /// Marks entry: returns the TLB generation the guest will run with.
    pub(crate) fn enter(&self, vm: &Vm, cpu: u32) -> u64 {
        self.cpu.store(cpu as i32, Ordering::Relaxed);
        self.in_guest.store(true, Ordering::SeqCst);
        let gen = vm.tlb_gen.load(Ordering::SeqCst);
        self.seen_gen.store(gen, Ordering::SeqCst);
        gen
    }

    pub(crate) fn leave(&self) {
        self.in_guest.store(false, Ordering::SeqCst);
    }

    /// Makes the vCPU leave the guest if it runs there with a generation older
    /// than `gen`, and waits until it no longer can. Returns whether it had to.
    pub(crate) fn kick_and_wait(&self, gen: u64) -> bool {
        let stale = || self.in_guest.load(Ordering::SeqCst) && self.seen_gen.load(Ordering::SeqCst) < gen;
        if !stale() {
            return false;
        }
        let cpu = self.cpu.load(Ordering::Relaxed);
        // SAFETY: an IPI with an empty handler; the exit it causes is the point.
        unsafe { bindings::kvm_rs_kick_cpu(cpu) };
        while stale() {
            core::hint::spin_loop();
        }
        true
    }

}

/// A user-space exit whose instruction completes on the next KVM_RUN.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pending {
    None,
    /// IN: the data comes from the PIO page into RAX. Like OUT, RIP stays at
    /// the instruction during the exit and moves to `next_rip` on completion,
    /// unless user space moved it (`at`: the linear RIP of the instruction;
    /// upstream's cui_linear_rip check drops the completion then).
    PioIn { size: u8, at: u64, next_rip: u64 },
    /// OUT: the data went out with the exit; RIP moves on at completion.
    PioOut { at: u64, next_rip: u64 },
    /// INS (possibly REP): `count` elements from the PIO page go to guest memory.
    PioInString { size: u8, count: u32 },
    /// OUTS: the elements were copied out; advance RSI/RCX.
    PioOutString { size: u8, count: u32 },
    /// An MMIO read of `len` bytes whose data user space left in kvm_run.
    MmioRead { len: u8 },
    /// An MMIO write; nothing comes back.
    MmioWrite,
    /// A KVM_EXIT_X86_RDMSR/WRMSR: user space's answer completes it
    /// (user_msr::complete).
    UserMsr { read: bool, next_rip: u64 },
}

pub(crate) struct VcpuInner {
    pub state: ArchState,
    pub vendor: KBox<dyn VendorVcpu>,
    pub fpu: GuestFpu,
    pub cpuid: KVec<uapi::kvm_cpuid_entry2>,
    pub features: GuestFeatures,
    /// The features CR4 may enable: KVM's supported ones until KVM_SET_CPUID2,
    /// then those also in the guest's CPUID (see validity::valid_cr4).
    pub cr4_features: GuestFeatures,
    pub apic_base: u64,
    pub has_run: bool,
    pub flushed_gen: u64,
    pub pending: Pending,
    /// The emulated instruction of a pending MMIO access, re-executed with the
    /// data once user space has provided it.
    pub mmio_insn: Option<crate::emulate::PendingMmio>,
    /// Length of the string I/O instruction of a pending INS/OUTS exit.
    pub string_insn_len: u64,
    /// KVM_INTERRUPT's vector, injected once the guest can take it (the
    /// user-space irqchip's pending_external_vector).
    pub pending_external: Option<u8>,
    /// KVM_NMI was called; the NMI is injected once NMIs are unmasked.
    pub nmi_pending: bool,
    /// An IRET ended an NMI handler; NMIs open again after the next entry.
    pub iret_seen: bool,
    /// Guest MSRs kept in software (MTRRs, MCE).
    pub msrs: crate::msrs::SoftMsrs,
    /// The guest's TLB must be flushed at the next entry (KVM_REQ_TLB_FLUSH_GUEST).
    pub flush_guest_tlb: bool,
    /// KVM_SET_SIGNAL_MASK: the mask in force while KVM_RUN runs the guest.
    pub sigmask: Option<crate::sigmask::SigSet>,
    /// KVM_MP_STATE_*: RUNNABLE, or (with an in-kernel APIC) HALTED,
    /// UNINITIALIZED, INIT_RECEIVED...
    pub mp_state: u32,
    /// The vector of the last SIPI (KVM_SET_MP_STATE SIPI_RECEIVED replays it).
    pub last_sipi_vector: u8,
    /// KVM_SET_VAPIC_ADDR's guest address, if set.
    pub vapic_addr: Option<u64>,
    /// The guest must shut down at the next entry (a machine check it cannot
    /// take; upstream's KVM_REQ_TRIPLE_FAULT).
    pub shutdown_requested: bool,
    /// KVM_SET_GUEST_DEBUG's control bits (0: not debugging).
    pub guest_debug: u32,
    /// A single step completed in the kernel and is owed to user space.
    pub singlestep_done: bool,
    /// KVM_SET_GUEST_DEBUG's breakpoint registers (USE_HW_BP).
    pub debugger_drs: crate::guest_debug::DebugRegs,
    /// The last exit was a #BP for the debugger (until the next entry).
    pub bp_exit: bool,
    /// The TSC's rate and IA32_TSC_ADJUST (the offset is in `state`).
    pub tsc: crate::time::tsc::VcpuTsc,
    /// kvmclock's MSR and bookkeeping.
    pub kvmclock: crate::time::kvmclock::KvmClock,
    /// KVM_CAP_ENFORCE_PV_FEATURE_CPUID and the PV feature bits.
    pub pv: crate::pv_cpuid::PvCpuid,
    /// MSR_KVM_STEAL_TIME and its bookkeeping.
    pub steal: crate::time::steal_time::StealTime,
    /// HLT exits (off if the VM disabled them before this vCPU was created:
    /// KVM_CAP_X86_DISABLE_EXITS).
    pub intercept_hlt: bool,
    /// System Management Mode (smm.rs).
    pub smm: crate::smm::VcpuSmm,
}

#[pin_data]
pub struct Vcpu {
    pub(crate) vm: Arc<Vm>,
    pub(crate) shared: Arc<VcpuShared>,
    pub(crate) run: RunPages,
    #[pin]
    pub(crate) inner: Mutex<VcpuInner>,
}

/// The reset value of IA32_APIC_BASE: xAPIC enabled at 0xfee00000, BSP flag
/// for the boot vCPU.
fn reset_apic_base(_id: u32, bsp: bool) -> u64 {
    0xfee0_0000 | (1 << 11) | if bsp { 1 << 8 } else { 0 }
}

/// INIT (upstream kvm_vcpu_reset with init_event): the architectural state
/// returns to its reset values; the TSC and the MSRs INIT leaves alone stay.
pub(crate) fn init_reset(_vcpu: &Vcpu, inner: &mut VcpuInner) {
    let signature = crate::cpu::cpuid(1, 0)[0];
    let old = core::mem::replace(&mut inner.state, ArchState::reset(signature));
    let s = &mut inner.state;
    s.tsc_offset = old.tsc_offset;
    s.pat = old.pat;
    s.sysenter_cs = old.sysenter_cs;
    s.sysenter_esp = old.sysenter_esp;
    s.sysenter_eip = old.sysenter_eip;
    s.star = old.star;
    s.lstar = old.lstar;
    s.cstar = old.cstar;
    s.sfmask = old.sfmask;
    s.kernel_gs_base = old.kernel_gs_base;
    inner.nmi_pending = false;
    inner.pending_external = None;
    inner.pending = Pending::None;
    inner.mmio_insn = None;
    inner.flush_guest_tlb = true;
    crate::smm::vcpu_reset(inner, true);
}

/// KVM_CREATE_VCPU.
pub(crate) fn kvm_vm_ioctl_create_vcpu(vm: &Arc<Vm>, id: usize) -> Result<isize> {
    if id >= vm::MAX_VCPU_ID as usize {
        return Err(EINVAL);
    }
    let id = id as u32;
    let mut inner = vm.inner.lock();
    if inner.max_vcpu_ids == 0 {
        inner.max_vcpu_ids = vm::MAX_VCPU_ID;
    }
    if id >= inner.max_vcpu_ids {
        return Err(EINVAL);
    }
    if inner.created_vcpus >= vm::MAX_VCPUS {
        return Err(EINVAL);
    }
    // An id stays taken after its vCPU's file is closed: upstream keeps the
    // vCPU until the VM goes.
    if inner.vcpu_id_used(id) {
        return Err(EEXIST);
    }
    let in_kernel = vm.irq.lapic_in_kernel();
    let bsp = vm.irq.is_bsp(id);
    let stats = vm.stats.new_vcpu(id)?;
    let dirty_ring = match inner.dirty_ring_size {
        0 => None,
        size => Some(crate::dirty_ring::DirtyRing::new(size)?),
    };
    let shared = Arc::pin_init(
        pin_init!(VcpuShared {
            irq <- crate::irq::VcpuIrq::new(id, bsp, in_kernel),
            id,
            in_guest: AtomicBool::new(false),
            cpu: AtomicI32::new(0),
            seen_gen: AtomicU64::new(0),
            clock_update: AtomicBool::new(false),
            smm: AtomicBool::new(false),
            stats,
            dirty_ring,
        }),
        GFP_KERNEL,
    )?;
    let vendor = vm.vendor.vcpu_create()?;
    let fpu = GuestFpu::new()?;
    let signature = crate::cpu::cpuid(1, 0)[0];
    let run = RunPages::new()?;
    // The TSC starts at 0, in step with the vCPUs created before it.
    let tsc_khz = vm.tsc.lock().default_khz;
    let mut reset_state = ArchState::reset(signature);
    reset_state.tsc_offset = crate::time::tsc::initial_offset(vm, tsc_khz);
    shared.irq.tsc_offset.store(reset_state.tsc_offset, Ordering::Relaxed);
    let cr4_features = crate::cpuid::host_features()?;
    let (vm_ref, shared_ref) = (vm.clone(), shared.clone());
    let vcpu = Arc::pin_init(
        pin_init!(Vcpu {
            vm: vm_ref,
            shared: shared_ref,
            run,
            inner <- new_mutex!(VcpuInner {
                state: reset_state,
                vendor,
                fpu,
                cpuid: KVec::new(),
                features: GuestFeatures::default(),
                cr4_features,
                apic_base: reset_apic_base(id, bsp),
                has_run: false,
                flushed_gen: u64::MAX,
                pending: Pending::None,
                mmio_insn: None,
                string_insn_len: 0,
                pending_external: None,
                nmi_pending: false,
                iret_seen: false,
                msrs: crate::msrs::SoftMsrs::new(),
                flush_guest_tlb: false,
                sigmask: None,
                // With an in-kernel APIC only the BSP starts; the others wait
                // for INIT/SIPI (upstream kvm_arch_vcpu_create).
                mp_state: if in_kernel && !bsp {
                    uapi::KVM_MP_STATE_UNINITIALIZED
                } else {
                    uapi::KVM_MP_STATE_RUNNABLE
                },
                last_sipi_vector: 0,
                vapic_addr: None,
                shutdown_requested: false,
                guest_debug: 0,
                singlestep_done: false,
                debugger_drs: Default::default(),
                bp_exit: false,
                tsc: crate::time::tsc::VcpuTsc::new(tsc_khz),
                kvmclock: Default::default(),
                pv: Default::default(),
                steal: Default::default(),
                intercept_hlt: !crate::disable_exits::hlt_in_guest(vm),
                smm: Default::default(),
            }),
        }),
        GFP_KERNEL,
    )?;
    inner.vcpus.push(shared.clone(), GFP_KERNEL)?;
    // The MMU notifier's TLB flushes must reach the new vCPU.
    if let Err(e) = crate::mmu_invalidate::sync_vcpus(vm, &inner) {
        drop(crate::kvec_ext::pop(&mut inner.vcpus));
        return Err(e);
    }
    match files::new_fd(c_str!("kvm-vcpu"), files::vcpu_fops()?, vcpu) {
        Ok(fd) => {
            inner.created_vcpus += 1;
            inner.mark_vcpu_id_used(id);
            Ok(fd as isize)
        }
        Err(e) => {
            if let Some(i) = inner.vcpus.iter().position(|v| Arc::ptr_eq(v, &shared)) {
                drop(crate::kvec_ext::swap_remove(&mut inner.vcpus, i));
                let _ = crate::mmu_invalidate::sync_vcpus(vm, &inner);
            }
            Err(e)
        }
    }
}

pub(crate) unsafe extern "C" fn kvm_vcpu_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: a vCPU file in an ioctl: its Arc<Vcpu> is alive.
    let vcpu: Arc<Vcpu> = unsafe { files::borrow::<Vcpu>(file) }.into();
    match vcpu_ioctl(&vcpu, cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

pub(crate) unsafe extern "C" fn kvm_vcpu_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: called once, when the last reference to the file goes.
    let vcpu = unsafe { files::borrow::<Vcpu>(file) };
    {
        let mut inner = vcpu.vm.inner.lock();
        if let Some(i) = inner.vcpus.iter().position(|v| Arc::ptr_eq(v, &vcpu.shared)) {
            drop(crate::kvec_ext::swap_remove(&mut inner.vcpus, i));
        }
    }
    // SAFETY: as above.
    unsafe { files::release::<Vcpu>(file) };
    0
}

/// mmap of the vCPU file: page 0 is kvm_run, page 1 the PIO data, page 2
/// the VM's coalesced-MMIO ring, pages from KVM_DIRTY_LOG_PAGE_OFFSET the
/// vCPU's dirty ring (shared and not executable only). Other offsets map
/// nothing: the mmap succeeds and an access raises SIGBUS, as upstream's.
pub(crate) unsafe extern "C" fn kvm_vcpu_mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct) -> c_int {
    // SAFETY: a vCPU file in mmap: its Arc<Vcpu> is alive.
    let vcpu = unsafe { files::borrow::<Vcpu>(file) };
    // SAFETY: `vma` is the area being mapped, valid during the call.
    let (start, end, pgoff) = unsafe {
        (bindings::kvm_rs_vma_start(vma), bindings::kvm_rs_vma_end(vma), bindings::kvm_rs_vma_pgoff(vma))
    };
    let npages = (end - start) / kernel::page::PAGE_SIZE as c_ulong;
    let ring = vcpu.shared.dirty_ring.as_ref();
    let ring_start = crate::dirty_ring::PAGE_OFFSET as c_ulong;
    let ring_end = ring_start + ring.map_or(0, |r| r.npages()) as c_ulong;
    let Some(last) = pgoff.checked_add(npages) else { return EINVAL.to_errno() };
    let in_ring = |p: c_ulong| p >= ring_start && p < ring_end;
    if npages != 0 && (in_ring(pgoff) || in_ring(last - 1)) && !crate::dirty_ring::mmap_allowed(vma) {
        return EINVAL.to_errno();
    }
    // SAFETY: the area being set up; the ops are static.
    unsafe { bindings::kvm_rs_vma_set_sigbus_ops(vma) };
    // Only the offsets that have pages (the area may be huge and mostly empty).
    let coalesced = crate::coalesced_mmio::PAGE_OFFSET as c_ulong;
    let offsets = Iterator::chain(0..=coalesced, ring_start..ring_end);
    for p in offsets.filter(|&p| p >= pgoff && p < last) {
        let i = p - pgoff;
        let page = match p {
            0 => &vcpu.run.run,
            1 => &vcpu.run.pio,
            p if p == coalesced => vcpu.vm.coalesced.ring_page(),
            p => match ring.and_then(|r| r.page((p - ring_start) as usize)) {
                Some(page) => page,
                None => continue,
            },
        };
        // SAFETY: inserts a page we own into the area being set up (mmap_lock is
        // held by the caller); the mapping takes its own page reference.
        let r = unsafe {
            bindings::vm_insert_page(vma, start + i * kernel::page::PAGE_SIZE as c_ulong, page.as_ptr().cast())
        };
        if r != 0 {
            return r;
        }
    }
    0
}

fn vcpu_ioctl(vcpu: &Arc<Vcpu>, cmd: u32, arg: usize) -> Result<isize> {
    if !vcpu.vm.owner_is_current() {
        return Err(EIO);
    }
    let mut guard = vcpu.inner.lock();
    let inner = &mut *guard;
    match cmd {
        ioctl::KVM_RUN => {
            if arg != 0 {
                return Err(EINVAL);
            }
            crate::run::kvm_arch_vcpu_ioctl_run(vcpu, inner).map(|_| 0)
        }
        ioctl::KVM_GET_REGS => {
            user::write(arg, &get_regs(&inner.state))?;
            Ok(0)
        }
        ioctl::KVM_SET_REGS => {
            let r: uapi::kvm_regs = user::read(arg)?;
            set_regs(&mut inner.state, &r);
            Ok(0)
        }
        ioctl::KVM_GET_SREGS => {
            user::write(arg, &get_sregs(vcpu, inner))?;
            Ok(0)
        }
        ioctl::KVM_SET_SREGS => {
            let s: uapi::kvm_sregs = user::read(arg)?;
            set_sregs(vcpu, inner, &s)?;
            Ok(0)
        }
        ioctl::KVM_GET_FPU => {
            let mut buf = crate::heap::zeroed_bytes::<{ fpu::UABI_SIZE }>()?;
            let xcr0 = inner.state.xcr0;
            inner.fpu.get_uabi(&mut buf, xcr0 | 3);
            user::write(arg, &fpu_from_fxsave(&buf))?;
            Ok(0)
        }
        ioctl::KVM_SET_FPU => {
            let f: uapi::kvm_fpu = user::read(arg)?;
            let mut buf = crate::heap::zeroed_bytes::<{ fpu::UABI_SIZE }>()?;
            let xcr0 = inner.state.xcr0;
            inner.fpu.get_uabi(&mut buf, xcr0 | 3);
            fxsave_from_fpu(&mut buf, &f);
            inner.fpu.set_uabi(&buf, crate::supported_cpuid::SUPPORTED_XCR0 & host_xcr0())?;
            Ok(0)
        }
        ioctl::KVM_GET_XSAVE => {
            let mut buf = crate::heap::zeroed_bytes::<{ fpu::UABI_SIZE }>()?;
            inner.fpu.get_uabi(&mut buf, crate::supported_cpuid::SUPPORTED_XCR0 & host_xcr0());
            user::write_slice(arg, &buf[..])?;
            Ok(0)
        }
        ioctl::KVM_SET_XSAVE => {
            let mut buf = crate::heap::zeroed_bytes::<{ fpu::UABI_SIZE }>()?;
            kernel::uaccess::UserSlice::new(arg, fpu::UABI_SIZE).reader().read_slice(&mut buf[..])?;
            inner.fpu.set_uabi(&buf, crate::supported_cpuid::SUPPORTED_XCR0 & host_xcr0())?;
            Ok(0)
        }
        ioctl::KVM_GET_XCRS => {
            let mut x = uapi::kvm_xcrs::default();
            // Without XSAVE on the host there is no XCR to report (upstream).
            x.nr_xcrs = crate::cpu::host_has_xsave() as u32;
            x.xcrs[0].xcr = 0;
            x.xcrs[0].value = inner.state.xcr0;
            user::write(arg, &x)?;
            Ok(0)
        }
        ioctl::KVM_SET_XCRS => {
            let x: uapi::kvm_xcrs = user::read(arg)?;
            if !crate::cpu::host_has_xsave() {
                return Err(EINVAL);
            }
            if x.nr_xcrs as usize > x.xcrs.len() || x.flags != 0 {
                return Err(EINVAL);
            }
            for xcr in &x.xcrs[..x.nr_xcrs as usize] {
                if xcr.xcr != 0 || !crate::run::valid_xcr0(inner, xcr.value) {
                    return Err(EINVAL);
                }
                inner.state.xcr0 = xcr.value;
            }
            Ok(0)
        }
        ioctl::KVM_GET_MSRS => msr_io(vcpu, inner, arg, false),
        ioctl::KVM_SET_MSRS => msr_io(vcpu, inner, arg, true),
        ioctl::KVM_SET_CPUID2 => {
            let hdr: uapi::kvm_cpuid2 = user::read(arg)?;
            if hdr.nent > MAX_CPUID_ENTRIES {
                return Err(E2BIG);
            }
            let mut entries = KVec::with_capacity(hdr.nent as usize, GFP_KERNEL)?;
            let mut r = kernel::uaccess::UserSlice::new(
                arg + core::mem::size_of::<uapi::kvm_cpuid2>(),
                hdr.nent as usize * core::mem::size_of::<uapi::kvm_cpuid_entry2>(),
            )
            .reader();
            for _ in 0..hdr.nent {
                entries.push(r.read::<uapi::kvm_cpuid_entry2>()?, GFP_KERNEL)?;
            }
            crate::cpuid::set_cpuid(inner, entries)?;
            crate::irq::lapic::cpuid_changed(vcpu, inner);
            crate::pv_cpuid::cpuid_changed(vcpu, inner);
            Ok(0)
        }
        ioctl::KVM_GET_CPUID2 => {
            let mut hdr: uapi::kvm_cpuid2 = user::read(arg)?;
            let n = inner.cpuid.len() as u32;
            // Too small: E2BIG, and (as upstream) nent is not written back.
            if hdr.nent < n {
                return Err(E2BIG);
            }
            user::write_slice(arg + core::mem::size_of::<uapi::kvm_cpuid2>(), &inner.cpuid)?;
            hdr.nent = n;
            user::write(arg, &hdr)?;
            Ok(0)
        }
        ioctl::KVM_INTERRUPT => {
            let irq: uapi::kvm_interrupt = user::read(arg)?;
            if irq.irq >= 256 {
                return Err(EINVAL);
            }
            // With the in-kernel PIC, interrupts come from it (upstream ENXIO);
            // with the split irqchip this is the user-space PIC's ExtINT, one
            // at a time (EEXIST while one waits).
            if vcpu.vm.irq.pic_in_kernel() {
                return Err(ENXIO);
            }
            if vcpu.shared.irq.in_kernel {
                if inner.pending_external.is_some() {
                    return Err(EEXIST);
                }
                inner.pending_external = Some(irq.irq as u8);
                return Ok(0);
            }
            // Without an in-kernel irqchip the vector is queued for injection at
            // the next entry (user space calls this only when kvm_run says the
            // guest is ready); a second call replaces it, as upstream's
            // kvm_queue_interrupt.
            inner.pending_external = Some(irq.irq as u8);
            Ok(0)
        }
        ioctl::KVM_NMI => {
            if vcpu.shared.irq.in_kernel {
                crate::irq::lapic::queue_nmi(vcpu);
            } else {
                inner.nmi_pending = true;
            }
            Ok(0)
        }
        ioctl::KVM_SMI => crate::smm::ioctl_smi(vcpu),
        ioctl::KVM_GET_LAPIC => crate::irq::lapic::get_lapic(vcpu, arg).map(|_| 0),
        ioctl::KVM_GET_TSC_KHZ => Ok(inner.tsc.khz as isize),
        ioctl::KVM_GET_STATS_FD => crate::stats::fd::vcpu_stats_fd(vcpu),
        ioctl::KVM_GET_NESTED_STATE => crate::nested_state::get(arg),
        ioctl::KVM_SET_NESTED_STATE => crate::nested_state::set(arg),
        ioctl::KVM_PRE_FAULT_MEMORY => crate::pre_fault::kvm_vcpu_pre_fault_memory(vcpu, arg),
        ioctl::KVM_TRANSLATE => {
            let mut tr: uapi::kvm_translation = user::read(arg)?;
            // u64::MAX is upstream's INVALID_GPA: never a valid translation.
            let gpa = crate::emulate::gva_to_gpa_system(vcpu, &inner.state, tr.linear_address).filter(|&g| g != u64::MAX);
            // Upstream's answer: INVALID_GPA when the walk fails; always
            // "writeable", never "usermode" (it does not check either).
            tr.physical_address = gpa.unwrap_or(u64::MAX);
            tr.valid = gpa.is_some() as u8;
            tr.writeable = 1;
            tr.usermode = 0;
            user::write(arg, &tr)?;
            Ok(0)
        }
        ioctl::KVM_SET_TSC_KHZ => crate::time::tsc::set_tsc_khz(inner, arg),
        ioctl::KVM_ENABLE_CAP => crate::pv_cpuid::vcpu_enable_cap(inner, arg),
        ioctl::KVM_HAS_DEVICE_ATTR | ioctl::KVM_GET_DEVICE_ATTR | ioctl::KVM_SET_DEVICE_ATTR => {
            crate::time::tsc::vcpu_device_attr(vcpu, inner, cmd, arg)
        }
        ioctl::KVM_SET_GUEST_DEBUG => crate::guest_debug::set_guest_debug(inner, arg).map(|_| 0),
        ioctl::KVM_X86_SETUP_MCE => crate::mce::setup_mce(inner, arg).map(|_| 0),
        ioctl::KVM_X86_SET_MCE => crate::mce::set_mce(inner, arg).map(|_| 0),
        ioctl::KVM_SET_VAPIC_ADDR => crate::irq::lapic::set_vapic_addr(vcpu, inner, arg).map(|_| 0),
        ioctl::KVM_SET_LAPIC => crate::irq::lapic::set_lapic(vcpu, arg).map(|_| 0),
        ioctl::KVM_SET_SIGNAL_MASK => {
            crate::sigmask::set_signal_mask(&mut inner.sigmask, arg)?;
            Ok(0)
        }
        ioctl::KVM_GET_MP_STATE => {
            let mp_state = crate::irq::lapic::get_mp_state(vcpu, inner);
            user::write(arg, &uapi::kvm_mp_state { mp_state })?;
            Ok(0)
        }
        ioctl::KVM_SET_MP_STATE => {
            let m: uapi::kvm_mp_state = user::read(arg)?;
            // Without an in-kernel local APIC only RUNNABLE exists (upstream).
            crate::irq::lapic::set_mp_state(vcpu, inner, m.mp_state)?;
            Ok(0)
        }
        ioctl::KVM_GET_DEBUGREGS => {
            let s = &inner.state;
            let d = uapi::kvm_debugregs { db: s.db, dr6: s.dr6, dr7: s.dr7, ..Default::default() };
            user::write(arg, &d)?;
            Ok(0)
        }
        ioctl::KVM_SET_DEBUGREGS => {
            let d: uapi::kvm_debugregs = user::read(arg)?;
            if d.flags != 0 || d.dr6 >> 32 != 0 || d.dr7 >> 32 != 0 {
                return Err(EINVAL);
            }
            let s = &mut inner.state;
            s.db = d.db;
            s.dr6 = (d.dr6 | 0xffff_0ff0) & !0x1000;
            s.dr7 = (d.dr7 | 0x400) & !0xd000;
            Ok(0)
        }
        ioctl::KVM_GET_VCPU_EVENTS => {
            user::write(arg, &get_vcpu_events(vcpu, inner))?;
            Ok(0)
        }
        ioctl::KVM_SET_VCPU_EVENTS => {
            let e: uapi::kvm_vcpu_events = user::read(arg)?;
            set_vcpu_events(vcpu, inner, &e)?;
            Ok(0)
        }
        _ => Err(EINVAL),
    }
}

/// KVM_GET_VCPU_EVENTS (also kvm_run's synced events).
pub(crate) fn get_vcpu_events(vcpu: &Vcpu, inner: &VcpuInner) -> uapi::kvm_vcpu_events {
    let mut e = get_events(&inner.state);
    e.nmi.pending = inner.nmi_pending as u8;
    e.flags |= uapi::KVM_VCPUEVENT_VALID_NMI_PENDING;
    crate::smm::get_events(vcpu, inner, &mut e);
    e
}

/// KVM_SET_VCPU_EVENTS (also kvm_run's synced events).
pub(crate) fn set_vcpu_events(vcpu: &Vcpu, inner: &mut VcpuInner, e: &uapi::kvm_vcpu_events) -> Result {
    crate::smm::check_events(inner, e)?;
    set_events(&mut inner.state, e)?;
    crate::smm::set_events(vcpu, inner, e);
    if e.exception.injected != 0 {
        crate::guest_debug::reinjected_exception(inner, e.exception.nr);
    }
    if e.flags & uapi::KVM_VCPUEVENT_VALID_NMI_PENDING != 0 {
        inner.nmi_pending = e.nmi.pending != 0;
    }
    Ok(())
}

fn host_xcr0() -> u64 {
    crate::cpu::xgetbv0()
}

pub(crate) fn get_regs(s: &ArchState) -> uapi::kvm_regs {
    let g = &s.gprs;
    uapi::kvm_regs {
        rax: g[0], rcx: g[1], rdx: g[2], rbx: g[3], rsp: g[4], rbp: g[5], rsi: g[6], rdi: g[7],
        r8: g[8], r9: g[9], r10: g[10], r11: g[11], r12: g[12], r13: g[13], r14: g[14], r15: g[15],
        rip: s.rip,
        rflags: s.rflags,
    }
}

pub(crate) fn set_regs(s: &mut ArchState, r: &uapi::kvm_regs) {
    s.gprs = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
    ];
    s.rip = r.rip;
    s.rflags = r.rflags | crate::arch_state::rflags::FIXED;
    // Upstream drops a pending (not yet injected) exception on SET_REGS.
    if matches!(s.pending_event, Some(PendingEvent { external: false, .. })) {
        s.pending_event = None;
    }
}

pub(crate) fn get_sregs(vcpu: &Vcpu, inner: &VcpuInner) -> uapi::kvm_sregs {
    let s = &inner.state;
    let mut out = uapi::kvm_sregs {
        cs: s.cs, ds: s.ds, es: s.es, fs: s.fs, gs: s.gs, ss: s.ss, tr: s.tr, ldt: s.ldt,
        gdt: s.gdt, idt: s.idt,
        cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8: s.cr8, efer: s.efer,
        apic_base: inner.apic_base,
        interrupt_bitmap: [0; 4],
    };
    if vcpu.shared.irq.in_kernel {
        out.apic_base = vcpu.shared.irq.apic.lock().base();
        out.cr8 = (vcpu.shared.irq.apic.lock().tpr() >> 4) as u64;
    }
    if let Some(PendingEvent { vector, external: true, .. }) = s.pending_event {
        out.interrupt_bitmap[(vector / 64) as usize] |= 1 << (vector % 64);
    }
    out
}

pub(crate) fn set_sregs(vcpu: &Vcpu, inner: &mut VcpuInner, r: &uapi::kvm_sregs) -> Result {
    let f = &inner.features;
    let maxphy = crate::cpuid::guest_maxphyaddr(&inner.cpuid);
    if !validity::valid_sregs(r.cr0, r.cr3, r.cr4, r.efer, r.cs.l != 0, maxphy, f, &inner.cr4_features) {
        return Err(EINVAL);
    }
    if vcpu.shared.irq.in_kernel {
        // The in-kernel APIC checks the base (host-initiated) and takes CR8 as TPR.
        crate::irq::lapic::set_sregs_apic_base(vcpu, inner, r.apic_base)?;
        crate::irq::lapic::set_cr8(vcpu, r.cr8);
    } else if r.apic_base & !(0xffff_ffff_f000u64 | (1 << 8) | (1 << 10) | (1 << 11)) != 0 {
        // No in-kernel LAPIC: the base is stored as is, but must keep reserved bits 0.
        return Err(EINVAL);
    }
    let s = &mut inner.state;
    s.cs = r.cs; s.ds = r.ds; s.es = r.es; s.fs = r.fs; s.gs = r.gs; s.ss = r.ss;
    s.tr = r.tr; s.ldt = r.ldt; s.gdt = r.gdt; s.idt = r.idt;
    let paging_changed = (s.cr0, s.cr3, s.cr4, s.efer) != (r.cr0, r.cr3, r.cr4, r.efer);
    s.cr0 = r.cr0; s.cr2 = r.cr2; s.cr3 = r.cr3; s.cr4 = r.cr4; s.cr8 = r.cr8 & 0xf; s.efer = r.efer;
    inner.apic_base = r.apic_base;
    // As upstream: PAE paging takes the PDPTEs from memory now (a failure leaves
    // them as they were), and a new paging mode starts with a flushed TLB.
    if inner.state.pae_paging() {
        let cr3 = inner.state.cr3;
        let _ = crate::cr::load_pdptrs(vcpu, inner, cr3);
    }
    inner.flush_guest_tlb |= paging_changed;
    let s = &mut inner.state;
    // A set bit in interrupt_bitmap queues that external interrupt.
    for (w, bits) in r.interrupt_bitmap.iter().enumerate() {
        if *bits != 0 {
            let vector = (w as u32 * 64 + bits.trailing_zeros()) as u8;
            s.pending_event = Some(PendingEvent { vector, error_code: None, soft: false, external: true });
            break;
        }
    }
    Ok(())
}

/// Legacy FXSAVE area offsets (SDM vol. 1, table 10-2).
fn fpu_from_fxsave(b: &[u8; fpu::UABI_SIZE]) -> uapi::kvm_fpu {
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let u64at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let mut f = uapi::kvm_fpu {
        fcw: u16at(0),
        fsw: u16at(2),
        ftwx: b[4],
        last_opcode: u16at(6),
        last_ip: u64at(8),
        last_dp: u64at(16),
        mxcsr: u32at(24),
        ..Default::default()
    };
    for i in 0..8 {
        f.fpr[i].copy_from_slice(&b[32 + 16 * i..48 + 16 * i]);
    }
    for i in 0..16 {
        f.xmm[i].copy_from_slice(&b[160 + 16 * i..176 + 16 * i]);
    }
    f
}

fn fxsave_from_fpu(b: &mut [u8; fpu::UABI_SIZE], f: &uapi::kvm_fpu) {
    b[0..2].copy_from_slice(&f.fcw.to_le_bytes());
    b[2..4].copy_from_slice(&f.fsw.to_le_bytes());
    b[4] = f.ftwx;
    b[6..8].copy_from_slice(&f.last_opcode.to_le_bytes());
    b[8..16].copy_from_slice(&f.last_ip.to_le_bytes());
    b[16..24].copy_from_slice(&f.last_dp.to_le_bytes());
    b[24..28].copy_from_slice(&f.mxcsr.to_le_bytes());
    for i in 0..8 {
        b[32 + 16 * i..48 + 16 * i].copy_from_slice(&f.fpr[i]);
    }
    for i in 0..16 {
        b[160 + 16 * i..176 + 16 * i].copy_from_slice(&f.xmm[i]);
    }
    // XSTATE_BV in the XSAVE header: x87 and SSE state present.
    b[512] |= 3;
}

/// KVM_GET_MSRS / KVM_SET_MSRS: returns how many entries were processed (stops
/// at the first one that fails, as upstream's __msr_io).
fn msr_io(vcpu: &Vcpu, inner: &mut VcpuInner, arg: usize, write: bool) -> Result<isize> {
    crate::msrs::msr_io(arg, !write, |e| {
        if write {
            crate::msrs::set_msr_vcpu(vcpu, inner, e.index, e.data, true).is_ok()
        } else {
            crate::msrs::get_msr_vcpu(vcpu, inner, e.index, true).map(|v| e.data = v).is_ok()
        }
    })
}

fn get_events(s: &ArchState) -> uapi::kvm_vcpu_events {
    let mut e = uapi::kvm_vcpu_events::default();
    if let Some(p) = s.pending_event {
        if p.external {
            e.interrupt.injected = 1;
            e.interrupt.nr = p.vector;
            e.interrupt.soft = p.soft as u8;
        } else {
            e.exception.injected = 1;
            e.exception.nr = p.vector;
            e.exception.has_error_code = p.error_code.is_some() as u8;
            e.exception.error_code = p.error_code.unwrap_or(0);
        }
    }
    e.interrupt.shadow = if s.interrupt_shadow { uapi::KVM_X86_SHADOW_INT_STI as u8 } else { 0 };
    e.nmi.masked = s.nmi_masked as u8;
    e.flags = uapi::KVM_VCPUEVENT_VALID_SHADOW;
    e
}

fn set_events(s: &mut ArchState, e: &uapi::kvm_vcpu_events) -> Result {
    let known = uapi::KVM_VCPUEVENT_VALID_NMI_PENDING
        | uapi::KVM_VCPUEVENT_VALID_SIPI_VECTOR
        | uapi::KVM_VCPUEVENT_VALID_SHADOW
        | uapi::KVM_VCPUEVENT_VALID_SMM;
    if e.flags & !known != 0 {
        return Err(EINVAL);
    }
    // Exception vectors are 0..31; NMI (2) cannot be an exception.
    if e.exception.injected != 0 && (e.exception.nr > 31 || e.exception.nr == 2) {
        return Err(EINVAL);
    }
    s.pending_event = if e.exception.injected != 0 {
        Some(PendingEvent {
            vector: e.exception.nr,
            error_code: if e.exception.has_error_code != 0 { Some(e.exception.error_code) } else { None },
            soft: false,
            external: false,
        })
    } else if e.interrupt.injected != 0 {
        Some(PendingEvent { vector: e.interrupt.nr, error_code: None, soft: e.interrupt.soft != 0, external: true })
    } else {
        None
    };
    if e.flags & uapi::KVM_VCPUEVENT_VALID_SHADOW != 0 {
        s.interrupt_shadow = e.interrupt.shadow != 0;
    }
    s.nmi_masked = e.nmi.masked != 0;
    Ok(())
}



pub(crate) use fpu::load_if_needed as fpu_load_if_needed;
