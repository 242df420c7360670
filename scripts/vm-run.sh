#!/bin/bash
# Runs a shell script inside the test VM: the project's test kernel under QEMU TCG
# with an AMD CPU that has SVM + NPT (-cpu EPYC,+svm), two CPUs, the host's root
# shared read-only at /host. The script runs as root in the VM's busybox shell with
# these variables set:
#   REPO       the repository as the VM sees it (/host + its host path; it is shared
#              on its own too, read-only 9p tag "repo" mounted at /repo and bound at
#              /host + its path, so a clone under /tmp works as well)
#   KBUILD     the kernel build dir, likewise (upstream modules: $KBUILD/arch/x86/kvm)
#   HOST_REPO, HOST_KBUILD  the same paths as seen after `chroot /host`
# and can `chroot /host` to run host binaries.
#
#   scripts/vm-run.sh [--smp N] [--mem M] [--timeout S] [--log FILE] [--icount]
#                     [--env NAME=VALUE]... [--append KERNEL-ARGS] SCRIPT [ARGS...]
# --env NAME=VALUE exports a variable to the script.
# --append adds arguments to the kernel command line (e.g. slub_debug=FZ).
# KBUILD=DIR picks the kernel (default: scripts/build-kernel.sh's, which honours
# KVM_RS_KERNEL=debug).
# --icount runs QEMU with -icount shift=0,sleep=off: the VM's clock counts
# instructions (deterministic benchmarks).
# The emulator is Debian unstable's QEMU from scripts/make-sid-root.sh's root (run
# through that root's own dynamic loader), not Debian 12's 7.2: 7.2's TCG SVM
# emulation sometimes resumes the test VM's kernel after a #VMEXIT with state from
# the nested guest or with it lost (README, Status: "the VMRUN bug"), on our modules
# and upstream's. KVM_RS_L0=debian12 runs Debian 12's qemu-system-x86_64 instead.
# KVM_RS_L0_ACCEL replaces the -accel value (default tcg), for experiments.
# Exit status: the script's, or 124 on timeout, 125 if the VM died without a status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
smp=2 mem=2G timeout=600 log="" extra=() envs=() append=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smp) smp=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --timeout) timeout=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
        --icount) extra+=(-icount shift=0,sleep=off); shift ;;
        --env) envs+=("$2"); shift 2 ;;
        --append) append="$append $2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
script=${1:?usage: vm-run.sh [options] SCRIPT [ARGS...]}
shift
script=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
case "$repo" in
    *[[:space:]\'\"]*) echo "vm-run: the repository path '$repo' has blanks or quotes: the VM cannot be told it" >&2; exit 1 ;;
esac

kbuild=${KBUILD:-$("$here/build-kernel.sh" | tail -1)}
initrd=$("$here/make-initramfs.sh")
# The job file must be visible in the VM under /host, outside /tmp (a tmpfs there;
# the repository itself is shared on its own, see above).
cache=${KVM_RS_CACHE:-$HOME/.cache/kvm-rs}
mkdir -p "$cache/jobs"
job=$(mktemp "$cache/jobs/job.XXXXXX")
[ -n "$log" ] || log=$(mktemp /tmp/kvm-rs-vm.XXXXXX.log)
trap 'rm -f "$job" "$job.sh"' EXIT
# A script outside the repository under /tmp is hidden by the VM's /tmp: copy it.
vmscript=/host$script
case "$script" in
    "$repo"/*) ;;
    /tmp/*) cp "$script" "$job.sh"; chmod 644 "$job.sh"; vmscript=/host$job.sh ;;
esac
{
    echo "export REPO='/host$repo' KBUILD='/host$kbuild' HOST_REPO='$repo' HOST_KBUILD='$kbuild'"
    for e in "${envs[@]}"; do echo "export $e"; done
    printf 'set --'; printf " '%s'" "$@"; echo
    echo ". '$vmscript'"
} > "$job"
chmod 644 "$job"

case "${KVM_RS_L0:-sid}" in
    sid)
        sid=$("$here/make-sid-root.sh" | tail -1)
        l0_qemu=("$sid/lib64/ld-linux-x86-64.so.2"
                 --library-path "$sid/usr/lib/x86_64-linux-gnu"
                 "$sid/usr/bin/qemu-system-x86_64" -L "$sid/usr/share/qemu" -L "$sid/usr/share/seabios") ;;
    debian12) l0_qemu=(qemu-system-x86_64) ;;
    *) echo "vm-run: KVM_RS_L0 is sid or debian12, not '$KVM_RS_L0'" >&2; exit 1 ;;
esac

set +e
timeout --foreground -k 10 "$timeout" "${l0_qemu[@]}" -accel "${KVM_RS_L0_ACCEL:-tcg}" -cpu EPYC,+svm \
    -smp "$smp" -m "$mem" "${extra[@]}" -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$kbuild/arch/x86/boot/bzImage" -initrd "$initrd" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs "local,path=${repo//,/,,},mount_tag=repo,security_model=none,readonly=on,multidevs=remap" \
    -append "console=ttyS0 panic=-1 quiet oops=panic kvmjob=$job kvmrepo=$repo$append" \
    </dev/null 2>&1 | tee "$log" | sed -u -e '/^KVMJOB-EXIT=/d' -e "/TCG doesn't support requested feature/d"
qstatus=${PIPESTATUS[0]}
set -e
if [ "$qstatus" = 124 ] || [ "$qstatus" = 137 ]; then
    echo "vm-run: timed out after ${timeout}s (log: $log)" >&2
    exit 124
fi
status=$(sed -n 's/^KVMJOB-EXIT=\([0-9]*\).*/\1/p' "$log" | tail -1)
if [ -z "$status" ]; then
    echo "vm-run: the VM ended without a job status (crash?) (log: $log)" >&2
    exit 125
fi
exit "$status"
