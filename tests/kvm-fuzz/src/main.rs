//! kvm-fuzz: robustness fuzzers for /dev/kvm (run against this project's modules
//! and upstream's in the test VM, tests/vm/fuzz.sh).
//!
//!   kvm-fuzz ioctl [--seed S] [--threads T] [--seconds N] [--hang S] [--trace] [--ops [-]a,b,..]
//!       Many threads issue random system, VM and vCPU ioctls on shared
//!       descriptors (by number: closes race with use), with random and boundary
//!       arguments and bad pointers; KVM_RUN races slot changes and closes.
//!       Prints `SEED`, `IOCTLS <n>`, `OK`. The same seed and thread count give
//!       every thread the same sequence of operations. `--ops a,b` runs only
//!       those operations, `--ops -a,b` all but those (to narrow down a finding).
//!   kvm-fuzz diff --seed S --count N [--trace]
//!       One thread, N deterministic calls, one line each:
//!       `CALL <i> <name> <result or errno>`; diff the output of two module sets.
//!   kvm-fuzz guest [--seed S] [--threads T] [--seconds N] [--hang S] [--kick-ms M]
//!       Hostile guests in all modes; prints `RUNS <n> EXITS <n>`, `OK`.
//!
//!   kvm-fuzz sregs-probe [--seed S] [--count N]
//!       Debugging aid: a fresh VM per iteration, one random KVM_SET_SREGS, one
//!       KVM_RUN, the state printed before each run (finds a state that hangs;
//!       KVM_FUZZ_PROBE_CR0 / KVM_FUZZ_PROBE_EFER (hex) force those fields,
//!       KVM_FUZZ_PROBE_UNSAFE=1 lets the TCG-unsafe EFER.LME states through).
//!
//! Exit status: 0 OK, 1 a check failed (bad exit from KVM_RUN), 2 usage or
//! setup error, 3 hang (an ioctl stayed in the kernel past --hang seconds).

mod gen;
mod guest;
mod ops;
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use util::*;

struct Args {
    seed: u64,
    threads: usize,
    seconds: u64,
    count: u64,
    hang: u64,
    kick_ms: Option<u64>,
    trace: bool,
}

fn usage() -> ! {
    eprintln!("usage: kvm-fuzz ioctl|diff|guest [--seed S] [--threads T] [--seconds N] [--count N] [--hang S] [--kick-ms M] [--trace] [--ops [-]a,b,..]");
    std::process::exit(2);
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: fills our buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut _, 8, 0) };
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let v = if n == 8 { u64::from_le_bytes(b) } else { t ^ std::process::id() as u64 };
    // Keep seeds short enough to type.
    v % 1_000_000_000
}

fn parse(args: &[String]) -> Args {
    let mut a = Args { seed: u64::MAX, threads: 0, seconds: 30, count: 1000, hang: 30, kick_ms: None, trace: false };
    let mut i = 0;
    let num = |i: usize| -> u64 { args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()) };
    while i < args.len() {
        match args[i].as_str() {
            "--seed" => a.seed = num(i),
            "--threads" => a.threads = num(i) as usize,
            "--seconds" => a.seconds = num(i),
            "--count" => a.count = num(i),
            "--hang" => a.hang = num(i),
            "--kick-ms" => a.kick_ms = Some(num(i)),
            "--ops" => {
                let v = args.get(i + 1).cloned().unwrap_or_else(|| usage());
                let (neg, list) = match v.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, v.as_str()),
                };
                let names: Vec<String> = list.split(',').map(|s| s.to_string()).collect();
                for n in &names {
                    if !ops::OPS.iter().any(|o| o.0 == n) {
                        eprintln!("kvm-fuzz: unknown op {n}");
                        std::process::exit(2);
                    }
                }
                let _ = ops::ONLY.set((neg, names));
            }
            "--trace" => {
                a.trace = true;
                ops::TRACE_ARGS.store(true, Ordering::Relaxed);
                i += 1;
                continue;
            }
            _ => usage(),
        }
        i += 2;
    }
    if a.seed == u64::MAX {
        a.seed = random_seed();
    }
    a
}

fn ioctl_main(a: &Args) -> i32 {
    install_kick_handler();
    let threads = if a.threads == 0 { 4 } else { a.threads };
    let sh = ops::Shared::new(a.seed, false);
    for (i, slot) in sh.vms.iter().enumerate() {
        *slot.lock().unwrap() = sh.standard_vm(i % 2 == 0, true);
    }
    let names = ops::op_names();
    let slots: Vec<Slot> = (0..threads).map(|_| Slot::new()).collect();
    let stop = AtomicBool::new(false);
    let deadline = now_ms() + a.seconds * 1000;
    let mut ioctls = 0u64;
    let mut nops = 0u64;
    let mut per_op = vec![(0u64, 0u64); names.len()];
    let out = std::sync::Mutex::new(());
    std::thread::scope(|sc| {
        let mut hs = vec![];
        for (t, slot) in slots.iter().enumerate() {
            let (sh, stop, out) = (&sh, &stop, &out);
            let trace = a.trace;
            let seed = a.seed;
            hs.push(sc.spawn(move || {
                slot.register();
                let mut ctx = ops::Ctx::new(sh);
                let mut rng = Rng::new(splitmix(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
                let mut counts = vec![(0u64, 0u64); ops::OPS.len()];
                let mut idx = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let op = ops::pick_op(&mut rng, false);
                    ctx.r = rng.fork();
                    if trace {
                        let _g = out.lock().unwrap();
                        println!("T{t} #{idx} {}", ops::OPS[op].0);
                    }
                    slot.begin(idx, op);
                    let r = ctx.run_op(op);
                    slot.end();
                    counts[op].0 += 1;
                    if r.res >= 0 {
                        counts[op].1 += 1;
                    }
                    if trace {
                        let _g = out.lock().unwrap();
                        println!("T{t} #{idx} {} = {}", ops::OPS[op].0, result_str(r.res));
                    }
                    idx += 1;
                }
                slot.done.store(true, Ordering::SeqCst);
                (IOCTLS.with(|c| c.get()), idx, counts)
            }));
        }
        watchdog(&slots, &names, &stop, deadline, 50, a.hang * 1000, "ioctl");
        for h in hs {
            let (n, k, counts) = h.join().expect("worker panicked");
            ioctls += n;
            nops += k;
            for (i, c) in counts.iter().enumerate() {
                per_op[i].0 += c.0;
                per_op[i].1 += c.1;
            }
        }
    });
    // Tear everything down before reporting: the module must let go of it all.
    for s in &sh.vms {
        s.lock().unwrap().take();
    }
    let kicks: u64 = slots.iter().map(|s| s.kicks.load(Ordering::Relaxed)).sum();
    let never_ok: Vec<&str> = per_op.iter().enumerate().filter(|(_, c)| c.0 > 0 && c.1 == 0).map(|(i, _)| names[i]).collect();
    println!("OPS {nops} KICKS {kicks} THREADS {threads}");
    println!("NEVER_SUCCEEDED {}", never_ok.join(" "));
    println!("IOCTLS {ioctls}");
    println!("OK");
    0
}

fn diff_main(a: &Args) -> i32 {
    install_kick_handler();
    let sh = ops::Shared::new(a.seed, true);
    let names = ops::op_names();
    let slots = [Slot::new()];
    let stop = AtomicBool::new(false);
    let mut ctx = ops::Ctx::new(&sh);
    let mut rng = Rng::new(a.seed);
    std::thread::scope(|sc| {
        slots[0].register();
        let (slots_ref, names_ref, stop_ref) = (&slots, &names, &stop);
        let wd = sc.spawn(move || watchdog(slots_ref, names_ref, stop_ref, u64::MAX, 2000, a.hang * 1000, "diff"));
        for i in 0..a.count {
            if i % 16 == 0 {
                let irq = rng.chance(50);
                let old = sh.vms[0].lock().unwrap().take();
                drop(old);
                *sh.vms[0].lock().unwrap() = sh.standard_vm(irq, rng.chance(80));
            }
            let op = ops::pick_op(&mut rng, true);
            ctx.r = rng.fork();
            slots[0].begin(i, op);
            let r = ctx.run_op(op);
            slots[0].end();
            let res = if r.res >= 0 && r.fd { "fd".to_string() } else { result_str(r.res) };
            println!("CALL {i} {} {res}", names[op]);
        }
        slots[0].done.store(true, Ordering::SeqCst);
        wd.join().unwrap();
    });
    sh.vms[0].lock().unwrap().take();
    println!("IOCTLS {}", IOCTLS.with(|c| c.get()));
    println!("OK");
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(mode) = args.get(1) else { usage() };
    let a = parse(&args[2..]);
    println!("SEED {}", a.seed);
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let code = match mode.as_str() {
        "ioctl" => ioctl_main(&a),
        "diff" => diff_main(&a),
        "sregs-probe" => {
            // See ops::Ctx::sregs_probe.
            install_kick_handler();
            let sh = ops::Shared::new(a.seed, false);
            let slots = [Slot::new()];
            slots[0].register();
            let stop = AtomicBool::new(false);
            let names = ["KVM_RUN"];
            std::thread::scope(|sc| {
                let (sl, st, nm) = (&slots, &stop, &names);
                let wd = sc.spawn(move || watchdog(sl, nm, st, u64::MAX, 200, a.hang * 1000, "probe"));
                ops::Ctx::new(&sh).sregs_probe(a.seed, a.count, &slots[0]);
                slots[0].done.store(true, Ordering::SeqCst);
                wd.join().unwrap();
            });
            0
        }
        "guest" => guest::main(a.seed, if a.threads == 0 { 2 } else { a.threads }, a.seconds, a.hang, a.kick_ms.unwrap_or(1000)),
        _ => usage(),
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
