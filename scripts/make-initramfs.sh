#!/bin/bash
# Builds the test VM's initramfs: busybox and an /init that mounts the host's root
# (read-only 9p) at /host, runs the job named on the kernel command line and
# powers the VM off. Output: the path of initramfs.gz (cached by content).
set -euo pipefail
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
here=$(cd "$(dirname "$0")" && pwd)
hash=$( (cat "$0"; sha256sum /bin/busybox) | sha256sum | cut -c1-12)
out="$cache/initramfs-$hash.gz"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
[ -x /bin/busybox ] || { echo "make-initramfs: /bin/busybox missing (apt-get install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,proc,sys,dev,host,tmp,mnt,repo}
cp /bin/busybox "$tmp/bin/busybox"
for app in $(/bin/busybox --list); do
    [ -e "$tmp/bin/$app" ] || ln -s busybox "$tmp/bin/$app"
done
cat > "$tmp/init" <<'EOI'
#!/bin/sh
# Test VM init: run /host<job> (from kvmjob= on the command line), report its exit
# status on the console, power off.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
# Kernel messages go to dmesg, not the console, so they cannot split test output.
echo 1 > /proc/sys/kernel/printk
ninep=1
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 host /host 2>/dev/null || ninep=0
# The chroot into /host (for binaries built on the host) needs these.
mount -t proc proc /host/proc 2>/dev/null
mount -t sysfs sys /host/sys 2>/dev/null
mount -t devtmpfs dev /host/dev 2>/dev/null
# The host's /tmp is not the VM's: with 9p, /host/tmp gets a tmpfs of its own
# (without 9p, as under Bochs, /host is the packed initramfs and stays as it is).
[ $ninep = 0 ] || mount -t tmpfs tmp /host/tmp 2>/dev/null
# The repository, shared on its own (vm-run.sh: tag "repo", kvmrepo=<host path>):
# at /repo, and again at /host<path> so that it is there wherever it was cloned
# (also under /tmp, which the tmpfs above hides), for `chroot /host` too.
repo=$(sed -n 's/.*kvmrepo=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$repo" ] && mkdir -p /repo &&
   mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 repo /repo 2>/dev/null; then
    mkdir -p "/host$repo" 2>/dev/null
    mount --bind /repo "/host$repo" || echo "init: cannot bind the repository at /host$repo"
fi
job=$(sed -n 's/.*kvmjob=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "init: job $job"
status=1
if [ -n "$job" ] && [ -f "/host$job" ]; then
    sh "/host$job"
    status=$?
fi
echo "KVMJOB-EXIT=$status"
sync
if [ $ninep = 1 ]; then
    # QEMU (-no-reboot): a reset ends the VM.
    reboot -f
else
    # Bochs (no 9p): its serial file is block-buffered and a reset or a kill loses
    # the tail, so push the status out with padding, then power off through ACPI.
    i=0; while [ $i -lt 64 ]; do echo "                                                                                                                                "; i=$((i+1)); done
    sleep 1
    poweroff -f
fi
EOI
chmod +x "$tmp/init"
mkdir -p "$cache"
(cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -9) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
