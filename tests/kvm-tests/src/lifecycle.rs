//! VM and vCPU files: bad arguments for every ioctl, state round trips, closing
//! in every order, signals, immediate_exit, a killed process, many VMs, a vCPU
//! thread that migrates between CPUs.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("vm/create_vm_bad_type", create_vm_bad_type),
        ("vm/check_extension_on_vm_fd", check_extension_vm),
        ("vm/memslot_bad_arguments", memslot_bad_args),
        ("vm/memslot_move_delete", memslot_move_delete),
        ("vm/memslot_many", memslot_many),
        ("vm/memslot_huge_accepted", memslot_huge),
        ("vm/unknown_ioctl_enotty", vm_unknown_ioctl),
        ("vm/tss_and_identity_map", tss_identity),
        ("vcpu/duplicate_and_bad_ids", vcpu_ids),
        ("vcpu/reset_state", reset_state),
        ("vcpu/regs_sregs_roundtrip", regs_roundtrip),
        ("vcpu/sregs_validation", sregs_validation),
        ("vcpu/fpu_xsave_xcrs", fpu_xsave),
        ("vcpu/debugregs_events_mpstate", misc_state),
        ("vcpu/cpuid2_limits", cpuid2_limits),
        ("vcpu/msrs_limits", msrs_limits),
        ("vcpu/bad_ioctls", vcpu_bad_ioctls),
        ("vcpu/efault", vcpu_efault),
        ("vcpu/efault_pointer_at_address_space_end", vcpu_efault_wrapping),
        ("run/immediate_exit", immediate_exit),
        ("run/signal_interrupts_run", signal_interrupts),
        ("run/process_killed_during_run", killed_during_run),
        ("run/other_process_gets_eio", other_process_eio),
        ("life/close_vm_before_vcpu", close_vm_first),
        ("life/200_vms", many_vms),
        ("life/64_vcpus", many_vcpus),
        ("life/vcpu_migrates_between_cpus", migrating_vcpu),
        ("life/vcpu_survives_its_cpu_going_offline", cpu_offline_under_vcpu),
    ]
}

fn create_vm_bad_type() -> TestResult {
    let kvm = open_kvm()?;
    check_eq!(ioctl_val(&kvm, KVM_CREATE_VM, 5).map(|_| ()), Err(libc::EINVAL));
    check_eq!(ioctl_val(&kvm, KVM_CREATE_VM, 0xffff_ffff).map(|_| ()), Err(libc::EINVAL));
    Ok(())
}

fn check_extension_vm() -> TestResult {
    let vm = Vm::new()?;
    for cap in [KVM_CAP_USER_MEMORY, KVM_CAP_SET_TSS_ADDR, KVM_CAP_EXT_CPUID, KVM_CAP_MP_STATE, KVM_CAP_IMMEDIATE_EXIT] {
        check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, cap as u64), Ok(1));
    }
    let nr = ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS as u64).map_err(|e| format!("errno {e}"))?;
    check!(nr >= 1, "NR_VCPUS {nr}");
    for cap in [KVM_CAP_NR_MEMSLOTS, KVM_CAP_MAX_VCPUS, KVM_CAP_MAX_VCPU_ID] {
        let v = ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, cap as u64).map_err(|e| format!("errno {e}"))?;
        check!(v >= 64, "cap {cap} = {v}");
    }
    check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, 0xfffff), Ok(0));
    Ok(())
}

fn memslot_bad_args() -> TestResult {
    let vm = Vm::new()?;
    let p = anon(0x4000)? as u64;
    check_eq!(vm.set_region(0, 0x800, 0x1000, p, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0, 0x1800, p, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0, 0x1000, p + 8, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0, 0x1000, p, 1 << 5), Err(libc::EINVAL));
    check_eq!(vm.set_region(32767, 0, 0x1000, p, 0), Err(libc::EINVAL));
    // Address space 2 exists nowhere (upstream has 0 and, with SMM, 1).
    check_eq!(vm.set_region(2 << 16 | 1, 0, 0x1000, p, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0, 0x1000, 0xffff_8000_0000_0000, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, u64::MAX - 0xfff, 0x2000, p, 0), Err(libc::EINVAL));
    // Deleting a slot that does not exist.
    check_eq!(vm.set_region(3, 0, 0, 0, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0x10000, 0x4000, p, 0), Ok(0));
    check_eq!(vm.set_region(1, 0x12000, 0x1000, p, 0), Err(libc::EEXIST));
    check_eq!(vm.set_region(1, 0xf000, 0x2000, p, 0), Err(libc::EEXIST));
    // Changing size or address of a live slot.
    check_eq!(vm.set_region(0, 0x10000, 0x2000, p, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0x10000, 0x4000, p + 0x1000, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(0, 0x10000, 0x4000, p, KVM_MEM_READONLY), Err(libc::EINVAL));
    // Identical again: fine; flags change to dirty logging: fine.
    check_eq!(vm.set_region(0, 0x10000, 0x4000, p, 0), Ok(0));
    check_eq!(vm.set_region(0, 0x10000, 0x4000, p, KVM_MEM_LOG_DIRTY_PAGES), Ok(0));
    // REGION2: guest_memfd is refused where it is not offered.
    let mut r2 = kvm_userspace_memory_region2 { slot: 5, memory_size: 0x1000, userspace_addr: p, guest_phys_addr: 0x80000, flags: KVM_MEM_GUEST_MEMFD, ..Default::default() };
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_USER_MEMORY_REGION2, &mut r2), Err(libc::EINVAL));
    r2.flags = 0;
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_USER_MEMORY_REGION2, &mut r2), Ok(0));
    Ok(())
}

fn memslot_move_delete() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let extra = anon(0x1000)?;
    poke(extra, 0, &[0x5a]);
    check_eq!(vm.set_region(1, 0x20000, 0x1000, extra as u64, 0), Ok(0));
    let v = vm.vcpu(0)?;
    // mov ax,0x2000; mov ds,ax; mov al,[0]; out 0x10,al; hlt
    let code = [0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xe6, 0x10, 0xf4];
    poke(mem, 0x1000, &code);
    v.real_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io_data()[0], 0x5a);
    // Move the slot away: the same access is now MMIO.
    check_eq!(vm.set_region(1, 0x30000, 0x1000, extra as u64, 0), Ok(0));
    v.real_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_MMIO)?;
    check_eq!(v.mmio().addr, 0x20000);
    v.set_mmio_data(&[0x33]);
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io_data()[0], 0x33);
    // Move it back, then delete it.
    check_eq!(vm.set_region(1, 0x20000, 0x1000, extra as u64, 0), Ok(0));
    v.real_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io_data()[0], 0x5a);
    check_eq!(vm.set_region(1, 0, 0, 0, 0), Ok(0));
    v.real_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_MMIO)?;
    // Unmapping the user memory behind a deleted slot is harmless.
    // SAFETY: our own mapping, no longer used.
    unsafe { libc::munmap(extra as *mut _, 0x1000) };
    Ok(())
}

fn memslot_many() -> TestResult {
    let vm = Vm::new()?;
    let p = anon(64 * 0x1000)? as u64;
    for i in 0..64u64 {
        check_eq!(vm.set_region(i as u32, 0x100000 + i * 0x1000, 0x1000, p + i * 0x1000, 0), Ok(0));
    }
    for i in (0..64u64).step_by(2) {
        check_eq!(vm.set_region(i as u32, 0, 0, 0, 0), Ok(0));
    }
    for i in (0..64u64).step_by(2) {
        check_eq!(vm.set_region(i as u32, 0x200000 + i * 0x1000, 0x1000, p + i * 0x1000, 0), Ok(0));
    }
    Ok(())
}

/// Slots of hundreds of GB (upstream accepts up to 2^31 - 1 pages below the
/// host's physical-address limit; nothing is mapped until the guest touches
/// it). A regression test: a per-frame table for such a slot made kvmalloc
/// warn (size > INT_MAX).
fn memslot_huge() -> TestResult {
    let vm = Vm::new()?;
    let hva = 0x1000_0000_0000u64;
    // Two 256 GB slots: the test VM's CPU has at least 40 physical address bits.
    for slot in [0u32, 1] {
        check_eq!(vm.set_region(slot, (slot as u64) << 38, 1 << 38, hva, 0), Ok(0));
    }
    // Too many pages (2^31) is refused, as is a slot beyond the host's
    // physical address width (upstream kvm_mmu_max_gfn).
    check_eq!(vm.set_region(2, 0, 1u64 << 43, hva, 0), Err(libc::EINVAL));
    check_eq!(vm.set_region(2, 1u64 << 52, 1 << 20, hva, 0), Err(libc::EINVAL));
    for slot in [0u32, 1] {
        check_eq!(vm.set_region(slot, 0, 0, 0, 0), Ok(0));
    }
    Ok(())
}

fn vm_unknown_ioctl() -> TestResult {
    let vm = Vm::new()?;
    check_eq!(ioctl_val(&vm.fd, 0xaeff, 0), Err(libc::ENOTTY));
    check_eq!(ioctl_val(&vm.fd, KVM_GET_API_VERSION, 0), Err(libc::ENOTTY));
    Ok(())
}

fn tss_identity() -> TestResult {
    let vm = Vm::new()?;
    check_eq!(ioctl_val(&vm.fd, KVM_SET_IDENTITY_MAP_ADDR, 0), Err(libc::EFAULT));
    check_eq!(ioctl_val(&vm.fd, KVM_SET_TSS_ADDR, 0xfeffd000), Ok(0));
    let mut addr: u64 = 0xfeffc000;
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_IDENTITY_MAP_ADDR, &mut addr), Ok(0));
    let _v = vm.vcpu(0)?;
    check_eq!(ioctl_ptr(&vm.fd, KVM_SET_IDENTITY_MAP_ADDR, &mut addr), Err(libc::EINVAL));
    Ok(())
}

fn vcpu_ids() -> TestResult {
    let vm = Vm::new()?;
    let _a = vm.vcpu(0)?;
    check_eq!(ioctl_val(&vm.fd, KVM_CREATE_VCPU, 0).map(|_| ()), Err(libc::EEXIST));
    check_eq!(ioctl_val(&vm.fd, KVM_CREATE_VCPU, 1 << 20).map(|_| ()), Err(libc::EINVAL));
    let b = vm.vcpu(7)?;
    // Closing a vCPU's file does not free its id: the vCPU lives until the VM
    // goes (upstream's EEXIST).
    drop(b);
    check_eq!(ioctl_val(&vm.fd, KVM_CREATE_VCPU, 7).map(|_| ()), Err(libc::EEXIST));
    Ok(())
}

fn reset_state() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let r = v.regs()?;
    check_eq!((r.rip, r.rflags), (0xfff0, 2));
    let s = v.sregs()?;
    check_eq!((s.cs.selector, s.cs.base, s.cs.limit), (0xf000, 0xffff_0000, 0xffff));
    check_eq!(s.cr0, 0x6000_0010);
    check_eq!((s.efer, s.cr4, s.cr3), (0, 0, 0));
    check_eq!(s.apic_base & !0xfff, 0xfee0_0000);
    check_eq!(v.get_msr(0x277)?, 0x0007_0406_0007_0406); // PAT
    Ok(())
}

fn regs_roundtrip() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut r = v.regs()?;
    r.rax = 1;
    r.rbx = 2;
    r.r15 = 0xffff_0000_1234_5678;
    r.rip = 0x1234;
    r.rflags = 0x200; // fixed bit 1 is forced on
    v.set_regs(&r)?;
    let g = v.regs()?;
    check_eq!((g.rax, g.rbx, g.r15, g.rip, g.rflags), (1, 2, 0xffff_0000_1234_5678, 0x1234, 0x202));
    let mut s = v.sregs()?;
    s.ds.base = 0x5000;
    s.ds.selector = 0x500;
    s.cr2 = 0xdead;
    s.gdt.base = 0x9000;
    s.gdt.limit = 0x27;
    v.set_sregs(&s).map_err(|e| format!("errno {e}"))?;
    let t = v.sregs()?;
    check_eq!((t.ds.base, t.ds.selector, t.cr2, t.gdt.base, t.gdt.limit), (0x5000, 0x500, 0xdead, 0x9000, 0x27));
    Ok(())
}

fn sregs_validation() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let base = v.sregs()?;
    let mut lm = base;
    lm.cr0 = 0x8000_0011;
    lm.cr4 = 0x20;
    lm.efer = 0x500;
    lm.cr3 = 0x1000;
    lm.cs.l = 1;
    // Long mode needs LM in the vCPU's CPUID; none is set yet.
    check_eq!(v.set_sregs(&lm), Err(libc::EINVAL));
    v.set_supported_cpuid(&vm.kvm)?;
    check_eq!(v.set_sregs(&lm), Ok(0));
    // LME + PG without PAE; LMA without paging; CS.L outside long mode.
    let mut bad = lm;
    bad.cr4 = 0;
    check_eq!(v.set_sregs(&bad), Err(libc::EINVAL));
    let mut bad = base;
    bad.efer = 0x400;
    check_eq!(v.set_sregs(&bad), Err(libc::EINVAL));
    let mut bad = base;
    bad.cs.l = 1;
    check_eq!(v.set_sregs(&bad), Err(libc::EINVAL));
    // CR0: PG without PE, NW without CD, high bits.
    for cr0 in [0x8000_0000u64, 0x2000_0000, 1 << 40] {
        let mut bad = base;
        bad.cr0 = cr0;
        check_eq!(v.set_sregs(&bad), Err(libc::EINVAL));
    }
    // A reserved CR4 bit; CR4.VMXE unless the CPUID offers VMX.
    let mut sup = Cpuid2::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_SUPPORTED_CPUID, sup.ptr()).map_err(|e| format!("errno {e}"))?;
    let vmx = find_cpuid(&sup.entries(), 1, 0).map_or(false, |e| e.ecx & (1 << 5) != 0);
    let bad_cr4: &[u64] = if vmx { &[1 << 30] } else { &[1 << 13, 1 << 30] };
    for &cr4 in bad_cr4 {
        let mut bad = base;
        bad.cr4 = cr4;
        check_eq!(v.set_sregs(&bad), Err(libc::EINVAL));
    }
    Ok(())
}

fn fpu_xsave() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    v.set_supported_cpuid(&vm.kvm)?;
    let mut f = kvm_fpu::default();
    ioctl_ptr(&v.fd, KVM_GET_FPU, &mut f).map_err(|e| format!("GET_FPU errno {e}"))?;
    check_eq!(f.fcw, 0x37f);
    f.fcw = 0x27f;
    f.mxcsr = 0x1fa0;
    f.xmm[3] = [0x5a; 16];
    ioctl_ptr(&v.fd, KVM_SET_FPU, &mut f).map_err(|e| format!("SET_FPU errno {e}"))?;
    let mut g = kvm_fpu::default();
    ioctl_ptr(&v.fd, KVM_GET_FPU, &mut g).map_err(|e| format!("GET_FPU errno {e}"))?;
    check_eq!((g.fcw, g.xmm[3]), (0x27f, [0x5a; 16]));
    // XSAVE round trip: XMM5 (byte 160 + 5*16 of the legacy area) with the SSE
    // bit set in XSTATE_BV (byte 512) shows up in KVM_GET_FPU.
    let mut x = kvm_xsave::default();
    ioctl_ptr(&v.fd, KVM_GET_XSAVE, &mut x).map_err(|e| format!("GET_XSAVE errno {e}"))?;
    // SAFETY: the region is 4096 bytes of plain data.
    let b: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(x.region.as_mut_ptr() as *mut u8, 4096) };
    b[240..256].copy_from_slice(&[0xc3; 16]);
    b[512] |= 2;
    ioctl_ptr(&v.fd, KVM_SET_XSAVE, &mut x).map_err(|e| format!("SET_XSAVE errno {e}"))?;
    let mut h = kvm_fpu::default();
    ioctl_ptr(&v.fd, KVM_GET_FPU, &mut h).map_err(|e| format!("GET_FPU errno {e}"))?;
    check_eq!(h.xmm[5], [0xc3; 16]);
    let mut xc = kvm_xcrs::default();
    ioctl_ptr(&v.fd, KVM_GET_XCRS, &mut xc).map_err(|e| format!("GET_XCRS errno {e}"))?;
    if xc.nr_xcrs == 0 {
        // No XSAVE on this host: no XCRs, and none can be set.
        check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_XCRS as u64), Ok(0));
        return Ok(());
    }
    check!(xc.xcrs[0].xcr == 0 && xc.xcrs[0].value & 1 == 1);
    xc.nr_xcrs = 1;
    xc.xcrs[0].value = 0x3;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Ok(0));
    xc.xcrs[0].value = 0x2; // x87 must be set
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_XCRS, &mut xc), Err(libc::EINVAL));
    Ok(())
}

fn misc_state() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut d = kvm_debugregs::default();
    ioctl_ptr(&v.fd, KVM_GET_DEBUGREGS, &mut d).map_err(|e| format!("errno {e}"))?;
    check_eq!((d.dr6, d.dr7), (0xffff_0ff0, 0x400));
    d.db[0] = 0x1000;
    d.dr7 = 0x401;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_DEBUGREGS, &mut d), Ok(0));
    let mut e = kvm_debugregs::default();
    ioctl_ptr(&v.fd, KVM_GET_DEBUGREGS, &mut e).map_err(|e| format!("errno {e}"))?;
    check_eq!((e.db[0], e.dr7), (0x1000, 0x401));
    d.dr7 = 1 << 40;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_DEBUGREGS, &mut d), Err(libc::EINVAL));
    let mut mp = kvm_mp_state::default();
    ioctl_ptr(&v.fd, KVM_GET_MP_STATE, &mut mp).map_err(|e| format!("errno {e}"))?;
    check_eq!(mp.mp_state, KVM_MP_STATE_RUNNABLE);
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut mp), Ok(0));
    mp.mp_state = 99;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut mp), Err(libc::EINVAL));
    let mut ev = kvm_vcpu_events::default();
    ioctl_ptr(&v.fd, KVM_GET_VCPU_EVENTS, &mut ev).map_err(|e| format!("errno {e}"))?;
    check_eq!(ev.exception.injected, 0);
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_VCPU_EVENTS, &mut ev), Ok(0));
    ev.flags = 1 << 30;
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_VCPU_EVENTS, &mut ev), Err(libc::EINVAL));
    Ok(())
}

fn cpuid2_limits() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut c = Cpuid2::with_room(300);
    // nent = 257 > KVM_MAX_CPUID_ENTRIES
    let mut hdr = Cpuid2::with_room(257);
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_CPUID2, hdr.ptr()), Err(libc::E2BIG));
    v.set_supported_cpuid(&vm.kvm)?;
    let mut small = Cpuid2::with_room(1);
    check_eq!(ioctl_ptr(&v.fd, KVM_GET_CPUID2, small.ptr()), Err(libc::E2BIG));
    check_eq!(ioctl_ptr(&v.fd, KVM_GET_CPUID2, c.ptr()), Ok(0));
    let mut sup = Cpuid2::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_SUPPORTED_CPUID, sup.ptr()).map_err(|e| format!("errno {e}"))?;
    check_eq!(c.nent(), sup.nent());
    check_eq!(ioctl_val(&v.fd, KVM_SET_CPUID2, 0), Err(libc::EFAULT));
    Ok(())
}

fn msrs_limits() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut buf = vec![0u64; 1 + 2 * 300];
    buf[0] = 300;
    check_eq!(ioctl_ptr(&v.fd, KVM_GET_MSRS, buf.as_mut_ptr()), Err(libc::E2BIG));
    // Processing stops at the first MSR that fails.
    let mut two = [2u64, 0x174, 0, 0xdead_beef, 0];
    check_eq!(ioctl_ptr(&v.fd, KVM_GET_MSRS, two.as_mut_ptr()), Ok(1));
    // The MSRs a VMM saves and restores can be read and written back.
    let mut l = MsrList::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_MSR_INDEX_LIST, l.ptr()).map_err(|e| format!("errno {e}"))?;
    for idx in [0x174u32, 0x175, 0x176, 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0xc000_0102] {
        check!(l.indices().contains(&idx), "{idx:#x} not listed");
        let val = v.get_msr(idx)?;
        check_eq!(v.set_msr(idx, val), Ok(1));
    }
    Ok(())
}

fn vcpu_bad_ioctls() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    check_eq!(ioctl_val(&v.fd, KVM_RUN, 1), Err(libc::EINVAL));
    check_eq!(ioctl_val(&v.fd, 0xaeff, 0), Err(libc::EINVAL));
    check_eq!(ioctl_val(&v.fd, KVM_CREATE_VCPU, 1), Err(libc::EINVAL));
    Ok(())
}

fn vcpu_efault() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    for req in [KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS, KVM_GET_FPU, KVM_GET_MSRS, KVM_GET_VCPU_EVENTS] {
        check_eq!(ioctl_val(&v.fd, req, 0), Err(libc::EFAULT));
        check_eq!(ioctl_val(&v.fd, req, 0xffff_8000_0000_0000), Err(libc::EFAULT));
    }
    Ok(())
}

/// Pointers so close to 2^64 that a field offset added to them wraps: EFAULT.
/// A regression test: KVM_GET_NESTED_STATE computed arg + 4 unchecked and
/// panicked (overflow check) in the kernel; found by kvm-fuzz on the debug
/// kernel.
fn vcpu_efault_wrapping() -> TestResult {
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    for arg in [u64::MAX, u64::MAX - 3, u64::MAX - 7] {
        for req in [KVM_GET_NESTED_STATE, KVM_SET_NESTED_STATE, KVM_GET_MSRS, KVM_SET_MSRS, KVM_SET_CPUID2, KVM_GET_REGS] {
            check_eq!(ioctl_val(&v.fd, req, arg), Err(libc::EFAULT));
        }
    }
    Ok(())
}

fn spin_guest() -> Result<(Vm, Vcpu), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xeb, 0xfe]); // jmp $
    v.real_mode_at(0x1000)?;
    Ok((vm, v))
}

fn immediate_exit() -> TestResult {
    let (_vm, v) = spin_guest()?;
    v.set_immediate_exit(1);
    check_eq!(v.run(), Err(libc::EINTR));
    // Cleared, it runs again.
    v.set_immediate_exit(0);
    Ok(())
}

extern "C" fn on_alarm(_: libc::c_int) {}

fn signal_interrupts() -> TestResult {
    let (_vm, v) = spin_guest()?;
    // SAFETY: installs a no-op handler without SA_RESTART and arms a 100 ms timer.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        // Every 100 ms, so a tick before KVM_RUN started cannot leave it spinning.
        let t = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 100_000 }, it_value: libc::timeval { tv_sec: 0, tv_usec: 100_000 } };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
    }
    let r = v.run();
    // SAFETY: disarms the timer.
    unsafe {
        let z: libc::itimerval = std::mem::zeroed();
        libc::setitimer(libc::ITIMER_REAL, &z, std::ptr::null_mut());
    }
    check_eq!(r, Err(libc::EINTR));
    check_eq!(v.exit_reason(), KVM_EXIT_INTR);
    Ok(())
}

fn killed_during_run() -> TestResult {
    // SAFETY: fork; the child only runs the guest until it is killed.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        if let Ok((_vm, v)) = spin_guest() {
            let _ = v.run();
        }
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(3) };
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut status = 0;
    // SAFETY: signal and reap our child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
    check!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL, "child status {status:#x}: it was not killed while running");
    // The host is fine: a new VM runs.
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xf4]);
    v.real_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_HLT)
}

fn other_process_eio() -> TestResult {
    let (vm, v) = spin_guest()?;
    // SAFETY: fork; the child reports through its exit status.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let a = ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY as u64);
        let b = ioctl_val(&v.fd, KVM_RUN, 0);
        let ok = a == Err(libc::EIO) && b == Err(libc::EIO);
        // SAFETY: as above.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: reap the child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    check!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "VM/vCPU ioctls from another process did not fail with EIO");
    Ok(())
}

fn close_vm_first() -> TestResult {
    let (mut vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xe6, 0x10, 0xf4]);
    v.real_mode_at(0x1000)?;
    // The VM file goes first; the vCPU keeps the VM alive.
    vm.close_vm_file();
    expect_exit(&v, KVM_EXIT_IO)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    drop(v);
    Ok(())
}

fn many_vms() -> TestResult {
    for i in 0..200 {
        let (_vm, v, mem) = vm_with_ram(0x10000)?;
        poke(mem, 0x1000, &[0xe6, 0x10, 0xf4]);
        v.real_mode_at(0x1000)?;
        expect_exit(&v, KVM_EXIT_IO).map_err(|e| format!("VM {i}: {e}"))?;
        expect_exit(&v, KVM_EXIT_HLT).map_err(|e| format!("VM {i}: {e}"))?;
    }
    Ok(())
}

fn many_vcpus() -> TestResult {
    let (vm, _v0, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xe6, 0x10, 0xf4]);
    let mut vs = vec![];
    for id in 1..64 {
        let v = vm.vcpu(id)?;
        v.real_mode_at(0x1000)?;
        vs.push(v);
    }
    for v in &vs {
        expect_exit(v, KVM_EXIT_IO)?;
    }
    Ok(())
}

fn set_cpu(cpu: usize) {
    // SAFETY: a cpu_set_t for this thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A guest that counts in AL and reports each count with OUT 0x10.
fn counting_guest() -> Result<(Vm, Vcpu), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // inc al; out 0x10, al; jmp back
    poke(mem, 0x1000, &[0xfe, 0xc0, 0xe6, 0x10, 0xeb, 0xfa]);
    v.real_mode_at(0x1000)?;
    Ok((vm, v))
}

fn migrating_vcpu() -> TestResult {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    check!(ncpu >= 2, "needs two CPUs, have {ncpu}");
    let (vm, v) = counting_guest()?;
    let h = std::thread::spawn(move || -> Result<(), String> {
        for i in 0..200u32 {
            set_cpu((i % 2) as usize);
            expect_exit(&v, KVM_EXIT_IO)?;
            let got = v.io_data()[0];
            if got != ((i + 1) & 0xff) as u8 {
                return Err(format!("iteration {i}: got {got}"));
            }
        }
        drop(vm);
        Ok(())
    });
    h.join().map_err(|_| "thread panicked".to_string())??;
    Ok(())
}



fn set_cpu_online(cpu: usize, online: bool) -> Result<(), String> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
    std::fs::write(&path, if online { "1" } else { "0" }).map_err(|e| format!("{path}: {e}"))
}

/// The vCPU's state (on VMX: its VMCS, still current on the CPU it last ran on)
/// survives that CPU going offline and coming back: teardown writes it back.
fn cpu_offline_under_vcpu() -> TestResult {
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    check!(ncpu >= 2, "needs two CPUs, have {ncpu}");
    let (_vm, v) = counting_guest()?;
    let mut expect = 0u8;
    let mut step = |cpu: usize| -> TestResult {
        set_cpu(cpu);
        expect = expect.wrapping_add(1);
        expect_exit(&v, KVM_EXIT_IO)?;
        check_eq!(v.io_data()[0], expect);
        Ok(())
    };
    step(1)?;
    step(1)?;
    set_cpu(0);
    set_cpu_online(1, false)?;
    let r = (|| -> TestResult {
        step(0)?;
        step(0)?;
        Ok(())
    })();
    set_cpu_online(1, true)?;
    r?;
    step(1)?;
    step(0)?;
    step(1)
}
