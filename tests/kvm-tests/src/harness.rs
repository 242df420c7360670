//! A minimal test runner whose output the VM runner counts.

pub type TestResult = Result<(), String>;
pub type TestFn = fn() -> TestResult;

/// Seconds a test may take before the watchdog fails it and ends the run (a
/// KVM_RUN that never returns cannot be interrupted from inside the test).
const TEST_TIMEOUT_S: u64 = 120;

/// Runs the tests whose name contains `filter`; returns how many failed. A test
/// that panics counts as failed, and the others still run. KVM_TESTS_SKIP
/// (groups separated by `;`, each name parts separated by commas, then `:` and
/// the reason) names tests the machine cannot run; they print
/// `SKIP name: reason` and do not count.
pub fn run(tests: &[(&'static str, TestFn)], filter: &str) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let current: Arc<Mutex<(&'static str, std::time::Instant)>> =
        Arc::new(Mutex::new(("", std::time::Instant::now())));
    let done = Arc::new(AtomicUsize::new(0));
    {
        let current = current.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let (name, start) = *current.lock().unwrap_or_else(|e| e.into_inner());
            if !name.is_empty() && start.elapsed().as_secs() > TEST_TIMEOUT_S {
                println!("FAIL {name}: timed out after {TEST_TIMEOUT_S}s (the run stops here)");
                std::process::exit(1);
            }
        });
    }
    let mut failed = 0;
    let skip = std::env::var("KVM_TESTS_SKIP").unwrap_or_default();
    let groups: Vec<(&str, &str)> =
        skip.split(';').map(|g| g.split_once(':').unwrap_or((g, "not runnable here"))).collect();
    let skipped = |n: &str| {
        groups.iter().find(|(names, _)| names.split(',').any(|s| !s.is_empty() && n.contains(s))).map(|g| g.1)
    };
    for (name, f) in tests.iter().filter(|(n, _)| n.contains(filter)) {
        if let Some(why) = skipped(name) {
            println!("SKIP {name}: {why}");
            continue;
        }
        *current.lock().unwrap_or_else(|e| e.into_inner()) = (name, std::time::Instant::now());
        done.fetch_add(1, Ordering::Relaxed);
        let r = std::panic::catch_unwind(f).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()))
        });
        match r {
            Ok(()) => println!("PASS {name}"),
            Err(why) => {
                failed += 1;
                println!("FAIL {name}: {why}");
            }
        }
    }
    failed
}

/// Fails the test with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr) => {
        if !$cond {
            return Err(format!("{}:{}: check failed: {}", file!(), line!(), stringify!($cond)));
        }
    };
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+)));
        }
    };
}

/// Fails the test unless `a == b`, showing both.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!(
                "{}:{}: {} == {:?}, expected {} == {:?}",
                file!(), line!(), stringify!($a), a, stringify!($b), b
            ));
        }
    }};
}
