#!/bin/bash
# A minimal Debian unstable (sid) root with the newest Debian QEMU (qemu-system-x86),
# for tests/vm/qemu-new-boot.sh: QEMU 11 refuses a user-space APIC with KVM, so it
# exercises the in-kernel irqchip. Builds it once with debootstrap (default mirror,
# about a minute and 400 MB; installs debootstrap with apt-get if missing) and
# caches it as $KVM_RS_CACHE/sid-root-<script hash>-<QEMU version>; later runs find
# it and take no time. Prints its path on the last line.
#   KVM_RS_SID_REFRESH=1  builds a fresh root (newer QEMU), then removes the old ones.
# The test VM sees the host's root read-only at /host, so the root is prepared here
# for a chroot there: the mount points /proc, /sys, /dev, /tmp and /mnt exist (the
# test binds the VM's /dev, and a tmpfs with the L2 kernel and initramfs on /mnt).
# It must not be under /tmp (the VM has its own /tmp).
set -euo pipefail
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
hash=$(sha256sum "$0" | cut -c1-12)
prefix="$cache/sid-root-$hash-"
mkdir -p "$cache"

find_root() {
    local d
    for d in "$prefix"*; do
        [ -f "$d/.kvm-rs-complete" ] && { echo "$d"; return 0; }
    done
    return 1
}
if [ -z "${KVM_RS_SID_REFRESH:-}" ] && root=$(find_root); then echo "$root"; exit 0; fi

# One builder at a time; whatever a killed earlier attempt left is removed first.
exec 9>"$cache/sid-root.lock"
flock 9
if [ -z "${KVM_RS_SID_REFRESH:-}" ] && root=$(find_root); then echo "$root"; exit 0; fi

# Removes a root in the making: first unmounts what debootstrap may have mounted in
# it (proc, sysfs) when it was killed, so that rm never walks into them.
remove_tree() {
    local d=$1 m
    [ -e "$d" ] || return 0
    for m in $(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$d"
}
for d in "$cache"/sid-root.tmp.*; do remove_tree "$d"; done

case "$cache" in
    /tmp/*) echo "make-sid-root: warning: $cache is under /tmp, which the test VM does not see" >&2 ;;
esac
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make-sid-root: apt-get install debootstrap" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends debootstrap >&2 ||
        { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends debootstrap >&2; }
fi

tmp=$(mktemp -d "$cache/sid-root.tmp.XXXXXX")
trap 'remove_tree "$tmp"' EXIT
echo "make-sid-root: debootstrap sid into $tmp" >&2
start=$(date +%s)
if ! debootstrap --variant=minbase --include=qemu-system-x86 sid "$tmp" >"$tmp.log" 2>&1; then
    tail -30 "$tmp.log" >&2
    echo "make-sid-root: debootstrap failed (log: $tmp.log)" >&2
    exit 1
fi
rm -f "$tmp.log"
# Nothing of debootstrap's may stay mounted in a root that is renamed and shared.
for m in $(awk -v d="$tmp/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
rm -f "$tmp"/var/cache/apt/archives/*.deb
mkdir -p "$tmp"/{proc,sys,dev,tmp,mnt}
[ -x "$tmp/usr/bin/qemu-system-x86_64" ] || { echo "make-sid-root: no qemu-system-x86_64 in the new root" >&2; exit 1; }
version=$(dpkg-query --admindir="$tmp/var/lib/dpkg" -W -f='${Version}' qemu-system-x86)
echo "$version" > "$tmp/.kvm-rs-qemu-version"
touch "$tmp/.kvm-rs-complete"
# The directory name carries the version, made safe for paths and the VM's shell.
root="$prefix$(echo "${version#*:}" | tr -c 'A-Za-z0-9.\n-' '_')"
remove_tree "$root"
mv "$tmp" "$root"
trap - EXIT
echo "make-sid-root: QEMU $version in $root ($(( $(date +%s) - start )) s)" >&2
if [ -n "${KVM_RS_SID_REFRESH:-}" ]; then
    for d in "$cache"/sid-root-*; do
        [ "$d" = "$root" ] || [ ! -d "$d" ] || remove_tree "$d"
    done
fi
echo "$root"
