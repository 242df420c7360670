// SPDX-License-Identifier: GPL-2.0
//! The vCPU's CPUID table (KVM_SET_CPUID2) and the guest's CPUID instruction
//! (upstream's kvm_set_cpuid, kvm_find_cpuid_entry, kvm_emulate_cpuid).

use crate::arch::cpuid as feat;
use crate::arch::regs::cr4;
use crate::arch::validity::GuestFeatures;
use crate::arch_state::gpr;
use crate::uapi;
use crate::vcpu::VcpuInner;
use kernel::prelude::*;

fn find(table: &[uapi::kvm_cpuid_entry2], function: u32, index: u32) -> Option<&uapi::kvm_cpuid_entry2> {
    table.iter().find(|e| {
        e.function == function
            && (e.flags & uapi::KVM_CPUID_FLAG_SIGNIFCANT_INDEX == 0 || e.index == index)
    })
}

fn has(table: &[uapi::kvm_cpuid_entry2], f: feat::Feature) -> bool {
    find(table, f.leaf, f.subleaf).map_or(false, |e| {
        let r = match f.reg {
            feat::Reg::Eax => e.eax,
            feat::Reg::Ebx => e.ebx,
            feat::Reg::Ecx => e.ecx,
            feat::Reg::Edx => e.edx,
        };
        r & f.mask() != 0
    })
}

/// The features the CR/EFER checks depend on.
pub(crate) fn guest_features(t: &[uapi::kvm_cpuid_entry2]) -> GuestFeatures {
    GuestFeatures {
        lm: has(t, feat::LM),
        nx: has(t, feat::NX),
        svm: false, // nested SVM is not offered
        fxsr_opt: false,
        xsave: has(t, feat::XSAVE),
        smep: has(t, feat::SMEP),
        smap: has(t, feat::SMAP),
        fsgsbase: has(t, feat::FSGSBASE),
        pku: false,
        la57: has(t, feat::LA57),
        umip: has(t, feat::UMIP),
        vmx: false, // nested VMX is not offered
        pcid: false,
    }
}

/// KVM's supported CPUID (KVM_GET_SUPPORTED_CPUID) in at most `max` entries
/// (clamped to KVM_MAX_CPUID_ENTRIES); E2BIG when they do not fit.
pub(crate) fn supported_entries(max: usize) -> Result<KVec<uapi::kvm_cpuid_entry2>> {
    use crate::supported_cpuid::{self, CpuidEntry};
    let cap = max.min(supported_cpuid::MAX_ENTRIES);
    let mut entries = KVec::from_elem(CpuidEntry::default(), cap, GFP_KERNEL)?;
    let n = supported_cpuid::supported_cpuid(&crate::cpu::HostCpu, &mut entries).map_err(|_| E2BIG)?;
    let mut out = KVec::with_capacity(n, GFP_KERNEL)?;
    for e in &entries[..n] {
        out.push(
            uapi::kvm_cpuid_entry2 {
                function: e.function,
                index: e.index,
                flags: e.flags,
                // Steal time is offered only if the kernel keeps run_delay.
                eax: if e.function == crate::arch::pvclock::CPUID_FEATURES {
                    e.eax | crate::time::steal_time::supported_pv_features()
                } else {
                    e.eax
                },
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
                ..Default::default()
            },
            GFP_KERNEL,
        )?;
    }
    Ok(out)
}

/// The CR4-relevant features KVM supports at all (upstream's cr4_reserved_bits
/// come from KVM's caps): what CR4 may enable before KVM_SET_CPUID2.
pub(crate) fn host_features() -> Result<GuestFeatures> {
    Ok(guest_features(&supported_entries(crate::supported_cpuid::MAX_ENTRIES)?))
}

/// Whether the guest's CPUID offers x2APIC (the APIC base may enter x2APIC mode).
pub(crate) fn guest_has_x2apic(t: &[uapi::kvm_cpuid_entry2]) -> bool {
    has(t, feat::X2APIC)
}

/// Whether the guest's CPUID offers IA32_TSC_ADJUST.
pub(crate) fn guest_has_tsc_adjust(t: &[uapi::kvm_cpuid_entry2]) -> bool {
    has(t, feat::TSC_ADJUST)
}

/// Whether the guest's CPUID offers the TSC-deadline timer mode.
pub(crate) fn guest_has_tsc_deadline(t: &[uapi::kvm_cpuid_entry2]) -> bool {
    has(t, feat::TSC_DEADLINE)
}

/// The guest's MAXPHYADDR: CPUID 0x80000008 EAX[7:0], or 36 without the leaf.
pub(crate) fn guest_maxphyaddr(t: &[uapi::kvm_cpuid_entry2]) -> u32 {
    match find(t, 0x8000_0008, 0) {
        Some(e) if e.eax & 0xff != 0 => e.eax & 0xff,
        _ => 36,
    }
}

/// KVM_SET_CPUID2: replaces the table. After the first KVM_RUN upstream only
/// accepts an identical table (EBUSY otherwise).
pub(crate) fn set_cpuid(inner: &mut VcpuInner, entries: KVec<uapi::kvm_cpuid_entry2>) -> Result {
    if inner.has_run {
        let same = entries.len() == inner.cpuid.len()
            && entries.iter().zip(inner.cpuid.iter()).all(|(a, b)| {
                (a.function, a.index, a.flags, a.eax, a.ebx, a.ecx, a.edx)
                    == (b.function, b.index, b.flags, b.eax, b.ebx, b.ecx, b.edx)
            });
        return if same { Ok(()) } else { Err(EBUSY) };
    }
    // The XSAVE size leaf must describe an area the UABI buffer can hold.
    if let Some(e) = find(&entries, 0xd, 0) {
        if e.ecx as usize > crate::fpu::UABI_SIZE {
            return Err(EINVAL);
        }
    }
    inner.features = guest_features(&entries);
    inner.cr4_features = inner.features.intersect(&host_features()?);
    inner.cpuid = entries;
    Ok(())
}

/// The guest executed CPUID: fill RAX..RDX from the table (zeros for a leaf that
/// is not there, as on AMD), with the dynamic bits (OSXSAVE, APIC ID) filled in.
pub(crate) fn emulate_cpuid(inner: &mut VcpuInner, vcpu_id: u32) {
    let s = &mut inner.state;
    let function = s.gprs[gpr::RAX] as u32;
    let index = s.gprs[gpr::RCX] as u32;
    let entry = find(&inner.cpuid, function, index);
    let found = entry.is_some();
    let (a, mut b, mut c, d) = match entry {
        Some(e) => (e.eax, e.ebx, e.ecx, e.edx),
        None => (0, 0, 0, 0),
    };
    if function == 1 {
        c &= !feat::OSXSAVE.mask();
        if s.cr4 & cr4::OSXSAVE != 0 && c & feat::XSAVE.mask() != 0 {
            c |= feat::OSXSAVE.mask();
        }
        b = (b & 0x00ff_ffff) | ((vcpu_id & 0xff) << 24);
    }
    s.gprs[gpr::RAX] = a as u64;
    s.gprs[gpr::RBX] = b as u64;
    s.gprs[gpr::RCX] = c as u64;
    s.gprs[gpr::RDX] = d as u64;
    crate::trace::kvm_cpuid(function, index, [a as u64, b as u64, c as u64, d as u64], found);
}
