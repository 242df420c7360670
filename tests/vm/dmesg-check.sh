# Kernel self-checks for in-VM test scripts (busybox sh), meant for the debug
# kernel (scripts/build-kernel.sh --debug: KASAN, UBSAN, lockdep, kmemleak, debug
# objects, SLUB debug, Rust debug assertions); harmless on the normal one (the
# checks it lacks are skipped).
#
#   . "$REPO/tests/vm/dmesg-check.sh"
#   debug_begin            start a window: log capture on, kmemleak baseline
#   ...tests...
#   debug_check NAME       `PASS NAME` or `FAIL NAME: <reason>` plus the offending
#                          lines (indented); returns 1 on FAIL; starts a new window
#
# The kernel log is read from /dev/kmsg by a background reader into $DEBUG_KMSG_LOG,
# so tests that clear the ring buffer (`dmesg -c`, lib.sh's dmesg_mark) cannot hide
# a report from it. debug_check without debug_begin still works (it then looks at
# the whole log since boot, as far as the ring buffer still holds it). Kmemleak: debug_begin scans and clears the list (what
# leaked before the window is not reported), debug_check scans twice (kmemleak
# only reports objects older than 5 s and wants two scans to rule out transient
# pointers) and reports what /sys/kernel/debug/kmemleak lists.

: "${DEBUG_KMSG_LOG:=/tmp/debug-kmsg.log}"
: "${DEBUG_MAX_LINES:=150}"
DEBUG_KMEMLEAK=/sys/kernel/debug/kmemleak
# Kernel log lines that fail a check (extended regexp).
DEBUG_BAD_RE='BUG: |WARNING:|Oops|general protection fault|kernel BUG at|Kernel panic|UBSAN:|possible circular locking|possible recursive locking|inconsistent lock state|suspicious RCU usage|lock held when returning|bad unlock balance|unreferenced object|ODEBUG:|list_add corruption|list_del corruption|BUG [^ ]+ \((Not tainted|Tainted)|Redzone overwritten|Poison overwritten|Object already free|panicked at|rust_panic|refcount_t: |Bad page state|sleeping function called from invalid context|scheduling while atomic'

_debug_mount() {
    [ -d /sys/kernel/debug ] || return 0
    grep -q ' /sys/kernel/debug debugfs ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    true
}

_debug_logger() {
    [ -n "${DEBUG_KMSG_PID:-}" ] && kill -0 "$DEBUG_KMSG_PID" 2>/dev/null && return 0
    : > "$DEBUG_KMSG_LOG"
    # /dev/kmsg starts at the oldest record still in the ring and ignores
    # `dmesg -c`; a reader that fell behind gets EPIPE (cat ends): start again.
    (while :; do cat /dev/kmsg 2>/dev/null; sleep 1; done) >> "$DEBUG_KMSG_LOG" &
    DEBUG_KMSG_PID=$!
    # Let it catch up with the existing log.
    sleep 1
}

# The log records appended since line $DEBUG_KMSG_MARK, as "text" (the
# "prio,seq,time,flags;" prefix and the " KEY=value" dictionary lines dropped).
_debug_log_since() {
    if [ -n "${DEBUG_KMSG_PID:-}" ] && [ -s "$DEBUG_KMSG_LOG" ]; then
        tail -n +"$((${DEBUG_KMSG_MARK:-0} + 1))" "$DEBUG_KMSG_LOG" | sed -n 's/^[0-9]*,[0-9]*,[0-9]*,[^;]*;//p'
    else
        dmesg
    fi
}

_debug_mark() {
    DEBUG_KMSG_MARK=$(wc -l < "$DEBUG_KMSG_LOG" 2>/dev/null || echo 0)
}

_debug_kmemleak_clear() {
    [ -w "$DEBUG_KMEMLEAK" ] || return 0
    echo scan > "$DEBUG_KMEMLEAK" 2>/dev/null
    echo clear > "$DEBUG_KMEMLEAK" 2>/dev/null
    true
}

debug_begin() {
    _debug_mount
    _debug_logger
    _debug_kmemleak_clear
    sleep 1
    _debug_mark
}

debug_check() {
    _name=$1
    _debug_mount
    _debug_logger
    _leaks=""
    if [ -w "$DEBUG_KMEMLEAK" ]; then
        echo scan > "$DEBUG_KMEMLEAK" 2>/dev/null
        sleep 6
        echo scan > "$DEBUG_KMEMLEAK" 2>/dev/null
        _leaks=$(cat "$DEBUG_KMEMLEAK" 2>/dev/null)
    fi
    # Give the logger a moment to copy the last records.
    [ -z "${DEBUG_KMSG_PID:-}" ] || sleep 1
    _bad=$(_debug_log_since | grep -E "$DEBUG_BAD_RE")
    _why=""
    [ -z "$_bad" ] || _why="kernel log: $(echo "$_bad" | head -1)"
    if [ -n "$_leaks" ]; then
        _n=$(echo "$_leaks" | grep -c '^unreferenced object')
        _why="${_why:+$_why; }kmemleak: $_n unreferenced object(s)"
    fi
    if [ -z "$_why" ]; then
        echo "PASS $_name"
        _rc=0
    else
        echo "FAIL $_name: $_why"
        # The context of each report: the bad lines and what follows them.
        if [ -n "$_bad" ]; then
            _debug_log_since | grep -E -A45 "$DEBUG_BAD_RE" | head -n "$DEBUG_MAX_LINES" | sed 's/^/    /'
        fi
        [ -z "$_leaks" ] || echo "$_leaks" | head -n "$DEBUG_MAX_LINES" | sed 's/^/    /'
        _rc=1
    fi
    # A new window: what was reported is not reported again.
    [ -w "$DEBUG_KMEMLEAK" ] && echo clear > "$DEBUG_KMEMLEAK" 2>/dev/null
    _debug_mark
    return $_rc
}
