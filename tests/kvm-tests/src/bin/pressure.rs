//! kvm-pressure: a guest whose memory is larger than the host's free memory,
//! for tests/vm/memory-pressure.sh (which gives the test VM a swap device).
//!
//! `kvm-pressure MEGABYTES`: a 32-bit guest writes each page's own guest-physical
//! address into the page's first dword across a slot of MEGABYTES, then reads
//! every page back and reports how many differ (PIO to port 0x10). Meanwhile
//! the host must swap the slot's pages out (the MMU notifier zaps the guest's
//! mappings) and bring them back when the guest or user space touches them.
//! Prints `PRESSURE mismatches=N user_mismatches=U` and exits 0 if the run
//! completed (the caller measures the swapping).

#[allow(dead_code)]
#[path = "../guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../kvm.rs"]
mod kvm;

use guest::*;
use kvm_uapi::*;

const GPA: u32 = 0x10_0000;

fn run(mb: u32) -> Result<String, String> {
    if !(1..=3072).contains(&mb) {
        return Err(format!("{mb} MB: expected 1 to 3072"));
    }
    let size = mb << 20;
    let end = GPA + size;
    let mut vm = Vm::new()?;
    let mem = vm.add_mem(0, 0, 0x10000, 0)?;
    let data = vm.add_mem(1, GPA as u64, size as usize, 0)?;
    let (g, e) = (GPA.to_le_bytes(), end.to_le_bytes());
    let mut code = vec![0xbb, g[0], g[1], g[2], g[3]]; // mov ebx,GPA
    // L1: mov [ebx],ebx; add ebx,0x1000; cmp ebx,END; jb L1
    code.extend_from_slice(&[0x89, 0x1b, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xfb, e[0], e[1], e[2], e[3], 0x72, 0xf0]);
    // xor edx,edx; mov ebx,GPA
    code.extend_from_slice(&[0x31, 0xd2, 0xbb, g[0], g[1], g[2], g[3]]);
    // L2: cmp [ebx],ebx; je S; inc edx; S: add ebx,0x1000; cmp ebx,END; jb L2
    code.extend_from_slice(&[0x39, 0x1b, 0x74, 0x01, 0x42, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x81, 0xfb, e[0], e[1], e[2], e[3], 0x72, 0xed]);
    // mov eax,edx; out 0x10,eax; hlt
    code.extend_from_slice(&[0x89, 0xd0, 0xe7, 0x10, 0xf4]);
    poke(mem, 0x1000, &code);
    let v = vm.vcpu(0)?;
    v.protected_mode_at(0x1000)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let d = v.io_data();
    let mismatches = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
    expect_exit(&v, KVM_EXIT_HLT)?;
    // User space sees what the guest wrote, page by page (swapping in again).
    let mut user_mismatches = 0u32;
    for page in 0..(size / 4096) {
        let want = GPA + page * 4096;
        let got = u32::from_le_bytes(peek(data, (page * 4096) as usize, 4).try_into().map_err(|_| "peek")?);
        if got != want {
            user_mismatches += 1;
        }
    }
    Ok(format!("PRESSURE mismatches={mismatches} user_mismatches={user_mismatches}"))
}

fn main() {
    let mb: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    match run(mb) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("kvm-pressure: {e}");
            std::process::exit(1);
        }
    }
}
