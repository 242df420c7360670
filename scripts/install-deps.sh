#!/bin/bash
# Installs everything this project needs on Debian 12 (bookworm), as root.
# Run once on a fresh machine; idempotent afterwards (skips what is present).
set -euo pipefail

APT_PKGS="linux-source-6.12 rustc-web rust-web-src clang lld llvm libclang-dev \
  qemu-system-x86 busybox-static bc flex bison libelf-dev libssl-dev cpio xz-utils \
  make gcc git kmod debootstrap gdb linux-perf python3"
BOCHS_PKGS="bochs bochs-term bochsbios vgabios isolinux syslinux-common genisoimage"

missing=""
for p in $APT_PKGS ${WITH_BOCHS:+$BOCHS_PKGS}; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "install-deps: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
fi

# bindgen: Debian's 0.60 is too old for Linux 6.12 (>= 0.65.1 needed).
BINDGEN_VERSION=0.69.5
if ! command -v bindgen >/dev/null 2>&1 || \
   ! bindgen --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
    echo "install-deps: cargo install bindgen-cli $BINDGEN_VERSION"
    cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked
fi
echo "install-deps: all present"
