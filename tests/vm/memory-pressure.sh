# Guest memory under pressure (runs inside the test VM, which scripts/run-tests.sh
# starts with 1G of memory): a 2G zram swap device, then kvm-pressure with a
# slot of PRESSURE_MB (default 1536, more than the VM has) on each module set
# given. The guest writes every page's address into it and reads all back; user
# space then reads them too. Every value must match, and pages must have gone
# out to swap and come back (the MMU notifier zaps what the kernel swaps out;
# the guest's next access faults it back in).
mb=${PRESSURE_MB:-1536}
if ! { echo 2G > /sys/block/zram0/disksize && mkswap /dev/zram0 >/dev/null && swapon /dev/zram0; }; then
    echo "FAIL pressure/setup: no zram swap: $(cat /proc/swaps 2>&1 | tail -2)"
    exit 0
fi
for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lib.sh"
    unload_all
    load_all || { fail pressure/load "cannot load $MODSET"; continue; }
    dmesg_mark
    # The swap device's block statistics: sectors read (swap-ins) and written
    # (swap-outs), fields 3 and 7.
    set -- $(cat /sys/block/zram0/stat); rd0=$3 wr0=$7
    out=$(hostrun "$TESTBIN/kvm-pressure" "$mb" 2>&1)
    rc=$?
    set -- $(cat /sys/block/zram0/stat); rd1=$3 wr1=$7
    line="$(echo "$out" | grep '^PRESSURE ') swapped_out=$(( (wr1 - wr0) / 8 )) swapped_in=$(( (rd1 - rd0) / 8 ))"
    echo "INFO $MODSET/pressure: $mb MB slot in a VM of $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MB: $line (pages)"
    val() { echo "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
    if [ $rc -ne 0 ] || ! echo "$out" | grep -q '^PRESSURE '; then
        fail pressure/guest_memory_swapped_intact "rc $rc: $(echo "$out" | tail -3)"
    elif [ "$(val mismatches)" != 0 ] || [ "$(val user_mismatches)" != 0 ]; then
        fail pressure/guest_memory_swapped_intact "pages differ: $line"
    elif [ "$(val swapped_out)" -lt 10000 ] || [ "$(val swapped_in)" -lt 10000 ]; then
        fail pressure/guest_memory_swapped_intact "too little swapping to test anything: $line"
    else
        pass pressure/guest_memory_swapped_intact
    fi
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass pressure/dmesg_clean || fail pressure/dmesg_clean "$bad"
    unload_all
done
swapoff /dev/zram0
exit 0
