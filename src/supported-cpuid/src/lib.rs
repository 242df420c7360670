//! The answer to KVM_GET_SUPPORTED_CPUID: the host's CPUID leaves, filtered down to
//! the features this KVM implementation virtualizes (the same idea as upstream's
//! kvm_set_cpu_caps + __do_cpuid_func, with a smaller feature set: a bit is only
//! reported once the modules handle what it implies).
//!
//! Pure logic over a [`HostCpuid`] source, so the host tests can feed it the CPUID of
//! real CPUs. As a crate (cargo) this is `no_std`; in kvm.ko it is a module.
#![cfg_attr(not(kvm_kernel), no_std)]
// CPUID register fields are named as in the manuals.
#![allow(missing_docs)]

#[cfg(not(kvm_kernel))]
use x86_arch::cpuid::{self as feat, Feature, Reg};
#[cfg(kvm_kernel)]
use crate::arch::cpuid::{self as feat, Feature, Reg};
#[cfg(not(kvm_kernel))]
use x86_arch::pvclock as pv;
#[cfg(kvm_kernel)]
use crate::arch::pvclock as pv;

/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` (sic, linux/kvm.h): the subleaf matters.
pub const FLAG_SIGNIFICANT_INDEX: u32 = 1;
/// Upstream's KVM_MAX_CPUID_ENTRIES: a request for more entries is clamped to this.
pub const MAX_ENTRIES: usize = 256;

/// Highest basic leaf reported (0xd: XSAVE state enumeration).
const MAX_BASIC_LEAF: u32 = 0xd;
/// Highest extended leaf reported (0x8000_0008: address sizes).
const MAX_EXT_LEAF: u32 = 0x8000_0008;
/// XCR0 components the modules context-switch: x87, SSE, AVX.
pub const SUPPORTED_XCR0: u64 = 0b111;

/// A CPUID entry as `struct kvm_cpuid_entry2` carries it (without the padding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Where the host's CPUID values come from (the CPU instruction in the kernel, a
/// table in tests).
pub trait HostCpuid {
    /// Returns EAX, EBX, ECX, EDX of CPUID(leaf, subleaf).
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
}

/// The request did not fit into the caller's array (KVM answers E2BIG).
#[derive(Debug, PartialEq, Eq)]
pub struct TooBig;

/// Feature bits reported per register, as `(leaf, register, features)`.
const LEAF1_ECX: &[Feature] = &[
    feat::SSE3, feat::PCLMULQDQ, feat::SSSE3, feat::FMA, feat::CX16, feat::SSE4_1,
    feat::SSE4_2, feat::MOVBE, feat::POPCNT, feat::AES, feat::XSAVE, feat::AVX,
    feat::F16C, feat::RDRAND,
];
const LEAF1_EDX: &[Feature] = &[
    feat::FPU, feat::VME, feat::DE, feat::PSE, feat::TSC, feat::MSR, feat::PAE, feat::MCE,
    feat::CX8, feat::APIC, feat::SEP, feat::MTRR, feat::PGE, feat::MCA, feat::CMOV,
    feat::PAT, feat::PSE36, feat::CLFLUSH, feat::MMX, feat::FXSR, feat::SSE, feat::SSE2,
    feat::SELFSNOOP,
];
const LEAF7_EBX: &[Feature] = &[
    feat::FSGSBASE, feat::BMI1, feat::AVX2, feat::SMEP, feat::BMI2, feat::ERMS,
    feat::RDSEED, feat::ADX, feat::SMAP, feat::CLFLUSHOPT, feat::CLWB, feat::SHA_NI,
];
const LEAF7_ECX: &[Feature] = &[feat::UMIP, feat::LA57, feat::RDPID];
const LEAF7_EDX: &[Feature] = &[feat::FSRM];
const EXT1_ECX: &[Feature] = &[
    feat::LAHF_LM, feat::CMP_LEGACY, feat::CR8_LEGACY, feat::ABM, feat::SSE4A,
    feat::MISALIGNSSE, feat::PREFETCHW,
];
const EXT1_EDX: &[Feature] = &[
    feat::SYSCALL, feat::NX, feat::MMXEXT, feat::FXSR_OPT, feat::GBPAGES, feat::RDTSCP,
    feat::LM,
];
/// Bits of 0x8000_0001 EDX that AMD defines as copies of leaf 1 EDX.
const EXT1_EDX_AMD_ALIASES: u32 = 0x0183_f3ff;

fn mask_of(features: &[Feature], reg: Reg) -> u32 {
    features.iter().filter(|f| f.reg == reg).fold(0, |m, f| m | f.mask())
}

/// Fills `out` with the supported CPUID entries; returns how many were written.
pub fn supported_cpuid(host: &dyn HostCpuid, out: &mut [CpuidEntry]) -> Result<usize, TooBig> {
    let mut w = Writer { out, n: 0 };
    let [max_basic, vb, vc, vd] = host.cpuid(0, 0);
    let max_basic = max_basic.min(MAX_BASIC_LEAF);
    w.push(entry(0, 0, 0, [max_basic, vb, vc, vd]))?;

    let is_amd = matches!(
        feat::Vendor::from_leaf0(vb, vd, vc),
        feat::Vendor::Amd | feat::Vendor::Hygon
    );

    for leaf in 1..=max_basic {
        let r = host.cpuid(leaf, 0);
        match leaf {
            1 => {
                // x2APIC is emulated by the in-kernel local APIC whatever the
                // host has (upstream sets it unconditionally too).
                let ecx = (r[2] & mask_of(LEAF1_ECX, Reg::Ecx)) | feat::X2APIC.mask();
                let edx = r[3] & mask_of(LEAF1_EDX, Reg::Edx);
                // EBX[31:24] is the initial APIC ID of the CPU that ran CPUID: the
                // VMM sets its own per vCPU.
                w.push(entry(1, 0, 0, [r[0], r[1] & 0x00ff_ffff, ecx, edx]))?;
            }
            2 => w.push(entry(2, 0, 0, r))?,
            4 => {
                // Deterministic cache parameters: one subleaf per cache until type 0.
                for sub in 0..64 {
                    let s = host.cpuid(4, sub);
                    w.push(entry(4, sub, FLAG_SIGNIFICANT_INDEX, [s[0] & 0x3fff, s[1], s[2], s[3]]))?;
                    if s[0] & 0x1f == 0 {
                        break;
                    }
                }
            }
            7 => {
                // IA32_TSC_ADJUST is emulated by kvm.ko whatever the host has.
                let ebx = (r[1] & mask_of(LEAF7_EBX, Reg::Ebx)) | feat::TSC_ADJUST.mask();
                let ecx = r[2] & mask_of(LEAF7_ECX, Reg::Ecx);
                let edx = r[3] & mask_of(LEAF7_EDX, Reg::Edx);
                // Only subleaf 0 is reported: EAX (max subleaf) is 0.
                w.push(entry(7, 0, FLAG_SIGNIFICANT_INDEX, [0, ebx, ecx, edx]))?;
            }
            0xd => xsave_leaves(host, &mut w)?,
            _ => {}
        }
    }

    let [max_ext, ..] = host.cpuid(0x8000_0000, 0);
    if max_ext >= 0x8000_0000 {
        let max_ext = max_ext.min(MAX_EXT_LEAF);
        w.push(entry(0x8000_0000, 0, 0, [max_ext, vb, vc, vd]))?;
        for leaf in 0x8000_0001..=max_ext {
            let r = host.cpuid(leaf, 0);
            match leaf {
                0x8000_0001 => {
                    let ecx = r[2] & mask_of(EXT1_ECX, Reg::Ecx);
                    let mut edx = r[3] & mask_of(EXT1_EDX, Reg::Edx);
                    if is_amd {
                        edx |= r[3] & EXT1_EDX_AMD_ALIASES & mask_of(LEAF1_EDX, Reg::Edx);
                    }
                    w.push(entry(leaf, 0, 0, [r[0], r[1], ecx, edx]))?;
                }
                // Brand string and L1/L2/L3 cache descriptions describe the host CPU
                // as is.
                0x8000_0002..=0x8000_0006 => w.push(entry(leaf, 0, 0, r))?,
                // Only the invariant-TSC bit of the power-management leaf.
                0x8000_0007 => w.push(entry(leaf, 0, 0, [0, 0, 0, r[3] & (1 << 8)]))?,
                // Physical/linear address sizes; nothing else of this leaf.
                0x8000_0008 => w.push(entry(leaf, 0, 0, [r[0] & 0xffff, 0, 0, 0]))?,
                _ => {}
            }
        }
    }
    kvm_leaves(&mut w)?;
    Ok(w.n)
}

/// The KVM paravirtual features offered (CPUID 0x4000_0001 EAX): kvmclock at
/// both MSR pairs with the TSC-stable flag, and no-op port 0x80 delays. A
/// feature is listed only once kvm.ko implements it.
pub const KVM_PV_FEATURES: u32 = 1 << pv::feature::CLOCKSOURCE
    | 1 << pv::feature::NOP_IO_DELAY
    | 1 << pv::feature::CLOCKSOURCE2
    | 1 << pv::feature::CLOCKSOURCE_STABLE_BIT;

/// The KVM leaves: the signature leaf (its EAX is the highest KVM leaf) and
/// the features leaf.
fn kvm_leaves(w: &mut Writer<'_>) -> Result<(), TooBig> {
    let [b, c, d] = pv::SIGNATURE;
    w.push(entry(pv::CPUID_SIGNATURE, 0, 0, [pv::CPUID_FEATURES, b, c, d]))?;
    w.push(entry(pv::CPUID_FEATURES, 0, 0, [KVM_PV_FEATURES, 0, 0, 0]))
}

fn xsave_leaves(host: &dyn HostCpuid, w: &mut Writer<'_>) -> Result<(), TooBig> {
    let [_, _, leaf1_ecx, _] = host.cpuid(1, 0);
    if leaf1_ecx & feat::XSAVE.mask() == 0 {
        return Ok(());
    }
    let s0 = host.cpuid(0xd, 0);
    let host_xcr0 = (s0[0] as u64) | ((s0[3] as u64) << 32);
    let xcr0 = host_xcr0 & SUPPORTED_XCR0;
    // Size of the XSAVE area for exactly the supported components: the end of the
    // highest one (standard format: fixed offsets from subleaf i).
    let mut size = 512 + 64;
    for i in 2..64 {
        if xcr0 & (1 << i) != 0 {
            let s = host.cpuid(0xd, i);
            size = size.max(s[1] + s[0]);
        }
    }
    w.push(entry(0xd, 0, FLAG_SIGNIFICANT_INDEX, [xcr0 as u32, size, size, (xcr0 >> 32) as u32]))?;
    // Subleaf 1: XSAVEOPT, XSAVEC, XGETBV with ECX=1; not XSAVES (no XSS support).
    let s1 = host.cpuid(0xd, 1);
    w.push(entry(0xd, 1, FLAG_SIGNIFICANT_INDEX, [s1[0] & 0b111, 0, 0, 0]))?;
    for i in 2..64u32 {
        if xcr0 & (1 << i) != 0 {
            let s = host.cpuid(0xd, i);
            w.push(entry(0xd, i, FLAG_SIGNIFICANT_INDEX, [s[0], s[1], s[2] & 0b10, 0]))?;
        }
    }
    Ok(())
}

fn entry(function: u32, index: u32, flags: u32, r: [u32; 4]) -> CpuidEntry {
    CpuidEntry { function, index, flags, eax: r[0], ebx: r[1], ecx: r[2], edx: r[3] }
}

struct Writer<'a> {
    out: &'a mut [CpuidEntry],
    n: usize,
}

impl Writer<'_> {
    fn push(&mut self, e: CpuidEntry) -> Result<(), TooBig> {
        let slot = self.out.get_mut(self.n).ok_or(TooBig)?;
        *slot = e;
        self.n += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
