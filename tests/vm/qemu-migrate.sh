# Debian's QEMU (7.2) migrates a running nested Linux guest through a file and
# restores it in a new QEMU, for each module set given (runs inside the test VM):
#   1. QEMU A boots the test kernel with kvmrs_l2=migrate (scripts/make-l2-initramfs.sh:
#      the guest rewrites a 2 MB file once a second and checks it against the
#      checksum it kept in its memory, printing "L2 TICK n ok" or "... BAD");
#   2. once the guest ticks, A's monitor runs `migrate "exec:cat > FILE"` while the
#      guest keeps writing (pre-copy: dirty logging decides what is sent again),
#      waits for "completed" and quits;
#   3. QEMU B starts with -incoming "exec:cat FILE"; the guest must go on ticking
#      from where it stopped, with its file intact ("ok"), on both vCPUs' clocks.
# Each module set runs it twice: with dirty logging by bitmaps (QEMU's default)
# and with the dirty ring (-accel kvm,dirty-ring-size=4096: QEMU harvests each
# vCPU's ring and resets it; tests named migrate_ring/...). QEMU falls back to
# bitmaps with a warning if KVM_CAP_DIRTY_LOG_RING is missing, which fails the
# ring round. MIGRATE_MODES="bitmap" leaves the ring round out: QEMU 7.2's
# ring reaper thread asserts ("kvm_dirty_ring_reap_one: Assertion `dirty_gfns
# && ring_size' failed") if it wakes, one second after the accelerator's
# start, before every vCPU thread has mapped its ring, which the debug kernel's
# slow vCPU creation makes happen (a QEMU race, whatever the module set).
# L2_INITRD (a host path) comes from scripts/make-l2-initramfs.sh.
# The monitors are FIFO pairs (QEMU's pipe: backend) so that nothing beyond the
# host's QEMU and the VM's busybox is needed.
: "${L2_INITRD:?L2_INITRD: the initramfs from scripts/make-l2-initramfs.sh}"
work=/host/tmp/kvm-rs-migrate   # /tmp of `chroot /host`, a tmpfs in the VM
hwork=/tmp/kvm-rs-migrate

# qemu_start NAME [QEMU ARGS...]: starts QEMU in the background, its serial in
# $work/NAME.out, its monitor on $work/NAME.mon.{in,out} (replies in NAME.mon.log).
qemu_start() {
    local name=$1; shift
    mkfifo "$work/$name.mon.in" "$work/$name.mon.out"
    chroot /host /usr/bin/qemu-system-x86_64 -accel "$accel" -machine pc -smp 2 -cpu qemu64 -m 256M \
        -display none -nodefaults -no-reboot -serial "file:$hwork/$name.out" \
        -monitor "pipe:$hwork/$name.mon" \
        -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" -initrd "$L2_INITRD" \
        -append "console=ttyS0 panic=-1 quiet kvmrs_l2=migrate" "$@" \
        > "$work/$name.stderr" 2>&1 &
    eval "${name}_pid=$!"
    cat "$work/$name.mon.out" > "$work/$name.mon.log" &
    eval "${name}_cat=$!"
}
# mon NAME COMMAND: sends one monitor command. QEMU holds the FIFO open for
# reading and writing, so opening it does not block while QEMU lives; the
# timeout covers a QEMU that is gone.
mon() { chroot /host timeout 5 sh -c 'echo "$0" > "$1"' "$2" "$hwork/$1.mon.in"; }
# wait_for SECONDS FILE PATTERN: polls until grep -E finds PATTERN in FILE.
wait_for() {
    local i=0
    while [ $i -lt "$1" ]; do
        grep -q -E "$3" "$2" 2>/dev/null && return 0
        sleep 1; i=$((i + 1))
    done
    return 1
}
last_tick() { sed -n 's/^L2 TICK \([0-9]*\) .*/\1/p' "$1" | tail -1; }
qemu_stop() { # NAME
    local pid cat
    eval "pid=\${${1}_pid:-} cat=\${${1}_cat:-}"
    [ -n "$pid" ] && { mon "$1" quit 2>/dev/null; sleep 2; kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
    [ -n "$cat" ] && { kill "$cat" 2>/dev/null; wait "$cat" 2>/dev/null; }
    eval "${1}_pid= ${1}_cat="
}

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail migrate/load "cannot load $MODSET"; continue; }
    dmesg_mark
    for mode in ${MIGRATE_MODES:-bitmap ring}; do
        case $mode in
            bitmap) t=migrate accel=kvm ;;
            ring) t=migrate_ring accel=kvm,dirty-ring-size=4096 ;;
        esac
        rm -rf "$work"; mkdir -p "$work"

        qemu_start src
        if ! wait_for 180 "$work/src.out" '^L2 TICK 2 '; then
            fail $t/source_runs "no tick from the guest: $(tail -5 "$work/src.out" "$work/src.stderr")"
            qemu_stop src; continue
        fi
        mon src "migrate_set_parameter max-bandwidth 1G"
        mon src "migrate \"exec:cat > $hwork/guest.mig\""
        status=""
        for i in $(seq 1 300); do
            mon src "info migrate"
            sleep 1
            status=$(sed -n 's/^Migration status: *\([a-z-]*\).*/\1/p' "$work/src.mon.log" | tail -1)
            case "$status" in completed|failed|cancelled) break ;; esac
        done
        before=$(last_tick "$work/src.out")
        # How pre-copy went: rounds of dirty-log syncs, pages sent again, downtime.
        echo "INFO $MODSET/$t: stopped at tick $before; $(grep -E '^(dirty sync count|transferred ram|dirty pages rate|downtime|total time)' "$work/src.mon.log" | tail -5 | tr '\n' ';')"
        qemu_stop src
        if [ "$status" != completed ]; then
            fail $t/save_running_guest "migration status '${status:-none}': $(tail -5 "$work/src.mon.log" "$work/src.stderr")"
            continue
        fi
        if grep -q BAD "$work/src.out"; then
            fail $t/save_running_guest "the guest's file went bad before migration: $(grep BAD "$work/src.out" | head -3)"
        else
            pass $t/save_running_guest
        fi

        if [ $mode = ring ]; then
            # QEMU says so when it falls back to bitmaps (no KVM_CAP_DIRTY_LOG_RING).
            if grep -qi "dirty ring" "$work/src.stderr"; then
                fail $t/ring_used "QEMU did not use the dirty ring: $(grep -i 'dirty ring' "$work/src.stderr" | head -2)"
            else
                pass $t/ring_used
            fi
        fi

        qemu_start dst -incoming "exec:cat $hwork/guest.mig"
        # The restored guest goes on from its last tick: two more, both checked.
        want=$(( ${before:-0} + 2 ))
        if wait_for 180 "$work/dst.out" "^L2 TICK ($want|$((want + 1))|$((want + 2))) "; then
            first=$(sed -n 's/^L2 TICK \([0-9]*\) .*/\1/p' "$work/dst.out" | head -1)
            if grep -q BAD "$work/dst.out"; then
                fail $t/restored_guest_continues "memory differs after restore: $(grep TICK "$work/dst.out" | head -4)"
            elif [ "$first" -le "${before:-0}" ]; then
                fail $t/restored_guest_continues "the guest went back from tick $before to $first"
            else
                echo "INFO $MODSET/$t: the restored guest went on at tick $first"
                pass $t/restored_guest_continues
            fi
        else
            fail $t/restored_guest_continues "no tick after $before: $(tail -5 "$work/dst.out" "$work/dst.stderr")"
        fi
        qemu_stop dst
        rm -rf "$work"
    done
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass migrate/dmesg_clean || fail migrate/dmesg_clean "$bad"
    unload_all
done
exit 0
