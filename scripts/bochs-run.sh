#!/bin/bash
# Runs a shell script inside Bochs 2.7 emulating an Intel Skylake-X with VMX (EPT,
# VPID, unrestricted guest): the only VMX this machine can offer. Bochs has no 9p,
# so the repository's modules, the test binaries (with their libraries) and the
# tests/vm scripts are packed into the initramfs, at the same paths under /host.
# Environment in the VM as with vm-run.sh (REPO, KBUILD, HOST_REPO, HOST_KBUILD);
# `chroot /host` works for the packed binaries.
#
#   scripts/bochs-run.sh [--timeout S] [--log FILE] [--with-qemu] SCRIPT [ARGS...]
# --with-qemu also packs Debian's QEMU (binary, libraries, firmware), the test
# kernel and the L2 initramfs (L2_INITRD), for tests/vm/qemu-boot.sh.
# BOCHS_CPUS=N emulates N CPUs (default 1).
# Exit status: the script's, 124 on timeout, 125 without a status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
timeout=300 log="" with_qemu=0
while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) timeout=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --with-qemu) with_qemu=1; shift ;;
        *) break ;;
    esac
done
script=${1:?usage: bochs-run.sh [options] SCRIPT [ARGS...]}
shift
script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
command -v bochs-bin >/dev/null || { echo "bochs-run: bochs missing (WITH_BOCHS=1 scripts/install-deps.sh)" >&2; exit 1; }

kbuild=${KBUILD:-$("$here/build-kernel.sh" | tail -1)}
base=$("$here/make-initramfs.sh")
work=$(mktemp -d /tmp/kvm-rs-bochs.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -n "$log" ] || log="$work/serial.txt"

# Overlay: /host with what the tests use, and the job.
ov="$work/overlay"
h="$ov/host"
mkdir -p "$h$repo/tests" "$h$repo/target/release" "$h$kbuild/arch/x86/kvm" "$h$kbuild/virt/lib" \
         "$h/proc" "$h/sys" "$h/dev" "$h/tmp"
cp "$repo"/*.ko "$h$repo/"
cp -r "$repo/tests/vm" "$h$repo/tests/"
cp "$kbuild"/arch/x86/kvm/*.ko "$h$kbuild/arch/x86/kvm/"
cp "$kbuild"/virt/lib/irqbypass.ko "$h$kbuild/virt/lib/"
bins=("$repo"/target/release/kvm-api-tests "$repo"/target/release/rdmsr "$repo"/target/release/kvm-bench)
if [ $with_qemu = 1 ]; then
    bins+=(/usr/bin/qemu-system-x86_64)
    mkdir -p "$h/usr/share" "$h$kbuild/arch/x86/boot" "$h$(dirname "${L2_INITRD:?--with-qemu needs L2_INITRD}")"
    cp -a /usr/share/qemu /usr/share/seabios "$h/usr/share/"
    cp "$kbuild/arch/x86/boot/bzImage" "$h$kbuild/arch/x86/boot/"
    cp "$L2_INITRD" "$h$L2_INITRD"
fi
for b in "${bins[@]}"; do
    [ -x "$b" ] || continue
    mkdir -p "$h$(dirname "$b")"
    cp "$b" "$h$b"
    for lib in $(ldd "$b" | grep -o '/[^ ]*'); do
        mkdir -p "$h$(dirname "$lib")"; cp -L "$lib" "$h$lib"
    done
done
mkdir -p "$h$(dirname "$script")"
cp "$script" "$h$script"
job=/job.sh
{
    echo "export REPO='/host$repo' KBUILD='/host$kbuild' HOST_REPO='$repo' HOST_KBUILD='$kbuild'"
    echo "export API_FILTERS='${API_FILTERS:-}'"
    [ $with_qemu = 0 ] || echo "export L2_INITRD='$L2_INITRD' QEMU_TIMEOUT='${QEMU_TIMEOUT:-300}' QEMU_BOOT_CONFIGS='${QEMU_BOOT_CONFIGS:-}'"
    printf 'set --'; printf " '%s'" "$@"; echo
    echo ". '/host$script'"
} > "$h$job"
# The base init looks for /host$job; without 9p the packed /host is used as is.
(cd "$ov" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/overlay.gz"
cat "$base" "$work/overlay.gz" > "$work/initrd.gz"

iso="$work/iso"
mkdir -p "$iso"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/"
cp "$kbuild/arch/x86/boot/bzImage" "$iso/bzimage"
cp "$work/initrd.gz" "$iso/initrd.gz"
cat > "$iso/isolinux.cfg" <<EOI
default linux
prompt 0
label linux
  kernel bzimage
  append initrd=initrd.gz console=ttyS0 panic=-1 quiet oops=panic kvmjob=$job
EOI
genisoimage -quiet -o "$work/boot.iso" -b isolinux.bin -c boot.cat -no-emul-boot \
    -boot-load-size 4 -boot-info-table "$iso"

cat > "$work/bochsrc" <<EOI
cpu: model=corei7_skylake_x, count=${BOCHS_CPUS:-1}, ips=100000000, reset_on_triple_fault=0, ignore_bad_msrs=1
memory: guest=512, host=512
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
display_library: rfb, options="timeout=0"
pci: enabled=1, chipset=i440fx
ata0-master: type=cdrom, path=$work/boot.iso, status=inserted
boot: cdrom
clock: sync=none
com1: enabled=1, mode=file, dev=$log
panic: action=fatal
log: $work/bochs.log
EOI
printf 'c\nq\n' > "$work/dbg.rc"
: > "$log"
(cd "$work" && timeout -k 5 "$timeout" bochs-bin -q -f bochsrc -rc dbg.rc >/dev/null 2>&1) &
bpid=$!
# Bochs keeps running after a halt: stop it once the job status appears.
status=""
while kill -0 $bpid 2>/dev/null; do
    if grep -q '^KVMJOB-EXIT=' "$log" 2>/dev/null; then
        sleep 1; kill $bpid 2>/dev/null || true; break
    fi
    sleep 1
done
wait $bpid 2>/dev/null || true
sed -e '/^KVMJOB-EXIT=/d' "$log"
status=$(sed -n 's/^KVMJOB-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
[ -n "$status" ] || { echo "bochs-run: no job status (timeout ${timeout}s or crash)" >&2; exit 125; }
exit "$status"
