//! Validity of control-register and EFER values for a guest, given the features
//! in its CPUID (upstream's kvm_is_valid_cr0, __cr4_reserved_bits, __kvm_valid_efer
//! and kvm_is_valid_sregs).

use super::regs::{cr0, cr4, efer};

/// The guest CPUID features these checks depend on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFeatures {
    pub lm: bool,
    pub nx: bool,
    pub svm: bool,
    pub fxsr_opt: bool,
    pub xsave: bool,
    pub smep: bool,
    pub smap: bool,
    pub fsgsbase: bool,
    pub pku: bool,
    pub la57: bool,
    pub umip: bool,
    pub vmx: bool,
    pub pcid: bool,
}

impl GuestFeatures {
    /// The features both `self` and `other` have.
    pub fn intersect(&self, other: &GuestFeatures) -> GuestFeatures {
        GuestFeatures {
            lm: self.lm && other.lm,
            nx: self.nx && other.nx,
            svm: self.svm && other.svm,
            fxsr_opt: self.fxsr_opt && other.fxsr_opt,
            xsave: self.xsave && other.xsave,
            smep: self.smep && other.smep,
            smap: self.smap && other.smap,
            fsgsbase: self.fsgsbase && other.fsgsbase,
            pku: self.pku && other.pku,
            la57: self.la57 && other.la57,
            umip: self.umip && other.umip,
            vmx: self.vmx && other.vmx,
            pcid: self.pcid && other.pcid,
        }
    }
}

/// CR4 bits KVM knows at all (upstream's CR4_RESERVED_BITS complement).
const CR4_KNOWN: u64 = cr4::VME | cr4::PVI | cr4::TSD | cr4::DE | cr4::PSE | cr4::PAE | cr4::MCE
    | cr4::PGE | cr4::PCE | cr4::OSFXSR | cr4::PCIDE | cr4::OSXSAVE | cr4::SMEP | cr4::FSGSBASE
    | cr4::SMAP | cr4::OSXMMEXCPT | cr4::LA57 | cr4::VMXE | cr4::PKE | cr4::UMIP;

pub fn cr4_reserved_bits(f: &GuestFeatures) -> u64 {
    let mut r = !CR4_KNOWN;
    let mut unless = |has: bool, bit: u64| {
        if !has {
            r |= bit;
        }
    };
    unless(f.xsave, cr4::OSXSAVE);
    unless(f.smep, cr4::SMEP);
    unless(f.smap, cr4::SMAP);
    unless(f.fsgsbase, cr4::FSGSBASE);
    unless(f.pku, cr4::PKE);
    unless(f.la57, cr4::LA57);
    unless(f.umip, cr4::UMIP);
    unless(f.vmx, cr4::VMXE);
    unless(f.pcid, cr4::PCIDE);
    r
}

/// Whether CR4 may hold `value`. `f` are the features CR4 may enable: KVM's
/// supported features until user space sets the vCPU's CPUID, then those also
/// in the guest's CPUID (upstream checks cr4_reserved_bits, from KVM's caps,
/// and cr4_guest_rsvd_bits, which stays 0 until KVM_SET_CPUID2).
pub fn valid_cr4(value: u64, f: &GuestFeatures) -> bool {
    value & cr4_reserved_bits(f) == 0
}

pub fn valid_cr0(value: u64) -> bool {
    value >> 32 == 0
        && !(value & cr0::NW != 0 && value & cr0::CD == 0)
        && !(value & cr0::PG != 0 && value & cr0::PE == 0)
}

/// EFER bits this implementation lets a guest set at all.
const EFER_KNOWN: u64 = efer::SCE | efer::LME | efer::LMA | efer::NXE | efer::SVME | efer::FFXSR;

pub fn valid_efer(value: u64, f: &GuestFeatures) -> bool {
    if value & !EFER_KNOWN != 0 {
        return false;
    }
    !(value & efer::FFXSR != 0 && !f.fxsr_opt)
        && !(value & efer::SVME != 0 && !f.svm)
        && !(value & (efer::LME | efer::LMA) != 0 && !f.lm)
        && !(value & efer::NXE != 0 && !f.nx)
}

/// KVM_SET_SREGS consistency (upstream's kvm_is_valid_sregs): `cs_l` is CS.L,
/// `maxphyaddr` bounds CR3 in long mode; `f` are the guest's CPUID features (for
/// EFER), `cr4_f` the features CR4 may enable (see [`valid_cr4`]).
#[allow(clippy::too_many_arguments)]
pub fn valid_sregs(
    cr0v: u64,
    cr3: u64,
    cr4v: u64,
    eferv: u64,
    cs_l: bool,
    maxphyaddr: u32,
    f: &GuestFeatures,
    cr4_f: &GuestFeatures,
) -> bool {
    if eferv & efer::LME != 0 && cr0v & cr0::PG != 0 {
        if cr4v & cr4::PAE == 0 || eferv & efer::LMA == 0 {
            return false;
        }
        if maxphyaddr < 64 && cr3 >> maxphyaddr != 0 {
            return false;
        }
    } else if eferv & efer::LMA != 0 || cs_l {
        return false;
    }
    valid_cr4(cr4v, cr4_f) && valid_cr0(cr0v) && valid_efer(eferv, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd() -> GuestFeatures {
        GuestFeatures { lm: true, nx: true, xsave: true, ..Default::default() }
    }

    #[test]
    fn long_mode_needs_lm_in_cpuid() {
        let lm = efer::LME | efer::LMA;
        let (c0, c4) = (cr0::PE | cr0::PG, cr4::PAE);
        assert!(valid_sregs(c0, 0x1000, c4, lm, true, 48, &amd(), &amd()));
        let no_lm = GuestFeatures { lm: false, ..amd() };
        assert!(!valid_sregs(c0, 0x1000, c4, lm, true, 48, &no_lm, &no_lm));
    }

    #[test]
    fn long_mode_consistency() {
        let f = amd();
        // LME+PG without PAE or without LMA.
        assert!(!valid_sregs(cr0::PE | cr0::PG, 0, 0, efer::LME | efer::LMA, false, 48, &f, &f));
        assert!(!valid_sregs(cr0::PE | cr0::PG, 0, cr4::PAE, efer::LME, false, 48, &f, &f));
        // LMA without paging, or CS.L outside long mode.
        assert!(!valid_sregs(cr0::PE, 0, 0, efer::LMA, false, 48, &f, &f));
        assert!(!valid_sregs(0, 0, 0, 0, true, 48, &f, &f));
        // CR3 beyond MAXPHYADDR.
        assert!(!valid_sregs(cr0::PE | cr0::PG, 1 << 50, cr4::PAE, efer::LME | efer::LMA, true, 48, &f, &f));
    }

    #[test]
    fn cr4_features_are_both_sets() {
        let host = GuestFeatures { smap: true, smep: true, ..amd() };
        let guest = GuestFeatures { smap: true, ..amd() };
        let both = host.intersect(&guest);
        assert!(valid_cr4(cr4::SMAP, &both));
        assert!(!valid_cr4(cr4::SMEP, &both));
        assert!(valid_cr4(cr4::SMEP, &host));
    }

    #[test]
    fn cr0_rules() {
        assert!(valid_cr0(0x6000_0010));
        assert!(!valid_cr0(cr0::NW));
        assert!(!valid_cr0(cr0::PG));
        assert!(!valid_cr0(1 << 32));
    }

    #[test]
    fn cr4_follows_cpuid() {
        let f = amd();
        assert!(valid_cr4(cr4::OSXSAVE | cr4::PAE, &f));
        assert!(!valid_cr4(cr4::OSXSAVE, &GuestFeatures { xsave: false, ..f }));
        assert!(!valid_cr4(cr4::VMXE, &f));
        assert!(!valid_cr4(cr4::LA57, &f));
        assert!(!valid_cr4(1 << 30, &f));
    }

    #[test]
    fn efer_follows_cpuid() {
        let f = amd();
        assert!(valid_efer(efer::SCE | efer::NXE, &f));
        assert!(!valid_efer(efer::NXE, &GuestFeatures { nx: false, ..f }));
        assert!(!valid_efer(efer::SVME, &f));
        assert!(!valid_efer(1 << 20, &f));
    }
}
