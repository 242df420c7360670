//! kvm-stat-guest: a guest for the statistics and tracing tests
//! (tests/vm/stats.sh: kvm_stat, kvm:* trace events, perf kvm stat).
//!
//! `kvm-stat-guest ITERATIONS [SECONDS]`: a 32-bit guest loops over
//!   out 0x10,al                  (a PIO exit to user space)
//!   mov [0xd0000000],al          (an MMIO exit to user space)
//!   cpuid (leaf 0)               (handled in the kernel)
//!   rdmsr/wrmsr MTRRdefType      (handled in the kernel; an MSR every KVM
//!                                intercepts, unlike SYSENTER_CS that SVM
//!                                passes through)
//! ITERATIONS times (0: until SECONDS have passed), then the VM stays open
//! until SECONDS have passed since the start (so readers of per-VM counters
//! see it). Prints `STATGUEST pio=N mmio=M pid=P`.

#[allow(dead_code)]
#[path = "../guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../kvm.rs"]
mod kvm;

use guest::*;
use kvm_uapi::*;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let iterations: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    match run(iterations, seconds) {
        Ok((pio, mmio)) => println!("STATGUEST pio={pio} mmio={mmio} pid={}", std::process::id()),
        Err(e) => {
            eprintln!("kvm-stat-guest: {e}");
            std::process::exit(1);
        }
    }
}

fn run(iterations: u64, seconds: u64) -> Result<(u64, u64), String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    v.set_supported_cpuid(&vm.kvm)?;
    #[rustfmt::skip]
    let code = [
        0xe6, 0x10,                         // L: out 0x10,al
        0xa2, 0x00, 0x00, 0x00, 0xd0,       // mov [0xd0000000],al
        0x31, 0xc0, 0x0f, 0xa2,             // xor eax,eax; cpuid
        0xb9, 0xff, 0x02, 0x00, 0x00,       // mov ecx,0x2ff
        0x0f, 0x32, 0x0f, 0x30,             // rdmsr; wrmsr
        0xeb, 0xea,                         // jmp L
    ];
    poke(mem, 0x1000, &code);
    v.protected_mode_at(0x1000)?;
    let (mut pio, mut mmio) = (0u64, 0u64);
    loop {
        if iterations > 0 && pio >= iterations {
            break;
        }
        if iterations == 0 && Instant::now() >= deadline {
            break;
        }
        match v.run().map_err(|e| format!("KVM_RUN: errno {e}"))? {
            KVM_EXIT_IO => pio += 1,
            KVM_EXIT_MMIO => mmio += 1,
            r => return Err(format!("unexpected exit {} ({r})", exit_name(r))),
        }
    }
    let now = Instant::now();
    if now < deadline {
        std::thread::sleep(deadline - now);
    }
    Ok((pio, mmio))
}
