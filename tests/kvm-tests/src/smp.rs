//! Several vCPUs of one VM, each run by its own thread: concurrent exits, kicks
//! from other threads, memory-slot changes under running vCPUs (their TLBs must
//! be flushed), and a VM destroyed while its vCPUs run.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::{check, check_eq};
use kvm_uapi::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("smp/four_vcpus_concurrent_pio", concurrent),
        ("smp/signal_kicks_running_vcpu", kick),
        ("smp/slot_deleted_under_running_vcpu", slot_under_running),
        ("smp/vm_closed_while_vcpus_run", destroy_while_running),
    ]
}

extern "C" fn on_usr2(_: libc::c_int) {}

/// A no-op SIGUSR2 handler (without SA_RESTART), so a signal sent to a vCPU
/// thread makes its KVM_RUN return EINTR. Shared with the irqchip tests.
pub(crate) fn install_usr2() {
    // SAFETY: a no-op handler without SA_RESTART.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr2 as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
}

fn concurrent() -> TestResult {
    let (vm, v0, mem) = vm_with_ram(0x10000)?;
    // Each vCPU: mov cx,500; L: out dx,al; inc al; loop L; hlt  (dx = port set per vCPU)
    poke(mem, 0x1000, &[0xb9, 0xf4, 0x01, 0xee, 0xfe, 0xc0, 0xe2, 0xfb, 0xf4]);
    let mut vcpus = vec![v0];
    for id in 1..4 {
        vcpus.push(vm.vcpu(id)?);
    }
    let mut handles = vec![];
    for (i, v) in vcpus.into_iter().enumerate() {
        v.real_mode_at(0x1000)?;
        let mut r = v.regs()?;
        r.rdx = 0x10 + i as u64;
        r.rax = 0;
        v.set_regs(&r)?;
        handles.push(std::thread::spawn(move || -> Result<u32, String> {
            let mut n = 0u32;
            loop {
                match v.run().map_err(|e| format!("vcpu {i}: errno {e}"))? {
                    KVM_EXIT_IO => {
                        let io = v.io();
                        if io.port != 0x10 + i as u16 || v.io_data()[0] != (n & 0xff) as u8 {
                            return Err(format!("vcpu {i}: port {:#x} data {} at {n}", io.port, v.io_data()[0]));
                        }
                        n += 1;
                    }
                    KVM_EXIT_HLT => return Ok(n),
                    r => return Err(format!("vcpu {i}: exit {}", exit_name(r))),
                }
            }
        }));
    }
    for h in handles {
        let n = h.join().map_err(|_| "vcpu thread panicked")??;
        check_eq!(n, 500);
    }
    drop(vm);
    Ok(())
}

fn kick() -> TestResult {
    install_usr2();
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xeb, 0xfe]);
    v.real_mode_at(0x1000)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // SAFETY: this thread's id, sent to the kicker.
        tx.send(unsafe { libc::pthread_self() } as usize).ok();
        let t = Instant::now();
        let r = v.run();
        (r, t.elapsed())
    });
    let tid = rx.recv().map_err(|_| "no tid")?;
    std::thread::sleep(Duration::from_millis(200));
    // Kick until it is back (a signal that lands before KVM_RUN starts only runs
    // the handler).
    while !h.is_finished() {
        // SAFETY: the thread is alive until it returns from KVM_RUN.
        unsafe { libc::pthread_kill(tid as libc::pthread_t, libc::SIGUSR2) };
        std::thread::sleep(Duration::from_millis(50));
    }
    let (r, took) = h.join().map_err(|_| "vcpu thread panicked")?;
    check_eq!(r, Err(libc::EINTR));
    check!(took < Duration::from_secs(5), "KVM_RUN returned after {took:?}");
    drop(vm);
    Ok(())
}

fn slot_under_running() -> TestResult {
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let extra = vm.add_mem(1, 0x20000, 0x1000, 0)?;
    poke(extra, 0, &[0x5a]);
    // mov ax,0x2000; mov ds,ax; L: mov al,[0]; cmp al,0x5a; je L; out 0x10,al; hlt
    poke(mem, 0x1000, &[0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0x3c, 0x5a, 0x74, 0xf9, 0xe6, 0x10, 0xf4]);
    let v = vm.vcpu(0)?;
    v.real_mode_at(0x1000)?;
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let h = std::thread::spawn(move || -> Result<(), String> {
        // The guest spins reading the slot; once it is gone the read is MMIO.
        expect_exit(&v, KVM_EXIT_MMIO)?;
        let m = v.mmio();
        if m.addr != 0x20000 || m.is_write {
            return Err(format!("mmio {:#x} write {}", m.addr, m.is_write));
        }
        v.set_mmio_data(&[0x11]);
        expect_exit(&v, KVM_EXIT_IO)?;
        if v.io_data()[0] != 0x11 {
            return Err("wrong data".into());
        }
        d2.store(true, Ordering::SeqCst);
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));
    check_eq!(vm.set_region(1, 0, 0, 0, 0), Ok(0));
    let t = Instant::now();
    while !done.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    check!(done.load(Ordering::SeqCst), "the running vCPU kept reading the deleted slot");
    h.join().map_err(|_| "vcpu thread panicked")??;
    Ok(())
}

fn destroy_while_running() -> TestResult {
    install_usr2();
    let (mut vm, v0, mem) = vm_with_ram(0x10000)?;
    poke(mem, 0x1000, &[0xeb, 0xfe]);
    let mut vcpus = vec![v0];
    for id in 1..3 {
        vcpus.push(vm.vcpu(id)?);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut handles = vec![];
    for v in vcpus {
        v.real_mode_at(0x1000)?;
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            // SAFETY: this thread's id for the kicker.
            tx.send(unsafe { libc::pthread_self() } as usize).ok();
            v.run()
        }));
    }
    let tids: Vec<usize> = (0..handles.len()).filter_map(|_| rx.recv().ok()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The VM file goes while every vCPU is in the guest.
    vm.close_vm_file();
    std::thread::sleep(Duration::from_millis(100));
    while handles.iter().any(|h| !h.is_finished()) {
        for (t, h) in tids.iter().zip(handles.iter()) {
            if !h.is_finished() {
                // SAFETY: the thread is alive until its KVM_RUN returns.
                unsafe { libc::pthread_kill(*t as libc::pthread_t, libc::SIGUSR2) };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for h in handles {
        let r = h.join().map_err(|_| "vcpu thread panicked")?;
        check_eq!(r, Err(libc::EINTR));
    }
    drop(vm);
    Ok(())
}
