//! kvm-bench: exit-path microbenchmarks for the module set loaded in the test VM.
//! Each scenario runs a real-mode guest loop of N iterations and reports the mean
//! time per iteration. Run under QEMU's `-icount shift=0,sleep=off` the clock
//! counts instructions, so figures are deterministic and comparable between our
//! modules and upstream's measured in the same VM (scripts/bench.sh).
//!
//! The touch scenarios write one byte per page of a 256M slot (first touch, and
//! again once mapped) and report per page.
//!
//! Output: `BENCH <name> <ns per iteration>` lines.

#[allow(dead_code)]
#[path = "../guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../kvm.rs"]
mod kvm;

use guest::*;
use kvm_uapi::*;
use std::time::Instant;

const N: u16 = 20000;

fn setup(code: &[u8]) -> Result<(Vm, Vcpu, *mut u8), String> {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, code);
    v.real_mode_at(0x1000)?;
    Ok((vm, v, mem))
}

fn n_le() -> [u8; 2] {
    N.to_le_bytes()
}

/// OUT to a port: every iteration exits to user space.
fn pio() -> Result<f64, String> {
    let n = n_le();
    // mov cx,N; L: out 0x10,al; loop L; hlt
    let (_vm, v, _m) = setup(&[0xb9, n[0], n[1], 0xe6, 0x10, 0xe2, 0xfc, 0xf4])?;
    let t = Instant::now();
    let mut exits = 0u32;
    loop {
        let r = v.run().map_err(|e| format!("run: {e}"))?;
        match r {
            KVM_EXIT_IO => exits += 1,
            KVM_EXIT_HLT => break,
            other => return Err(format!("exit {other}")),
        }
    }
    if exits != N as u32 {
        return Err(format!("{exits} exits"));
    }
    Ok(t.elapsed().as_nanos() as f64 / N as f64)
}

/// CPUID: exits handled in the kernel; one KVM_RUN for the whole loop.
fn cpuid() -> Result<f64, String> {
    let n = n_le();
    // mov si,N; L: xor eax,eax; cpuid; dec si; jnz L; hlt
    let (_vm, v, _m) = setup(&[0xbe, n[0], n[1], 0x66, 0x31, 0xc0, 0x0f, 0xa2, 0x4e, 0x75, 0xf8, 0xf4])?;
    let t = Instant::now();
    let r = v.run().map_err(|e| format!("run: {e}"))?;
    if r != KVM_EXIT_HLT {
        return Err(format!("exit {r}"));
    }
    Ok(t.elapsed().as_nanos() as f64 / N as f64)
}

/// A write to unbacked memory: NPF, instruction emulation, exit to user space.
fn mmio() -> Result<f64, String> {
    let n = n_le();
    // mov ax,0xd000; mov ds,ax; mov cx,N; L: mov [0],al; loop L; hlt
    let (_vm, v, _m) = setup(&[0xb8, 0x00, 0xd0, 0x8e, 0xd8, 0xb9, n[0], n[1], 0xa2, 0x00, 0x00, 0xe2, 0xfb, 0xf4])?;
    let t = Instant::now();
    let mut exits = 0u32;
    loop {
        match v.run().map_err(|e| format!("run: {e}"))? {
            KVM_EXIT_MMIO => exits += 1,
            KVM_EXIT_HLT => break,
            other => return Err(format!("exit {other}")),
        }
    }
    if exits != N as u32 {
        return Err(format!("{exits} exits"));
    }
    Ok(t.elapsed().as_nanos() as f64 / N as f64)
}

/// No exits: a loop in the guest (100 x N iterations of dec/jnz).
fn no_exit() -> Result<f64, String> {
    let n = n_le();
    // mov si,N; L1: mov cx,100; L2: loop L2; dec si; jnz L1; hlt
    let (_vm, v, _m) = setup(&[0xbe, n[0], n[1], 0xb9, 0x64, 0x00, 0xe2, 0xfe, 0x4e, 0x75, 0xf8, 0xf4])?;
    let t = Instant::now();
    let r = v.run().map_err(|e| format!("run: {e}"))?;
    if r != KVM_EXIT_HLT {
        return Err(format!("exit {r}"));
    }
    Ok(t.elapsed().as_nanos() as f64 / N as f64)
}

/// A self-IPI through the in-kernel local APIC: the real-mode guest turns its
/// APIC to x2APIC mode, then sends itself vector 0x40 (WRMSR SELF_IPI); the
/// handler counts it and EOIs (WRMSR EOI). Two exits per iteration, both
/// handled in the kernel, plus the injection.
fn self_ipi() -> Result<f64, String> {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    kvm::ioctl_val(&vm.fd, kvm_uapi::ioctl::KVM_CREATE_IRQCHIP, 0).map_err(|e| format!("KVM_CREATE_IRQCHIP: errno {e}"))?;
    let v = vm.vcpu(0)?;
    v.set_supported_cpuid(&vm.kvm)?;
    let n = n_le();
    // IVT[0x40] = 0000:2000
    poke(mem, 0x40 * 4, &[0x00, 0x20, 0x00, 0x00]);
    // handler: inc di; mov ecx,0x80b; xor eax,eax; xor edx,edx; wrmsr; iret
    poke(mem, 0x2000, &[0x47, 0x66, 0xb9, 0x0b, 0x08, 0, 0, 0x66, 0x31, 0xc0, 0x66, 0x31, 0xd2, 0x0f, 0x30, 0xcf]);
    #[rustfmt::skip]
    let main = [
        0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, // mov ecx, IA32_APIC_BASE
        0x0f, 0x32,                         // rdmsr
        0x66, 0x0d, 0x00, 0x0c, 0x00, 0x00, // or eax, ENABLE | X2APIC
        0x0f, 0x30,                         // wrmsr
        0x66, 0xb9, 0x0f, 0x08, 0x00, 0x00, // mov ecx, 0x80f (SVR)
        0x66, 0xb8, 0xff, 0x01, 0x00, 0x00, // mov eax, 0x1ff
        0x66, 0x31, 0xd2,                   // xor edx, edx
        0x0f, 0x30,                         // wrmsr
        0x31, 0xff,                         // xor di, di
        0xfb,                               // sti
        0xbe, n[0], n[1],                   // mov si, N
        // L:
        0x66, 0xb9, 0x3f, 0x08, 0x00, 0x00, // mov ecx, 0x83f (SELF_IPI)
        0x66, 0xb8, 0x40, 0x00, 0x00, 0x00, // mov eax, 0x40
        0x66, 0x31, 0xd2,                   // xor edx, edx
        0x0f, 0x30,                         // wrmsr
        0x4e,                               // dec si
        0x75, 0xec,                         // jnz L
        0xe6, 0x10,                         // out 0x10, al
        0xf4,                               // hlt
    ];
    poke(mem, 0x1000, &main);
    v.real_mode_at(0x1000)?;
    let mut r = v.regs()?;
    r.rsp = 0x8000;
    v.set_regs(&r)?;
    let t = Instant::now();
    let exit = v.run().map_err(|e| format!("run: {e}"))?;
    let elapsed = t.elapsed();
    if exit != KVM_EXIT_IO {
        return Err(format!("exit {exit}"));
    }
    let taken = v.regs()?.rdi & 0xffff;
    if taken != N as u64 {
        return Err(format!("{taken} of {N} interrupts taken"));
    }
    Ok(elapsed.as_nanos() as f64 / N as f64)
}

/// The guest memory `touch_first` and `touch_again` write, one byte per page.
const TOUCH_SIZE: u32 = 256 << 20;
/// 2M-aligned, as the host mapping is (a 256M anonymous mapping gets THP
/// alignment): a module with huge leaves can map this slot with 2M ones.
const TOUCH_GPA: u32 = 0x20_0000;
const TOUCH_PAGES: u32 = TOUCH_SIZE / 4096;

/// A VM whose 32-bit guest writes one byte to every page of a 256M slot, then
/// halts; the vCPU is set up to start it.
fn touch_setup() -> Result<(Vm, Vcpu), String> {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    vm.add_mem(1, TOUCH_GPA as u64, TOUCH_SIZE as usize, 0)?;
    let g = TOUCH_GPA.to_le_bytes();
    let end = (TOUCH_GPA + TOUCH_SIZE).to_le_bytes();
    // mov ebx,GPA; L: mov byte [ebx],1; add ebx,0x1000; cmp ebx,GPA+SIZE; jb L; hlt
    let mut code = vec![0xbb, g[0], g[1], g[2], g[3], 0xc6, 0x03, 0x01, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xfb];
    code.extend_from_slice(&end);
    code.extend_from_slice(&[0x72, 0xef, 0xf4]);
    poke(mem, 0x1000, &code);
    let v = vm.vcpu(0)?;
    v.protected_mode_at(0x1000)?;
    Ok((vm, v))
}

/// Runs the touch loop once; ns per page.
fn touch_run(v: &Vcpu) -> Result<f64, String> {
    let t = Instant::now();
    let r = v.run().map_err(|e| format!("run: {e}"))?;
    if r != KVM_EXIT_HLT {
        return Err(format!("exit {r}"));
    }
    Ok(t.elapsed().as_nanos() as f64 / TOUCH_PAGES as f64)
}

/// First touch of 256M: a nested page fault and a host page per guest page
/// (4K leaves today; huge leaves would take 512 pages per fault).
fn touch_first() -> Result<f64, String> {
    let (_vm, v) = touch_setup()?;
    touch_run(&v)
}

/// The same loop again on memory the guest has touched: the steady state.
fn touch_again() -> Result<f64, String> {
    let (_vm, v) = touch_setup()?;
    touch_run(&v)?;
    v.protected_mode_at(0x1000)?;
    touch_run(&v)
}

fn main() {
    let mut failed = false;
    let scenarios: [(&str, fn() -> Result<f64, String>); 7] = [
        ("pio_exit_to_user", pio),
        ("cpuid_in_kernel", cpuid),
        ("mmio_write_to_user", mmio),
        ("no_exit_loop", no_exit),
        ("self_ipi_in_kernel", self_ipi),
        ("touch_256m_first_per_page", touch_first),
        ("touch_256m_again_per_page", touch_again),
    ];
    // KVM_BENCH_SKIP=PREFIX leaves out the scenarios whose name starts with it.
    let skip = std::env::var("KVM_BENCH_SKIP").unwrap_or_default();
    for (name, f) in scenarios {
        if !skip.is_empty() && name.starts_with(&skip) {
            continue;
        }
        // Warm up once, then the best of three.
        let _ = f();
        let mut best = f64::MAX;
        for _ in 0..3 {
            match f() {
                Ok(ns) => best = best.min(ns),
                Err(e) => {
                    eprintln!("kvm-bench: {name}: {e}");
                    failed = true;
                }
            }
        }
        if best < f64::MAX {
            println!("BENCH {name} {best:.1}");
        }
    }
    std::process::exit(failed as i32);
}
