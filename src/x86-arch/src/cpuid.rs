//! CPUID leaves and feature bits (AMD APM vol. 3 appendix E, Intel SDM vol. 2 CPUID).

/// One feature bit: the leaf/subleaf/register it lives in and its bit number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: Reg,
    pub bit: u8,
}

/// The output register of a CPUID leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

impl Feature {
    pub const fn mask(self) -> u32 {
        1 << self.bit
    }
}

const fn f(leaf: u32, subleaf: u32, reg: Reg, bit: u8) -> Feature {
    Feature { leaf, subleaf, reg, bit }
}

// Leaf 1 ECX.
pub const SSE3: Feature = f(1, 0, Reg::Ecx, 0);
pub const PCLMULQDQ: Feature = f(1, 0, Reg::Ecx, 1);
pub const MONITOR: Feature = f(1, 0, Reg::Ecx, 3);
pub const VMX: Feature = f(1, 0, Reg::Ecx, 5);
pub const SSSE3: Feature = f(1, 0, Reg::Ecx, 9);
pub const FMA: Feature = f(1, 0, Reg::Ecx, 12);
pub const CX16: Feature = f(1, 0, Reg::Ecx, 13);
pub const SSE4_1: Feature = f(1, 0, Reg::Ecx, 19);
pub const SSE4_2: Feature = f(1, 0, Reg::Ecx, 20);
pub const X2APIC: Feature = f(1, 0, Reg::Ecx, 21);
pub const MOVBE: Feature = f(1, 0, Reg::Ecx, 22);
pub const POPCNT: Feature = f(1, 0, Reg::Ecx, 23);
pub const TSC_DEADLINE: Feature = f(1, 0, Reg::Ecx, 24);
pub const AES: Feature = f(1, 0, Reg::Ecx, 25);
pub const XSAVE: Feature = f(1, 0, Reg::Ecx, 26);
pub const OSXSAVE: Feature = f(1, 0, Reg::Ecx, 27);
pub const AVX: Feature = f(1, 0, Reg::Ecx, 28);
pub const F16C: Feature = f(1, 0, Reg::Ecx, 29);
pub const RDRAND: Feature = f(1, 0, Reg::Ecx, 30);
pub const HYPERVISOR: Feature = f(1, 0, Reg::Ecx, 31);

// Leaf 1 EDX.
pub const FPU: Feature = f(1, 0, Reg::Edx, 0);
pub const VME: Feature = f(1, 0, Reg::Edx, 1);
pub const DE: Feature = f(1, 0, Reg::Edx, 2);
pub const PSE: Feature = f(1, 0, Reg::Edx, 3);
pub const TSC: Feature = f(1, 0, Reg::Edx, 4);
pub const MSR: Feature = f(1, 0, Reg::Edx, 5);
pub const PAE: Feature = f(1, 0, Reg::Edx, 6);
pub const MCE: Feature = f(1, 0, Reg::Edx, 7);
pub const CX8: Feature = f(1, 0, Reg::Edx, 8);
pub const APIC: Feature = f(1, 0, Reg::Edx, 9);
pub const SEP: Feature = f(1, 0, Reg::Edx, 11);
pub const MTRR: Feature = f(1, 0, Reg::Edx, 12);
pub const PGE: Feature = f(1, 0, Reg::Edx, 13);
pub const MCA: Feature = f(1, 0, Reg::Edx, 14);
pub const CMOV: Feature = f(1, 0, Reg::Edx, 15);
pub const PAT: Feature = f(1, 0, Reg::Edx, 16);
pub const PSE36: Feature = f(1, 0, Reg::Edx, 17);
pub const CLFLUSH: Feature = f(1, 0, Reg::Edx, 19);
pub const MMX: Feature = f(1, 0, Reg::Edx, 23);
pub const FXSR: Feature = f(1, 0, Reg::Edx, 24);
pub const SSE: Feature = f(1, 0, Reg::Edx, 25);
pub const SSE2: Feature = f(1, 0, Reg::Edx, 26);
pub const SELFSNOOP: Feature = f(1, 0, Reg::Edx, 27);

// Leaf 7 subleaf 0 EBX.
pub const FSGSBASE: Feature = f(7, 0, Reg::Ebx, 0);
pub const TSC_ADJUST: Feature = f(7, 0, Reg::Ebx, 1);
pub const BMI1: Feature = f(7, 0, Reg::Ebx, 3);
pub const AVX2: Feature = f(7, 0, Reg::Ebx, 5);
pub const SMEP: Feature = f(7, 0, Reg::Ebx, 7);
pub const BMI2: Feature = f(7, 0, Reg::Ebx, 8);
pub const ERMS: Feature = f(7, 0, Reg::Ebx, 9);
pub const RDSEED: Feature = f(7, 0, Reg::Ebx, 18);
pub const ADX: Feature = f(7, 0, Reg::Ebx, 19);
pub const SMAP: Feature = f(7, 0, Reg::Ebx, 20);
pub const CLFLUSHOPT: Feature = f(7, 0, Reg::Ebx, 23);
pub const CLWB: Feature = f(7, 0, Reg::Ebx, 24);
pub const SHA_NI: Feature = f(7, 0, Reg::Ebx, 29);
// Leaf 7 subleaf 0 ECX.
pub const UMIP: Feature = f(7, 0, Reg::Ecx, 2);
pub const LA57: Feature = f(7, 0, Reg::Ecx, 16);
pub const RDPID: Feature = f(7, 0, Reg::Ecx, 22);
// Leaf 7 subleaf 0 EDX.
pub const FSRM: Feature = f(7, 0, Reg::Edx, 4);

// Leaf 0x8000_0001 ECX.
pub const LAHF_LM: Feature = f(0x8000_0001, 0, Reg::Ecx, 0);
pub const CMP_LEGACY: Feature = f(0x8000_0001, 0, Reg::Ecx, 1);
pub const SVM: Feature = f(0x8000_0001, 0, Reg::Ecx, 2);
pub const CR8_LEGACY: Feature = f(0x8000_0001, 0, Reg::Ecx, 4);
pub const ABM: Feature = f(0x8000_0001, 0, Reg::Ecx, 5);
pub const SSE4A: Feature = f(0x8000_0001, 0, Reg::Ecx, 6);
pub const MISALIGNSSE: Feature = f(0x8000_0001, 0, Reg::Ecx, 7);
pub const PREFETCHW: Feature = f(0x8000_0001, 0, Reg::Ecx, 8);
pub const TOPOEXT: Feature = f(0x8000_0001, 0, Reg::Ecx, 22);
// Leaf 0x8000_0001 EDX.
pub const SYSCALL: Feature = f(0x8000_0001, 0, Reg::Edx, 11);
pub const NX: Feature = f(0x8000_0001, 0, Reg::Edx, 20);
pub const MMXEXT: Feature = f(0x8000_0001, 0, Reg::Edx, 22);
pub const FXSR_OPT: Feature = f(0x8000_0001, 0, Reg::Edx, 25);
pub const GBPAGES: Feature = f(0x8000_0001, 0, Reg::Edx, 26);
pub const RDTSCP: Feature = f(0x8000_0001, 0, Reg::Edx, 27);
pub const LM: Feature = f(0x8000_0001, 0, Reg::Edx, 29);

// Leaf 0x8000_000A EDX (SVM features).
pub const NPT: Feature = f(0x8000_000a, 0, Reg::Edx, 0);
pub const LBRV: Feature = f(0x8000_000a, 0, Reg::Edx, 1);
pub const SVML: Feature = f(0x8000_000a, 0, Reg::Edx, 2);
pub const NRIPS: Feature = f(0x8000_000a, 0, Reg::Edx, 3);
pub const TSC_SCALE: Feature = f(0x8000_000a, 0, Reg::Edx, 4);
pub const VMCB_CLEAN: Feature = f(0x8000_000a, 0, Reg::Edx, 5);
pub const FLUSH_BY_ASID: Feature = f(0x8000_000a, 0, Reg::Edx, 6);
pub const DECODE_ASSISTS: Feature = f(0x8000_000a, 0, Reg::Edx, 7);
pub const VGIF: Feature = f(0x8000_000a, 0, Reg::Edx, 16);

/// "AuthenticAMD", "GenuineIntel" and "HygonGenuine" as CPUID.0 EBX/EDX/ECX.
pub const VENDOR_AMD: [u32; 3] = [0x6874_7541, 0x6974_6e65, 0x444d_4163];
pub const VENDOR_HYGON: [u32; 3] = [0x6f67_7948, 0x6e65_476e, 0x656e_6975];
pub const VENDOR_INTEL: [u32; 3] = [0x756e_6547, 0x4965_6e69, 0x6c65_746e];

/// The CPU vendor as CPUID leaf 0 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    Amd,
    Hygon,
    Intel,
    Other,
}

impl Vendor {
    /// Decodes CPUID.0 (EBX, EDX, ECX in that order, as the string is laid out).
    pub fn from_leaf0(ebx: u32, edx: u32, ecx: u32) -> Vendor {
        match [ebx, edx, ecx] {
            VENDOR_AMD => Vendor::Amd,
            VENDOR_HYGON => Vendor::Hygon,
            VENDOR_INTEL => Vendor::Intel,
            _ => Vendor::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_strings() {
        let s = |w: [u32; 3]| {
            let mut b = [0u8; 12];
            for (i, x) in w.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
            }
            b
        };
        assert_eq!(&s(VENDOR_AMD), b"AuthenticAMD");
        assert_eq!(&s(VENDOR_INTEL), b"GenuineIntel");
        assert_eq!(&s(VENDOR_HYGON), b"HygonGenuine");
        assert_eq!(Vendor::from_leaf0(VENDOR_AMD[0], VENDOR_AMD[1], VENDOR_AMD[2]), Vendor::Amd);
        assert_eq!(Vendor::from_leaf0(1, 2, 3), Vendor::Other);
    }

    #[test]
    fn masks() {
        assert_eq!(SVM.mask(), 1 << 2);
        assert_eq!(LM.mask(), 1 << 29);
        assert_eq!(HYPERVISOR.mask(), 0x8000_0000);
    }
}
