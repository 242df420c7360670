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
L2_INITRD=$("$here/make-l2-initramfs.sh")
exec "$here/vm-run.sh" --timeout 900 --env "L2_INITRD=$L2_INITRD" "$repo/tests/vm/main-job.sh"
