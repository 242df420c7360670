//! Registers through kvm_run (KVM_CAP_SYNC_REGS) and the CR4 checks of
//! KVM_SET_SREGS before and after KVM_SET_CPUID2 (what the KVM selftests
//! sync_regs_test and set_sregs_test rely on).

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("client/sync_regs_out_and_in", sync_regs),
        ("client/sync_regs_invalid_fields", sync_regs_invalid),
        ("vcpu/set_sregs_cr4_before_and_after_cpuid", cr4_before_cpuid),
        ("guest/pio_exit_rip_moved_by_user_space", pio_rip_moved),
    ]
}

const VALID: u64 = (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS) as u64;
const CODE: u64 = 0x1000;

fn run_field(v: &Vcpu) -> *mut kvm_run {
    v.run
}

fn set_valid(v: &Vcpu, bits: u64) {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of_mut!((*run_field(v)).kvm_valid_regs).write_volatile(bits) }
}

fn set_dirty(v: &Vcpu, bits: u64) {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of_mut!((*run_field(v)).kvm_dirty_regs).write_volatile(bits) }
}

fn dirty(v: &Vcpu) -> u64 {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of!((*run_field(v)).kvm_dirty_regs).read_volatile() }
}

fn synced(v: &Vcpu) -> kvm_sync_regs {
    // SAFETY: the mapped kvm_run page; plain integers.
    unsafe { std::ptr::addr_of!((*run_field(v)).s.regs).read_volatile() }
}

fn set_synced_regs(v: &Vcpu, r: &kvm_regs) {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of_mut!((*run_field(v)).s.regs.regs).write_volatile(*r) }
}

fn sync_regs() -> TestResult {
    let kvm = open_kvm()?;
    let cap = ioctl_val(&kvm, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS as u64).unwrap_or(0) as u64;
    check_eq!(cap, VALID);
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // out 0x10,al; mov al,bl; out 0x11,al; hlt
    poke(mem, CODE as usize, &[0xe6, 0x10, 0x88, 0xd8, 0xe6, 0x11, 0xf4]);
    v.real_mode_at(CODE)?;
    set_valid(&v, VALID);
    expect_exit(&v, KVM_EXIT_IO)?;
    let s = synced(&v);
    let r = v.regs()?;
    check_eq!((s.regs.rip, s.regs.rbx), (r.rip, r.rbx));
    // At a PIO exit RIP is still at the OUT: the next KVM_RUN completes it.
    check_eq!(s.regs.rip, CODE);
    check_eq!(s.sregs.cr0, v.sregs()?.cr0);
    check_eq!(s.sregs.cs.selector, 0);
    // Change RBX through kvm_run: the guest outputs it; the dirty bit is consumed.
    let mut nr = s.regs;
    nr.rbx = 0x5a;
    set_synced_regs(&v, &nr);
    set_dirty(&v, KVM_SYNC_X86_REGS as u64);
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x11);
    check_eq!(v.io_data()[0], 0x5a);
    check_eq!(dirty(&v), 0);
    check_eq!(synced(&v).regs.rbx, 0x5a);
    // Without the dirty bit, a change in kvm_run is ignored.
    let mut nr = synced(&v).regs;
    nr.rbx = 0x77;
    set_synced_regs(&v, &nr);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rbx, 0x5a);
    Ok(())
}

fn sync_regs_invalid() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &[0xf4]);
    v.real_mode_at(CODE)?;
    set_valid(&v, 0x8000_0000);
    check_eq!(v.run().err(), Some(libc::EINVAL));
    set_valid(&v, 0x8000_0000 | VALID);
    check_eq!(v.run().err(), Some(libc::EINVAL));
    set_valid(&v, 0);
    set_dirty(&v, 0x8000_0000);
    check_eq!(v.run().err(), Some(libc::EINVAL));
    // Synced sregs that SET_SREGS would refuse make KVM_RUN fail the same way.
    set_dirty(&v, 0);
    set_valid(&v, KVM_SYNC_X86_SREGS as u64);
    expect_exit(&v, KVM_EXIT_HLT)?;
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of_mut!((*v.run).s.regs.sregs.cr0).write_volatile(1 << 40) };
    set_dirty(&v, KVM_SYNC_X86_SREGS as u64);
    check_eq!(v.run().err(), Some(libc::EINVAL));
    check!(v.sregs()?.cr0 >> 32 == 0, "CR0 took the refused value");
    Ok(())
}

/// Before KVM_SET_CPUID2, CR4 may enable what KVM supports (upstream checks only
/// KVM's own reserved bits then); afterwards only what the guest's CPUID has.
fn cr4_before_cpuid() -> TestResult {
    let kvm = open_kvm()?;
    let vm = Vm::new()?;
    let v = vm.vcpu(0)?;
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("GET_SUPPORTED_CPUID: {e}"))?;
    let leaf1 = c.entries().iter().find(|e| e.function == 1).copied().ok_or("no leaf 1")?;
    // VMXE is KVM's only if its supported CPUID offers VMX (upstream's
    // kvm_intel with nested=1 does; AMD and our kvm_intel, without nested
    // VMX, do not): before KVM_SET_CPUID2 that alone decides.
    let mut vmxe = v.sregs()?;
    vmxe.cr0 = 0;
    vmxe.cr4 |= 1 << 13;
    let vmx_supported = leaf1.ecx & (1 << 5) != 0;
    check_eq!(v.set_sregs(&vmxe).err(), if vmx_supported { None } else { Some(libc::EINVAL) });
    // (Under Bochs the host kernel runs without XSAVE, so the supported CPUID
    // has none: the rest needs it.)
    if leaf1.ecx & (1 << 26) == 0 {
        return Ok(());
    }
    let mut s = v.sregs()?;
    s.cr0 = 0;
    s.cr4 |= 1 << 18; // OSXSAVE
    check_eq!(v.set_sregs(&s).err(), None);
    check_eq!(v.sregs()?.cr4 & (1 << 18), 1 << 18);
    // A guest CPUID without XSAVE: OSXSAVE is now reserved.
    let mut noxs = Cpuid2::from_entries(&[kvm_cpuid_entry2 { function: 1, ecx: leaf1.ecx & !(1 << 26), edx: leaf1.edx, ..Default::default() }]);
    ioctl_ptr(&v.fd, KVM_SET_CPUID2, noxs.ptr()).map_err(|e| format!("SET_CPUID2: {e}"))?;
    let mut s = v.sregs()?;
    s.cr4 &= !(1 << 18);
    check_eq!(v.set_sregs(&s).err(), None);
    s.cr4 |= 1 << 18;
    check_eq!(v.set_sregs(&s).err(), Some(libc::EINVAL));
    Ok(())
}

/// At a PIO exit RIP is at the IN/OUT; KVM_RUN completes the instruction, but
/// not if user space moved RIP meanwhile (the IN's data is then dropped).
fn pio_rip_moved() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // 0x1000: in al,0x10; hlt     0x1010: mov al,0x33; out 0x11,al; hlt
    poke(mem, CODE as usize, &[0xe4, 0x10, 0xf4]);
    poke(mem, CODE as usize + 0x10, &[0xb0, 0x33, 0xe6, 0x11, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.regs()?.rip, CODE);
    v.io_data()[0] = 0x99;
    let mut r = v.regs()?;
    r.rip = CODE + 0x10;
    r.rax = 0;
    v.set_regs(&r)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!((v.io().port, v.io_data()[0]), (0x11, 0x33));
    check_eq!(v.regs()?.rip, CODE + 0x12);
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!((r.rip, r.rax & 0xff), (CODE + 0x15, 0x33));
    Ok(())
}
