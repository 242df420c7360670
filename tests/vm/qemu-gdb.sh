# gdb debugs a nested (L2) Linux guest through Debian's QEMU 7.2 gdbstub (issue
# #10), for each module set given (runs inside the test VM). QEMU starts the test
# kernel with -s -S (gdbstub on tcp::1234, CPU stopped at the reset vector);
# Debian's gdb (chroot /host) attaches in batch mode with the kernel's vmlinux.
# QEMU's gdbstub drives KVM_SET_GUEST_DEBUG: stepi = KVM_GUESTDBG_SINGLESTEP,
# hbreak = KVM_GUESTDBG_USE_HW_BP (debugreg[0..3] + DR7), break =
# KVM_GUESTDBG_USE_SW_BP (QEMU writes INT3 into guest memory, KVM intercepts #BP).
#
# Run 1 (one QEMU, one gdb session, L2_INITRD's init):
#   attach             at the reset vector: $pc 0xfff0, `info registers` rip
#                      0xfff0, cs 0xf000
#   single_step_reset  stepi x3 in real mode from there: $pc moves each time
#   hw_breakpoint      `hbreak start_kernel`, continue: stops in start_kernel;
#                      gdb then kills QEMU
# Run 2 (a fresh QEMU; its init is `sh -c` looping on `sleep 1` for about 100 s,
# then power-off). A software breakpoint cannot be set at -S (the kernel is not
# decompressed yet and its addresses are not mapped: gdb cannot write the INT3),
# and the test must not depend on hbreak: gdb attaches and detaches (QEMU runs
# on); once the guest's console shows the loop's marker, gdb attaches again (the
# gdbstub stops the VM wherever it is: idle loop, timer interrupt, sh):
#   registers          `info registers rip rsp cs`: rip = $pc, rsp = $sp, and a
#                      kernel rsp when cs is the kernel's (0x10)
#   single_step        stepi x3 in long mode: $pc moves each time
#   sw_breakpoint      `break hrtimer_nanosleep` (each `sleep 1`), continue:
#                      stops in hrtimer_nanosleep; gdb then kills QEMU
# dmesg_clean          no warnings/oopses in the test VM's log.
#
# Needs L2_INITRD (host path, scripts/make-l2-initramfs.sh). Knobs: GDB_TIMEOUT
# per gdb session (seconds, default 240), QEMU_TIMEOUT per QEMU (default 400),
# QEMU_GDB_SKIP="hw_breakpoint sw_breakpoint" leaves those out (a `SKIP <set>/...`
# line each, which the host's count ignores). Under the test VM's QEMU 7.2 TCG
# (L0) neither works on any L1 KVM, upstream's included: its VMRUN loads the L2's
# DR7 without installing the breakpoints (no cpu_x86_update_dr7), and it checks an
# INT3 against the INTn intercept, not the #BP exception intercept, so the L2
# guest takes its own #BP (an "Oops: int3" in its console).
: "${L2_INITRD:?L2_INITRD: the initramfs from scripts/make-l2-initramfs.sh}"
GDB_TIMEOUT=${GDB_TIMEOUT:-240}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-400}
VMLINUX=$HOST_KBUILD/vmlinux
SERIAL=/tmp/qemu-gdb-serial.log
QPID=""
# Run 2's init (kernel arguments after -- go to init; no '=' inside, clear of the
# kernel's parameter parsing); its marker tells the shell that the guest is up.
LOOP_INIT='rdinit=/bin/sh -- -c "echo GDB-L2-LOOP; for i in 0 1 2 3 4 5 6 7 8 9; do for j in 0 1 2 3 4 5 6 7 8 9; do sleep 1; done; done; poweroff -f"'

# The gdbstub listens on TCP: the test VM needs its loopback.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null

# l2_start [KERNEL-ARGS]: starts QEMU in the background (its pid in QPID, console
# in $SERIAL) and waits for the gdbstub's port; returns 1 if it does not come up.
l2_start() {
    : > "$SERIAL"
    timeout "$QEMU_TIMEOUT" chroot /host /usr/bin/qemu-system-x86_64 -accel kvm -machine pc \
        -smp 1 -cpu qemu64 -m 256M -nographic -nodefaults -serial stdio -no-reboot \
        -kernel "$HOST_KBUILD/arch/x86/boot/bzImage" -initrd "$L2_INITRD" \
        -append "console=ttyS0 panic=-1 nokaslr $1" -s -S </dev/null >"$SERIAL" 2>&1 &
    QPID=$!
    i=0
    while [ $i -lt 60 ]; do
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -q ':04D2 0*:0000 0A' && return 0
        kill -0 "$QPID" 2>/dev/null || return 1
        sleep 1; i=$((i + 1))
    done
    return 1
}
# Ends QEMU if gdb did not (gdb's `kill` makes it exit).
l2_stop() {
    [ -n "$QPID" ] || return 0
    i=0
    while kill -0 "$QPID" 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
    kill "$QPID" 2>/dev/null && sleep 1 && kill -9 "$QPID" 2>/dev/null
    wait "$QPID" 2>/dev/null
    QPID=""
}
# gdb in batch mode on the L2 kernel's symbols, attached to QEMU, then the given
# -ex commands (an error in one does not stop the next).
gdb_run() {
    timeout "$GDB_TIMEOUT" chroot /host gdb -nx -batch -q -ex 'set pagination off' -ex 'set confirm off' \
        -ex 'set width 0' -ex "file $VMLINUX" -ex 'target remote 127.0.0.1:1234' "$@" </dev/null 2>&1
}
# gdb command printing a marker line `KEY <value of $pc>`, and the values back.
pr() { printf 'printf "%s %%#lx\\n", $pc' "$1"; }
vals() { echo "$1" | sed -n "s/^$2 \(0x[0-9a-f]*\)$/\1/p"; }
# `info registers` value of a register.
reg() { echo "$1" | sed -n "s/^$2  *\(0x[0-9a-f]*\) .*/\1/p" | tail -1; }
# Three values, each different from the one before it (the first from $2)?
moves() {
    [ "$(echo "$1" | grep -c .)" = 3 ] || return 1
    prev=$2
    for a in $1; do [ "$a" != "$prev" ] || return 1; prev=$a; done
}
# The last lines of gdb's output without the markers, on one line.
why() { echo "$1" | grep -v -E '^[A-Z]+ 0x' | tail -${2:-10} | tr '\n' '|'; }
console() { grep -E "${1:-.}" "$SERIAL" | tail -${2:-4} | tr '\n' '|'; }
skipped() {
    case " ${QEMU_GDB_SKIP:-} " in *" $1 "*) echo "SKIP $MODSET/qemu-gdb/$1: QEMU_GDB_SKIP"; return 0 ;; esac
    return 1
}
show() { echo "$1" | sed "s/^/    gdb($2): /" >&2; }

run_hw() {
    if ! l2_start; then
        for t in attach single_step_reset hw_breakpoint; do
            fail qemu-gdb/$t "QEMU's gdbstub did not come up: $(console . 5)"
        done
        l2_stop; return
    fi
    set -- -ex 'hbreak start_kernel' -ex continue -ex "$(pr STOP)" -ex 'info symbol $pc'
    skipped hw_breakpoint >/dev/null && set --
    out=$(gdb_run -ex "$(pr RESET)" -ex 'info registers rip rsp cs' \
        -ex stepi -ex "$(pr STEP)" -ex stepi -ex "$(pr STEP)" -ex stepi -ex "$(pr STEP)" "$@" -ex kill)
    rc=$?
    l2_stop
    show "$out" 1

    reset=$(vals "$out" RESET)
    rip=$(reg "$out" rip) cs=$(reg "$out" cs)
    if [ "$reset" = 0xfff0 ] && [ "$rip" = 0xfff0 ] && [ "$cs" = 0xf000 ]; then
        pass qemu-gdb/attach
    else
        fail qemu-gdb/attach "gdb rc $rc; at the reset vector \$pc ${reset:-?}, rip ${rip:-?}, cs ${cs:-?} (want 0xfff0, 0xfff0, 0xf000): $(why "$out")"
    fi

    steps=$(vals "$out" STEP)
    if moves "$steps" "$reset"; then pass qemu-gdb/single_step_reset
    else fail qemu-gdb/single_step_reset "\$pc after each stepi from ${reset:-?}: $(echo $steps): $(why "$out")"; fi

    if skipped hw_breakpoint; then :
    elif echo "$out" | grep -q -E '^start_kernel( \+ [0-9]+)? in section'; then
        pass qemu-gdb/hw_breakpoint
    else
        fail qemu-gdb/hw_breakpoint "not stopped in start_kernel (\$pc $(vals "$out" STOP)): $(why "$out" 6) console: $(console '[A-Za-z]' 2)"
    fi
}

run_sw() {
    if ! l2_start "$LOOP_INIT"; then
        for t in registers single_step sw_breakpoint; do
            fail qemu-gdb/$t "QEMU's gdbstub did not come up: $(console . 5)"
        done
        l2_stop; return
    fi
    # Attach and detach: QEMU runs on, to the init's loop.
    out1=$(gdb_run -ex detach)
    show "$out1" 2a
    i=0
    while ! grep -q '^GDB-L2-LOOP' "$SERIAL" && kill -0 "$QPID" 2>/dev/null && [ $i -lt 180 ]; do
        sleep 1; i=$((i + 1))
    done
    if ! grep -q '^GDB-L2-LOOP' "$SERIAL"; then
        for t in registers single_step sw_breakpoint; do
            fail qemu-gdb/$t "not tested: the guest did not reach its init after gdb's detach: $(why "$out1" 4) console: $(console . 4)"
        done
        l2_stop; return
    fi
    set -- -ex 'break hrtimer_nanosleep' -ex continue -ex "$(pr STOP)" -ex 'info symbol $pc' -ex 'bt 4'
    skipped sw_breakpoint >/dev/null && set --
    out=$(gdb_run -ex "$(pr ATTACH)" -ex 'printf "SP %#lx\n", $sp' -ex 'info registers rip rsp cs' \
        -ex stepi -ex "$(pr STEP)" -ex stepi -ex "$(pr STEP)" -ex stepi -ex "$(pr STEP)" "$@" -ex kill)
    rc=$?
    l2_stop
    show "$out" 2b

    at=$(vals "$out" ATTACH) sp=$(vals "$out" SP)
    rip=$(reg "$out" rip) rsp=$(reg "$out" rsp) cs=$(reg "$out" cs)
    if [ -n "$rip" ] && [ "$rip" = "$at" ] && [ "$rsp" = "$sp" ] &&
       { [ "$cs" != 0x10 ] || case $rsp in 0xffff*) true ;; *) false ;; esac; }; then
        pass qemu-gdb/registers
    else
        fail qemu-gdb/registers "gdb rc $rc; rip ${rip:-?} (\$pc ${at:-?}), rsp ${rsp:-?} (\$sp ${sp:-?}), cs ${cs:-?}: $(why "$out")"
    fi

    steps=$(vals "$out" STEP)
    if moves "$steps" "$at"; then pass qemu-gdb/single_step
    else fail qemu-gdb/single_step "\$pc after each stepi from ${at:-?}: $(echo $steps): $(why "$out")"; fi

    if skipped sw_breakpoint; then :
    elif echo "$out" | grep -q -E '^hrtimer_nanosleep( \+ [0-9]+)? in section'; then
        pass qemu-gdb/sw_breakpoint
    elif grep -q 'Oops: int3' "$SERIAL"; then
        fail qemu-gdb/sw_breakpoint "the L2 guest took the INT3 itself (#BP not intercepted): $(why "$out" 3) console: $(console 'Oops|RIP:' 2)"
    else
        fail qemu-gdb/sw_breakpoint "gdb rc $rc, not stopped in hrtimer_nanosleep (\$pc $(vals "$out" STOP)): $(why "$out" 6) console: $(console 'int3|Oops|RIP:|Kernel panic|Terminated|GDB-L2' 6)"
    fi
}

for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail qemu-gdb/load "cannot load $MODSET"; continue; }
    dmesg_mark
    echo "INFO $MODSET: run 1 (attach at reset, stepi in real mode, hbreak start_kernel)" >&2
    run_hw
    echo "INFO $MODSET: run 2 (attach to the running guest: registers, stepi, break)" >&2
    run_sw
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass qemu-gdb/dmesg_clean || fail qemu-gdb/dmesg_clean "$bad"
    unload_all
done
exit 0
