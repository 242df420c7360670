#!/bin/bash
# Builds this project's modules (kvm.ko, kvm-amd.ko, kvm-intel.ko) against the debug
# test kernel (scripts/build-kernel.sh --debug: KASAN, lockdep, kmemleak, UBSAN...)
# without touching the normal build in the repository: the sources are copied
# (no target/ build/ .git or build artefacts) to
#   ${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}/debug-modules/<hash of repo path + kernel>
# and configured and built there with LLVM=1 (the debug kernel is built with clang;
# modules must match it). Later runs sync the changes and rebuild incrementally.
# Prints the directory holding the three .ko files on its last line of stdout
# (it is a full copy of the sources: tests/vm is there too).
#
#   scripts/build-debug-modules.sh [--kerneldir=DIR]
# Default kernel: scripts/build-kernel.sh --debug (built if not in the cache).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
kdir=""
for arg in "$@"; do
    case "$arg" in
        --kerneldir=*) kdir=${arg#*=} ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build-debug-modules: unknown option $arg" >&2; exit 1 ;;
    esac
done
[ -n "$kdir" ] || kdir=$("$here/build-kernel.sh" --debug | tail -1)
kdir=$(cd "$kdir" && pwd)
grep -q '^CONFIG_CC_IS_CLANG=y' "$kdir/.config" ||
    echo "build-debug-modules: warning: $kdir was not built with clang" >&2

cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
key=$(printf '%s\n%s\n' "$repo" "$kdir" | sha256sum | cut -c1-12)
dest="$cache/debug-modules/$key"
mkdir -p "$dest"
# The sources: every file but the build artefacts (.gitignore's list), target/,
# build/ and .git. tar keeps their mtimes, and the artefacts in $dest stay, so make
# rebuilds only what changed; files gone from the repository go from $dest too.
srcfiles() {
    find . \( -path ./target -o -path ./build -o -path ./.git -o -path './x86/*/generated' \) -prune \
        -o \( -type f -o -type l \) \
        ! -name '*.o' ! -name '*.ko' ! -name '*.mod' ! -name '*.mod.c' ! -name '*.cmd' \
        ! -name '*.rmeta' ! -name '*.d' ! -name '*.a' ! -name modules.order ! -name Module.symvers \
        ! -path ./config.mak ! -path ./kvm-kmod-config.h -print0
}
(cd "$repo" && srcfiles | tar --null -T - -cf -) | tar -C "$dest" -xf -
(cd "$dest" && srcfiles) | while IFS= read -r -d '' f; do
    [ -e "$repo/$f" ] || [ -L "$repo/$f" ] || rm -f "$dest/$f"
done
cd "$dest"
./configure --kerneldir="$kdir" >&2
# LLVM=1 on make's command line reaches the kbuild sub-make through MAKEFLAGS.
make LLVM=1 >&2
for m in kvm kvm-amd kvm-intel; do
    [ -f "$dest/$m.ko" ] || { echo "build-debug-modules: $dest/$m.ko was not built" >&2; exit 1; }
done
echo "$dest"
