//! Running guest code: real, protected and long mode; PIO, string I/O, MMIO of
//! every size, CPUID and MSRs, triple fault, read-only slots, dirty logging.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::kvm::*;
use crate::{check, check_eq};
use kvm_uapi::ioctl::*;
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("guest/real_mode_pio_out_in_hlt", real_mode_pio),
        ("guest/pio_sizes", pio_sizes),
        ("guest/string_io_rep_outsb_insb", string_io),
        ("guest/real_mode_mmio_write_read", real_mode_mmio),
        ("guest/long_mode_mmio_every_size", long_mode_mmio),
        ("guest/protected_mode_mmio_alu", protected_mode_mmio_alu),
        ("guest/cpuid_from_table", cpuid_in_guest),
        ("guest/msr_write_read", msr_in_guest),
        ("guest/unknown_msr_gp_triple_fault", unknown_msr_shutdown),
        ("guest/ud2_without_idt_triple_fault", triple_fault),
        ("guest/readonly_slot", readonly_slot),
        ("guest/dirty_log", dirty_log),
        ("guest/fail_entry_invalid_cs", fail_entry),
        ("guest/hypercall_returns_enosys", hypercall),
    ]
}

const CODE: u64 = 0x1000;

fn real_mode_pio() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // mov al,0x42; out 0x10,al; mov dx,0x3f8; in al,dx; hlt
    poke(mem, CODE as usize, &[0xb0, 0x42, 0xe6, 0x10, 0xba, 0xf8, 0x03, 0xec, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let io = v.io();
    check!(!io.input && io.size == 1 && io.port == 0x10 && io.count == 1, "out: in={} size={} port={:#x}", io.input, io.size, io.port);
    check_eq!(v.io_data()[0], 0x42);
    expect_exit(&v, KVM_EXIT_IO)?;
    let io = v.io();
    check!(io.input && io.size == 1 && io.port == 0x3f8, "in: port {:#x}", io.port);
    v.io_data()[0] = 0x77;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rax & 0xff, 0x77);
    check_eq!(r.rip, CODE + 9);
    Ok(())
}

fn pio_sizes() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // mov ax,0x1234; out 0x20,ax; mov eax,0x12345678; out 0x24,eax; mov dx,0x28; in eax,dx; hlt
    poke(mem, CODE as usize, &[0xb8, 0x34, 0x12, 0xe7, 0x20, 0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xe7, 0x24, 0xba, 0x28, 0x00, 0x66, 0xed, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check!(v.io().size == 2 && v.io().port == 0x20);
    check_eq!(v.io_data().to_vec(), vec![0x34, 0x12]);
    expect_exit(&v, KVM_EXIT_IO)?;
    check!(v.io().size == 4 && v.io().port == 0x24);
    check_eq!(v.io_data().to_vec(), vec![0x78, 0x56, 0x34, 0x12]);
    expect_exit(&v, KVM_EXIT_IO)?;
    check!(v.io().input && v.io().size == 4 && v.io().port == 0x28);
    v.io_data().copy_from_slice(&[0xef, 0xbe, 0xad, 0xde]);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rax & 0xffff_ffff, 0xdead_beef);
    Ok(())
}

fn string_io() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x2000, b"ABCD");
    // mov si,0x2000; mov cx,4; mov dx,0x80; rep outsb; mov di,0x3000; mov cx,3; rep insb; hlt
    poke(mem, CODE as usize, &[0xbe, 0x00, 0x20, 0xb9, 0x04, 0x00, 0xba, 0x80, 0x00, 0xf3, 0x6e, 0xbf, 0x00, 0x30, 0xb9, 0x03, 0x00, 0xf3, 0x6c, 0xf4]);
    v.real_mode_at(CODE)?;
    let mut out = vec![];
    while out.len() < 4 {
        expect_exit(&v, KVM_EXIT_IO)?;
        let io = v.io();
        check!(!io.input && io.port == 0x80 && io.size == 1 && io.count >= 1);
        out.extend_from_slice(v.io_data());
    }
    check_eq!(out, b"ABCD".to_vec());
    let mut fed = 0;
    while fed < 3 {
        expect_exit(&v, KVM_EXIT_IO)?;
        let io = v.io();
        check!(io.input && io.port == 0x80 && io.count >= 1);
        let n = io.count as usize;
        v.io_data().copy_from_slice(&b"xyz"[fed..fed + n]);
        fed += n;
    }
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(peek(mem, 0x3000, 3), b"xyz".to_vec());
    let r = v.regs()?;
    check_eq!((r.rcx & 0xffff, r.rsi & 0xffff, r.rdi & 0xffff), (0, 0x2004, 0x3003));
    Ok(())
}

fn expect_mmio(v: &Vcpu, addr: u64, len: u32, write: Option<&[u8]>) -> TestResult {
    expect_exit(v, KVM_EXIT_MMIO)?;
    let m = v.mmio();
    check!(m.addr == addr && m.len == len, "mmio at {:#x} len {}, expected {addr:#x} len {len}", m.addr, m.len);
    match write {
        Some(d) => {
            check!(m.is_write, "expected a write");
            check_eq!(m.data[..len as usize].to_vec(), d.to_vec());
        }
        None => check!(!m.is_write, "expected a read"),
    }
    Ok(())
}

fn real_mode_mmio() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // mov ax,0xd000; mov ds,ax; mov word [0x10],0x1234; mov bx,[0x20]; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xc7, 0x06, 0x10, 0x00, 0x34, 0x12, 0x8b, 0x1e, 0x20, 0x00, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_mmio(&v, 0xd0010, 2, Some(&[0x34, 0x12]))?;
    expect_mmio(&v, 0xd0020, 2, None)?;
    v.set_mmio_data(&[0xef, 0xbe]);
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rbx & 0xffff, 0xbeef);
    check_eq!(r.rip, CODE + 16);
    Ok(())
}

fn long_mode_mmio() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    let code: &[u8] = &[
        0x48, 0xbf, 0x00, 0x00, 0x0d, 0x00, 0, 0, 0, 0, // mov rdi, 0xd0000
        0xc6, 0x07, 0x11, // mov byte [rdi], 0x11
        0x66, 0xc7, 0x07, 0x22, 0x22, // mov word [rdi], 0x2222
        0xc7, 0x07, 0x33, 0x33, 0x33, 0x33, // mov dword [rdi], 0x33333333
        0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rax, imm64
        0x48, 0x89, 0x07, // mov [rdi], rax
        0x8a, 0x1f, // mov bl, [rdi]
        0x66, 0x8b, 0x0f, // mov cx, [rdi]
        0x8b, 0x57, 0x08, // mov edx, [rdi+8]
        0x48, 0x8b, 0x77, 0x10, // mov rsi, [rdi+0x10]
        0xf4,
    ];
    poke(mem, CODE as usize, code);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    let mut r = v.regs()?;
    r.rbx = u64::MAX;
    r.rcx = u64::MAX;
    r.rdx = u64::MAX;
    v.set_regs(&r)?;
    expect_mmio(&v, 0xd0000, 1, Some(&[0x11]))?;
    expect_mmio(&v, 0xd0000, 2, Some(&[0x22, 0x22]))?;
    expect_mmio(&v, 0xd0000, 4, Some(&[0x33; 4]))?;
    expect_mmio(&v, 0xd0000, 8, Some(&[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]))?;
    expect_mmio(&v, 0xd0000, 1, None)?;
    v.set_mmio_data(&[0xa1]);
    expect_mmio(&v, 0xd0000, 2, None)?;
    v.set_mmio_data(&[0xb2, 0xb3]);
    expect_mmio(&v, 0xd0008, 4, None)?;
    v.set_mmio_data(&[0xc4, 0xc5, 0xc6, 0xc7]);
    expect_mmio(&v, 0xd0010, 8, None)?;
    v.set_mmio_data(&[1, 2, 3, 4, 5, 6, 7, 8]);
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rbx, 0xffff_ffff_ffff_ffa1); // 8-bit load merges
    check_eq!(r.rcx, 0xffff_ffff_ffff_b3b2); // 16-bit load merges
    check_eq!(r.rdx, 0xc7c6_c5c4); // 32-bit load zero-extends
    check_eq!(r.rsi, 0x0807_0605_0403_0201);
    Ok(())
}

fn protected_mode_mmio_alu() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    let code: &[u8] = &[
        0xbf, 0x00, 0x00, 0x0d, 0x00, // mov edi, 0xd0000
        0x83, 0x0f, 0x05, // or dword [edi], 5
        0x0f, 0xb6, 0x47, 0x04, // movzx eax, byte [edi+4]
        0xab, // stosd (eax -> [edi])
        0xf4,
    ];
    poke(mem, CODE as usize, code);
    v.protected_mode_at(CODE)?;
    expect_mmio(&v, 0xd0000, 4, None)?;
    v.set_mmio_data(&[0x10, 0, 0, 0]);
    expect_mmio(&v, 0xd0000, 4, Some(&[0x15, 0, 0, 0]))?;
    expect_mmio(&v, 0xd0004, 1, None)?;
    v.set_mmio_data(&[0x9c]);
    expect_mmio(&v, 0xd0000, 4, Some(&[0x9c, 0, 0, 0]))?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rdi, 0xd0004);
    check_eq!(r.rax, 0x9c);
    Ok(())
}

fn cpuid_in_guest() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // xor eax,eax; cpuid; hlt
    poke(mem, CODE as usize, &[0x31, 0xc0, 0x0f, 0xa2, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    let l0 = find_cpuid(&c.entries(), 0, 0).ok_or("no leaf 0")?;
    check_eq!((r.rax, r.rbx, r.rcx, r.rdx), (l0.eax as u64, l0.ebx as u64, l0.ecx as u64, l0.edx as u64));
    check_eq!(r.rip, CODE + 5);
    Ok(())
}

fn msr_in_guest() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // mov ecx,0xc0000081 (STAR); mov eax,0x12345678; mov edx,0x00230010; wrmsr;
    // xor eax,eax; xor edx,edx; rdmsr; hlt
    poke(mem, CODE as usize, &[0xb9, 0x81, 0x00, 0x00, 0xc0, 0xb8, 0x78, 0x56, 0x34, 0x12, 0xba, 0x10, 0x00, 0x23, 0x00, 0x0f, 0x30, 0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x32, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!((r.rax, r.rdx), (0x1234_5678, 0x0023_0010));
    check_eq!(v.get_msr(0xc000_0081)?, 0x0023_0010_1234_5678);
    // And from the VMM side.
    check_eq!(v.set_msr(0xc000_0082, 0xffff_ffff_8100_0000), Ok(1));
    check_eq!(v.get_msr(0xc000_0082)?, 0xffff_ffff_8100_0000);
    check_eq!(v.set_msr(0xc000_0082, 0x8000_0000_0000_0000), Ok(0)); // non-canonical
    check_eq!(v.set_msr(0xdead_beef, 1), Ok(0));
    Ok(())
}

fn unknown_msr_shutdown() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // mov ecx,0xdeadbeef; rdmsr; hlt -> #GP, no IDT -> #DF -> triple fault
    poke(mem, CODE as usize, &[0xb9, 0xef, 0xbe, 0xad, 0xde, 0x0f, 0x32, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_SHUTDOWN)
}

fn triple_fault() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &[0x0f, 0x0b, 0xf4]); // ud2
    v.protected_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_SHUTDOWN)
}

fn readonly_slot() -> TestResult {
    let mut vm = Vm::new()?;
    if ioctl_val(&vm.fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM as u64) != Ok(1) {
        return Err("KVM_CAP_READONLY_MEM not offered".into());
    }
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let ro = vm.add_mem(1, 0x10000, 0x1000, KVM_MEM_READONLY)?;
    poke(ro, 0, &[0xab, 0, 0, 0, 0x55]);
    let v = vm.vcpu(0)?;
    // mov ax,0x1000; mov ds,ax; mov al,[0]; mov byte [4],0xcd; mov bl,[4]; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xc6, 0x06, 0x04, 0x00, 0xcd, 0x8a, 0x1e, 0x04, 0x00, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_mmio(&v, 0x10004, 1, Some(&[0xcd]))?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rax & 0xff, 0xab);
    check_eq!(r.rbx & 0xff, 0x55); // the write did not reach memory
    check_eq!(peek(ro, 4, 1), vec![0x55]);
    Ok(())
}

fn get_dirty_log(vm: &Vm, slot: u32, pages: usize) -> Result<Vec<u64>, Errno> {
    let mut bitmap = vec![0u64; pages.div_ceil(64)];
    let mut log = kvm_dirty_log::default();
    log.slot = slot;
    log.__bindgen_anon_1.dirty_bitmap = bitmap.as_mut_ptr() as *mut _;
    ioctl_ptr(&vm.fd, KVM_GET_DIRTY_LOG, &mut log)?;
    Ok(bitmap)
}

fn dirty_log() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let logged = vm.add_mem(1, 0x10000, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)?;
    let v = vm.vcpu(0)?;
    check_eq!(get_dirty_log(&vm, 0, 16), Err(libc::ENOENT)); // slot 0 does not log
    // mov ax,0x1300; mov ds,ax; mov al,[0x10] (read only); mov byte [0],1; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0x13, 0x8e, 0xd8, 0xa0, 0x10, 0x00, 0xc6, 0x06, 0x00, 0x00, 0x01, 0xf4]);
    // A read of page 5 first.
    poke(mem, 0x1100, &[0xb8, 0x00, 0x15, 0x8e, 0xd8, 0xa0, 0x10, 0x00, 0xf4]);
    v.real_mode_at(0x1100)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(get_dirty_log(&vm, 1, 16), Ok(vec![0]));
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(peek(logged, 0x3000, 1), vec![1]);
    check_eq!(get_dirty_log(&vm, 1, 16), Ok(vec![1 << 3]));
    check_eq!(get_dirty_log(&vm, 1, 16), Ok(vec![0]));
    // The page is write-protected again: a second write is logged again.
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(get_dirty_log(&vm, 1, 16), Ok(vec![1 << 3]));
    check_eq!(get_dirty_log(&vm, 7, 16), Err(libc::ENOENT));
    check_eq!(get_dirty_log(&vm, 40000, 16), Err(libc::EINVAL));
    Ok(())
}

fn fail_entry() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, CODE as usize, &[0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    // CS.L and CS.D both set in long mode: VMRUN/VM entry refuses the state.
    let mut s = v.sregs()?;
    s.cs.db = 1;
    v.set_sregs(&s).map_err(|e| format!("SET_SREGS errno {e}"))?;
    let r = v.run().map_err(|e| format!("KVM_RUN errno {e}"))?;
    check!(r == KVM_EXIT_FAIL_ENTRY || r == KVM_EXIT_INTERNAL_ERROR, "exit {}", exit_name(r));
    Ok(())
}

fn hypercall() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // mov eax, 12345; vmmcall; hlt
    poke(mem, CODE as usize, &[0xb8, 0x39, 0x30, 0, 0, 0x0f, 0x01, 0xd9, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rax, (-1000i64) as u64); // -KVM_ENOSYS
    check_eq!(r.rip, CODE + 9);
    Ok(())
}
