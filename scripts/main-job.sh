#!/bin/bash
# The main job (README's first command, after setup): builds the modules and runs
# a guest on them in the test VM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
./configure
make -s
cargo build -q --release -p kvm-tests
exec "$here/vm-run.sh" --timeout 300 "$repo/tests/vm/main-job.sh"
