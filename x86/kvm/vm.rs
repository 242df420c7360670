// SPDX-License-Identifier: GPL-2.0
//! A virtual machine: its file, memory slots, two-dimensional page tables and
//! vCPUs (upstream's struct kvm, kvm_dev_ioctl_create_vm, kvm_vm_ioctl).

use crate::bindings;
use crate::dirty_ring::DirtyRing;
use crate::files;
use crate::memslots::{self, Change, Refusal, Request, SlotDesc};
use crate::mm::{FaultPage, OwnerMm};
use crate::mmu_invalidate::{self, MmuState};
use crate::tdp_mmu::{level_pages, Perm, TableCache, TdpMmu};
use crate::uapi::{self, ioctl};
use crate::vcpu::{self, VcpuShared};
use crate::x86_ops::VendorOps;
use crate::{caps, user};
use core::sync::atomic::AtomicU64;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::{c_str, new_mutex, new_spinlock};

/// vCPUs per VM (KVM_CAP_MAX_VCPUS, KVM_CAP_NR_VCPUS) and the vCPU id bound
/// (KVM_CAP_MAX_VCPU_ID): upstream's x86 defaults.
pub(crate) const MAX_VCPUS: u32 = 1024;
pub(crate) const MAX_VCPU_ID: u32 = 4096;

/// A memory slot: what user space described and, while dirty logging is on
/// without a dirty ring, the dirty bitmap. The slot holds no pages: the
/// guest's mappings follow user space's through the MMU notifier
/// (x86/kvm/mmu_invalidate.rs).
pub(crate) struct Memslot {
    pub desc: SlotDesc,
    /// (address space << 16) | slot id: how the dirty ring names the slot.
    ring_id: u32,
    dirty: Option<KVVec<u64>>,
}

impl Memslot {
    fn new(desc: SlotDesc, as_id: usize, log: LogMode) -> Result<Self> {
        let mut slot = Memslot { desc, ring_id: ((as_id as u32) << 16) | desc.id as u32, dirty: None };
        slot.set_logging(desc.flags & memslots::MEM_LOG_DIRTY_PAGES != 0, log)?;
        Ok(slot)
    }

    /// Whether writes are logged (KVM_MEM_LOG_DIRTY_PAGES).
    pub(crate) fn logging(&self) -> bool {
        self.desc.flags & memslots::MEM_LOG_DIRTY_PAGES != 0
    }

    /// Starts or stops dirty logging's bitmap (none with a dirty ring). With
    /// `log.initially_set` every page starts dirty
    /// (KVM_DIRTY_LOG_INITIALLY_SET), so nothing is write-protected until
    /// user space clears pages with KVM_CLEAR_DIRTY_LOG.
    fn set_logging(&mut self, on: bool, log: LogMode) -> Result {
        if on && self.dirty.is_none() && !log.ring {
            let npages = self.desc.npages as usize;
            let words = npages.div_ceil(64);
            let mut bitmap = KVVec::from_elem(0u64, words, GFP_KERNEL_ACCOUNT)?;
            if log.initially_set {
                for (i, w) in bitmap.iter_mut().enumerate() {
                    let left = npages - i * 64;
                    *w = if left >= 64 { u64::MAX } else { (1u64 << left) - 1 };
                }
            }
            self.dirty = Some(bitmap);
        } else if !on {
            self.dirty = None;
        }
        Ok(())
    }

    /// Logs a write to `gfn`: in the writing vCPU's dirty ring if the VM has
    /// rings (`ring`), else in the bitmap; nothing unless the slot is logged.
    fn mark_dirty(&mut self, gfn: u64, ring: Option<&DirtyRing>) {
        if !self.logging() {
            return;
        }
        let i = gfn - self.desc.base_gfn;
        if let Some(r) = ring {
            r.push(self.ring_id, i);
        } else if let Some(w) = self.dirty.as_mut().and_then(|d| d.get_mut(i as usize / 64)) {
            *w |= 1 << (i % 64);
        }
    }
}

/// How a VM logs dirty pages.
#[derive(Clone, Copy)]
struct LogMode {
    /// KVM_DIRTY_LOG_INITIALLY_SET is in force.
    initially_set: bool,
    /// The VM has dirty rings (no bitmaps).
    ring: bool,
}

/// Memory slots of one address space (0: normal, 1: System Management
/// Mode; see memslots::ADDRESS_SPACES). Its two-dimensional page tables are
/// in `Vm::mmu` (MmuState::tdp, same index).
pub(crate) struct AddressSpace {
    pub slots: KVec<Memslot>,
}

/// The VM lock's data (`Vm::inner`, a mutex: may be held across sleeps and
/// user copies, never across guest entry; `Vm::mmu` nests inside it).
pub(crate) struct VmInner {
    /// Indexed by address-space id; a vCPU uses the one of its mode
    /// (crate::smm::as_id).
    pub spaces: [AddressSpace; 2],
    /// Table pages for the next fault's mapping (refilled before `mmu` is
    /// taken; upstream's per-vCPU mmu_page_cache).
    pub table_cache: TableCache,
    pub vcpus: KVec<Arc<VcpuShared>>,
    /// vCPUs ever created (upstream's created_vcpus: closing a vCPU's file
    /// does not lower it). VM-wide setup that must precede vCPUs checks it.
    pub created_vcpus: u32,
    /// The vCPU ids ever created, one bit each (below MAX_VCPU_ID).
    vcpu_ids_used: [u64; (MAX_VCPU_ID / 64) as usize],
    /// KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID): vCPU ids stay below this (0:
    /// not set yet; the first vCPU fixes it at MAX_VCPU_ID, as upstream).
    pub max_vcpu_ids: u32,
    /// KVM_SET_NR_MMU_PAGES: kept for the VMM (it bounds upstream's shadow
    /// page cache; the two-dimensional tables here, like upstream's TDP MMU,
    /// are not bounded by it).
    pub n_requested_mmu_pages: u64,
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's flags (upstream's
    /// manual_dirty_log_protect): with ENABLE, KVM_GET_DIRTY_LOG neither clears
    /// nor write-protects (KVM_CLEAR_DIRTY_LOG does); with INITIALLY_SET,
    /// logging starts with every page dirty and nothing write-protected.
    pub manual_dirty_log_protect: u64,
    pub tss_addr: Option<u64>,
    pub identity_map_addr: Option<u64>,
    /// KVM_CAP_DIRTY_LOG_RING's size in bytes of each vCPU's ring (0: the
    /// VM logs into bitmaps); fixed before the first vCPU.
    pub dirty_ring_size: u32,
}

/// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2's answer and accepted flags.
pub(crate) const DIRTY_LOG_MANUAL_CAPS: u64 =
    (uapi::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | uapi::KVM_DIRTY_LOG_INITIALLY_SET) as u64;

impl VmInner {
    fn dirty_log_initially_set(&self) -> bool {
        let both = DIRTY_LOG_MANUAL_CAPS;
        self.manual_dirty_log_protect & both == both
    }

    /// Whether vCPU `id` (< MAX_VCPU_ID) was ever created in this VM.
    pub(crate) fn vcpu_id_used(&self, id: u32) -> bool {
        self.vcpu_ids_used.get(id as usize / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    pub(crate) fn mark_vcpu_id_used(&mut self, id: u32) {
        if let Some(w) = self.vcpu_ids_used.get_mut(id as usize / 64) {
            *w |= 1 << (id % 64);
        }
    }

    fn log_mode(&self) -> LogMode {
        LogMode { initially_set: self.dirty_log_initially_set(), ring: self.dirty_ring_size != 0 }
    }
}

/// The kind of guest access that faulted in the nested page tables.
#[derive(Clone, Copy, Default)]
pub(crate) struct Access {
    pub write: bool,
    /// An instruction fetch.
    pub fetch: bool,
}

/// What a guest-physical access resolves to.
pub(crate) enum Resolved {
    /// Mapped in the page tables now; re-enter the guest.
    Mapped,
    /// An invalidation of the host mapping raced with the fault: nothing was
    /// mapped; re-enter the guest (it faults again) or try again.
    Retry,
    /// Not backed by RAM (or a write to a read-only slot): emulate as MMIO.
    Mmio,
}

#[pin_data]
pub struct Vm {
    /// The MMU notifier on the creator's mm. First, so that it is
    /// unregistered (no callback running or to come) before anything its
    /// callbacks use is dropped.
    mmu_notifier: crate::mmu_notifier::MmuNotifier,
    /// The in-kernel irqchip. Next (after the notifier, which it does not
    /// use), so that its timers and work items are stopped before anything
    /// they use is dropped.
    #[pin]
    pub(crate) irq: crate::irq::VmIrq,
    pub(crate) vendor: &'static dyn VendorOps,
    /// A kvm-vfio device file is open (one per VM).
    pub(crate) vfio_device_open: core::sync::atomic::AtomicBool,
    /// Behaviour switches set with KVM_ENABLE_CAP (x86/kvm/quirks.rs).
    pub(crate) switches: crate::quirks::VmSwitches,
    /// KVM_REGISTER_COALESCED_MMIO's zones and the ring.
    #[pin]
    pub(crate) coalesced: crate::coalesced_mmio::CoalescedMmio,
    /// KVM_GET/SET_CLOCK, the kvmclock records' reference.
    #[pin]
    pub(crate) clock: crate::time::vm_clock::VmClock,
    /// The TSC writes that keep vCPUs' TSCs in step (see time::tsc). A
    /// spinlock taken under a vCPU's mutex; nothing is taken under it.
    #[pin]
    pub(crate) tsc: SpinLock<crate::time::tsc::TscSync>,
    /// KVM_CAP_X86_USER_SPACE_MSR and the MSR filter (user_msr).
    #[pin]
    pub(crate) user_msr: crate::user_msr::VmUserMsr,
    /// Guests may read MSR_PLATFORM_INFO (KVM_CAP_MSR_PLATFORM_INFO).
    pub(crate) platform_info_readable: core::sync::atomic::AtomicBool,
    /// KVM_X86_DISABLE_EXITS_* in force for new vCPUs (disable_exits.rs).
    pub(crate) disable_exits: core::sync::atomic::AtomicU32,
    owner: OwnerMm,
    /// Bumped whenever mappings are removed or write-protected; a vCPU that
    /// entered with an older value flushes its guest TLB on the next entry.
    pub(crate) tlb_gen: AtomicU64,
    /// Physical address of the root of the two-dimensional page tables of
    /// each address space.
    pub(crate) tdp_roots: [u64; 2],
    /// The page tables and the MMU-notifier protocol's state: a spinlock
    /// nested inside `inner`, taken alone by the notifier; see
    /// x86/kvm/mmu_invalidate.rs.
    #[pin]
    pub(crate) mmu: SpinLock<MmuState>,
    #[pin]
    pub(crate) inner: Mutex<VmInner>,
    /// Statistics (KVM_GET_STATS_FD, debugfs).
    #[pin]
    pub(crate) stats: crate::stats::VmStats,
}

/// KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID): set once (again with the same value
/// is fine), not below the boot vCPU's id, at most MAX_VCPU_ID.
fn set_max_vcpu_id(vm: &Vm, max: u64) -> Result {
    if max > MAX_VCPU_ID as u64 {
        return Err(EINVAL);
    }
    let mut inner = vm.inner.lock();
    if vm.irq.bsp_id() as u64 > max {
        return Err(EINVAL);
    }
    if inner.max_vcpu_ids as u64 == max {
        return Ok(());
    }
    if inner.max_vcpu_ids != 0 {
        return Err(EINVAL);
    }
    inner.max_vcpu_ids = max as u32;
    Ok(())
}

/// KVM_CREATE_VM.
pub(crate) fn kvm_dev_ioctl_create_vm(vm_type: usize) -> Result<isize> {
    // Only the default VM type (KVM_X86_DEFAULT_VM) is supported.
    if vm_type != 0 {
        return Err(EINVAL);
    }
    let vendor = crate::virtualization::vendor().ok_or(ENODEV)?;
    if !vendor.runs_guests() {
        return Err(EINVAL);
    }
    let mmu = TdpMmu::new(vendor.tdp())?;
    let smm_mmu = TdpMmu::new(vendor.tdp())?;
    let tdp_roots = [mmu.root_pa(), smm_mmu.root_pa()];
    let ring = crate::coalesced_mmio::alloc_ring()?;
    let mmu_notifier = crate::mmu_notifier::MmuNotifier::new()?;
    let vm = Arc::pin_init(
        pin_init!(Vm {
            mmu_notifier,
            irq <- crate::irq::VmIrq::new(),
            vendor,
            vfio_device_open: core::sync::atomic::AtomicBool::new(false),
            switches: crate::quirks::VmSwitches::new(),
            coalesced <- crate::coalesced_mmio::CoalescedMmio::new(ring),
            clock <- crate::time::vm_clock::VmClock::new(),
            tsc <- new_spinlock!(crate::time::tsc::TscSync::new(), "Vm::tsc"),
            user_msr <- crate::user_msr::VmUserMsr::new(),
            platform_info_readable: core::sync::atomic::AtomicBool::new(true),
            disable_exits: core::sync::atomic::AtomicU32::new(0),
            owner: OwnerMm::current(),
            tlb_gen: AtomicU64::new(0),
            tdp_roots,
            mmu <- new_spinlock!(MmuState::new([mmu, smm_mmu]), "Vm::mmu"),
            inner <- new_mutex!(VmInner {
                spaces: [AddressSpace { slots: KVec::new() }, AddressSpace { slots: KVec::new() }],
                table_cache: TableCache::new(),
                vcpus: KVec::new(),
                tss_addr: None,
                identity_map_addr: None,
                dirty_ring_size: 0,
                created_vcpus: 0,
                vcpu_ids_used: [0; (MAX_VCPU_ID / 64) as usize],
                max_vcpu_ids: 0,
                n_requested_mmu_pages: 0,
                manual_dirty_log_protect: 0,
            }),
            stats <- crate::stats::VmStats::new(),
        }),
        GFP_KERNEL,
    )?;
    vm.mmu_notifier.register(&vm)?;
    let fd = files::new_fd(c_str!("kvm-vm"), files::vm_fops()?, vm.clone())?;
    // Upstream names the VM's debugfs directory after its fd; a failure here
    // only costs the directory, as upstream's.
    let _ = crate::stats::debugfs::vm_created(&vm.stats, fd);
    Ok(fd as isize)
}

pub(crate) unsafe extern "C" fn kvm_vm_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `file` is a VM file in an ioctl, so its Arc<Vm> is alive.
    let vm: Arc<Vm> = unsafe { files::borrow::<Vm>(file) }.into();
    match vm_ioctl(&vm, cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

pub(crate) unsafe extern "C" fn kvm_vm_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: called once when the last reference to the file goes.
    unsafe { files::release::<Vm>(file) };
    0
}

/// The highest guest frame the two-dimensional page tables can map: the host's
/// MAXPHYADDR (CPUID 0x80000008 EAX[7:0]) as upstream's kvm_mmu_max_gfn.
fn max_gfn() -> u64 {
    let eax = crate::cpu::cpuid(0x8000_0008, 0)[0];
    let bits = match eax & 0xff {
        0 => 36,
        b => b.min(52),
    };
    (1u64 << (bits - memslots::PAGE_SHIFT)) - 1
}

/// The fields of KVM_SET_USER_MEMORY_REGION(2) that a memory slot is made of.
fn region_request(slot: u32, flags: u32, gpa: u64, size: u64, hva: u64) -> Request {
    Request { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: hva }
}

fn vm_ioctl(vm: &Arc<Vm>, cmd: u32, arg: usize) -> Result<isize> {
    if !vm.owner.is_current() {
        return Err(EIO);
    }
    match cmd {
        ioctl::KVM_CHECK_EXTENSION => Ok(caps::check_extension(arg as u64)),
        ioctl::KVM_SET_USER_MEMORY_REGION => {
            let r: uapi::kvm_userspace_memory_region = user::read(arg)?;
            vm.set_memory_region(&region_request(r.slot, r.flags, r.guest_phys_addr, r.memory_size, r.userspace_addr))?;
            Ok(0)
        }
        ioctl::KVM_SET_USER_MEMORY_REGION2 => {
            let r: uapi::kvm_userspace_memory_region2 = user::read(arg)?;
            // guest_memfd is not supported (KVM_MEM_GUEST_MEMFD is refused with
            // the other unknown flags); like upstream, the padding is ignored.
            vm.set_memory_region(&region_request(r.slot, r.flags, r.guest_phys_addr, r.memory_size, r.userspace_addr))?;
            Ok(0)
        }
        ioctl::KVM_CREATE_VCPU => vcpu::kvm_vm_ioctl_create_vcpu(vm, arg),
        ioctl::KVM_GET_STATS_FD => crate::stats::fd::vm_stats_fd(vm),
        ioctl::KVM_SET_TSS_ADDR => {
            // Three pages below 4G (upstream checks only that it fits in 32 bits
            // on SVM; VMX uses the pages for real-mode emulation).
            if arg as u64 > 0xffff_ffff - 3 * 4096 {
                return Err(EINVAL);
            }
            vm.inner.lock().tss_addr = Some(arg as u64);
            Ok(0)
        }
        ioctl::KVM_SET_IDENTITY_MAP_ADDR => {
            let addr: u64 = user::read(arg)?;
            let mut inner = vm.inner.lock();
            if inner.created_vcpus != 0 {
                return Err(EINVAL);
            }
            inner.identity_map_addr = Some(addr);
            Ok(0)
        }
        ioctl::KVM_GET_DIRTY_LOG => {
            let log: uapi::kvm_dirty_log = user::read(arg)?;
            // SAFETY: reading the pointer member of the union; any value is a
            // plain address, checked by the user copy.
            let bitmap = unsafe { log.__bindgen_anon_1.dirty_bitmap } as usize;
            vm.get_dirty_log(log.slot, bitmap)?;
            Ok(0)
        }
        ioctl::KVM_CLEAR_DIRTY_LOG => {
            let log: uapi::kvm_clear_dirty_log = user::read(arg)?;
            vm.clear_dirty_log(&log)?;
            Ok(0)
        }
        ioctl::KVM_GET_TSC_KHZ => Ok(vm.tsc.lock().default_khz as isize),
        ioctl::KVM_SET_TSC_KHZ => crate::time::tsc::set_default_khz(vm, arg),
        ioctl::KVM_GET_CLOCK => vm.clock.get(arg).map(|_| 0),
        ioctl::KVM_CREATE_DEVICE => crate::vfio_device::create_device(vm, arg),
        ioctl::KVM_REGISTER_COALESCED_MMIO => {
            let z: uapi::kvm_coalesced_mmio_zone = user::read(arg)?;
            vm.coalesced.register(&z).map(|_| 0)
        }
        ioctl::KVM_UNREGISTER_COALESCED_MMIO => {
            let z: uapi::kvm_coalesced_mmio_zone = user::read(arg)?;
            vm.coalesced.unregister(&z).map(|_| 0)
        }
        ioctl::KVM_SET_CLOCK => {
            vm.clock.set(arg)?;
            // Every vCPU rewrites its kvmclock record from the new snapshot.
            for v in vm.inner.lock().vcpus.iter() {
                crate::time::kvmclock::request_update(v);
                v.kick();
            }
            Ok(0)
        }
        ioctl::KVM_ENABLE_CAP => {
            let cap: uapi::kvm_enable_cap = user::read(arg)?;
            // Upstream's generic capabilities come before x86's check of the
            // flags, and the dirty ring's ignores them.
            if cap.cap == uapi::KVM_CAP_DIRTY_LOG_RING || cap.cap == uapi::KVM_CAP_DIRTY_LOG_RING_ACQ_REL {
                return crate::dirty_ring::enable_cap(vm, cap.args[0]).map(|_| 0);
            }
            if cap.flags != 0 {
                return Err(EINVAL);
            }
            if cap.cap == uapi::KVM_CAP_MAX_VCPU_ID {
                return set_max_vcpu_id(vm, cap.args[0]).map(|_| 0);
            }
            if cap.cap == uapi::KVM_CAP_EXIT_ON_EMULATION_FAILURE {
                return crate::emulation_failure::enable_cap(vm, &cap).map(|_| 0);
            }
            if cap.cap == uapi::KVM_CAP_DISABLE_QUIRKS2 {
                return crate::quirks::enable_cap(vm, &cap).map(|_| 0);
            }
            if cap.cap == uapi::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 {
                // INITIALLY_SET only together with ENABLE.
                let enable = uapi::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE as u64;
                let allowed = if cap.args[0] & enable != 0 { DIRTY_LOG_MANUAL_CAPS } else { enable };
                if cap.args[0] & !allowed != 0 {
                    return Err(EINVAL);
                }
                vm.inner.lock().manual_dirty_log_protect = cap.args[0];
                return Ok(0);
            }
            match crate::irq::ioctl::enable_cap(vm, &cap)
                .or_else(|| crate::user_msr::enable_cap(vm, &cap))
                .or_else(|| crate::platform_info::enable_cap(vm, &cap))
                .or_else(|| crate::disable_exits::enable_cap(vm, &cap))
            {
                Some(r) => r.map(|_| 0),
                None => Err(EINVAL),
            }
        }
        ioctl::KVM_X86_SET_MSR_FILTER => crate::user_msr::set_msr_filter(vm, arg),
        ioctl::KVM_RESET_DIRTY_RINGS => crate::dirty_ring::reset_rings(vm),
        ioctl::KVM_SET_NR_MMU_PAGES => {
            // Upstream's KVM_MIN_ALLOC_MMU_PAGES is the floor.
            if (arg as u64) < 64 {
                return Err(EINVAL);
            }
            vm.inner.lock().n_requested_mmu_pages = arg as u64;
            Ok(0)
        }
        _ => match crate::irq::ioctl::vm_ioctl(vm, cmd, arg) {
            Some(r) => r,
            None => Err(ENOTTY),
        },
    }
}

impl Vm {
    /// Whether the calling process created this VM.
    pub(crate) fn owner_is_current(&self) -> bool {
        self.owner.is_current()
    }

    fn set_memory_region(&self, req: &Request) -> Result {
        let as_id = (req.slot >> 16) as usize;
        if as_id >= memslots::ADDRESS_SPACES as usize {
            return Err(EINVAL);
        }
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let descs = {
            let sp = &inner.spaces[as_id];
            let mut v = KVec::with_capacity(sp.slots.len(), GFP_KERNEL)?;
            for s in sp.slots.iter() {
                v.push(s.desc, GFP_KERNEL)?;
            }
            v
        };
        let change = memslots::check_request(req, &descs).map_err(|r| match r {
            Refusal::Invalid => EINVAL,
            Refusal::Overlap => EEXIST,
        })?;
        // Upstream's kvm_arch_prepare_memory_region: a new or moved slot must
        // end below the host's physical-address limit (kvm_mmu_max_gfn).
        if let Change::Create(d) | Change::Move { new: d, .. } = change {
            if d.end_gfn() > max_gfn() + 1 {
                return Err(EINVAL);
            }
        }
        match change {
            Change::Unchanged => Ok(()),
            Change::Create(desc) => {
                let slot = Memslot::new(desc, as_id, inner.log_mode())?;
                inner.spaces[as_id].slots.push(slot, GFP_KERNEL)?;
                // The notifier learns the slot before a fault can map it (faults
                // hold `inner`).
                match mmu_invalidate::slot_descs(inner, as_id) {
                    Ok(descs) => {
                        let old = self.mmu.lock().set_slots(as_id, descs);
                        drop(old);
                        Ok(())
                    }
                    Err(e) => {
                        drop(crate::kvec_ext::pop(&mut inner.spaces[as_id].slots));
                        Err(e)
                    }
                }
            }
            Change::Delete(desc) => {
                let i = inner.spaces[as_id].slots.iter().position(|s| s.desc.id == desc.id).ok_or(EINVAL)?;
                let removed = crate::kvec_ext::swap_remove(&mut inner.spaces[as_id].slots, i);
                let descs = match mmu_invalidate::slot_descs(inner, as_id) {
                    Ok(d) => d,
                    Err(e) => {
                        if let Some(s) = removed {
                            let _ = inner.spaces[as_id].slots.push(s, GFP_KERNEL);
                        }
                        return Err(e);
                    }
                };
                let old = {
                    let mut mmu = self.mmu.lock();
                    mmu.zap(self, as_id, desc.base_gfn, desc.end_gfn(), 1);
                    mmu.flush_remote_tlbs(self);
                    mmu.set_slots(as_id, descs)
                };
                // No vCPU can use the old translations now: drop the slot.
                drop((old, removed));
                Ok(())
            }
            Change::Move { old, new } => {
                let mut descs = mmu_invalidate::slot_descs(inner, as_id)?;
                if let Some(d) = descs.iter_mut().find(|d| d.id == old.id) {
                    *d = new;
                }
                let old_descs = {
                    let mut mmu = self.mmu.lock();
                    mmu.zap(self, as_id, old.base_gfn, old.end_gfn(), 1);
                    mmu.flush_remote_tlbs(self);
                    mmu.set_slots(as_id, descs)
                };
                drop(old_descs);
                let log = inner.log_mode();
                if let Some(s) = inner.spaces[as_id].slots.iter_mut().find(|s| s.desc.id == old.id) {
                    s.desc = new;
                    // A moved slot starts a new log (upstream allocates the
                    // moved slot's bitmap afresh), or none if the move also
                    // turned logging off.
                    s.set_logging(false, log)?;
                    s.set_logging(new.flags & memslots::MEM_LOG_DIRTY_PAGES != 0, log)?;
                }
                Ok(())
            }
            Change::FlagsOnly { old, new } => {
                let logging = new.flags & memslots::MEM_LOG_DIRTY_PAGES != 0;
                let log = inner.log_mode();
                let initially_set = log.initially_set;
                if let Some(s) = inner.spaces[as_id].slots.iter_mut().find(|s| s.desc.id == old.id) {
                    s.set_logging(logging, log)?;
                    s.desc = new;
                }
                // The notifier's copy keeps the flags in step (unused there, but
                // one descriptor per slot, the same everywhere).
                let descs = mmu_invalidate::slot_descs(inner, as_id)?;
                let was_logging = old.flags & memslots::MEM_LOG_DIRTY_PAGES != 0;
                let (start, end) = (old.base_gfn, old.end_gfn());
                if logging && !was_logging {
                    // The log counts 4K pages: split the huge leaves into 4K
                    // ones (upstream's eager page split), with tables
                    // allocated before `mmu` is taken. Faults, which could add
                    // huge leaves, wait for `inner`; the notifier only removes.
                    // A 1G-aligned piece at a time: at most 513 table pages
                    // to allocate and 512 * 512 entries to write per hold of
                    // `mmu`, whatever the slot's size.
                    let mut piece = start;
                    while piece < end {
                        let piece_end = (piece + level_pages(3)).min(end) & !(level_pages(3) - 1);
                        let piece_end = if piece_end <= piece { end } else { piece_end };
                        let need = self.mmu.lock().tdp[as_id].split_cost(piece, piece_end);
                        if need != 0 && inner.table_cache.topup(need).is_ok() {
                            let split = self.mmu.lock().tdp[as_id].split_huge(piece, piece_end, &mut inner.table_cache);
                            crate::stats::pages(self, split);
                        }
                        piece = piece_end;
                        // SAFETY: may sleep; only the `inner` mutex is held.
                        unsafe { bindings::kvm_rs_cond_resched() };
                    }
                }
                let mut mmu = self.mmu.lock();
                let old_descs = mmu.set_slots(as_id, descs);
                let mut flush = false;
                if logging && !was_logging {
                    // Huge leaves left (no memory to split them) go; faults
                    // map the slot in 4K pieces while it is logged.
                    flush |= mmu.zap(self, as_id, start, end, 2);
                    if !initially_set {
                        // Writes must fault from now on to be logged.
                        flush |= mmu.tdp[as_id].write_protect(start, end);
                    }
                } else if !logging && was_logging {
                    flush |= self.zap_collapsible(&mut mmu, as_id, &new);
                }
                if flush {
                    mmu.flush_remote_tlbs(self);
                }
                drop(mmu);
                drop(old_descs);
                Ok(())
            }
        }
    }

    /// Dirty logging of `slot` is over: zaps the 4K leaves of each aligned 2M
    /// range the host backs with a huge page now, so that faults map it with
    /// a huge leaf again (upstream's kvm_mmu_zap_collapsible_sptes); ranges
    /// the host maps with 4K pages keep their leaves. Returns whether a flush
    /// is needed. Runs in the owner's ioctl, so the host walk reads its mm.
    fn zap_collapsible(&self, mmu: &mut MmuState, as_id: usize, slot: &SlotDesc) -> bool {
        let pages = level_pages(2);
        let aligned = (slot.base_gfn ^ (slot.hva >> memslots::PAGE_SHIFT)) & (pages - 1) == 0;
        if !aligned || self.vendor.tdp().max_level() < 2 {
            return false;
        }
        let mut flush = false;
        let mut gfn = slot.base_gfn.next_multiple_of(pages);
        while gfn + pages <= slot.end_gfn() {
            // SAFETY: reads the current process's page tables with interrupts
            // off; any address is allowed.
            if unsafe { bindings::kvm_rs_host_mapping_level(slot.hva_of(gfn) as _) } >= 2 {
                flush |= mmu.zap(self, as_id, gfn, gfn + pages, 1);
            }
            gfn += pages;
        }
        flush
    }

    fn get_dirty_log(&self, slot: u32, bitmap_uaddr: usize) -> Result {
        let as_id = (slot >> 16) as usize;
        if self.inner.lock().dirty_ring_size != 0 {
            // The dirty ring replaces the bitmaps (upstream: ENXIO, first).
            return Err(ENXIO);
        }
        if as_id >= memslots::ADDRESS_SPACES as usize || slot & 0xffff >= memslots::MAX_SLOTS as u32 {
            return Err(EINVAL);
        }
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let s = inner.spaces[as_id].slots.iter_mut().find(|s| s.desc.id as u32 == slot & 0xffff).ok_or(ENOENT)?;
        let (base, npages) = (s.desc.base_gfn, s.desc.npages);
        let dirty = s.dirty.as_mut().ok_or(ENOENT)?;
        if inner.manual_dirty_log_protect & uapi::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE as u64 != 0 {
            // Manual protection: the bitmap as it is; KVM_CLEAR_DIRTY_LOG
            // clears and write-protects.
            return user::write_slice(bitmap_uaddr, dirty);
        }
        // Snapshot and clear, then write-protect what was dirty and flush: a write
        // after this returns faults and is logged again.
        let mut snapshot = KVVec::with_capacity(dirty.len(), GFP_KERNEL)?;
        for w in dirty.iter_mut() {
            snapshot.push(*w, GFP_KERNEL)?;
            *w = 0;
        }
        // Write-protect each run of consecutive dirty pages with one walk.
        let mut protected = false;
        let mut mmu = self.mmu.lock();
        for (wi, w) in snapshot.iter().enumerate() {
            let first = wi as u64 * 64;
            // Never beyond the slot (the bitmap's last word has spare bits).
            let valid = if npages - first >= 64 { u64::MAX } else { (1u64 << (npages - first)) - 1 };
            protected |= mmu.tdp[as_id].write_protect_mask(base + first, *w & valid);
        }
        if protected {
            mmu.flush_remote_tlbs(self);
        }
        drop(mmu);
        // Upstream copies ALIGN(npages, BITS_PER_LONG) / 8 bytes.
        user::write_slice(bitmap_uaddr, &snapshot)
    }

    /// KVM_CLEAR_DIRTY_LOG (upstream's kvm_clear_dirty_log_protect): the pages
    /// set in user space's bitmap, from `first_page` (a multiple of 64) for
    /// `num_pages` (a multiple of 64 unless it reaches the slot's end), are
    /// cleared in the log and write-protected, so their next write is logged.
    fn clear_dirty_log(&self, log: &uapi::kvm_clear_dirty_log) -> Result {
        let slot = log.slot;
        if self.inner.lock().dirty_ring_size != 0 {
            return Err(ENXIO);
        }
        let as_id = (slot >> 16) as usize;
        if as_id >= memslots::ADDRESS_SPACES as usize || slot & 0xffff >= memslots::MAX_SLOTS as u32 || log.first_page & 63 != 0 {
            return Err(EINVAL);
        }
        // SAFETY: the pointer member of the union; any value is a plain
        // address, checked by the user copy.
        let uaddr = unsafe { log.__bindgen_anon_1.dirty_bitmap } as usize;
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let space = &mut inner.spaces[as_id];
        let s = space.slots.iter_mut().find(|s| s.desc.id as u32 == slot & 0xffff).ok_or(ENOENT)?;
        let (base, npages) = (s.desc.base_gfn, s.desc.npages);
        let dirty = s.dirty.as_mut().ok_or(ENOENT)?;
        let (first, num) = (log.first_page, log.num_pages as u64);
        if first > npages || num > npages - first || (num < npages - first && num & 63 != 0) {
            return Err(EINVAL);
        }
        let words = num.div_ceil(64) as usize;
        let mut mask = KVVec::from_elem(0u64, words, GFP_KERNEL)?;
        user::read_slice(uaddr, &mut mask)?;
        let first_word = (first / 64) as usize;
        let mut protected = false;
        let mut mmu = self.mmu.lock();
        for (i, m) in mask.iter().enumerate() {
            let Some(w) = dirty.get_mut(first_word + i) else { break };
            // Only bits that were set are cleared (never beyond the slot).
            let cleared = *m & *w;
            if cleared == 0 {
                continue;
            }
            *w &= !cleared;
            protected |= mmu.tdp[as_id].write_protect_mask(base + ((first_word + i) as u64) * 64, cleared);
        }
        if protected {
            mmu.flush_remote_tlbs(self);
        }
        Ok(())
    }

    /// Resolves a guest-physical access that faulted in the nested page tables
    /// (upstream's kvm_tdp_page_fault: kvm_faultin_pfn, is_page_fault_stale,
    /// the mapping, the page's release): maps RAM, or reports MMIO.
    /// `as_id` is the faulting vCPU's address space.
    ///
    /// `inner` is held throughout, so the slot cannot change; the page lookup
    /// may sleep under it. The page reference lasts only until the leaf is
    /// installed; see x86/kvm/mmu_invalidate.rs for why the mapping cannot
    /// outlive the host's. Not inlined: its frame must not add to the run
    /// loop's.
    #[inline(never)]
    pub(crate) fn handle_tdp_fault(&self, as_id: usize, gpa: u64, access: Access, ring: Option<&DirtyRing>) -> Result<Resolved> {
        let write = access.write;
        let gfn = gpa >> memslots::PAGE_SHIFT;
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let space = inner.spaces.get_mut(as_id).ok_or(EINVAL)?;
        let Some(slot) = space.slots.iter_mut().find(|s| s.desc.contains(gfn)) else {
            return Ok(Resolved::Mmio);
        };
        let readonly = slot.desc.flags & memslots::MEM_READONLY != 0;
        if write && readonly {
            return Ok(Resolved::Mmio);
        }
        let hva = slot.desc.hva_of(gfn);
        // Read before the lookup: an invalidation that ends after this point
        // moves it (upstream's mmu_seq = kvm->mmu_invalidate_seq).
        let seq = self.mmu.lock().seq();
        // FOLL_WRITE only for a write; a read of a writable slot maps the page
        // writable only if user space's own mapping is writable already (no
        // CoW break for a read: the zero page stays shared until written). A
        // page of a logged slot mapped writable is logged at once, as
        // upstream's make_spte does; write protection by KVM_GET_DIRTY_LOG
        // then catches the next write.
        let page = FaultPage::get(hva, write, !readonly)?;
        let writable = page.writable();
        inner.table_cache.topup(crate::tdp_mmu::FAULT_TABLES)?;
        // SAFETY: reads a module parameter.
        let nx_huge_pages = unsafe { bindings::kvm_rs_nx_huge_pages_on() };
        // Under nx_huge_pages an instruction fetch maps 4K (executable): huge
        // leaves are not executable then (iTLB multihit), as upstream's.
        let max_level = if slot.logging() || (nx_huge_pages && access.fetch) { 1 } else { self.vendor.tdp().max_level() };
        {
            let mut mmu = self.mmu.lock();
            let mut level = huge_level(&slot.desc, gfn, page.phys(), max_level);
            let tdp = mmu.tdp.get_mut(as_id).ok_or(EINVAL)?;
            while level > 1 && tdp.has_smaller_leaves(gfn & !(level_pages(level) - 1), level) {
                level -= 1;
            }
            let (first_gfn, pa) = leaf_base(gfn, page.phys(), level);
            let first_hva = slot.desc.hva_of(first_gfn);
            if mmu.fault_is_stale(seq, first_hva, first_hva + (level_pages(level) << memslots::PAGE_SHIFT)) {
                return Ok(Resolved::Retry);
            }
            let tdp = mmu.tdp.get_mut(as_id).ok_or(EINVAL)?;
            let perm = Perm { writable, exec: level == 1 || !nx_huge_pages };
            let mapped = tdp.map(first_gfn << memslots::PAGE_SHIFT, pa, level, perm, &mut inner.table_cache)?;
            // Counted under the lock, with the leaf.
            crate::stats::pages(self, mapped.leaves);
            if let Some(table) = mapped.detached {
                // The hardware may still walk the replaced table.
                mmu.flush_remote_tlbs(self);
                mmu.tdp[as_id].free_detached(table);
            }
        }
        if writable {
            slot.mark_dirty(gfn, ring);
            // The guest may write the page without the host's page tables
            // seeing it: dirty for writeback now (a later writeback
            // write-protects the host PTE, which zaps this leaf first).
            page.set_dirty();
        }
        Ok(Resolved::Mapped)
    }

    /// The user address of guest frame `gfn` in address space `as_id` and
    /// whether the slot is writable.
    pub(crate) fn gfn_to_hva(&self, as_id: usize, gfn: u64) -> Option<(u64, bool)> {
        let inner = self.inner.lock();
        inner
            .spaces
            .get(as_id)?
            .slots
            .iter()
            .find(|s| s.desc.contains(gfn))
            .map(|s| (s.desc.hva_of(gfn), s.desc.flags & memslots::MEM_READONLY == 0))
    }

    /// Logs a write the kernel made to guest memory on the guest's behalf
    /// (in `ring`, the vCPU's dirty ring, if the VM has rings).
    pub(crate) fn mark_page_dirty(&self, as_id: usize, gfn: u64, ring: Option<&DirtyRing>) {
        let mut inner = self.inner.lock();
        let Some(space) = inner.spaces.get_mut(as_id) else { return };
        if let Some(s) = space.slots.iter_mut().find(|s| s.desc.contains(gfn)) {
            s.mark_dirty(gfn, ring);
        }
    }
}

/// The largest leaf (1: 4K, 2: 2M, 3: 1G, at most `max_level`) that may map
/// guest frame `gfn` of `slot` (upstream's kvm_mmu_max_mapping_level): the
/// whole aligned range around `gfn` must lie in the slot, the slot's guest
/// and user addresses must agree modulo that size, the host must map the user
/// address with a page at least that large (read under the MMU lock, after
/// the sequence check has held invalidations of it off) and `pa`, the host
/// page of `gfn`, must sit at the same offset in it.
fn huge_level(slot: &SlotDesc, gfn: u64, pa: u64, max_level: u32) -> u32 {
    let hva = slot.hva_of(gfn);
    // SAFETY: reads the current process's page tables with interrupts off;
    // any address is allowed (unmapped means level 1).
    let host = unsafe { bindings::kvm_rs_host_mapping_level(hva as _) } as u32;
    let mut level = max_level.min(host).max(1);
    while level > 1 {
        let pages = level_pages(level);
        let first = gfn & !(pages - 1);
        let in_slot = first >= slot.base_gfn && first + pages <= slot.end_gfn();
        let aligned = (slot.base_gfn ^ (slot.hva >> memslots::PAGE_SHIFT)) & (pages - 1) == 0;
        let pa_aligned = (pa >> memslots::PAGE_SHIFT) & (pages - 1) == gfn & (pages - 1);
        if in_slot && aligned && pa_aligned {
            break;
        }
        level -= 1;
    }
    level
}

/// The first guest frame and host-physical address of the leaf at `level`
/// that maps `gfn`, whose host page is at `pa`.
fn leaf_base(gfn: u64, pa: u64, level: u32) -> (u64, u64) {
    let mask = level_pages(level) - 1;
    (gfn & !mask, pa - ((gfn & mask) << memslots::PAGE_SHIFT))
}
