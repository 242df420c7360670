#!/bin/bash
# Builds (or finds in the cache) the project's Rust-enabled Linux 6.12 test kernel.
# The tree lives outside the repository, keyed by kernel version and config hash:
#   ${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}/linux-<version>-<hash>/{src,build}
# Prints the build directory (O=) on its last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || { echo "build-kernel: $tarball missing: run scripts/install-deps.sh" >&2; exit 1; }
[ -x /usr/bin/rustc ] || { echo "build-kernel: /usr/bin/rustc missing (apt-get install rustc-web rust-web-src)" >&2; exit 1; }

version=$(dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null || echo unknown)
hash=$( (cat "$here/kernel.config"; echo "$version"; /usr/bin/rustc --version) | sha256sum | cut -c1-12)
key="linux-${version}-${hash}"
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
K=(make -C "$ksrc" O="$out" RUSTC=/usr/bin/rustc
   RUST_LIB_SRC=/usr/lib/rustlib/src/rust/library BINDGEN="$(command -v bindgen)")
mkdir -p "$out"
"${K[@]}" rustavailable >&2
"${K[@]}" tinyconfig >&2
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$here/kernel.config" >&2
"${K[@]}" olddefconfig >&2
# Every line of the fragment must have survived olddefconfig, or the kernel is not
# the one the tests expect.
while read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qx "$line" "$out/.config" || { echo "build-kernel: config lost: $line" >&2; exit 1; } ;;
    esac
done < "$here/kernel.config"
echo "build-kernel: building $key (several minutes)" >&2
"${K[@]}" -j"$(nproc)" bzImage modules >&2
touch "$out/.built"
echo "$out"
