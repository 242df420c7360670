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
        ("guest/rep_insb_rcx_changed_during_exit", rep_insb_rcx_changed),
        ("guest/real_mode_mmio_write_read", real_mode_mmio),
        ("guest/long_mode_mmio_every_size", long_mode_mmio),
        ("guest/protected_mode_mmio_alu", protected_mode_mmio_alu),
        ("guest/cpuid_from_table", cpuid_in_guest),
        ("guest/msr_write_read", msr_in_guest),
        ("guest/unknown_msr_gp_triple_fault", unknown_msr_shutdown),
        ("guest/misc_enable_msr_read_only_bits", misc_enable_msr),
        ("guest/segment_base_msrs_and_swapgs", segment_base_msrs),
        ("guest/ud2_without_idt_triple_fault", triple_fault),
        ("guest/readonly_slot", readonly_slot),
        ("guest/dirty_log", dirty_log),
        ("guest/dirty_log_read_of_user_written_page", dirty_log_read),
        ("guest/fail_entry_invalid_cs", fail_entry),
        ("guest/hypercall_returns_enosys", hypercall),
        ("guest/debug_registers", debug_registers),
        ("irq/kvm_interrupt_wakes_hlt", interrupt_after_hlt),
        ("irq/interrupt_window_open", interrupt_window),
        ("irq/kvm_interrupt_replaces_queued", interrupt_twice),
        ("irq/nmi_delivered_and_masked_until_iret", nmi),
        ("irq/kick_from_another_thread_then_inject", kick_and_inject),
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

/// User space changes RCX during a REP INSB exit (as the KVM selftest
/// userspace_io_test does). Which data lands is not ABI (upstream batches
/// elements in a read-ahead cache), but the instruction must end with RCX 0
/// and RDI advanced by the new count, without writing past it (a lowered count
/// must not wrap RCX around and run over memory).
fn rep_insb_rcx_changed() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // mov di,0x3000; mov cx,4; mov dx,0x80; rep insb; out 0x10,al;
    // mov di,0x4000; mov cx,3; rep insb; hlt
    poke(mem, CODE as usize, &[0xbf, 0x00, 0x30, 0xb9, 0x04, 0x00, 0xba, 0x80, 0x00, 0xf3, 0x6c, 0xe6, 0x10,
        0xbf, 0x00, 0x40, 0xb9, 0x03, 0x00, 0xf3, 0x6c, 0xf4]);
    v.real_mode_at(CODE)?;
    let mut ins = 0;
    let (mut changed, mut raised) = (false, false);
    loop {
        let r = v.run().map_err(|e| format!("KVM_RUN: errno {e}"))?;
        match r {
            KVM_EXIT_IO if v.io().input && v.io().port == 0x80 => {
                ins += 1;
                check!(ins < 100, "REP INSB does not end");
                v.io_data().fill(0xaa);
                let mut r = v.regs()?;
                if !changed && r.rcx & 0xffff == 4 {
                    r.rcx = 1;
                    v.set_regs(&r)?;
                    changed = true;
                } else if changed && !raised && r.rcx & 0xffff == 3 {
                    r.rcx = 6;
                    v.set_regs(&r)?;
                    raised = true;
                }
            }
            KVM_EXIT_IO if !v.io().input && v.io().port == 0x10 => {
                check!(changed, "RCX was not 4 at the first exit");
                let r = v.regs()?;
                check_eq!((r.rcx & 0xffff, r.rdi & 0xffff), (0, 0x3001));
                check_eq!(peek(mem, 0x3001, 3), vec![0, 0, 0]);
            }
            KVM_EXIT_HLT => break,
            other => return Err(format!("unexpected exit {} ({other})", exit_name(other))),
        }
    }
    check!(raised, "RCX was not 3 at the second REP INSB's first exit");
    let r = v.regs()?;
    check_eq!((r.rcx & 0xffff, r.rdi & 0xffff), (0, 0x4006));
    check_eq!(peek(mem, 0x4006, 2), vec![0, 0]);
    Ok(())
}

pub fn expect_mmio(v: &Vcpu, addr: u64, len: u32, write: Option<&[u8]>) -> TestResult {
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

fn segment_base_msrs() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // The base MSRs a guest writes all the time (on VMX without an exit, through
    // the MSR bitmap): FS/GS bases by WRMSR, SWAPGS, and what the VMM reads back.
    // wrmsr FS_BASE=0x6000, GS_BASE=0x6100, KERNEL_GS_BASE=0x6200; swapgs;
    // mov %fs:0,%ebx; mov %gs:0,%esi; rdmsr KERNEL_GS_BASE -> %edi; out; hlt
    poke(mem, CODE as usize, &[
        0xb9, 0x00, 0x01, 0x00, 0xc0, 0xb8, 0x00, 0x60, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x30, 0xb9, 0x01,
        0x01, 0x00, 0xc0, 0xb8, 0x00, 0x61, 0x00, 0x00, 0x0f, 0x30, 0xb9, 0x02, 0x01, 0x00, 0xc0, 0xb8,
        0x00, 0x62, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x01, 0xf8, 0x64, 0x8b, 0x1c, 0x25, 0x00, 0x00, 0x00,
        0x00, 0x65, 0x8b, 0x34, 0x25, 0x00, 0x00, 0x00, 0x00, 0xb9, 0x02, 0x01, 0x00, 0xc0, 0x0f, 0x32,
        0x89, 0xc7, 0xe6, 0x10, 0xf4,
    ]);
    poke(mem, 0x6000, &0x1111_1111u32.to_le_bytes());
    poke(mem, 0x6100, &0x2222_2222u32.to_le_bytes());
    poke(mem, 0x6200, &0x3333_3333u32.to_le_bytes());
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let r = v.regs()?;
    check_eq!((r.rbx, r.rsi, r.rdi), (0x1111_1111, 0x3333_3333, 0x6100));
    let s = v.sregs()?;
    check_eq!((s.fs.base, s.gs.base), (0x6000, 0x6200));
    check_eq!((v.get_msr(0xc000_0100)?, v.get_msr(0xc000_0101)?, v.get_msr(0xc000_0102)?), (0x6000, 0x6200, 0x6100));
    expect_exit(&v, KVM_EXIT_HLT)
}

fn misc_enable_msr() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // Linux's verify_cpu reads IA32_MISC_ENABLE on Intel CPUs: it must exist,
    // with BTS/PEBS unavailable (bits 11, 12) set and read-only.
    // mov $0x1a0,%ecx; rdmsr; mov %eax,%ebx; out %al,$0x10; xor $0x800,%eax;
    // wrmsr (#GP, no IDT: triple fault); hlt
    poke(mem, CODE as usize, &[
        0xb9, 0xa0, 0x01, 0x00, 0x00, 0x0f, 0x32, 0x89, 0xc3, 0xe6, 0x10, 0x35, 0x00, 0x08, 0x00, 0x00,
        0x0f, 0x30, 0xf4,
    ]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    check_eq!(v.get_msr(0x1a0)?, 0x1800);
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.regs()?.rbx, 0x1800);
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

pub fn get_dirty_log(vm: &Vm, slot: u32, pages: usize) -> Result<Vec<u64>, Errno> {
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
    // mov eax, 12345; vmmcall (AMD) or vmcall (Intel); hlt
    let mut c = Cpuid2::with_room(256);
    ioctl_ptr(&vm.kvm, KVM_GET_SUPPORTED_CPUID, c.ptr()).map_err(|e| format!("errno {e}"))?;
    let intel = find_cpuid(&c.entries(), 0, 0).map_or(false, |e| e.ebx == 0x756e_6547);
    let op = if intel { 0xc1 } else { 0xd9 };
    poke(mem, CODE as usize, &[0xb8, 0x39, 0x30, 0, 0, 0x0f, 0x01, op, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!(r.rax, (-1000i64) as u64); // -KVM_ENOSYS
    check_eq!(r.rip, CODE + 9);
    Ok(())
}

fn set_request_window(v: &Vcpu, on: bool) {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of_mut!((*v.run).request_interrupt_window).write_volatile(on as u8) }
}

fn ready_for_injection(v: &Vcpu) -> bool {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of!((*v.run).ready_for_interrupt_injection).read_volatile() != 0 }
}

fn if_flag(v: &Vcpu) -> bool {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of!((*v.run).if_flag).read_volatile() != 0 }
}

fn inject(v: &Vcpu, vector: u32) -> Result<i64, Errno> {
    let mut irq = kvm_interrupt { irq: vector };
    ioctl_ptr(&v.fd, KVM_INTERRUPT, &mut irq)
}

/// Real mode with an IVT entry for vector 0x20 -> 0:0x2000, whose handler does
/// `out 0x21, al; iret`, and the NMI vector 2 -> 0:0x2100 (`out 0x22, al; iret`).
fn irq_guest(main: &[u8]) -> Result<(Vm, Vcpu, *mut u8), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x20 * 4, &[0x00, 0x20, 0x00, 0x00]);
    poke(mem, 2 * 4, &[0x00, 0x21, 0x00, 0x00]);
    poke(mem, 0x2000, &[0xe6, 0x21, 0xcf]);
    poke(mem, 0x2100, &[0xe6, 0x22, 0xcf]);
    poke(mem, CODE as usize, main);
    v.real_mode_at(CODE)?;
    let mut r = v.regs()?;
    r.rsp = 0x8000;
    v.set_regs(&r)?;
    Ok((vm, v, mem))
}

fn interrupt_after_hlt() -> TestResult {
    // sti; L: hlt; jmp L
    let (_vm, v, _m) = irq_guest(&[0xfb, 0xf4, 0xeb, 0xfd])?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check!(if_flag(&v) && ready_for_injection(&v), "if_flag {} ready {}", if_flag(&v), ready_for_injection(&v));
    check_eq!(inject(&v, 0x20), Ok(0));
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x21);
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rip, CODE + 2);
    check_eq!(inject(&v, 256), Err(libc::EINVAL));
    Ok(())
}

fn interrupt_window() -> TestResult {
    // cli; out 0x30,al; mov cx,200; L1: loop L1; sti; nop; L2: jmp L2
    let (_vm, v, _m) = irq_guest(&[0xfa, 0xe6, 0x30, 0xb9, 0xc8, 0x00, 0xe2, 0xfe, 0xfb, 0x90, 0xeb, 0xfe])?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check!(!if_flag(&v) && !ready_for_injection(&v), "IF=0 must not be ready");
    set_request_window(&v, true);
    expect_exit(&v, KVM_EXIT_IRQ_WINDOW_OPEN)?;
    check!(ready_for_injection(&v) && if_flag(&v), "window open but not ready");
    let rip = v.regs()?.rip;
    check!(rip >= CODE + 9 && rip <= CODE + 10, "window opened at rip {rip:#x}");
    set_request_window(&v, false);
    check_eq!(inject(&v, 0x20), Ok(0));
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x21);
    // With the guest spinning and IF=1, a window request still exits at once.
    set_request_window(&v, true);
    expect_exit(&v, KVM_EXIT_IRQ_WINDOW_OPEN)?;
    set_request_window(&v, false);
    Ok(())
}

fn interrupt_twice() -> TestResult {
    // sti; L: hlt; jmp L. IVT 0x21 -> 0:0x2000 too.
    let (_vm, v, mem) = irq_guest(&[0xfb, 0xf4, 0xeb, 0xfd])?;
    poke(mem, 0x21 * 4, &[0x00, 0x22, 0x00, 0x00]);
    poke(mem, 0x2200, &[0xe6, 0x23, 0xcf]);
    expect_exit(&v, KVM_EXIT_HLT)?;
    // Without an in-kernel irqchip a second KVM_INTERRUPT replaces the first.
    check_eq!(inject(&v, 0x20), Ok(0));
    check_eq!(inject(&v, 0x21), Ok(0));
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x23);
    expect_exit(&v, KVM_EXIT_HLT)?;
    Ok(())
}

fn nmi() -> TestResult {
    // L: out 0x30, al; jmp L  (the NMI handler at 0x2100 outs to 0x22)
    let (_vm, v, _m) = irq_guest(&[0xe6, 0x30, 0xeb, 0xfc])?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(ioctl_val(&v.fd, KVM_NMI, 0), Ok(0));
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.io().port, 0x22);
    // A second NMI while the handler runs waits for its IRET, then comes in.
    check_eq!(ioctl_val(&v.fd, KVM_NMI, 0), Ok(0));
    let mut ports = vec![];
    for _ in 0..4 {
        expect_exit(&v, KVM_EXIT_IO)?;
            ports.push(v.io().port);
    }
    check!(ports.contains(&0x22), "second NMI never delivered: {ports:x?}");
    Ok(())
}

extern "C" fn on_usr1(_: libc::c_int) {}

/// What QEMU does with its user-space irqchip: another thread raises an
/// interrupt and kicks the vCPU thread with a signal; the vCPU thread, back from
/// KVM_RUN with EINTR, injects with KVM_INTERRUPT when kvm_run says it can, or
/// asks for an interrupt window.
fn kick_and_inject() -> TestResult {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    // sti; L: pause; jmp L   handler for 0x20: inc word [0x3000]; iret
    let (_vm, v, mem) = irq_guest(&[0xfb, 0xf3, 0x90, 0xeb, 0xfc])?;
    poke(mem, 0x2000, &[0xff, 0x06, 0x00, 0x30, 0xcf]);
    // SAFETY: a no-op handler without SA_RESTART, as QEMU's SIG_IPI.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let pending = Arc::new(AtomicBool::new(false));
    let raised = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let f2 = finished.clone();
    // SAFETY: pthread_self of this (the vCPU) thread.
    let me = unsafe { libc::pthread_self() };
    let me_id = me as usize;
    let (p2, r2, s2) = (pending.clone(), raised.clone(), stop.clone());
    let kicker = std::thread::spawn(move || {
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            if !p2.swap(true, Ordering::SeqCst) {
                r2.fetch_add(1, Ordering::SeqCst);
            }
            // SAFETY: the vCPU thread outlives this loop (it joins us).
            unsafe { libc::pthread_kill(me_id as libc::pthread_t, libc::SIGUSR1) };
        }
        s2.store(true, Ordering::SeqCst);
        // Signals do not queue: keep kicking until the vCPU thread is done, so
        // its last KVM_RUN cannot wait for a kick that was merged with another.
        while !f2.load(Ordering::SeqCst) {
            // SAFETY: as above.
            unsafe { libc::pthread_kill(me_id as libc::pthread_t, libc::SIGUSR1) };
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    let mut injected = 0u32;
    let start = std::time::Instant::now();
    loop {
        if pending.load(Ordering::SeqCst) && ready_for_injection(&v) && if_flag(&v) {
            inject(&v, 0x20).map_err(|e| format!("KVM_INTERRUPT errno {e}"))?;
            pending.store(false, Ordering::SeqCst);
            injected += 1;
        }
        set_request_window(&v, pending.load(Ordering::SeqCst));
        match v.run() {
            Ok(KVM_EXIT_IRQ_WINDOW_OPEN) | Err(libc::EINTR) => {}
            Ok(r) => return Err(format!("unexpected exit {}", exit_name(r))),
            Err(e) => return Err(format!("KVM_RUN errno {e}")),
        }
        if stop.load(Ordering::SeqCst) && !pending.load(Ordering::SeqCst) {
            break;
        }
        if start.elapsed().as_secs() > 20 {
            return Err(format!("stuck: injected {injected} of {}", raised.load(Ordering::SeqCst)));
        }
    }
    // Let the last handler run (the kicker still interrupts the spin).
    set_request_window(&v, true);
    let _ = v.run();
    finished.store(true, Ordering::SeqCst);
    kicker.join().map_err(|_| "kicker panicked")?;
    let handled = u16::from_le_bytes([peek(mem, 0x3000, 2)[0], peek(mem, 0x3000, 2)[1]]) as u32;
    check!(injected >= 10, "only {injected} injections");
    check_eq!(handled, injected);
    Ok(())
}

fn debug_registers() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // mov rax,0x1234; mov dr0,rax; mov rbx,dr0; mov rcx,dr7; hlt
    poke(mem, CODE as usize, &[0x48, 0xc7, 0xc0, 0x34, 0x12, 0, 0, 0x0f, 0x23, 0xc0, 0x0f, 0x21, 0xc3, 0x0f, 0x21, 0xf9, 0xf4]);
    v.long_mode_at(&vm.kvm, mem, CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!((r.rbx, r.rcx), (0x1234, 0x400));
    let mut d = kvm_debugregs::default();
    ioctl_ptr(&v.fd, KVM_GET_DEBUGREGS, &mut d).map_err(|e| format!("errno {e}"))?;
    check_eq!(d.db[0], 0x1234);
    Ok(())
}

/// A guest read in a logged slot logs the page when user space's mapping of
/// it is writable already (upstream maps it writable at once), not when the
/// page was never touched.
fn dirty_log_read() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let logged = vm.add_mem(1, 0x10000, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)?;
    let v = vm.vcpu(0)?;
    poke(logged, 0x2000, &[7]);
    // mov ax,0x1200; mov ds,ax; mov al,[0]; mov ax,0x1300; mov ds,ax; mov bl,[0]; hlt
    poke(mem, CODE as usize, &[0xb8, 0x00, 0x12, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xb8, 0x00, 0x13, 0x8e, 0xd8,
        0x8a, 0x1e, 0x00, 0x00, 0xf4]);
    v.real_mode_at(CODE)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(get_dirty_log(&vm, 1, 16), Ok(vec![1 << 2]));
    Ok(())
}
