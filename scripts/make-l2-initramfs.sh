#!/bin/bash
# The initramfs of the nested (L2) guest that QEMU boots inside the test VM: busybox
# and an /init that prints a marker and powers off. Prints its path (cached).
# With kvmrs_l2=migrate on its command line, /init instead keeps rewriting a 2 MB
# file of random bytes and checks it against the checksum it took after the last
# write, once a second ("L2 TICK n ok" or "L2 TICK n BAD"), until it is stopped:
# a guest whose memory must survive live migration (tests/vm/qemu-migrate.sh).
set -euo pipefail
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
hash=$( (cat "$0"; sha256sum /bin/busybox) | sha256sum | cut -c1-12)
out="$cache/l2-initramfs-$hash.gz"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,proc,sys,dev}
cp /bin/busybox "$tmp/bin/busybox"
for app in sh echo mount poweroff cat sleep dmesg grep dd md5sum; do ln -s busybox "$tmp/bin/$app"; done
cat > "$tmp/init" <<'EOI'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "L2 guest: Linux $(cat /proc/sys/kernel/osrelease) up, $(grep -c ^processor /proc/cpuinfo) CPU(s)"
if grep -q kvmrs_l2=migrate /proc/cmdline; then
    mount -t devtmpfs dev /dev
    dd if=/dev/urandom of=/data bs=64k count=32 2>/dev/null
    sum=$(md5sum < /data)
    echo "L2 READY"
    n=0
    while :; do
        n=$((n + 1))
        if [ "$(md5sum < /data)" = "$sum" ]; then echo "L2 TICK $n ok"; else echo "L2 TICK $n BAD"; fi
        dd if=/dev/urandom of=/data bs=64k count=32 conv=notrunc 2>/dev/null
        sum=$(md5sum < /data)
        sleep 1
    done
fi
# The clock the guest chose (kvm-clock when the hypervisor offers kvmclock).
dmesg | grep -o 'clocksource: Switched to clocksource .*'
echo "L2 clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "KVM-RS-L2-BOOT-OK"
poweroff -f
EOI
chmod +x "$tmp/init"
mkdir -p "$cache"
(cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -9) > "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
