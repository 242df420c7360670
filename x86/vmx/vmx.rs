// SPDX-License-Identifier: GPL-2.0
//! VMX detection, hardware setup (the VMCS configuration) and per-CPU VMXON/VMXOFF
//! (upstream's kvm_is_vmx_supported, setup_vmcs_config, vmx_hardware_setup,
//! vmx_enable_virtualization_cpu and vmx_disable_virtualization_cpu).

use crate::vmcs_config::{self, CapabilityMsrs, ConfigError, VmcsConfig};
use crate::vmx_insn;
use crate::loaded_vmcs::OwnerSlots;
use crate::vpid::VpidAllocator;
use kernel::c_str;
use kernel::page::Page;
use kernel::prelude::*;
use kvm::arch::cpuid as feat;
use kvm::arch::msr;
use kvm::arch::regs::cr4;
use kvm::{cpu, KvmX86Ops};

/// Whether the CPU this runs on supports VMX and firmware enabled it in
/// IA32_FEATURE_CONTROL (upstream's kvm_is_vmx_supported).
pub(crate) fn kvm_is_vmx_supported() -> bool {
    cpu::with_migration_disabled(|| {
        let id = cpu::smp_processor_id();
        if cpu::cpuid(1, 0)[2] & feat::VMX.mask() == 0 {
            pr_err!("VMX not supported by CPU {}\n", id);
            return false;
        }
        match cpu::rdmsr_safe(msr::IA32_FEATURE_CONTROL) {
            Ok(fc) if fc & msr::FEATURE_CONTROL_LOCKED != 0
                && fc & msr::FEATURE_CONTROL_VMXON_OUTSIDE_SMX != 0 => true,
            _ => {
                pr_err!("VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU {}\n", id);
                false
            }
        }
    })
}

/// Reads the capability MSRs of the current CPU.
fn read_capability_msrs() -> Result<CapabilityMsrs> {
    let rd = |m| cpu::rdmsr_safe(m);
    let procbased = rd(msr::IA32_VMX_PROCBASED_CTLS)?;
    let secondary = procbased & (1u64 << 63) != 0;
    Ok(CapabilityMsrs {
        basic: rd(msr::IA32_VMX_BASIC)?,
        pinbased: rd(msr::IA32_VMX_PINBASED_CTLS)?,
        procbased,
        exit: rd(msr::IA32_VMX_EXIT_CTLS)?,
        entry: rd(msr::IA32_VMX_ENTRY_CTLS)?,
        misc: rd(msr::IA32_VMX_MISC)?,
        cr0_fixed0: rd(msr::IA32_VMX_CR0_FIXED0)?,
        cr0_fixed1: rd(msr::IA32_VMX_CR0_FIXED1)?,
        cr4_fixed0: rd(msr::IA32_VMX_CR4_FIXED0)?,
        cr4_fixed1: rd(msr::IA32_VMX_CR4_FIXED1)?,
        procbased2: if secondary { rd(msr::IA32_VMX_PROCBASED_CTLS2).unwrap_or(0) } else { 0 },
        ept_vpid_cap: if secondary { rd(msr::IA32_VMX_EPT_VPID_CAP).unwrap_or(0) } else { 0 },
    })
}

/// VMX's half of the KVM ops.
pub(crate) struct Vmx {
    config: VmcsConfig,
    caps: CapabilityMsrs,
    true_procbased_must1: u32,
    /// The VMXON region of each CPU, indexed by CPU number.
    vmxon_regions: KVec<Page>,
    vpids: VpidAllocator,
    /// The VMCS current on each CPU.
    owners: OwnerSlots,
    /// The MSR bitmap all vCPUs share (read-only after setup).
    _msr_bitmap: Page,
    msr_bitmap_pa: u64,
    /// A bitmap that makes every MSR access exit, for VMs with an MSR filter
    /// (read-only after setup).
    _msr_bitmap_all: Page,
    msr_bitmap_all_pa: u64,
}

/// MSRs the guest reads and writes without an exit: the VMCS switches them
/// (segment bases, SYSENTER) or kvm-intel does around every entry
/// (KernelGSbase), so kvm.ko sees their values at each exit anyway.
const PASSTHROUGH_MSRS: [u32; 6] = [
    msr::FS_BASE,
    msr::GS_BASE,
    msr::KERNEL_GS_BASE,
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
];

/// The MSR bitmap (SDM vol. 3, 25.6.9): read bitmaps for MSRs 0-0x1fff and
/// 0xc0000000-0xc0001fff, then the write bitmaps; a set bit makes the access
/// exit. Everything exits but [`PASSTHROUGH_MSRS`].
fn build_msr_bitmap(passthrough: &[u32]) -> Result<Page> {
    let page = Page::alloc_page(GFP_KERNEL)?;
    let ones = [0xffu8; 256];
    for off in (0..4096).step_by(ones.len()) {
        // SAFETY: 256 bytes inside a page we own.
        unsafe { page.write_raw(ones.as_ptr(), off, ones.len())? };
    }
    for &m in passthrough {
        let (base, index) = if m >= 0xc000_0000 { (1024, m - 0xc000_0000) } else { (0, m) };
        for half in [0, 2048] {
            let byte = half + base + (index / 8) as usize;
            let mut v = 0u8;
            // SAFETY: one byte inside a page we own (index < 0x2000, so byte < 4096).
            unsafe {
                page.read_raw(&mut v, byte, 1)?;
                v &= !(1 << (index % 8));
                page.write_raw(&v, byte, 1)?;
            }
        }
    }
    Ok(page)
}

impl KvmX86Ops for Vmx {
    const NAME: &'static CStr = c_str!("kvm_intel");
    const NESTED_STATE_FORMAT: u16 = kvm::uapi::KVM_STATE_NESTED_FORMAT_VMX as u16;

    fn hardware_setup() -> Result<Self> {
        if !crate::params::ept() {
            pr_err!("ept=0 requested, but shadow paging is not implemented\n");
            return Err(EINVAL);
        }
        if !crate::params::unrestricted_guest() {
            pr_err!("unrestricted_guest=0 requested, but real-mode emulation is not implemented\n");
            return Err(EINVAL);
        }
        let caps = read_capability_msrs()?;
        let mut config = vmcs_config::setup_vmcs_config(&caps).map_err(|e| {
            match e {
                ConfigError::NoEpt | ConfigError::EptUnusable => pr_err!(
                    "EPT not supported (or unusable) by this CPU; shadow paging is not implemented\n"
                ),
                ConfigError::NoUnrestrictedGuest => pr_err!(
                    "unrestricted guest not supported by this CPU; real-mode emulation is not implemented\n"
                ),
                ConfigError::NoEferSwitch => pr_err!(
                    "VM entry/exit cannot load IA32_EFER on this CPU; MSR autoload lists are not implemented\n"
                ),
                other => pr_err!("unusable VMX configuration: {:?}\n", other),
            }
            EIO
        })?;
        // vpid=0 / vnmi=0: run without them (unless the CPU forces virtual NMIs).
        let vnmi_bit = vmcs_config::controls::PIN_BASED_VIRTUAL_NMIS;
        let vnmi_forced = caps.pinbased as u32 & vnmi_bit != 0;
        let (vpid, vnmi) = crate::params::resolve(config.vpid, config.pin_based & vnmi_bit != 0);
        config.vpid = vpid;
        if !vnmi && !vnmi_forced {
            config.pin_based &= !vnmi_bit;
        }
        crate::ept::EPT.set_caps(config.ept_vpid_cap);
        pr_info!(
            "VMCS revision {:#x}, size {}, EPT, unrestricted guest, VPID {}\n",
            config.revision_id,
            config.vmcs_size,
            if config.vpid { "on" } else { "off" }
        );
        let ncpus = cpu::nr_cpu_ids() as usize;
        let mut vmxon_regions = KVec::with_capacity(ncpus, GFP_KERNEL)?;
        for _ in 0..ncpus {
            let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            let rev = config.revision_id.to_le_bytes();
            // SAFETY: writes 4 bytes at offset 0 of a page we own.
            unsafe { page.write_raw(rev.as_ptr(), 0, rev.len())? };
            vmxon_regions.push(page, GFP_KERNEL)?;
        }
        // Bit 55 of IA32_VMX_BASIC: the TRUE control MSRs exist.
        let true_procbased_must1 = if caps.basic & (1 << 55) != 0 {
            cpu::rdmsr_safe(msr::IA32_VMX_TRUE_PROCBASED_CTLS).map(|v| v as u32).unwrap_or(caps.procbased as u32)
        } else {
            caps.procbased as u32
        };
        let msr_bitmap = build_msr_bitmap(&PASSTHROUGH_MSRS)?;
        let msr_bitmap_pa = cpu::page_phys(&msr_bitmap);
        let msr_bitmap_all = build_msr_bitmap(&[])?;
        let msr_bitmap_all_pa = cpu::page_phys(&msr_bitmap_all);
        Ok(Vmx {
            config, caps, true_procbased_must1, vmxon_regions, vpids: VpidAllocator::new()?,
            owners: OwnerSlots::new(ncpus)?, _msr_bitmap: msr_bitmap, msr_bitmap_pa,
            _msr_bitmap_all: msr_bitmap_all, msr_bitmap_all_pa,
        })
    }

    fn enable_virtualization_cpu(&self) -> Result {
        if cpu::read_cr4() & cr4::VMXE != 0 {
            // Another hypervisor is in VMX operation on this CPU.
            return Err(EBUSY);
        }
        let id = cpu::smp_processor_id() as usize;
        let region = self.vmxon_regions.get(id).ok_or(EINVAL)?;
        // VMXON #GPs unless CR0/CR4 (with VMXE) satisfy the fixed bits: check first.
        let cr0 = cpu::read_cr0();
        let cr4_on = cpu::read_cr4() | cr4::VMXE;
        if !vmcs_config::fixed_bits_ok(cr0, self.caps.cr0_fixed0, self.caps.cr0_fixed1)
            || !vmcs_config::fixed_bits_ok(cr4_on, self.caps.cr4_fixed0, self.caps.cr4_fixed1)
        {
            pr_err!("CPU {}: CR0/CR4 do not allow VMX operation\n", id);
            return Err(EIO);
        }
        // SAFETY: CR4.VMXE was clear, so this module takes VMX on this CPU.
        unsafe { cpu::cr4_set_bits(cr4::VMXE) };
        // SAFETY: VMXE is set, feature control was checked at load, the fixed bits
        // hold (checked above), the CPU was not in VMX operation (VMXE was clear),
        // and the region is a zeroed page with the revision ID, owned by `self`
        // which outlives the enabling.
        if let Err(e) = unsafe { vmx_insn::vmxon(cpu::page_phys(region)) } {
            // SAFETY: undo our own CR4 bit.
            unsafe { cpu::cr4_clear_bits(cr4::VMXE) };
            pr_err!("VMXON failed on CPU {}\n", id);
            return Err(e);
        }
        Ok(())
    }

    fn vcpu_create(&self) -> Result<KBox<dyn kvm::VendorVcpu>> {
        // SAFETY: every vCPU file pins this module, so the registration that owns
        // `self` outlives every vCPU.
        let vmx: &'static Vmx = unsafe { &*(self as *const Vmx) };
        let boxed: KBox<crate::vcpu::VmxVcpu> = KBox::new(crate::vcpu::VmxVcpu::new(vmx)?, GFP_KERNEL)?;
        let raw_concrete: *mut crate::vcpu::VmxVcpu = KBox::into_raw(boxed);
        let raw: *mut dyn kvm::VendorVcpu = raw_concrete;
        // SAFETY: from KBox::into_raw just above.
        Ok(unsafe { KBox::from_raw(raw) })
    }

    fn tdp(&self) -> &'static dyn kvm::TdpFormat {
        &crate::ept::EPT
    }

    fn disable_virtualization_cpu(&self) {
        if cpu::read_cr4() & cr4::VMXE != 0 {
            // The VMCS still current here goes back to memory complete, so its
            // vCPU can load it on another CPU (VMXOFF does not write it back).
            cpu::with_irqs_disabled(|| self.owners.clear_cpu(cpu::smp_processor_id()));
            // SAFETY: CR4.VMXE is only set by enable_virtualization_cpu, after which
            // the CPU is in VMX operation until here.
            unsafe {
                vmx_insn::vmxoff();
                cpu::cr4_clear_bits(cr4::VMXE);
            }
        }
    }
}

impl Vmx {
    /// The computed VMCS configuration.
    pub(crate) fn config(&self) -> &VmcsConfig {
        &self.config
    }

    /// The capability MSRs read at load.
    pub(crate) fn caps(&self) -> &CapabilityMsrs {
        &self.caps
    }

    /// Which VMCS is current on each CPU.
    pub(crate) fn owners(&self) -> &OwnerSlots {
        &self.owners
    }

    /// The VPIDs of the vCPUs.
    pub(crate) fn vpids(&self) -> &VpidAllocator {
        &self.vpids
    }

    /// Physical address of the shared MSR bitmap (`all`: the one that
    /// intercepts every MSR).
    pub(crate) fn msr_bitmap_pa(&self, all: bool) -> u64 {
        if all { self.msr_bitmap_all_pa } else { self.msr_bitmap_pa }
    }

    /// Primary processor-based controls that must be 1 per the TRUE capability
    /// MSR (the default1 controls, such as CR3 exiting, may be 0 when it says so).
    pub(crate) fn true_procbased_must1(&self) -> u32 {
        self.true_procbased_must1
    }
}

