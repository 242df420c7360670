//! System Management Mode: KVM_CAP_X86_SMM, KVM_SMI, SMIs from the local
//! APIC (x2APIC self-IPI), the SMRAM state-save area (AMD64 layout for a
//! guest with long mode) at SMBASE + 0xFE00, RSM back to the interrupted
//! code, the smi fields of KVM_GET/SET_VCPU_EVENTS and kvm_run's
//! KVM_RUN_X86_SMM flag, save/restore of a vCPU inside SMM, INIT latched
//! while in SMM, and RSM outside SMM or with a bad state-save area.
//!
//! As in the selftest smm_test, SMRAM is a memory slot in address space 1
//! (slot number (1 << 16) | n), which only a vCPU in SMM sees.

use crate::guest::*;
use crate::harness::TestFn;
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("smm/caps_and_smbase_msr", caps_and_smbase_msr),
        ("smm/smi_ioctl_enter_and_rsm", smi_ioctl_enter_and_rsm),
        ("smm/self_ipi_smi", self_ipi_smi),
        ("smm/save_restore_inside_smm", save_restore_inside_smm),
        ("smm/smram_32bit_layout_without_lm", smram_32bit_layout),
        ("smm/events_smi_fields", events_smi_fields),
        ("smm/init_latched_until_rsm", init_latched_until_rsm),
        ("smm/rsm_outside_smm_is_ud", rsm_outside_smm_is_ud),
        ("smm/rsm_bad_state_shuts_down", rsm_bad_state_shuts_down),
        ("smm/smi_without_smram_is_eio", smi_without_smram_is_eio),
    ]
}

type TestResult = crate::harness::TestResult;

const MSR_IA32_SMBASE: u32 = 0x9e;
const MSR_SMI_COUNT: u32 = 0x34;
const SMRAM_GPA: u64 = 0x10_0000;
const SMRAM_SIZE: usize = 0x1_0000;
const SMRAM_SLOT: u32 = (1 << 16) | 1;
const CODE: u64 = 0x1_0000;
const RAM: usize = 0x10_0000;

/// The SMI handler at SMBASE + 0x8000 (real-mode-like SMM state): reports
/// on port 0x12, then RSM.
const HANDLER: [u8; 6] = [
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x12, // out 0x12, al
    0x0f, 0xaa, // rsm
];

/// 64-bit guest: distinctive RBX and R15, out 0x10 (the host sends the SMI
/// there), out 0x11, hlt.
const MAIN: [u8; 25] = [
    0x48, 0xbb, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rbx, 0x1122334455667788
    0x49, 0xbf, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, // mov r15, 0x0123456789abcdef
    0xe6, 0x10, // out 0x10, al
    0xe6, 0x11, // out 0x11, al
    0xf4,
];
const MAIN_OUT11: u64 = CODE + 22;
const RBX: u64 = 0x1122_3344_5566_7788;
const R15: u64 = 0x0123_4567_89ab_cdef;

fn e2s(what: &str, e: Errno) -> String {
    format!("{what}: errno {e} ({})", std::io::Error::from_raw_os_error(e))
}

fn smm_cap(vm: &Vm) -> i64 {
    ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM as u64).unwrap_or(-1)
}

fn events(v: &Vcpu) -> Result<kvm_vcpu_events, String> {
    let mut e = kvm_vcpu_events::default();
    ioctl_ptr(&v.fd, KVM_GET_VCPU_EVENTS, &mut e).map_err(|e| e2s("GET_VCPU_EVENTS", e))?;
    Ok(e)
}

fn set_events(v: &Vcpu, e: &kvm_vcpu_events) -> Result<i64, Errno> {
    let mut e = *e;
    ioctl_ptr(&v.fd, KVM_SET_VCPU_EVENTS, &mut e)
}

fn run_flags(v: &Vcpu) -> u16 {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of!((*v.run).flags).read_volatile() }
}

fn mp_state(v: &Vcpu) -> Result<u32, String> {
    let mut m = kvm_mp_state::default();
    ioctl_ptr(&v.fd, KVM_GET_MP_STATE, &mut m).map_err(|e| e2s("GET_MP_STATE", e))?;
    Ok(m.mp_state)
}

fn expect_io(v: &Vcpu, port: u16) -> Result<(), String> {
    expect_exit(v, KVM_EXIT_IO)?;
    let got = v.io().port;
    check!(got == port, "out to port {got:#x}, expected {port:#x}; rip {:#x}", v.regs()?.rip);
    Ok(())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

/// A VM with RAM at 0 (the 64-bit guest's page tables and code), SMRAM in
/// address space 1 with the handler, and one vCPU in long mode at MAIN with
/// SMBASE at SMRAM. `irqchip`: with the in-kernel irqchip.
struct Setup {
    vm: Vm,
    v: Vcpu,
    mem: *mut u8,
    smram: *mut u8,
}

fn setup(code: &[u8], irqchip: bool) -> Result<Setup, String> {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, RAM, 0)?;
    let smram = vm.add_mem(SMRAM_SLOT, SMRAM_GPA, SMRAM_SIZE, 0)?;
    poke(smram, 0x8000, &HANDLER);
    poke(mem, CODE as usize, code);
    if irqchip {
        ioctl_val(&vm.fd, KVM_CREATE_IRQCHIP, 0).map_err(|e| e2s("KVM_CREATE_IRQCHIP", e))?;
    }
    let v = vm.vcpu(0)?;
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    check_eq!(v.set_msr(MSR_IA32_SMBASE, SMRAM_GPA), Ok(1));
    Ok(Setup { vm, v, mem, smram })
}

/// Checks the vCPU is at the handler's `out 0x12` in SMM, with the state
/// upstream's enter_smm sets, and the state-save area holds MAIN's state
/// with `saved_rip`. `nmi_before`: whether NMIs were blocked when the SMI
/// came (smm_inside_nmi; always 0 on SVM, while Bochs' VMX can report a
/// blocking left over from an earlier guest, on upstream's modules too).
fn check_in_smm(s: &Setup, saved_rip: u64, nmi_before: u8) -> TestResult {
    let v = &s.v;
    check!(run_flags(v) & KVM_RUN_X86_SMM as u16 != 0, "kvm_run flags {:#x}", run_flags(v));
    let e = events(v)?;
    check!(e.flags & KVM_VCPUEVENT_VALID_SMM != 0, "events flags {:#x}", e.flags);
    check_eq!((e.smi.smm, e.smi.pending, e.smi.smm_inside_nmi), (1, 0, nmi_before));
    // NMIs are blocked in SMM.
    check_eq!(e.nmi.masked, 1);
    let sr = v.sregs()?;
    check_eq!((sr.cs.base, sr.cs.selector, sr.cs.limit), (SMRAM_GPA, ((SMRAM_GPA >> 4) & 0xffff) as u16, 0xffff_ffff));
    check_eq!((sr.ds.base, sr.ds.selector, sr.ss.base), (0, 0, 0));
    check_eq!(sr.cr0 & 0x8000_0001, 0);
    check_eq!((sr.cr4, sr.efer, sr.idt.limit), (0, 0, 0));
    let r = v.regs()?;
    check_eq!(r.rflags & 0x200, 0);
    check_eq!((r.rbx, r.r15), (RBX, R15));
    // The AMD64 state-save area (upstream's kvm_smram_state_64).
    let area = peek(s.smram, 0xfe00, 512);
    check_eq!(u32_at(&area, 0xfc), 0x0002_0064);
    check_eq!(u32_at(&area, 0x100) as u64, SMRAM_GPA);
    check_eq!(u64_at(&area, 0x178), saved_rip);
    check_eq!(u64_at(&area, 0x180), R15);
    check_eq!(u64_at(&area, 0x180 + 8 * (15 - 3)), RBX);
    check_eq!(u64_at(&area, 0x158) & 0x8000_0001, 0x8000_0001);
    check_eq!(u64_at(&area, 0x150), 0x2000);
    check_eq!(u64_at(&area, 0xd0) & 0x500, 0x500);
    check_eq!(u16::from_le_bytes([area[0x10], area[0x11]]), 8);
    Ok(())
}

/// After RSM: back in MAIN at `out 0x11` with the 64-bit state; NMIs blocked
/// again only if they were when the SMI came.
fn check_back(v: &Vcpu, nmi_before: u8) -> TestResult {
    check_eq!(run_flags(v) & KVM_RUN_X86_SMM as u16, 0);
    let e = events(v)?;
    check_eq!((e.smi.smm, e.smi.pending), (0, 0));
    check_eq!(e.nmi.masked, nmi_before);
    let r = v.regs()?;
    check_eq!((r.rbx, r.r15), (RBX, R15));
    let sr = v.sregs()?;
    check_eq!((sr.efer & 0x500, sr.cs.l, sr.cs.selector, sr.cr3, sr.cr4 & 0x20), (0x500, 1, 8, 0x2000, 0x20));
    check_eq!(sr.cr0 & 0x8000_0001, 0x8000_0001);
    check_eq!(v.get_msr(MSR_IA32_SMBASE)?, SMRAM_GPA);
    Ok(())
}

fn caps_and_smbase_msr() -> TestResult {
    let vm = Vm::new()?;
    check_eq!(smm_cap(&vm), 1);
    check_eq!(ioctl_val(&vm.kvm, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM as u64), Ok(1));
    check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE as u64), Ok(2));
    // IA32_SMBASE is saved and restored by VMMs: in the index list.
    let mut l = MsrList::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_MSR_INDEX_LIST, l.ptr()).map_err(|e| e2s("GET_MSR_INDEX_LIST", e))?;
    check!(l.indices().contains(&MSR_IA32_SMBASE), "SMBASE not in {:x?}", l.indices());
    check!(l.indices().contains(&MSR_SMI_COUNT), "SMI_COUNT not in {:x?}", l.indices());
    let v = vm.vcpu(0)?;
    check_eq!(v.get_msr(MSR_IA32_SMBASE)?, 0x30000);
    check_eq!(v.set_msr(MSR_IA32_SMBASE, 0xa0000), Ok(1));
    check_eq!(v.get_msr(MSR_IA32_SMBASE)?, 0xa0000);
    check_eq!(v.get_msr(MSR_SMI_COUNT)?, 0);
    check_eq!(v.set_msr(MSR_SMI_COUNT, 5), Ok(1));
    check_eq!(v.get_msr(MSR_SMI_COUNT)?, 5);
    check_eq!(v.set_msr(MSR_SMI_COUNT, 0), Ok(1));
    // KVM_SMI is accepted at any time; the SMI is pending until an entry.
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    check_eq!(events(&v)?.smi.pending, 1);
    check_eq!(events(&v)?.smi.smm, 0);
    Ok(())
}

fn smi_ioctl_enter_and_rsm() -> TestResult {
    let s = setup(&MAIN, false)?;
    let v = &s.v;
    expect_io(v, 0x10)?;
    let nmi = events(v)?.nmi.masked;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(v, 0x12)?;
    check_in_smm(&s, MAIN_OUT11, nmi)?;
    check_eq!(v.get_msr(MSR_SMI_COUNT)?, 1);
    expect_io(v, 0x11)?;
    check_back(v, nmi)?;
    // A second SMI works the same way (SMBASE read back from SMRAM).
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(v, 0x12)?;
    check_in_smm(&s, MAIN_OUT11 + 2, nmi)?;
    check_eq!(v.get_msr(MSR_SMI_COUNT)?, 2);
    expect_exit(v, KVM_EXIT_HLT)?;
    let _ = s.mem;
    Ok(())
}

fn self_ipi_smi() -> TestResult {
    #[rustfmt::skip]
    let code = [
        0xe6, 0x10,                   // out 0x10, al
        0xb9, 0x1b, 0x00, 0x00, 0x00, // mov ecx, IA32_APIC_BASE
        0x0f, 0x32,                   // rdmsr
        0x0d, 0x00, 0x0c, 0x00, 0x00, // or eax, EN | EXTD (x2APIC)
        0x0f, 0x30,                   // wrmsr
        0x48, 0xbb, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rbx, RBX
        0x49, 0xbf, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, // mov r15, R15
        0xb9, 0x30, 0x08, 0x00, 0x00, // mov ecx, x2APIC ICR
        0xb8, 0x00, 0x42, 0x04, 0x00, // mov eax, SELF | ASSERT | SMI
        0x31, 0xd2,                   // xor edx, edx
        0x0f, 0x30,                   // wrmsr
        0xe6, 0x11,                   // out 0x11, al
        0xf4,
    ];
    let s = setup(&code, true)?;
    let v = &s.v;
    expect_io(v, 0x10)?;
    let nmi = events(v)?.nmi.masked;
    // The SMI is taken right after the WRMSR that sent it.
    expect_io(v, 0x12)?;
    check_in_smm(&s, CODE + 50, nmi)?;
    expect_io(v, 0x11)?;
    check_back(v, nmi)?;
    Ok(())
}

/// Saves the vCPU inside SMM (regs, sregs, events, SMBASE), then restores it
/// into a new vCPU of a new VM over the same memory, as smm_test does; RSM
/// then returns to MAIN.
fn save_restore_inside_smm() -> TestResult {
    let s = setup(&MAIN, false)?;
    let v = &s.v;
    expect_io(v, 0x10)?;
    let nmi = events(v)?.nmi.masked;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(v, 0x12)?;
    check_in_smm(&s, MAIN_OUT11, nmi)?;
    // Complete the OUT first, as the selftests' vcpu_save_state does
    // (upstream leaves RIP on an OUT until the next KVM_RUN completes it).
    v.set_immediate_exit(1);
    check_eq!(v.run(), Err(libc::EINTR));
    v.set_immediate_exit(0);
    let (regs, sregs, ev, smbase) = (v.regs()?, v.sregs()?, events(v)?, v.get_msr(MSR_IA32_SMBASE)?);
    // The new VM maps the same memory.
    let vm2 = Vm::new()?;
    vm2.set_region(0, 0, RAM as u64, s.mem as u64, 0).map_err(|e| e2s("SET_USER_MEMORY_REGION", e))?;
    vm2.set_region(SMRAM_SLOT, SMRAM_GPA, SMRAM_SIZE as u64, s.smram as u64, 0)
        .map_err(|e| e2s("SET_USER_MEMORY_REGION as 1", e))?;
    let v2 = vm2.vcpu(0)?;
    v2.set_supported_cpuid(&vm2.kvm)?;
    check_eq!(v2.set_sregs(&sregs), Ok(0));
    check_eq!(v2.set_msr(MSR_IA32_SMBASE, smbase), Ok(1));
    check_eq!(set_events(&v2, &ev), Ok(0));
    v2.set_regs(&regs)?;
    let e2 = events(&v2)?;
    check_eq!((e2.smi.smm, e2.nmi.masked), (1, 1));
    drop(s.v);
    // The restored vCPU continues in SMM: the handler's RSM returns to MAIN.
    expect_io(&v2, 0x11)?;
    check_back(&v2, nmi)?;
    expect_exit(&v2, KVM_EXIT_HLT)?;
    drop(s.vm);
    Ok(())
}

/// A vCPU whose CPUID lacks long mode (none set) gets the 32-bit layout.
fn smram_32bit_layout() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, RAM, 0)?;
    let smram = vm.add_mem(SMRAM_SLOT, SMRAM_GPA, SMRAM_SIZE, 0)?;
    poke(smram, 0x8000, &HANDLER);
    #[rustfmt::skip]
    poke(mem, CODE as usize, &[
        0xbb, 0x44, 0x33, 0x22, 0x11, // mov ebx, 0x11223344
        0xbf, 0x88, 0x77, 0x66, 0x55, // mov edi, 0x55667788
        0xe6, 0x10, 0xe6, 0x11, 0xf4, // out 0x10; out 0x11; hlt
    ]);
    let v = vm.vcpu(0)?;
    v.protected_mode_at(CODE)?;
    check_eq!(v.set_msr(MSR_IA32_SMBASE, SMRAM_GPA), Ok(1));
    expect_io(&v, 0x10)?;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(&v, 0x12)?;
    check!(run_flags(&v) & KVM_RUN_X86_SMM as u16 != 0, "not in SMM");
    // Upstream's kvm_smram_state_32 offsets (minus 0xFE00).
    let area = peek(smram, 0xfe00, 512);
    check_eq!(u32_at(&area, 0xfc), 0x0002_0000);
    check_eq!(u32_at(&area, 0xf8) as u64, SMRAM_GPA);
    check_eq!(u32_at(&area, 0x1d0 + 4 * 3), 0x1122_3344);
    check_eq!(u32_at(&area, 0x1d0 + 4 * 7), 0x5566_7788);
    check_eq!(u32_at(&area, 0x1f0) as u64, CODE + 12);
    check_eq!(u32_at(&area, 0x1f4) & 0x200, 0);
    check_eq!(u32_at(&area, 0x1fc) & 1, 1);
    check_eq!(u32_at(&area, 0x1ac), 8); // CS selector
    check_eq!(u32_at(&area, 0x1b0), 0x10); // SS selector
    check_eq!(u32_at(&area, 0x190 + 4), 0xffff_ffff); // CS limit
    expect_io(&v, 0x11)?;
    let (r, sr) = (v.regs()?, v.sregs()?);
    check_eq!((r.rbx, r.rdi), (0x1122_3344, 0x5566_7788));
    check_eq!((sr.cs.selector, sr.cs.db, sr.cr0 & 1, sr.ss.selector), (8, 1, 1, 0x10));
    check_eq!(run_flags(&v) & KVM_RUN_X86_SMM as u16, 0);
    expect_exit(&v, KVM_EXIT_HLT)?;
    Ok(())
}

fn events_smi_fields() -> TestResult {
    let mut vm = Vm::new()?;
    vm.add_mem(0, 0, RAM, 0)?;
    ioctl_val(&vm.fd, KVM_CREATE_IRQCHIP, 0).map_err(|e| e2s("KVM_CREATE_IRQCHIP", e))?;
    let v = vm.vcpu(0)?;
    let e = events(&v)?;
    check!(e.flags & KVM_VCPUEVENT_VALID_SMM != 0, "flags {:#x}", e.flags);
    check_eq!((e.smi.smm, e.smi.pending, e.smi.smm_inside_nmi, e.smi.latched_init), (0, 0, 0, 0));
    // Into SMM with an NMI-blocked SMM (no SMRAM is touched by this).
    let mut s = e;
    s.flags = KVM_VCPUEVENT_VALID_SMM;
    s.smi.smm = 1;
    s.smi.smm_inside_nmi = 1;
    s.smi.pending = 1;
    check_eq!(set_events(&v, &s), Ok(0));
    let g = events(&v)?;
    check_eq!((g.smi.smm, g.smi.pending, g.smi.smm_inside_nmi), (1, 1, 1));
    // Out again; the pending SMI is cleared as user space says.
    s.smi = Default::default();
    check_eq!(set_events(&v, &s), Ok(0));
    let g = events(&v)?;
    check_eq!((g.smi.smm, g.smi.pending, g.smi.smm_inside_nmi), (0, 0, 0));
    // Without VALID_SMM the smi fields are ignored.
    s.flags = 0;
    s.smi.smm = 1;
    check_eq!(set_events(&v, &s), Ok(0));
    check_eq!(events(&v)?.smi.smm, 0);
    // An SMI (or SMM) with INIT received is refused.
    let mut m = kvm_mp_state { mp_state: KVM_MP_STATE_INIT_RECEIVED };
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut m), Ok(0));
    s.flags = KVM_VCPUEVENT_VALID_SMM;
    s.smi = Default::default();
    s.smi.pending = 1;
    check_eq!(set_events(&v, &s), Err(libc::EINVAL));
    s.smi.pending = 0;
    s.smi.smm = 1;
    check_eq!(set_events(&v, &s), Err(libc::EINVAL));
    check_eq!(events(&v)?.smi.smm, 0);
    // And INIT_RECEIVED with an SMI pending.
    let mut m = kvm_mp_state { mp_state: KVM_MP_STATE_RUNNABLE };
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut m), Ok(0));
    s.smi = Default::default();
    s.smi.pending = 1;
    check_eq!(set_events(&v, &s), Ok(0));
    let mut m = kvm_mp_state { mp_state: KVM_MP_STATE_INIT_RECEIVED };
    check_eq!(ioctl_ptr(&v.fd, KVM_SET_MP_STATE, &mut m), Err(libc::EINVAL));
    Ok(())
}

/// An INIT that arrives in SMM waits (latched_init) and is taken after RSM:
/// the BSP restarts at the reset vector.
fn init_latched_until_rsm() -> TestResult {
    let mut s = setup(&MAIN, true)?;
    // The reset vector 0xfffffff0: out 0x13, then hlt.
    let top = s.vm.add_mem(2, 0xffff_f000, 0x1000, 0)?;
    poke(top, 0xff0, &[0xe6, 0x13, 0xf4]);
    let v = &s.v;
    expect_io(v, 0x10)?;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(v, 0x12)?;
    let mut e = events(v)?;
    check_eq!(e.smi.smm, 1);
    e.flags = KVM_VCPUEVENT_VALID_SMM;
    e.smi.latched_init = 1;
    check_eq!(set_events(v, &e), Ok(0));
    check_eq!(events(v)?.smi.latched_init, 1);
    // Still in SMM: the INIT is not accepted.
    check_eq!(mp_state(v)?, KVM_MP_STATE_RUNNABLE);
    check_eq!(events(v)?.smi.latched_init, 1);
    check_eq!(v.regs()?.rbx, RBX);
    // RSM, then the INIT resets the vCPU before it executes MAIN again.
    expect_io(v, 0x13)?;
    let sr = v.sregs()?;
    check_eq!((sr.cs.base, sr.cs.selector, sr.cr0 & 1, sr.efer), (0xffff_0000, 0xf000, 0, 0));
    check_eq!(events(v)?.smi.latched_init, 0);
    check_eq!(events(v)?.smi.smm, 0);
    // SMBASE survives INIT.
    check_eq!(v.get_msr(MSR_IA32_SMBASE)?, SMRAM_GPA);
    // The SMI count does not.
    check_eq!(v.get_msr(MSR_SMI_COUNT)?, 0);
    Ok(())
}

fn rsm_outside_smm_is_ud() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // Protected mode with an empty IDT: the #UD cannot be delivered, so the
    // guest shuts down (triple fault).
    poke(mem, 0x1000, &[0x0f, 0xaa, 0xe6, 0x10, 0xf4]);
    v.protected_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    Ok(())
}

fn rsm_bad_state_shuts_down() -> TestResult {
    let s = setup(&MAIN, false)?;
    let v = &s.v;
    expect_io(v, 0x10)?;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    expect_io(v, 0x12)?;
    // CR0 in the state-save area: PG without PE cannot be loaded.
    poke(s.smram, 0xfe00 + 0x158, &0x8000_0000u64.to_le_bytes());
    expect_exit(v, KVM_EXIT_SHUTDOWN)?;
    Ok(())
}

/// No memory at SMBASE in address space 1: the state cannot be saved, and
/// KVM_RUN fails with EIO (upstream also marks the VM dead).
fn smi_without_smram_is_eio() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xe6, 0x10, 0xf4]);
    v.real_mode_at(0x1000)?;
    check_eq!(ioctl_val(&v.fd, KVM_SMI, 0), Ok(0));
    check_eq!(v.run(), Err(libc::EIO));
    Ok(())
}
