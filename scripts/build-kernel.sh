#!/bin/bash
# Builds (or finds in the cache) the project's Rust-enabled Linux 6.12 test kernel.
# The tree lives outside the repository, keyed by kernel version and config hash:
#   ${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}/linux-<version>-<hash>/{src,build}
# Prints the build directory (O=) on its last line of stdout.
#
#   scripts/build-kernel.sh [--debug]
# --debug (or KVM_RS_KERNEL=debug) builds the debug variant instead: kernel.config
# plus kernel-debug.config (KASAN, kmemleak, lockdep, UBSAN, debug objects, Rust
# debug assertions...), compiled with LLVM=1 (clang/lld: 6.12's RUST needs clang
# with KASAN), cached as linux-<version>-debug-<hash>. Out-of-tree modules for it
# must be built with LLVM=1 too (scripts/build-debug-modules.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
variant=${KVM_RS_KERNEL:-normal}
for arg in "$@"; do
    case "$arg" in
        --debug) variant=debug ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "build-kernel: unknown option $arg" >&2; exit 1 ;;
    esac
done
case "$variant" in
    normal|"") variant=normal ;;
    debug) ;;
    *) echo "build-kernel: KVM_RS_KERNEL=$variant: expected normal or debug" >&2; exit 1 ;;
esac
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || { echo "build-kernel: $tarball missing: run scripts/install-deps.sh" >&2; exit 1; }
[ -x /usr/bin/rustc ] || { echo "build-kernel: /usr/bin/rustc missing (apt-get install rustc-web rust-web-src)" >&2; exit 1; }

version=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown)
fragments=("$here/kernel.config")
llvm=()
if [ "$variant" = debug ]; then
    for t in clang ld.lld llvm-nm llvm-ar llvm-objcopy; do
        command -v "$t" >/dev/null || { echo "build-kernel: $t missing (apt-get install clang lld llvm)" >&2; exit 1; }
    done
    fragments+=("$here/kernel-debug.config")
    llvm=(LLVM=1)
    hash=$( (cat "${fragments[@]}"; echo "$version"; /usr/bin/rustc --version; clang --version | head -1; ld.lld --version) | sha256sum | cut -c1-12)
    key="linux-${version}-debug-${hash}"
else
    hash=$( (cat "$here/kernel.config"; echo "$version"; /usr/bin/rustc --version) | sha256sum | cut -c1-12)
    key="linux-${version}-${hash}"
fi
src="$cache/$key/src"
out="$cache/$key/build"
if [ -f "$out/.built" ]; then
    echo "$out"
    exit 0
fi
mkdir -p "$cache/$key"
if [ ! -f "$src/linux-source-6.12/Makefile" ]; then
    echo "build-kernel: unpacking $tarball" >&2
    rm -rf "$src"; mkdir -p "$src"
    tar xf "$tarball" -C "$src"
fi
ksrc="$src/linux-source-6.12"
K=(make -C "$ksrc" O="$out" "${llvm[@]}" RUSTC=/usr/bin/rustc
   RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library BINDGEN="$(command -v bindgen)")
mkdir -p "$out"
"${K[@]}" rustavailable >&2
"${K[@]}" tinyconfig >&2
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${fragments[@]}" >&2
"${K[@]}" olddefconfig >&2
# Every line of the fragments must have survived olddefconfig, or the kernel is not
# the one the tests expect.
for frag in "${fragments[@]}"; do
    while read -r line; do
        case "$line" in
            CONFIG_*=*) grep -qx "$line" "$out/.config" || { echo "build-kernel: config lost: $line ($(basename "$frag"))" >&2; exit 1; } ;;
            "# CONFIG_"*" is not set")
                opt=${line#\# }; opt=${opt%% *}
                if grep -q "^$opt=" "$out/.config"; then
                    echo "build-kernel: config set though the fragment unsets it: $(grep "^$opt=" "$out/.config") ($(basename "$frag"))" >&2; exit 1
                fi ;;
        esac
    done < "$frag"
done
echo "build-kernel: building $key (several minutes)" >&2
"${K[@]}" -j"$(nproc)" bzImage modules >&2
touch "$out/.built"
echo "$out"
