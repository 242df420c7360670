// SPDX-License-Identifier: GPL-2.0
//! KVM_CHECK_EXTENSION: which capabilities this implementation has.
//!
//! A capability answers non-zero only when every ioctl and behaviour it promises
//! works; everything else answers 0, as upstream does for capabilities it lacks.
//! Clients (QEMU above all) decide what to use from these answers.

use crate::uapi;
use crate::vm;

/// The answer for capability `cap` on /dev/kvm or a VM file descriptor.
pub fn check_extension(cap: u64) -> isize {
    let Ok(cap) = u32::try_from(cap) else { return 0 };
    let runs_guests = crate::virtualization::vendor().map_or(false, |v| v.runs_guests());
    match cap {
        // KVM_GET_SUPPORTED_CPUID (E2BIG semantics) and KVM_SET/GET_CPUID2.
        uapi::KVM_CAP_EXT_CPUID => 1,
        _ if !runs_guests => 0,
        // VMs, memory slots (create, delete, move, flags; read-only slots).
        uapi::KVM_CAP_USER_MEMORY
        | uapi::KVM_CAP_USER_MEMORY2
        | uapi::KVM_CAP_DESTROY_MEMORY_REGION_WORKS
        | uapi::KVM_CAP_JOIN_MEMORY_REGIONS_WORKS
        | uapi::KVM_CAP_READONLY_MEM
        | uapi::KVM_CAP_SET_TSS_ADDR
        | uapi::KVM_CAP_SET_IDENTITY_MAP_ADDR
        | uapi::KVM_CAP_CHECK_EXTENSION_VM => 1,
        // KVM_GET_STATS_FD on VMs and vCPUs (x86/kvm/stats).
        uapi::KVM_CAP_BINARY_STATS_FD => 1,
        // The in-kernel irqchip (x86/kvm/irq): PIC, IOAPIC, local APICs, PIT,
        // GSI routing (the answer is the routing table's size), MSIs, irqfds,
        // ioeventfds, split irqchip and the x2APIC API flags.
        uapi::KVM_CAP_IRQ_ROUTING => crate::irqchip::routing::MAX_IRQ_ROUTES as isize,
        uapi::KVM_CAP_IRQCHIP
        | uapi::KVM_CAP_HLT
        | uapi::KVM_CAP_IRQ_INJECT_STATUS
        | uapi::KVM_CAP_PIT
        | uapi::KVM_CAP_PIT2
        | uapi::KVM_CAP_PIT_STATE2
        | uapi::KVM_CAP_REINJECT_CONTROL
        | uapi::KVM_CAP_SET_BOOT_CPU_ID
        | uapi::KVM_CAP_SIGNAL_MSI
        | uapi::KVM_CAP_IRQFD
        | uapi::KVM_CAP_IRQFD_RESAMPLE
        | uapi::KVM_CAP_IOEVENTFD
        | uapi::KVM_CAP_IOEVENTFD_NO_LENGTH
        | uapi::KVM_CAP_IOEVENTFD_ANY_LENGTH
        | uapi::KVM_CAP_SPLIT_IRQCHIP
        | uapi::KVM_CAP_VAPIC
        | uapi::KVM_CAP_TSC_DEADLINE_TIMER
        | uapi::KVM_CAP_GET_TSC_KHZ => 1,
        uapi::KVM_CAP_X2APIC_API => (uapi::KVM_X2APIC_API_USE_32BIT_IDS | uapi::KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK) as isize,
        // KVM_NMI, KVM_SET_SIGNAL_MASK are covered by these.
        uapi::KVM_CAP_USER_NMI => 1,
        uapi::KVM_CAP_NR_MEMSLOTS => crate::memslots::MAX_SLOTS as isize,
        // vCPUs and their state.
        // The recommended count is the number of online CPUs, as upstream says.
        uapi::KVM_CAP_NR_VCPUS => (crate::cpu::num_online_cpus() as isize).min(vm::MAX_VCPUS as isize),
        uapi::KVM_CAP_MAX_VCPUS => vm::MAX_VCPUS as isize,
        uapi::KVM_CAP_MAX_VCPU_ID => vm::MAX_VCPU_ID as isize,
        // KVM_CLEAR_DIRTY_LOG and manual dirty-log protection.
        uapi::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 => vm::DIRTY_LOG_MANUAL_CAPS as isize,
        // The per-vCPU dirty ring, in both memory-ordering flavours (x86 is
        // TSO: the plain one, and the acquire/release one QEMU prefers).
        uapi::KVM_CAP_DIRTY_LOG_RING | uapi::KVM_CAP_DIRTY_LOG_RING_ACQ_REL => crate::dirty_ring::CAP_BYTES,
        // KVM_PRE_FAULT_MEMORY (x86/kvm/pre_fault.rs).
        uapi::KVM_CAP_PRE_FAULT_MEMORY => 1,
        // KVM_SET_NR_MMU_PAGES.
        uapi::KVM_CAP_MMU_SHADOW_CACHE_CONTROL => 1,
        uapi::KVM_CAP_MP_STATE
        | uapi::KVM_CAP_IMMEDIATE_EXIT
        | uapi::KVM_CAP_DEBUGREGS
        | uapi::KVM_CAP_XSAVE
        | uapi::KVM_CAP_VCPU_EVENTS
        | uapi::KVM_CAP_INTERNAL_ERROR_DATA
        | uapi::KVM_CAP_NOP_IO_DELAY => 1,
        uapi::KVM_CAP_XCRS => crate::cpu::host_has_xsave() as isize,
        // Registers synced through kvm_run; the answer is the fields offered.
        uapi::KVM_CAP_SYNC_REGS => crate::sync_regs::VALID_FIELDS as isize,
        // The answer is the ring's page in the vCPU mapping.
        uapi::KVM_CAP_COALESCED_MMIO => crate::coalesced_mmio::PAGE_OFFSET as isize,
        uapi::KVM_CAP_COALESCED_PIO => 1,
        // KVM_CREATE_DEVICE (the kvm-vfio device) and its attribute ioctls.
        uapi::KVM_CAP_DEVICE_CTRL => 1,
        // Nested virtualization is not offered to guests; the state is the
        // header that says so (x86/kvm/nested_state.rs).
        uapi::KVM_CAP_NESTED_STATE => crate::nested_state::max_size(),
        // KVM_GET_MSR_FEATURE_INDEX_LIST and KVM_GET_MSRS on /dev/kvm;
        // KVM_GET_EMULATED_CPUID.
        uapi::KVM_CAP_GET_MSR_FEATURES | uapi::KVM_CAP_EXT_EMUL_CPUID => 1,
        // Machine checks: the answer is the bank count (KVM_X86_SETUP_MCE,
        // KVM_X86_SET_MCE, KVM_X86_GET_MCE_CAP_SUPPORTED).
        uapi::KVM_CAP_MCE => crate::mce::MAX_BANKS as isize,
        // KVM_GET_CLOCK / KVM_SET_CLOCK; the answer is the flags accepted.
        // KVM_SET_GUEST_DEBUG: single-step (also over instructions the kernel
        // completes); DEBUG2 lists the control bits offered.
        uapi::KVM_CAP_SET_GUEST_DEBUG | uapi::KVM_CAP_X86_ROBUST_SINGLESTEP => 1,
        uapi::KVM_CAP_SET_GUEST_DEBUG2 => crate::guest_debug::SUPPORTED as isize,
        // User-space MSR exits, the MSR filter (x86/kvm/user_msr) and
        // MSR_PLATFORM_INFO's guest access (platform_info.rs).
        uapi::KVM_CAP_X86_USER_SPACE_MSR | uapi::KVM_CAP_X86_MSR_FILTER | uapi::KVM_CAP_MSR_PLATFORM_INFO => 1,
        // KVM_ENABLE_CAP on vCPUs, for KVM_CAP_ENFORCE_PV_FEATURE_CPUID
        // (pv_cpuid.rs; the hypercalls in hypercall.rs).
        uapi::KVM_CAP_ENABLE_CAP | uapi::KVM_CAP_ENFORCE_PV_FEATURE_CPUID => 1,
        // MSR_KVM_STEAL_TIME (time/steal_time.rs), with CONFIG_SCHED_INFO.
        // KVM_HAS/GET/SET_DEVICE_ATTR on vCPUs: KVM_VCPU_TSC_OFFSET (time/tsc.rs).
        uapi::KVM_CAP_VCPU_ATTRIBUTES => 1,
        // The exits a VM may turn off (disable_exits.rs).
        uapi::KVM_CAP_X86_DISABLE_EXITS => crate::disable_exits::OFFERED as isize,
        uapi::KVM_CAP_STEAL_TIME => crate::time::steal_time::sched_info_on() as isize,
        uapi::KVM_CAP_ADJUST_CLOCK => crate::time::vm_clock::VALID_FLAGS as isize,
        // Emulation failures exit with the instruction bytes, never #UD
        // (x86/kvm/emulation_failure.rs).
        uapi::KVM_CAP_EXIT_ON_EMULATION_FAILURE => 1,
        // The quirks that can be disabled (x86/kvm/quirks.rs).
        uapi::KVM_CAP_DISABLE_QUIRKS2 => crate::quirks::SUPPORTED as isize,
        // System Management Mode (x86/kvm/smm.rs): KVM_SMI, the smi events,
        // MSR_IA32_SMBASE, RSM; on vendors that virtualize SMBASE, as upstream.
        uapi::KVM_CAP_X86_SMM => crate::smm::vendor_supports() as isize,
        // Memory slots in address space 1, what a vCPU in SMM sees.
        uapi::KVM_CAP_MULTI_ADDRESS_SPACE => crate::memslots::ADDRESS_SPACES as isize,
        _ => 0,
    }
}
