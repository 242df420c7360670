#!/bin/bash
# Conformance: rust-vmm's kvm-ioctls crate's own unit tests (the published crate,
# pinned below) in the test VM, against our modules and upstream's.
#
#   scripts/kvm-ioctls-tests.sh [--log FILE] [--timeout S] [--smp N] [SET...]   build + run
#   scripts/kvm-ioctls-tests.sh build        build only; prints the test binary's path
#   scripts/kvm-ioctls-tests.sh run [OPTIONS] [SET...]    the same as without `run`
# (--log, --timeout: vm-run.sh's; --smp: the VM's CPUs, default 4)
#
# SETs: ours, upstream (default: ours upstream). The run prints `PASS kvm-ioctls/<test>`
# for each test passing on both, `FAIL kvm-ioctls/<test>: passes on upstream, fails on
# ours: ...` for regressions, `INFO ...` for tests failing on upstream too, and
# `PASS|FAIL <set>/kvm-ioctls/dmesg_clean` (see tests/vm/kvm-ioctls.sh).
# The crate is fetched through cargo (the configured crates.io registry; curl of the
# crates.io download API as a fallback), checked against the pinned SHA-256, unpacked
# into $KVM_RS_CACHE/kvm-ioctls-VER and built there (`cargo test --no-run`, its own
# Cargo.lock, CARGO_TARGET_DIR inside that directory); a second run reuses it.
# Environment passed to the VM: KVM_IOCTLS_TIMEOUT (seconds per test, default 60),
# KVM_IOCTLS_FILTER (run only tests whose name contains it).
set -euo pipefail
# Newest kvm-ioctls release (2026-12); it builds with the rustup toolchain (1.95;
# the crate's rust-version is 1.85). kvm-bindings 0.14.2, vmm-sys-util 0.15.0 (its lock file).
VER=0.25.1
SHA256=d7a59b7ac62625a405112180b56a99acb4498e1d18f5a7c0cd0916c79a076b0a

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
dir=$cache/kvm-ioctls-$VER
stamp=$dir/.kvm-rs-test-binary

mode=run
case "${1:-}" in build|run) mode=$1; shift ;; esac

# build: prints the test binary's path on the last line (instant when cached).
build() {
    if [ -f "$stamp" ] && [ -x "$(cat "$stamp")" ]; then cat "$stamp"; return 0; fi
    mkdir -p "$cache"
    local crate=$cache/kvm-ioctls-$VER.crate
    if [ ! -f "$crate" ] || ! echo "$SHA256  $crate" | sha256sum -c --quiet 2>/dev/null; then
        rm -f "$crate"
        # Through cargo: a throw-away package depending on exactly this version.
        local f=$cache/kvm-ioctls-fetch
        rm -rf "$f" && mkdir -p "$f/src" && : > "$f/src/lib.rs"
        printf '[package]\nname = "kvm-ioctls-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nkvm-ioctls = "=%s"\n[workspace]\n' \
            "$VER" > "$f/Cargo.toml"
        if (cd "$f" && cargo fetch -q >&2); then
            local c
            for c in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"kvm-ioctls-$VER.crate"; do
                [ -f "$c" ] && echo "$SHA256  $c" | sha256sum -c --quiet 2>/dev/null && cp "$c" "$crate.tmp" && mv "$crate.tmp" "$crate" && break
            done
        fi
        rm -rf "$f"
        if [ ! -f "$crate" ]; then
            curl -fsSL --retry 2 -o "$crate.tmp" "https://crates.io/api/v1/crates/kvm-ioctls/$VER/download" >&2 &&
                mv "$crate.tmp" "$crate" || { rm -f "$crate.tmp"; echo "kvm-ioctls-tests: cannot download kvm-ioctls $VER" >&2; return 1; }
        fi
        echo "$SHA256  $crate" | sha256sum -c --quiet >&2 || { echo "kvm-ioctls-tests: $crate: checksum mismatch" >&2; rm -f "$crate"; return 1; }
    fi
    if [ ! -f "$dir/Cargo.toml" ]; then
        rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp"
        tar xzf "$crate" -C "$dir.tmp"
        mv "$dir.tmp/kvm-ioctls-$VER" "$dir" && rmdir "$dir.tmp"
    fi
    local out bin
    # build.rs enables the SEV tests only if /dev/sev exists (not here: they stay ignored).
    out=$(cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo test --no-run --locked 2>&1) ||
        { echo "$out" >&2; echo "kvm-ioctls-tests: cargo test --no-run failed" >&2; return 1; }
    bin=$(echo "$out" | sed -n 's/^ *Executable unittests src\/lib.rs (\(.*\))$/\1/p' | tail -1)
    case "$bin" in /*) ;; ?*) bin=$dir/$bin ;; esac
    [ -n "$bin" ] && [ -x "$bin" ] || { echo "$out" >&2; echo "kvm-ioctls-tests: no test binary in cargo's output" >&2; return 1; }
    echo "$bin" > "$stamp"
    echo "$bin"
}

if [ "$mode" = build ]; then build; exit $?; fi

# 4 vCPUs: test_kvm_getters wants KVM_CAP_NR_VCPUS (online CPUs) >= 4.
vmargs=(--timeout "${KVM_IOCTLS_VM_TIMEOUT:-1500}" --smp "${KVM_IOCTLS_SMP:-4}")
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) vmargs+=(--smp "$2"); shift 2 ;;
        --log) vmargs+=(--log "$2"); shift 2 ;;
        --timeout) vmargs+=(--timeout "$2"); shift 2 ;;
        *) break ;;
    esac
done
sets=${*:-ours upstream}
if ! bin=$(build | tail -1) || [ -z "$bin" ]; then
    echo "FAIL kvm-ioctls/build: cannot build kvm-ioctls $VER's unit tests (see above)"
    exit 1
fi
echo "kvm-ioctls $VER: test binary $bin"
case "$bin" in /tmp/*) echo "FAIL kvm-ioctls/build: $bin is under /tmp, which the VM does not see (set KVM_RS_CACHE)"; exit 1 ;; esac
envs=(--env "KVM_IOCTLS_BIN=$bin" --env "KVM_IOCTLS_SRC=$dir" --env "KVM_IOCTLS_VER=$VER")
for v in KVM_IOCTLS_TIMEOUT KVM_IOCTLS_FILTER; do
    [ -z "${!v:-}" ] || envs+=(--env "$v=${!v}")
done
start=$(date +%s)
set +e
# shellcheck disable=SC2086
"$here/vm-run.sh" "${vmargs[@]}" "${envs[@]}" "$repo/tests/vm/kvm-ioctls.sh" $sets
status=$?
set -e
echo "kvm-ioctls: VM run took $(( $(date +%s) - start )) s (status $status)"
exit $status
