use super::*;
extern crate std;
use std::collections::HashMap;
use std::vec;

/// CPUID of an AMD EPYC (QEMU's `-cpu EPYC,+svm` model, as the test VM reports it).
struct Table(HashMap<(u32, u32), [u32; 4]>);
impl HostCpuid for Table {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        *self.0.get(&(leaf, subleaf)).or_else(|| self.0.get(&(leaf, u32::MAX))).unwrap_or(&[0; 4])
    }
}

fn epyc() -> Table {
    let mut t = HashMap::new();
    t.insert((0, u32::MAX), [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
    t.insert((1, u32::MAX), [0x0080_0f12, 0x0100_0800, 0xfef8_3203, 0x078b_fbff]);
    t.insert((7, 0), [0, 0x209c_01a9, 0x0000_0000, 0x0000_0000]);
    t.insert((0xd, 0), [7, 0x340, 0x340, 0]);
    t.insert((0xd, 1), [0xf, 0, 0, 0]);
    t.insert((0xd, 2), [0x100, 0x240, 0, 0]);
    t.insert((0x8000_0000, u32::MAX), [0x8000_001f, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
    t.insert((0x8000_0001, u32::MAX), [0x0080_0f12, 0, 0x0040_37ff, 0x2fd3_fbff]);
    t.insert((0x8000_0008, u32::MAX), [0x3030, 0x1001, 0, 0]);
    t.insert((0x8000_000a, u32::MAX), [1, 0x10, 0, 0x0001_0009]);
    Table(t)
}

fn find(v: &[CpuidEntry], f: u32, i: u32) -> CpuidEntry {
    *v.iter().find(|e| e.function == f && e.index == i).expect("leaf present")
}

fn run(host: &Table) -> std::vec::Vec<CpuidEntry> {
    let mut out = vec![CpuidEntry::default(); MAX_ENTRIES];
    let n = supported_cpuid(host, &mut out).expect("fits");
    out.truncate(n);
    out
}

#[test]
fn vmx_svm_and_monitor_are_never_reported() {
    let v = run(&epyc());
    assert_eq!(find(&v, 1, 0).ecx & feat::VMX.mask(), 0);
    assert_eq!(find(&v, 1, 0).ecx & feat::MONITOR.mask(), 0);
    assert_eq!(find(&v, 1, 0).ecx & feat::OSXSAVE.mask(), 0);
    assert_eq!(find(&v, 0x8000_0001, 0).ecx & feat::SVM.mask(), 0);
    assert!(v.iter().all(|e| e.function != 0x8000_000a));
}

#[test]
fn long_mode_and_basics_pass_through() {
    let v = run(&epyc());
    let ext = find(&v, 0x8000_0001, 0);
    assert_ne!(ext.edx & feat::LM.mask(), 0);
    assert_ne!(ext.edx & feat::NX.mask(), 0);
    let l1 = find(&v, 1, 0);
    for f in [feat::FPU, feat::TSC, feat::MSR, feat::PAE, feat::CX8, feat::APIC, feat::SSE2] {
        assert_ne!(l1.edx & f.mask(), 0, "{f:?}");
    }
    assert_eq!(l1.ebx >> 24, 0, "APIC ID is the VMM's to set");
}

#[test]
fn leaf_limits_are_clamped() {
    let v = run(&epyc());
    assert_eq!(find(&v, 0, 0).eax, 0xd);
    assert_eq!(find(&v, 0x8000_0000, 0).eax, 0x8000_0008);
    // 48-bit linear addresses are what the KVM selftests require.
    assert_eq!((find(&v, 0x8000_0008, 0).eax >> 8) & 0xff, 48);
}

#[test]
fn xsave_enumerates_only_supported_components() {
    let v = run(&epyc());
    let s0 = find(&v, 0xd, 0);
    assert_eq!(s0.eax, 7);
    assert_eq!(s0.ecx, 0x340);
    assert_eq!(find(&v, 0xd, 1).eax & 0b1000, 0, "no XSAVES");
    assert_eq!(find(&v, 0xd, 2).eax, 0x100);
    assert!(v.iter().all(|e| !(e.function == 0xd && e.index > 2)));
}

#[test]
fn too_small_buffer_is_e2big() {
    let mut out = vec![CpuidEntry::default(); 3];
    assert_eq!(supported_cpuid(&epyc(), &mut out), Err(TooBig));
    let mut none: [CpuidEntry; 0] = [];
    assert_eq!(supported_cpuid(&epyc(), &mut none), Err(TooBig));
}

#[test]
fn exact_size_fits() {
    let n = run(&epyc()).len();
    let mut out = vec![CpuidEntry::default(); n];
    assert_eq!(supported_cpuid(&epyc(), &mut out), Ok(n));
}

#[test]
fn no_xsave_no_leaf_d() {
    let mut t = epyc();
    t.0.insert((1, u32::MAX), [0x0080_0f12, 0x0100_0800, 0x0000_0001, 0x078b_fbff]);
    let v = run(&t);
    assert!(v.iter().all(|e| e.function != 0xd));
}

#[test]
fn kvm_paravirtual_leaves_offer_kvmclock() {
    let v = run(&epyc());
    let sig = find(&v, 0x4000_0000, 0);
    assert_eq!(sig.eax, 0x4000_0001);
    let mut name = [0u8; 12];
    for (i, r) in [sig.ebx, sig.ecx, sig.edx].iter().enumerate() {
        name[4 * i..4 * i + 4].copy_from_slice(&r.to_le_bytes());
    }
    assert_eq!(&name, b"KVMKVMKVM\0\0\0");
    let f = find(&v, 0x4000_0001, 0);
    // CLOCKSOURCE, NOP_IO_DELAY, CLOCKSOURCE2, CLOCKSOURCE_STABLE_BIT only.
    assert_eq!(f.eax, 1 | 2 | 8 | (1 << 24));
}

#[test]
fn tsc_adjust_is_always_offered() {
    let v = run(&epyc());
    assert_ne!(find(&v, 7, 0).ebx & 2, 0);
}
