//! kvm-api-tests: drives /dev/kvm through its ioctls, as QEMU, kvm-ioctls and the
//! KVM selftests do, and checks the answers against upstream Linux 6.12's
//! behaviour. The same binary runs against this project's modules and against
//! upstream's in the test VM; a test that fails on upstream is a wrong test.
//!
//! Output: one `PASS <name>` / `FAIL <name>: <why>` line per test; exit status 1
//! if any failed. `kvm-api-tests [FILTER]` runs the tests whose name contains FILTER.

mod clientapi;
mod dirty_ring;
mod dirtylog;
mod emulation;
mod guest;
mod guests;
mod harness;
mod hugepages;
mod irqchip;
mod kvm;
mod kvmclock;
mod lifecycle;
mod memory;
mod modes;
mod pvfeatures;
mod smm;
mod smp;
mod prefault;
mod syncregs;
mod stats;
mod system;
mod tscattr;
mod usermsr;

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let mut tests = Vec::new();
    tests.extend(system::tests());
    tests.extend(guests::tests());
    tests.extend(modes::tests());
    tests.extend(lifecycle::tests());
    tests.extend(smp::tests());
    tests.extend(clientapi::tests());
    tests.extend(irqchip::tests());
    tests.extend(kvmclock::tests());
    tests.extend(emulation::tests());
    tests.extend(syncregs::tests());
    tests.extend(prefault::tests());
    tests.extend(dirtylog::tests());
    tests.extend(usermsr::tests());
    tests.extend(pvfeatures::tests());
    tests.extend(tscattr::tests());
    tests.extend(smm::tests());
    tests.extend(stats::tests());
    tests.extend(memory::tests());
    tests.extend(hugepages::tests());
    tests.extend(dirty_ring::tests());
    let failed = harness::run(&tests, &filter);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
