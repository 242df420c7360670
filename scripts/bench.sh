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
printf '%-22s %14s %14s %8s\n' scenario "ours ns/iter" "upstream" ratio
for name in $(awk '$1=="BENCH" {print $3}' "$out" | sort -u); do
    o=$(awk -v n="$name" '$1=="BENCH" && $2=="ours" && $3==n {print $4}' "$out")
    u=$(awk -v n="$name" '$1=="BENCH" && $2=="upstream" && $3==n {print $4}' "$out")
    r=$(awk -v o="$o" -v u="$u" 'BEGIN { if (u > 0) printf "%.2f", o / u; else print "-" }')
    printf '%-22s %14s %14s %8s\n' "$name" "${o:--}" "${u:--}" "$r"
done
