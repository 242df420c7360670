//! A minimal test runner whose output the VM runner counts.

pub type TestResult = Result<(), String>;
pub type TestFn = fn() -> TestResult;

/// Runs the tests whose name contains `filter`; returns how many failed. A test
/// that panics counts as failed, and the others still run.
pub fn run(tests: &[(&'static str, TestFn)], filter: &str) -> usize {
    let mut failed = 0;
    for (name, f) in tests.iter().filter(|(n, _)| n.contains(filter)) {
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
