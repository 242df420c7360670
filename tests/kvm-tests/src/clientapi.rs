//! The client API beyond the irqchip that newer VMMs require (QEMU 8.2+ and
//! 11 refuse to start without it): machine-check setup and injection
//! (KVM_CAP_MCE), the VM clock (KVM_CAP_ADJUST_CLOCK), XCR0 for a guest
//! without XSAVE, single-step, coalesced MMIO/PIO, feature MSRs,
//! KVM_GET_EMULATED_CPUID, KVM_TRANSLATE.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("client/mce_setup_and_banks", mce_setup),
        ("client/mce_inject_corrected", mce_inject),
        ("client/vm_clock", vm_clock),
        ("client/xcr0_x87_without_xsave", xcr0_without_xsave),
        ("client/guest_debug_single_step", single_step),
        ("client/coalesced_mmio_ring", coalesced_mmio),
        ("client/coalesced_pio_and_unregister", coalesced_pio),
        ("client/coalesced_ring_full_and_corrupt", coalesced_full),
        ("client/feature_msrs", feature_msrs),
        ("client/emulated_cpuid", emulated_cpuid),
        ("client/translate", translate),
        ("client/guest_debug_inject_and_caps", debug_inject),
        ("client/create_device_vfio", create_device_vfio),
        ("client/guest_debug_blockirq_with_posted_nmi", blockirq_posted_nmi),
        ("client/max_vcpu_id_cap", max_vcpu_id_cap),
        ("client/nr_mmu_pages", nr_mmu_pages),
        ("client/hwcr_msr", hwcr_msr),
        ("debug_bp/sw_breakpoint_and_reinjection", sw_breakpoint),
        ("debug_bp/hw_breakpoint", hw_breakpoint),
    ]
}

const MCG_CTL_P: u64 = 1 << 8;

fn mce_setup() -> TestResult {
    let vm = Vm::new()?;
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_MCE as u64), Ok(32));
    let mut cap = 0u64;
    check_eq!(ioctl_ptr(&vm.kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, &mut cap), Ok(0));
    // The capability bits; the bank count is KVM_CAP_MCE's answer.
    check_eq!(cap & 0xff, 0);
    check!(cap & MCG_CTL_P != 0);
    let v = vm.vcpu(0)?;
    // Before setup: 32 banks, as upstream's default.
    check_eq!(v.get_msr(0x179)?, 32);
    for bad in [0u64, 33, 10 | (1 << 40)] {
        let mut c = bad;
        check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Err(libc::EINVAL));
    }
    let mut c = 10 | MCG_CTL_P;
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Ok(0));
    check_eq!(v.get_msr(0x179)?, 10 | MCG_CTL_P);
    // MCG_CTL and every bank's CTL start all-ones.
    check_eq!(v.get_msr(0x17b)?, u64::MAX);
    check_eq!(v.get_msr(0x400 + 4 * 9)?, u64::MAX);
    // Bank 10 does not exist now.
    check!(v.get_msr(0x400 + 4 * 10).is_err());
    check_eq!(v.set_msr(0x400 + 4 * 10, 0), Ok(0));
    Ok(())
}

fn mce_inject() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut c = 10 | MCG_CTL_P;
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SETUP_MCE, &mut c), Ok(0));
    let val = 1u64 << 63;
    let mut m = kvm_x86_mce { status: val | 0x1234, addr: 0xabc000, misc: 7, bank: 3, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut m), Ok(0));
    check_eq!(v.get_msr(0x400 + 4 * 3 + 1)?, val | 0x1234);
    check_eq!(v.get_msr(0x400 + 4 * 3 + 2)?, 0xabc000);
    // A second corrected error in the same bank sets OVER.
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut m), Ok(0));
    check_eq!(v.get_msr(0x400 + 4 * 3 + 1)?, val | (1 << 62) | 0x1234);
    // No VAL, or a bank that does not exist: EINVAL.
    let mut bad = kvm_x86_mce { status: 0x1234, bank: 3, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut bad), Err(libc::EINVAL));
    let mut bad = kvm_x86_mce { status: val, bank: 10, ..Default::default() };
    check_eq!(ioctl_ptr(&v.fd, KVM_X86_SET_MCE, &mut bad), Err(libc::EINVAL));
    Ok(())
}

fn get_clock(vm: &Vm) -> Result<kvm_clock_data, String> {
    let mut d = kvm_clock_data::default();
    ioctl_ptr(&vm.fd, KVM_GET_CLOCK, &mut d).map_err(|e| format!("GET_CLOCK errno {e}"))?;
    Ok(d)
}

fn vm_clock() -> TestResult {
    let vm = Vm::new()?;
    let flags = ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK as u64).unwrap_or(0);
    check!(flags & KVM_CLOCK_REALTIME as i64 != 0);
    let a = get_clock(&vm)?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = get_clock(&vm)?;
    check!(b.clock > a.clock);
    // Set it far ahead: it continues from there.
    let target = a.clock + 1_000_000_000_000;
    let mut d = kvm_clock_data { clock: target, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Ok(0));
    let c = get_clock(&vm)?;
    check!(c.clock >= target && c.clock < target + 10_000_000_000);
    // Unknown flags are refused.
    let mut d = kvm_clock_data { clock: target, flags: 1 << 8, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Err(libc::EINVAL));
    // KVM_CLOCK_REALTIME: the time since `realtime` is added.
    if c.flags & KVM_CLOCK_REALTIME != 0 {
        let mut d = kvm_clock_data { clock: target, flags: KVM_CLOCK_REALTIME, realtime: c.realtime - 5_000_000_000, ..Default::default() };
        check_eq!(ioctl_ptr(&vm.fd, KVM_SET_CLOCK, &mut d), Ok(0));
        let e = get_clock(&vm)?;
        check!(e.clock >= target + 5_000_000_000);
    }
    Ok(())
}

fn xcr0_without_xsave() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut xc = kvm_xcrs::default();
    ioctl_ptr(&v.fd, KVM_GET_XCRS, &mut xc).map_err(|e| format!("GET_XCRS errno {e}"))?;
    if xc.nr_xcrs == 0 {
        return Ok(());
    }
    // No CPUID set, so no XSAVE: XCR0 = 1 (its reset value) is still valid,
    // anything more is not.
    xc.nr_xcrs = 1;
    xc.xcrs[0].value = 1;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Ok(0));
    xc.xcrs[0].value = 3;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Err(libc::EINVAL));
    Ok(())
}

fn set_guest_debug(v: &Vcpu, control: u32) -> Result<i64, Errno> {
    let mut d = kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg: [0; 8] } };
    ioctl_ptr(&v.fd, KVM_SET_GUEST_DEBUG, &mut d)
}

/// KVM_EXIT_DEBUG's exception and linear pc.
fn debug_exit(v: &Vcpu) -> (u64, u64, u64) {
    (v.exit_u64(0) & 0xffff_ffff, v.exit_u64(1), v.exit_u64(2))
}

fn single_step() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    check!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_ROBUST_SINGLESTEP as u64).unwrap_or(0) > 0);
    // nop; nop; xor eax,eax; cpuid; out 0x10,al; hlt
    poke(mem, 0x1000, &[0x90, 0x90, 0x66, 0x31, 0xc0, 0x0f, 0xa2, 0xe6, 0x10, 0xf4]);
    v.real_mode_at(0x1000)?;
    check_eq!(set_guest_debug(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP), Ok(0));
    // Each instruction is one KVM_EXIT_DEBUG (#DB, DR6.BS), including CPUID,
    // which the kernel completes itself, and OUT after its I/O exit.
    for pc in [0x1001u64, 0x1002, 0x1005, 0x1007] {
        check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
        let (exc, got_pc, dr6) = debug_exit(&v);
        check_eq!((exc, got_pc), (1, pc));
        check!(dr6 & (1 << 14) != 0);
    }
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
    check_eq!(debug_exit(&v).1, 0x1009);
    // The guest never sees the TF the debugger set.
    check_eq!(v.regs()?.rflags & (1 << 8), 0);
    check_eq!(set_guest_debug(&v, 0), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    // Without ENABLE, debugging is off whatever the other bits say.
    check_eq!(set_guest_debug(&v, 1 << 30), Ok(0));
    Ok(())
}

fn zone(addr: u64, size: u32, pio: u32) -> kvm_coalesced_mmio_zone {
    let mut z = kvm_coalesced_mmio_zone { addr, size, ..Default::default() };
    z.__bindgen_anon_1.pio = pio;
    z
}

/// The ring in the vCPU mapping: (first, last) and entry `i` as
/// (phys_addr, len, pio, data).
fn ring(v: &Vcpu) -> *mut u8 {
    v.map.wrapping_add(2 * 4096)
}

fn ring_head(v: &Vcpu) -> (u32, u32) {
    let r = ring(v);
    let b = peek(r, 0, 8);
    (u32::from_le_bytes([b[0], b[1], b[2], b[3]]), u32::from_le_bytes([b[4], b[5], b[6], b[7]]))
}

fn ring_entry(v: &Vcpu, i: usize) -> (u64, u32, u32, Vec<u8>) {
    let b = peek(ring(v), 8 + 24 * i, 24);
    let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    (
        u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
        len,
        u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        b[16..16 + (len as usize).min(8)].to_vec(),
    )
}

fn coalesced_mmio() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x8000)?;
    check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_MMIO as u64), Ok(2));
    check_eq!(ioctl_val(&vm.kvm, KVM_GET_VCPU_MMAP_SIZE, 0), Ok(3 * 4096));
    check_eq!(ioctl_ptr(&vm.fd, KVM_REGISTER_COALESCED_MMIO, &mut zone(0x9000, 0x1000, 2)), Err(libc::EINVAL));
    check_eq!(ioctl_ptr(&vm.fd, KVM_REGISTER_COALESCED_MMIO, &mut zone(0x9000, 0x1000, 0)), Ok(0));
    // mov byte [0x9000],0x11; mov word [0x9010],0x2233; mov byte [0x9ff0],0x44;
    // mov al,[0x9000]; mov byte [0xa000],0x55; hlt
    poke(mem, 0x1000, &[0xc6, 0x06, 0x00, 0x90, 0x11, 0xc7, 0x06, 0x10, 0x90, 0x33, 0x22, 0xc6, 0x06, 0xf0, 0x9f, 0x44,
        0xa0, 0x00, 0x90, 0xc6, 0x06, 0x00, 0xa0, 0x55, 0xf4]);
    v.real_mode_at(0x1000)?;
    // The three writes in the zone do not exit; the read does.
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    let m = v.mmio();
    check_eq!((m.addr, m.is_write), (0x9000, false));
    check_eq!(ring_head(&v), (0, 3));
    check_eq!(ring_entry(&v, 0), (0x9000, 1, 0, vec![0x11]));
    check_eq!(ring_entry(&v, 1), (0x9010, 2, 0, vec![0x33, 0x22]));
    check_eq!(ring_entry(&v, 2), (0x9ff0, 1, 0, vec![0x44]));
    v.set_mmio_data(&[0x77]);
    // A write outside every zone exits as usual.
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    let m = v.mmio();
    check_eq!((m.addr, m.is_write), (0xa000, true));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    check_eq!(v.regs()?.rax & 0xff, 0x77);
    Ok(())
}

fn coalesced_pio() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x8000)?;
    check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_COALESCED_PIO as u64), Ok(1));
    check_eq!(ioctl_ptr(&vm.fd, KVM_REGISTER_COALESCED_MMIO, &mut zone(0x80, 1, 1)), Ok(0));
    check_eq!(ioctl_ptr(&vm.fd, KVM_REGISTER_COALESCED_MMIO, &mut zone(0x9000, 0x100, 0)), Ok(0));
    // mov al,0x55; out 0x80,al; out 0x80,al; out 0x81,al; mov byte [0x9000],1; hlt
    poke(mem, 0x1000, &[0xb0, 0x55, 0xe6, 0x80, 0xe6, 0x80, 0xe6, 0x81, 0xc6, 0x06, 0x00, 0x90, 0x01, 0xf4]);
    v.real_mode_at(0x1000)?;
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!(v.io().port, 0x81);
    check_eq!(ring_head(&v), (0, 2));
    check_eq!(ring_entry(&v, 1), (0x80, 1, 1, vec![0x55]));
    // User space consumed the entries; the zone at 0x9000 is unregistered by
    // a range inside it (upstream's rule), so the next write exits.
    poke(ring(&v), 0, &2u32.to_le_bytes());
    check_eq!(ioctl_ptr(&vm.fd, KVM_UNREGISTER_COALESCED_MMIO, &mut zone(0x9000, 4, 0)), Ok(0));
    check_eq!(ioctl_ptr(&vm.fd, KVM_UNREGISTER_COALESCED_MMIO, &mut zone(0x9000, 4, 7)), Err(libc::EINVAL));
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    check_eq!(v.mmio().addr, 0x9000);
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    check_eq!(ring_head(&v), (2, 2));
    Ok(())
}

fn coalesced_full() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x8000)?;
    check_eq!(ioctl_ptr(&vm.fd, KVM_REGISTER_COALESCED_MMIO, &mut zone(0x9000, 0x1000, 0)), Ok(0));
    // mov cx,200; L: mov [0x9000],al; loop L; hlt
    poke(mem, 0x1000, &[0xb9, 0xc8, 0x00, 0xa2, 0x00, 0x90, 0xe2, 0xfb, 0xf4]);
    v.real_mode_at(0x1000)?;
    // The ring holds 169 entries (one slot stays free); the 170th write exits.
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    check_eq!(ring_head(&v), (0, 169));
    check_eq!(v.regs()?.rcx & 0xffff, 200 - 169);
    // User space scribbles over the header: writes exit, nothing breaks.
    poke(ring(&v), 0, &[0xff, 0xff, 0xff, 0xff, 0x88, 0x13, 0, 0]);
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    check_eq!(v.run(), Ok(KVM_EXIT_MMIO));
    // Emptied, it fills again.
    poke(ring(&v), 0, &[0; 8]);
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    // 169 went to the ring, three writes exited.
    check_eq!(ring_head(&v), (0, 200 - 169 - 3));
    Ok(())
}

fn feature_msrs() -> TestResult {
    let kvm = open_kvm()?;
    check!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_GET_MSR_FEATURES as u64).unwrap_or(0) > 0);
    let mut l = MsrList::with_room(64);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, l.ptr()), Ok(0));
    for m in [0x8bu32, 0x10a, 0x345] {
        check!(l.indices().contains(&m), "feature MSR {m:#x} missing from {:x?}", l.indices());
    }
    // Too small a list: E2BIG with the count written back.
    let mut small = MsrList::with_room(1);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, small.ptr()), Err(libc::E2BIG));
    check_eq!(small.nmsrs(), l.nmsrs());
    // Read on /dev/kvm: ARCH_CAPABILITIES has PSCHANGE_MC_NO (KVM always
    // offers it); an MSR of KVM_GET_MSR_INDEX_LIST reads as 0 (upstream lets
    // user space read every MSR it advertises); the read stops at the first
    // index that is neither.
    let mut buf = [u64::MAX; 1 + 4 * 2];
    buf[0] = 4;
    buf[1] = 0x10a;
    buf[3] = 0x345;
    buf[5] = 0x10; // IA32_TSC: advertised for vCPUs, not a feature MSR
    buf[7] = 0x1234; // nothing
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSRS, buf.as_mut_ptr()), Ok(3));
    check!(buf[2] & (1 << 6) != 0, "ARCH_CAPABILITIES {:#x}", buf[2]);
    check_eq!(buf[6], 0);
    let mut big = vec![0u64; 1 + 2 * 256];
    big[0] = 256;
    check_eq!(ioctl_ptr(&kvm, KVM_GET_MSRS, big.as_mut_ptr()), Err(libc::E2BIG));
    Ok(())
}

fn emulated_cpuid() -> TestResult {
    let kvm = open_kvm()?;
    check!(ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_EXT_EMUL_CPUID as u64).unwrap_or(0) > 0);
    let mut c = Cpuid2::with_room(256);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_EMULATED_CPUID, c.ptr()), Ok(0));
    let e = c.entries();
    check_eq!(e.iter().map(|x| x.function).collect::<Vec<_>>(), vec![0, 1, 7]);
    check_eq!(e[0].eax, 7);
    let mut c = Cpuid2::with_room(2);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_EMULATED_CPUID, c.ptr()), Err(libc::E2BIG));
    let mut c = Cpuid2::with_room(0);
    check_eq!(ioctl_ptr(&kvm, KVM_GET_EMULATED_CPUID, c.ptr()), Err(libc::E2BIG));
    // Padding must be clean (upstream checks it for this ioctl only).
    let mut raw = vec![0u32; 2 + 10 * 4];
    raw[0] = 4;
    raw[2 + 10 + 9] = 1; // entry 1's last padding word
    check_eq!(ioctl_ptr(&kvm, KVM_GET_EMULATED_CPUID, raw.as_mut_ptr()), Err(libc::EINVAL));
    Ok(())
}

fn translate_one(v: &Vcpu, lin: u64) -> Result<kvm_translation, String> {
    let mut t = kvm_translation { linear_address: lin, ..Default::default() };
    ioctl_ptr(&v.fd, KVM_TRANSLATE, &mut t).map_err(|e| format!("TRANSLATE errno {e}"))?;
    Ok(t)
}

fn translate() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // Paging off: the identity.
    let t = translate_one(&v, 0x12345)?;
    check_eq!((t.valid, t.physical_address), (1, 0x12345));
    // All ones is upstream's "invalid GPA", never a translation.
    check_eq!(translate_one(&v, u64::MAX)?.valid, 0);
    // Long mode, the first GiB identity-mapped with 2M pages.
    v.long_mode_at(&vm.kvm, mem, 0x1000)?;
    let t = translate_one(&v, 0x3f_ff_f123)?;
    check_eq!((t.valid, t.physical_address, t.writeable, t.usermode), (1, 0x3fff_f123, 1, 0));
    let t = translate_one(&v, 0x4000_0000)?;
    check_eq!((t.valid, t.physical_address), (0, u64::MAX));
    // A page table outside guest RAM: not valid, no crash.
    poke(mem, 0x2000, &(0x7000_0000u64 | 7).to_le_bytes());
    let t = translate_one(&v, 0x1000)?;
    check_eq!(t.valid, 0);
    Ok(())
}

fn set_guest_debug_regs(v: &Vcpu, control: u32, debugreg: [u64; 8]) -> Result<i64, Errno> {
    let mut d = kvm_guest_debug { control, pad: 0, arch: kvm_guest_debug_arch { debugreg } };
    ioctl_ptr(&v.fd, KVM_SET_GUEST_DEBUG, &mut d)
}

/// Real-mode guest with a #DB and #BP handler (IVT entries 1 and 3 ->
/// 0:0x2000) that reports itself on port 0x11 and returns:
/// mov al,0x33; out 0x11,al; iret.
fn guest_with_bp_handler(code: &[u8]) -> Result<(Vm, Vcpu, *mut u8), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 4 * 1, &[0x00, 0x20, 0x00, 0x00]);
    poke(mem, 4 * 3, &[0x00, 0x20, 0x00, 0x00]);
    poke(mem, 0x2000, &[0xb0, 0x33, 0xe6, 0x11, 0xcf]);
    poke(mem, 0x1000, code);
    v.real_mode_at(0x1000)?;
    let mut s = v.sregs()?;
    s.idt.base = 0;
    s.idt.limit = 0x3ff;
    s.ss.base = 0;
    s.ss.selector = 0;
    v.set_sregs(&s).map_err(|e| format!("SET_SREGS errno {e}"))?;
    let mut r = v.regs()?;
    r.rsp = 0x8000;
    v.set_regs(&r)?;
    Ok((vm, v, mem))
}

fn debug_inject() -> TestResult {
    let all = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_USE_HW_BP
        | KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP | KVM_GUESTDBG_BLOCKIRQ;
    let kvm = open_kvm()?;
    let caps = ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2 as u64).unwrap_or(0) as u32;
    check_eq!(caps & all, all);
    // nop; mov al,0x42; out 0x10,al; hlt
    let (_vm, v, _mem) = guest_with_bp_handler(&[0x90, 0xb0, 0x42, 0xe6, 0x10, 0xf4])?;
    // Control bits without a meaning are ignored (upstream does not check).
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | 1 << 29, [0; 8]), Ok(0));
    // INJECT_DB: the guest's #DB handler runs first, then the code.
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_DB, [0; 8]), Ok(0));
    // A second injection while the first waits: EBUSY.
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_BP, [0; 8]), Err(libc::EBUSY));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!((v.io().port, v.io_data()[0]), (0x11, 0x33));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!((v.io().port, v.io_data()[0]), (0x10, 0x42));
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ, [0; 8]), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    Ok(())
}

fn sw_breakpoint() -> TestResult {
    // nop; int3; mov al,0x42; out 0x10,al; hlt
    let (_vm, v, _mem) = guest_with_bp_handler(&[0x90, 0xcc, 0xb0, 0x42, 0xe6, 0x10, 0xf4])?;
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, [0; 8]), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
    let (exc, pc, _) = debug_exit(&v);
    check_eq!((exc, pc), (3, 0x1001));
    check_eq!(v.regs()?.rip, 0x1001);
    // Not the debugger's breakpoint: the VMM hands the #BP back to the guest
    // as QEMU does (KVM_SET_VCPU_EVENTS); the guest's handler runs and
    // returns after the INT3.
    let mut e = kvm_vcpu_events::default();
    ioctl_ptr(&v.fd, KVM_GET_VCPU_EVENTS, &mut e).map_err(|e| format!("GET_VCPU_EVENTS errno {e}"))?;
    e.exception.injected = 1;
    e.exception.nr = 3;
    e.flags = 0;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_VCPU_EVENTS, &mut e), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!((v.io().port, v.io_data()[0]), (0x11, 0x33));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!((v.io().port, v.io_data()[0]), (0x10, 0x42));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    Ok(())
}

fn hw_breakpoint() -> TestResult {
    // nop; nop; mov al,1; out 0x10,al; hlt
    let (_vm, v, _mem) = guest_with_bp_handler(&[0x90, 0x90, 0xb0, 0x01, 0xe6, 0x10, 0xf4])?;
    // DR0 = 0x1002, DR7: L0, execute, 1 byte.
    let regs = [0x1002, 0, 0, 0, 0, 0, 0, 1];
    check_eq!(set_guest_debug_regs(&v, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, regs), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_DEBUG));
    let (exc, pc, dr6) = debug_exit(&v);
    check_eq!((exc, pc), (1, 0x1002));
    check!(dr6 & 1 != 0, "DR6 {dr6:#x} lacks B0");
    // The guest's own DR7 is untouched by the debugger's.
    let mut d = kvm_debugregs::default();
    ioctl_ptr(&v.fd, KVM_GET_DEBUGREGS, &mut d).map_err(|e| format!("GET_DEBUGREGS errno {e}"))?;
    check_eq!(d.dr7 & 0xff, 0);
    // The debugger removes its breakpoint; the guest goes on.
    check_eq!(set_guest_debug_regs(&v, 0, [0; 8]), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!(v.run(), Ok(KVM_EXIT_HLT));
    Ok(())
}

fn create_device(vm: &Vm, type_: u32, flags: u32) -> Result<i64, Errno> {
    let mut cd = kvm_create_device { type_, fd: 0, flags };
    ioctl_ptr(&vm.fd, KVM_CREATE_DEVICE, &mut cd).map(|_| cd.fd as i64)
}

fn device_attr(fd: i32, req: u32, group: u32, attr: u64, addr: u64) -> Result<i64, Errno> {
    let mut a = kvm_device_attr { flags: 0, group, attr, addr };
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    ioctl_ptr(&fd, req, &mut a)
}

fn create_device_vfio() -> TestResult {
    let vm = Vm::new()?;
    check!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_DEVICE_CTRL as u64).unwrap_or(0) > 0);
    let vfio = kvm_device_type_KVM_DEV_TYPE_VFIO;
    // Device types x86 KVM does not have, with or without TEST: ENODEV.
    check_eq!(create_device(&vm, kvm_device_type_KVM_DEV_TYPE_FSL_MPIC_20, 0), Err(libc::ENODEV));
    check_eq!(create_device(&vm, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_CREATE_DEVICE_TEST), Err(libc::ENODEV));
    check_eq!(create_device(&vm, 0xffff, 0), Err(libc::ENODEV));
    check_eq!(create_device(&vm, vfio, KVM_CREATE_DEVICE_TEST), Ok(0));
    let fd = create_device(&vm, vfio, 0).map_err(|e| format!("CREATE_DEVICE errno {e}"))? as i32;
    check!(fd > 0);
    // One per VM.
    check_eq!(create_device(&vm, vfio, 0), Err(libc::EBUSY));
    check_eq!(device_attr(fd, KVM_HAS_DEVICE_ATTR, KVM_DEV_VFIO_FILE, KVM_DEV_VFIO_FILE_ADD as u64, 0), Ok(0));
    check_eq!(device_attr(fd, KVM_HAS_DEVICE_ATTR, KVM_DEV_VFIO_FILE, KVM_DEV_VFIO_FILE_DEL as u64, 0), Ok(0));
    check_eq!(device_attr(fd, KVM_HAS_DEVICE_ATTR, KVM_DEV_VFIO_FILE, 3, 0), Err(libc::ENXIO));
    check_eq!(device_attr(fd, KVM_HAS_DEVICE_ATTR, 2, 1, 0), Err(libc::ENXIO));
    check_eq!(device_attr(fd, KVM_GET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, 1, 0), Err(libc::EPERM));
    // A file that is not a VFIO group or device: EINVAL; a bad descriptor:
    // EBADF; deleting what was never added: ENOENT; a bad pointer: EFAULT.
    let null = std::fs::File::open("/dev/null").map_err(|e| e.to_string())?;
    let nullfd: i32 = std::os::fd::AsRawFd::as_raw_fd(&null);
    let add = KVM_DEV_VFIO_FILE_ADD as u64;
    let del = KVM_DEV_VFIO_FILE_DEL as u64;
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, add, &nullfd as *const i32 as u64), Err(libc::EINVAL));
    let bad: i32 = -1;
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, add, &bad as *const i32 as u64), Err(libc::EBADF));
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, del, &nullfd as *const i32 as u64), Err(libc::ENOENT));
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, add, 8), Err(libc::EFAULT));
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, KVM_DEV_VFIO_FILE, 9, &nullfd as *const i32 as u64), Err(libc::ENXIO));
    check_eq!(device_attr(fd, KVM_SET_DEVICE_ATTR, 7, add, &nullfd as *const i32 as u64), Err(libc::ENXIO));
    // Other ioctls on the device: ENOTTY.
    let dfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    check_eq!(ioctl_val(&dfd, KVM_RUN, 0), Err(libc::ENOTTY));
    // Closed, a new one can be made.
    unsafe { libc::close(fd) };
    let fd2 = create_device(&vm, vfio, 0).map_err(|e| format!("CREATE_DEVICE errno {e}"))? as i32;
    check!(fd2 > 0);
    unsafe { libc::close(fd2) };
    Ok(())
}

/// Single-stepping with BLOCKIRQ while the in-kernel APIC has a posted event
/// (an NMI from KVM_NMI): the step completes (it once spun forever in the
/// kernel, the posted event never taken in), and the NMI waits until the
/// debugger lets interrupts in.
fn blockirq_posted_nmi() -> TestResult {
    crate::smp::install_usr2();
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    check_eq!(ioctl_val(&vm.fd, KVM_CREATE_IRQCHIP, 0), Ok(0));
    let v = vm.vcpu(0)?;
    // nop; nop; hlt; NMI handler at 0x2000 (IVT 2): out 0x12,al; iret
    poke(mem, 0x1000, &[0x90, 0x90, 0xf4]);
    poke(mem, 4 * 2, &[0x00, 0x20, 0x00, 0x00]);
    poke(mem, 0x2000, &[0xe6, 0x12, 0xcf]);
    v.real_mode_at(0x1000)?;
    check_eq!(ioctl_val(&v.fd, KVM_NMI, 0), Ok(0));
    let ctl = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ;
    check_eq!(set_guest_debug_regs(&v, ctl, [0; 8]), Ok(0));
    // A watchdog signal turns a hang into EINTR.
    let tid = unsafe { libc::pthread_self() };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let tid_val = tid as usize;
    let dog = std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        unsafe { libc::pthread_kill(tid_val as libc::pthread_t, libc::SIGUSR2) };
    });
    let r = v.run();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = dog.join();
    check_eq!(r, Ok(KVM_EXIT_DEBUG));
    check_eq!(debug_exit(&v).1, 0x1001);
    // Interrupts allowed again: the NMI handler runs.
    check_eq!(set_guest_debug_regs(&v, 0, [0; 8]), Ok(0));
    check_eq!(v.run(), Ok(KVM_EXIT_IO));
    check_eq!(v.io().port, 0x12);
    Ok(())
}

fn enable_cap(vm: &Vm, cap: u32, arg0: u64) -> Result<i64, Errno> {
    let mut c = kvm_enable_cap { cap, ..Default::default() };
    c.args[0] = arg0;
    ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c)
}

fn max_vcpu_id_cap() -> TestResult {
    let vm = Vm::new()?;
    let max = ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID as u64).unwrap_or(0) as u64;
    check!(max >= 1024);
    check_eq!(enable_cap(&vm, KVM_CAP_MAX_VCPU_ID, max + 1), Err(libc::EINVAL));
    check_eq!(enable_cap(&vm, KVM_CAP_MAX_VCPU_ID, 8), Ok(0));
    // Again with the same value: fine; another: EINVAL.
    check_eq!(enable_cap(&vm, KVM_CAP_MAX_VCPU_ID, 8), Ok(0));
    check_eq!(enable_cap(&vm, KVM_CAP_MAX_VCPU_ID, 9), Err(libc::EINVAL));
    check_eq!(ioctl_val(&vm.fd, KVM_SET_BOOT_CPU_ID, 9), Err(libc::EINVAL));
    check!(vm.vcpu(8).is_err());
    let v = vm.vcpu(7)?;
    drop(v);
    // Not below the boot vCPU's id.
    let vm2 = Vm::new()?;
    check_eq!(ioctl_val(&vm2.fd, KVM_SET_BOOT_CPU_ID, 5), Ok(0));
    check_eq!(enable_cap(&vm2, KVM_CAP_MAX_VCPU_ID, 4), Err(libc::EINVAL));
    check_eq!(enable_cap(&vm2, KVM_CAP_MAX_VCPU_ID, 5), Ok(0));
    Ok(())
}

fn nr_mmu_pages() -> TestResult {
    let vm = Vm::new()?;
    check!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MMU_SHADOW_CACHE_CONTROL as u64).unwrap_or(0) > 0);
    check_eq!(ioctl_val(&vm.fd, KVM_SET_NR_MMU_PAGES, 63), Err(libc::EINVAL));
    check_eq!(ioctl_val(&vm.fd, KVM_SET_NR_MMU_PAGES, 64), Ok(0));
    check_eq!(ioctl_val(&vm.fd, KVM_SET_NR_MMU_PAGES, 1 << 20), Ok(0));
    Ok(())
}

fn hwcr_msr() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    const HWCR: u32 = 0xc001_0015;
    // Only McStatusWrEn and TscFreqSel stick; three legacy bits are ignored;
    // anything else is refused.
    check_eq!(v.set_msr(HWCR, 1), Ok(0));
    check_eq!(v.set_msr(HWCR, 1 << 18), Ok(1));
    check_eq!(v.get_msr(HWCR)?, 1 << 18);
    check_eq!(v.set_msr(HWCR, (1 << 24) | 0x148), Ok(1));
    check_eq!(v.get_msr(HWCR)?, 1 << 24);
    Ok(())
}
