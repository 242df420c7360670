//! `rdmsr CPU MSR`: prints an MSR of one CPU in hex, through /dev/cpu/CPU/msr (the
//! test VM's kernel has CONFIG_X86_MSR). The module tests use it to check that
//! EFER.SVME is set on every CPU while kvm-amd is loaded and clear after.
use std::os::unix::fs::FileExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: rdmsr CPU MSR(hex)");
        std::process::exit(2);
    }
    let msr = u64::from_str_radix(args[2].trim_start_matches("0x"), 16).unwrap_or_else(|_| {
        eprintln!("rdmsr: bad MSR {}", args[2]);
        std::process::exit(2)
    });
    let path = format!("/dev/cpu/{}/msr", args[1]);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| {
        eprintln!("rdmsr: {path}: {e}");
        std::process::exit(1)
    });
    let mut buf = [0u8; 8];
    if let Err(e) = f.read_exact_at(&mut buf, msr) {
        eprintln!("rdmsr: {path} @ {msr:#x}: {e}");
        std::process::exit(1);
    }
    println!("{:x}", u64::from_le_bytes(buf));
}
