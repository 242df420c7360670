#!/bin/bash
# Fails if a function of the built modules reserves a stack frame larger than
# LIMIT bytes (default 3200). Kernel stacks are 16K and Rust has no
# -Wframe-larger-than: a value built on the stack before it is boxed
# (KBox::new([0u8; 4096])) once put four 4K frames on the KVM_RUN path and
# overflowed the stack (x86/kvm/heap.rs has the heap-only helpers).
#   scripts/check-stack-frames.sh [LIMIT]     (run after `make`)
set -e
cd "$(dirname "$0")/.."
limit=${1:-3200}
status=0
for m in kvm.ko kvm-amd.ko kvm-intel.ko; do
    [ -f "$m" ] || { echo "check-stack-frames: $m not built" >&2; exit 1; }
    out=$(objdump -d --no-show-raw-insn "$m" | awk -v limit="$limit" -v mod="$m" '
        /^[0-9a-f]+ <.*>:$/ { fn = $2; next }
        /sub +\$0x[0-9a-f]+,%rsp/ {
            match($0, /\$0x[0-9a-f]+/)
            hex = substr($0, RSTART + 3, RLENGTH - 3)
            v = 0
            for (i = 1; i <= length(hex); i++) v = v * 16 + index("0123456789abcdef", substr(hex, i, 1)) - 1
            if (v > limit) printf "%s: %d bytes in %s\n", mod, v, fn
        }')
    if [ -n "$out" ]; then echo "$out"; status=1; fi
done
[ $status = 0 ] && echo "check-stack-frames: no frame above $limit bytes"
exit $status
