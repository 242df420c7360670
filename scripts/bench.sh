#!/bin/bash
# make bench: exit-path microbenchmarks of our modules against upstream's, in one
# boot of the test VM under -icount (instruction-counting clock), and the ratio
# ours/upstream per scenario (below 1.0 means fewer instructions than upstream).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
cargo build -q --release -p kvm-tests
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$here/vm-run.sh" --icount --timeout 1800 "$repo/tests/vm/bench.sh" ours upstream > "$out" 2>&1 || {
    echo "bench: the test VM failed"; tail -20 "$out"; exit 1; }
# Nested Linux boot (wall time inside the VM, not icount: QEMU in the VM does not
# finish booting L2 under icount): a warm-up boot, then the best of 3.
L2_INITRD=$("$here/make-l2-initramfs.sh")
"$here/vm-run.sh" --timeout 1800 --env "L2_INITRD=$L2_INITRD" --env "BOOT_RUNS=3" \
    "$repo/tests/vm/qemu-boot.sh" ours upstream >> "$out" 2>&1 || echo "bench: the boot run failed"
# The same exit-path loops on Intel VMX under Bochs, whose clock also counts
# instructions (clock: sync=none), so the ratios compare emulated work.
vmx=$(mktemp)
trap 'rm -f "$out" "$vmx"' EXIT
"$here/bochs-run.sh" --timeout 1800 "$repo/tests/vm/bench.sh" ours upstream > "$vmx" 2>&1 \
    || echo "bench: the Bochs run failed"
table() {
    printf '%-22s %14s %14s %8s\n' "$2" "ours ns/iter" "upstream" ratio
    for name in $(awk '$1=="BENCH" {print $3}' "$1" | sort -u); do
        o=$(awk -v n="$name" '$1=="BENCH" && $2=="ours" && $3==n {print $4}' "$1")
        u=$(awk -v n="$name" '$1=="BENCH" && $2=="upstream" && $3==n {print $4}' "$1")
        r=$(awk -v o="$o" -v u="$u" 'BEGIN { if (u > 0) printf "%.2f", o / u; else print "-" }')
        printf '%-22s %14s %14s %8s\n' "$name" "${o:--}" "${u:--}" "$r"
    done
}
table "$out" "SVM (QEMU -icount)"
bo=$(awk '$1=="BOOTTIME" && $2=="ours" {print $3}' "$out")
bu=$(awk '$1=="BOOTTIME" && $2=="upstream" {print $3}' "$out")
br=$(awk -v o="$bo" -v u="$bu" 'BEGIN { if (u > 0) printf "%.2f", o / u; else print "-" }')
printf '%-22s %14s %14s %8s\n' "l2_linux_boot_s" "${bo:--}" "${bu:--}" "$br"
echo
table "$vmx" "VMX (Bochs)"
