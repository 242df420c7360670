//! #UD exits and the instruction emulator seen from a guest: kvm's
//! force_emulation_prefix parameter (`ud2; .ascii "kvm"` before an instruction
//! makes KVM emulate it), #UD given back without the parameter or the prefix,
//! and emulation failures (KVM_EXIT_INTERNAL_ERROR with the instruction bytes,
//! #UD at CPL 0; KVM_CAP_EXIT_ON_EMULATION_FAILURE), the other vendor's
//! hypercall instruction (KVM_X86_QUIRK_FIX_HYPERCALL_INSN).
//!
//! The guests run in real mode with an IVT whose #UD handler reports the IP
//! of the faulting instruction with `out 0x16, ax`.

use crate::guest::*;
use crate::guests::expect_mmio;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("emulation/fep_mmio_and_register_instructions", fep_emulates),
        ("emulation/fep_off_gives_ud", fep_off_gives_ud),
        ("emulation/fep_completed_instruction_clears_rf", fep_clears_rf),
        ("emulation/fep_cpuid", fep_cpuid),
        ("emulation/ud2_without_prefix_gives_ud", ud_without_prefix),
        ("emulation/failure_exit_with_insn_bytes_and_ud", failure_exit_and_ud),
        ("emulation/exit_on_emulation_failure_cap", exit_on_failure_cap),
        ("params/ignore_msrs_unknown_msr", ignore_msrs),
        ("emulation/foreign_hypercall_fixed_up", hypercall_fixed_up),
        ("emulation/foreign_hypercall_ud_without_quirk", hypercall_quirk_disabled),
    ]
}

const CODE: u64 = 0x1000;
const UD_HANDLER: u64 = 0x2000;
/// The port the #UD handler reports on.
const UD_PORT: u16 = 0x16;
/// ud2; .ascii "kvm"
const FEP: [u8; 5] = [0x0f, 0x0b, 0x6b, 0x76, 0x6d];

/// A kvm module parameter set for the test, restored when dropped.
struct KvmParam {
    path: String,
    old: String,
}

impl KvmParam {
    fn set(name: &str, v: &str) -> Result<KvmParam, String> {
        let path = format!("/sys/module/kvm/parameters/{name}");
        let old = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        std::fs::write(&path, v).map_err(|e| format!("writing {v} to {path}: {e}"))?;
        Ok(KvmParam { path, old: old.trim().to_string() })
    }
}

impl Drop for KvmParam {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.old);
    }
}

/// A real-mode vCPU at CODE with `code`, SS:SP = 0:0x8000 and a #UD handler
/// (`pop ax; out 0x16, ax; hlt`: the IP the #UD pushed).
fn real_mode_guest(code: &[u8]) -> Result<(Vm, Vcpu, *mut u8), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 6 * 4, &[(UD_HANDLER & 0xff) as u8, (UD_HANDLER >> 8) as u8, 0, 0]);
    poke(mem, UD_HANDLER as usize, &[0x58, 0xe7, UD_PORT as u8, 0xf4]);
    poke(mem, CODE as usize, code);
    v.real_mode_at(CODE)?;
    let mut r = v.regs()?;
    r.rsp = 0x8000;
    v.set_regs(&r)?;
    Ok((vm, v, mem))
}

/// The guest took #UD at `ip` (the handler's report).
fn expect_ud_at(v: &Vcpu, ip: u64) -> TestResult {
    expect_exit(v, KVM_EXIT_IO)?;
    let io = v.io();
    check!(!io.input && io.port == UD_PORT && io.size == 2, "exit on port {:#x} size {}, expected the #UD handler's", io.port, io.size);
    let d = v.io_data();
    check_eq!(u16::from_le_bytes([d[0], d[1]]) as u64, ip);
    Ok(())
}

fn fep_emulates() -> TestResult {
    let _p = KvmParam::set("force_emulation_prefix", "1")?;
    let mut code = vec![0xb8, 0x00, 0xd0, 0x8e, 0xd8]; // mov ax,0xd000; mov ds,ax
    code.extend_from_slice(&FEP);
    code.extend_from_slice(&[0xc7, 0x06, 0x10, 0x00, 0x34, 0x12]); // mov word [0x10],0x1234
    code.extend_from_slice(&FEP);
    code.extend_from_slice(&[0x8b, 0x1e, 0x20, 0x00]); // mov bx,[0x20]
    code.extend_from_slice(&FEP);
    code.extend_from_slice(&[0x01, 0xd1]); // add cx,dx
    code.extend_from_slice(&FEP);
    code.extend_from_slice(&[0x88, 0x1e, 0x00, 0x00]); // mov [0],bl: DS = 0xd000, MMIO again
    code.push(0xf4); // hlt
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    let mut r = v.regs()?;
    r.rcx = 0x1111;
    r.rdx = 0x2222;
    v.set_regs(&r)?;
    expect_mmio(&v, 0xd0010, 2, Some(&[0x34, 0x12]))?;
    expect_mmio(&v, 0xd0020, 2, None)?;
    v.set_mmio_data(&[0xef, 0xbe]);
    expect_mmio(&v, 0xd0000, 1, Some(&[0xef]))?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rbx & 0xffff, 0xbeef);
    check_eq!(r.rcx & 0xffff, 0x3333);
    check_eq!(r.rip, CODE + code.len() as u64);
    Ok(())
}

fn fep_off_gives_ud() -> TestResult {
    let _p = KvmParam::set("force_emulation_prefix", "0")?;
    let mut code = FEP.to_vec();
    code.extend_from_slice(&[0xb0, 0x01, 0xe6, 0x10, 0xf4]); // mov al,1; out 0x10,al; hlt
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    expect_ud_at(&v, CODE)
}

fn ud_without_prefix() -> TestResult {
    let _p = KvmParam::set("force_emulation_prefix", "1")?;
    // ud2 alone, then ud2 with a wrong signature ("kvx").
    let code = [0x0f, 0x0b, 0xf4, 0x0f, 0x0b, 0x6b, 0x76, 0x78, 0xf4];
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    expect_ud_at(&v, CODE)?;
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    let mut r = v.regs()?;
    r.rip = CODE + 3;
    v.set_regs(&r)?;
    expect_ud_at(&v, CODE + 3)
}

/// `mov ax,0xd000; mov ds,ax; fld dword [0x10]; hlt`: FLD from MMIO, an
/// instruction neither KVM's emulator executes.
const FLD_MMIO: [u8; 10] = [0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xd9, 0x06, 0x10, 0x00, 0xf4];
const FLD_IP: u64 = CODE + 5;

/// KVM_EXIT_INTERNAL_ERROR, suberror EMULATION, with the instruction bytes
/// (kvm_run's emulation_failure: flags at data[0], insn_size and insn_bytes in
/// data[1..3]).
fn expect_emulation_failure(v: &Vcpu, first: &[u8]) -> TestResult {
    expect_exit(v, KVM_EXIT_INTERNAL_ERROR)?;
    let w0 = v.exit_u64(0);
    let (suberror, ndata) = (w0 as u32, (w0 >> 32) as u32);
    check_eq!(suberror, KVM_INTERNAL_ERROR_EMULATION);
    let flags = v.exit_u64(1);
    check!(ndata >= 3 && flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES as u64 != 0, "no instruction bytes: ndata {ndata}, flags {flags:#x}");
    let mut bytes = v.exit_u64(2).to_le_bytes().to_vec();
    bytes.extend_from_slice(&v.exit_u64(3).to_le_bytes());
    let size = bytes[0] as usize;
    check!(size >= first.len() && size <= 15, "insn_size {size}");
    check_eq!(bytes[1..1 + first.len()].to_vec(), first.to_vec());
    Ok(())
}

fn failure_exit_and_ud() -> TestResult {
    let (_vm, v, _mem) = real_mode_guest(&FLD_MMIO)?;
    expect_emulation_failure(&v, &[0xd9, 0x06, 0x10, 0x00])?;
    // At CPL 0 the exit comes with #UD queued: the next run delivers it.
    check_eq!(v.regs()?.rip, FLD_IP);
    expect_ud_at(&v, FLD_IP)
}

fn exit_on_failure_cap() -> TestResult {
    let (vm, v, _mem) = real_mode_guest(&FLD_MMIO)?;
    check_eq!(ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE as u64), Ok(1));
    let mut c = kvm_enable_cap { cap: KVM_CAP_EXIT_ON_EMULATION_FAILURE, ..Default::default() };
    c.args[0] = 2;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Err(libc::EINVAL));
    c.args[0] = 1;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Ok(0));
    expect_emulation_failure(&v, &[0xd9, 0x06, 0x10, 0x00])?;
    // No #UD this time: user space skips the instruction and the guest goes on.
    let mut r = v.regs()?;
    check_eq!(r.rip, FLD_IP);
    r.rip += 4;
    v.set_regs(&r)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rip, CODE + FLD_MMIO.len() as u64);
    Ok(())
}

/// kvm.ignore_msrs=Y: an MSR KVM does not know reads as 0 and takes writes
/// without #GP (the guest has no IDT handler for #GP: it would not get to the
/// OUT).
fn ignore_msrs() -> TestResult {
    let _p = KvmParam::set("ignore_msrs", "Y")?;
    let _r = KvmParam::set("report_ignored_msrs", "N")?;
    let code = [
        0x66, 0xb9, 0xee, 0xdb, 0xea, 0x0d, // mov ecx, 0x0deadbee
        0x0f, 0x30, // wrmsr
        0x0f, 0x32, // rdmsr
        0xe6, 0x10, // out 0x10, al
        0xf4,
    ];
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    let mut r = v.regs()?;
    r.rax = 0x1234_5678;
    r.rdx = 0x9abc_def0;
    v.set_regs(&r)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x10);
    let r = v.regs()?;
    check_eq!((r.rax, r.rdx), (0, 0));
    Ok(())
}

/// `mov ax, 11 (KVM_HC_SCHED_YIELD)`, the other vendor's hypercall, `hlt`;
/// returns the code, the offset of the hypercall and the native instruction.
fn foreign_hypercall(vm: &Vm) -> Result<(Vec<u8>, usize, [u8; 3], bool), String> {
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("GET_SUPPORTED_CPUID: errno {e}"))?;
    let intel = find_cpuid(&c.entries(), 0, 0).map_or(false, |e| e.ebx == 0x756e_6547);
    let (native, foreign) = if intel { ([0x0f, 0x01, 0xc1], [0x0f, 0x01, 0xd9]) } else { ([0x0f, 0x01, 0xd9], [0x0f, 0x01, 0xc1]) };
    let mut code = vec![0xb8, 0x0b, 0x00]; // mov ax, 11
    code.extend_from_slice(&foreign);
    code.push(0xf4);
    Ok((code, 3, native, intel))
}

fn hypercall_fixed_up() -> TestResult {
    let (vm, _, _) = vm_with_ram(0x1000)?;
    let (code, at, native, intel) = foreign_hypercall(&vm)?;
    drop(vm);
    let (vm, v, mem) = real_mode_guest(&code)?;
    let quirks = ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2 as u64).map_err(|e| format!("errno {e}"))?;
    check!(quirks & KVM_X86_QUIRK_FIX_HYPERCALL_INSN as i64 != 0, "KVM_CAP_DISABLE_QUIRKS2 is {quirks:#x}");
    let ip = CODE + at as u64;
    if intel {
        // VMMCALL is a protected-mode instruction: #UD in real mode, as is.
        expect_ud_at(&v, ip)?;
        check_eq!(peek(mem, ip as usize, 3), vec![0x0f, 0x01, 0xd9]);
        return Ok(());
    }
    // KVM writes VMCALL's place over with VMMCALL, which the guest executes.
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(peek(mem, ip as usize, 3), native.to_vec());
    let r = v.regs()?;
    check_eq!(r.rax, 0);
    check_eq!(r.rip, CODE + code.len() as u64);
    Ok(())
}

fn hypercall_quirk_disabled() -> TestResult {
    let (vm, _, _) = vm_with_ram(0x1000)?;
    let (code, at, _native, _intel) = foreign_hypercall(&vm)?;
    drop(vm);
    let (vm, v, mem) = real_mode_guest(&code)?;
    let mut c = kvm_enable_cap { cap: KVM_CAP_DISABLE_QUIRKS2, ..Default::default() };
    c.args[0] = 1 << 31;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Err(libc::EINVAL));
    c.args[0] = KVM_X86_QUIRK_FIX_HYPERCALL_INSN as u64;
    check_eq!(ioctl_ptr(&vm.fd, KVM_ENABLE_CAP, &mut c), Ok(0));
    let ip = CODE + at as u64;
    let before = peek(mem, ip as usize, 3);
    expect_ud_at(&v, ip)?;
    check_eq!(peek(mem, ip as usize, 3), before);
    Ok(())
}

/// RFLAGS.RF is clear once an emulated instruction completes (seen at the
/// MMIO exit of a forced-emulation MOV that starts with RF set).
fn fep_clears_rf() -> TestResult {
    let _p = KvmParam::set("force_emulation_prefix", "1")?;
    let mut code = FEP.to_vec();
    code.extend_from_slice(&[0x89, 0x06, 0x10, 0x00, 0xf4]); // mov [0x10],ax; hlt
    let (_vm, v, _mem) = real_mode_guest(&code)?;
    let mut sr = v.sregs()?;
    sr.ds.selector = 0xd000;
    sr.ds.base = 0xd0000;
    v.set_sregs(&sr).map_err(|e| format!("SET_SREGS: errno {e}"))?;
    let mut r = v.regs()?;
    r.rax = 0x5a5a;
    r.rflags = 2 | 1 << 16;
    v.set_regs(&r)?;
    expect_mmio(&v, 0xd0010, 2, Some(&[0x5a, 0x5a]))?;
    let r = v.regs()?;
    check_eq!(r.rflags & (1 << 16), 0);
    check_eq!(r.rip, CODE + FEP.len() as u64 + 4);
    Ok(())
}

/// CPUID through forced emulation answers as CPUID itself (leaf 0: the
/// maximum leaf and the vendor string of the vCPU's CPUID).
fn fep_cpuid() -> TestResult {
    let _p = KvmParam::set("force_emulation_prefix", "1")?;
    // xor eax,eax; cpuid; out 0x10,al; xor eax,eax; FEP cpuid; hlt
    let mut code = vec![0x66, 0x31, 0xc0, 0x0f, 0xa2, 0xe6, 0x10, 0x66, 0x31, 0xc0];
    code.extend_from_slice(&FEP);
    code.extend_from_slice(&[0x0f, 0xa2, 0xf4]);
    let (vm, v, _mem) = real_mode_guest(&code)?;
    v.set_supported_cpuid(&vm.kvm)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let a = v.regs()?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let b = v.regs()?;
    check_eq!((b.rax, b.rbx, b.rcx, b.rdx), (a.rax, a.rbx, a.rcx, a.rdx));
    check!(a.rbx != 0, "CPUID leaf 0 gave no vendor");
    check_eq!(b.rip, CODE + code.len() as u64);
    Ok(())
}
