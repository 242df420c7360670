# Module parameters (runs in the test VM, sourced per module set by suite.sh):
# with MODSET=ours, our modules' parameters against upstream's (modinfo names
# and types, /sys/module/*/parameters permissions), a hardware-feature
# parameter set at load (dmesg line, the module loads, the value reads off), a
# fixed parameter refusing a write; with both sets, the writable parameters the
# KVM selftests and users set.
. "$REPO/tests/vm/lib.sh"
vendor=kvm_amd vendor_ko=$MOD_AMD
if grep -q -w vmx /proc/cpuinfo; then vendor=kvm_intel vendor_ko=$MOD_INTEL; fi
UP_DIR=$KBUILD/arch/x86/kvm
OURS_DIR=$REPO

# modinfo_params KO: "name type" for each parameter modinfo lists (upstream
# prints name:type, ours name:description (type)).
modinfo_params() {
    hostrun /sbin/modinfo -F parm "${1#/host}" | sed -E 's/^([^:]+):(.*\(([a-z]+)\)|([a-z]+))$/\1 \3\4/' | sort
}
# sysfs_perms MODULE...: "module/name perm" for each parameter in sysfs.
sysfs_perms() {
    for m in "$@"; do
        for f in /sys/module/$m/parameters/*; do
            [ -e "$f" ] || continue
            echo "$m/${f##*/} $(hostrun stat -c %a "$f")"
        done
    done | sort
}
param() { cat "/sys/module/$1/parameters/$2" 2>&1; }
# only_in A B: the lines of A that B does not have (busybox has no comm).
only_in() { awk -v b="$2" 'FILENAME == b { seen[$0] = 1; next } !($0 in seen)' "$2" "$1"; }

unload_all
dmesg_mark
if [ "$MODSET" = ours ]; then
    for ko in kvm.ko kvm-amd.ko kvm-intel.ko; do
        name=params/modinfo_${ko%.ko}
        modinfo_params "$UP_DIR/$ko" > /tmp/params-up
        modinfo_params "$OURS_DIR/$ko" > /tmp/params-ours
        missing=$(only_in /tmp/params-up /tmp/params-ours | tr '\n' ' ')
        if [ ! -s /tmp/params-up ]; then
            fail $name "modinfo lists no parameters of upstream's $ko"
        elif [ -z "$missing" ]; then
            pass $name
        else
            fail $name "upstream's parameters (name type) missing or typed differently on ours: $missing"
        fi
    done

    # /sys/module/*/parameters: upstream's names with upstream's permissions.
    MODSET=upstream; . "$REPO/tests/vm/lib.sh"
    load_all && sysfs_perms kvm $vendor > /tmp/perms-up
    unload_all
    MODSET=ours; . "$REPO/tests/vm/lib.sh"
    load_all && sysfs_perms kvm $vendor > /tmp/perms-ours
    # vmentry_l1d_flush (kvm_intel) has no type, so modinfo does not list it
    # and kvm-rs does not declare it.
    diff=$(only_in /tmp/perms-up /tmp/perms-ours | grep -v /vmentry_l1d_flush | tr '\n' ' ')
    if [ ! -s /tmp/perms-up ]; then
        fail params/sysfs_permissions "upstream's modules show no parameters"
    elif [ -z "$diff" ]; then
        pass params/sysfs_permissions
    else
        fail params/sysfs_permissions "missing or with other permissions on ours (upstream's shown): $diff"
    fi
    # Our values, for the log (not a verdict).
    for p in $(awk '{print $1}' /tmp/perms-ours); do echo "$p=$(cat /sys/module/${p%%/*}/parameters/${p#*/})"; done > /tmp/vals-ours
    echo "# params: our values: $(tr '\n' ';' < /tmp/vals-ours)"

    # The parameters the selftests read: the values kvm-rs runs with.
    v="$(param kvm force_emulation_prefix) $(param kvm enable_pmu) $(param kvm tdp_mmu) $(param kvm eager_page_split)"
    [ "$v" = "0 N Y Y" ] && pass params/selftest_values || fail params/selftest_values "force_emulation_prefix enable_pmu tdp_mmu eager_page_split: $v"
    if [ $vendor = kvm_amd ]; then
        v="$(param kvm_amd avic) $(param kvm_amd nested) $(param kvm_amd vgif) $(param kvm_amd npt)"
        [ "$v" = "N 0 0 Y" ] && pass params/amd_values || fail params/amd_values "avic nested vgif npt: $v"
        # nrips reads what is used: 1 only if the CPU has next-RIP save.
        hw=0; grep -q -w nrip_save /proc/cpuinfo && hw=1
        [ "$(param kvm_amd nrips)" = $hw ] && pass params/amd_nrips_effective || fail params/amd_nrips_effective "nrips=$(param kvm_amd nrips), CPU: $hw"
    fi

    # A fixed 0644 parameter refuses another value once loaded, takes its own.
    if echo 200000 > /sys/module/kvm/parameters/halt_poll_ns 2>/dev/null; then
        fail params/fixed_write_refused "halt_poll_ns=200000 accepted"
    else
        [ "$(param kvm halt_poll_ns)" = 0 ] && echo 0 > /sys/module/kvm/parameters/halt_poll_ns \
            && dmesg | grep -q "kvm.halt_poll_ns=200000 refused" \
            && pass params/fixed_write_refused || fail params/fixed_write_refused "halt_poll_ns=$(param kvm halt_poll_ns); $(dmesg | tail -2)"
    fi
    unload_all

    # Hardware features set on at load: a dmesg line, the module loads, the
    # parameter reads off (upstream's behaviour on hardware without them).
    dmesg_mark
    if [ $vendor = kvm_amd ]; then
        set -- avic=1 nested=1 vgif=1 lbrv=1
        want="avic=N nested=0 vgif=0 lbrv=0"
    else
        set -- enable_apicv=1 nested=1 pml=1 preemption_timer=1
        want="enable_apicv=N nested=N pml=N preemption_timer=N"
    fi
    if insmod "$MOD_KVM" enable_pmu=1 halt_poll_ns=100 && out=$(insmod "$vendor_ko" "$@" 2>&1); then
        got=""
        for kv in "$@"; do got="$got ${kv%=*}=$(param $vendor ${kv%=*})"; done
        lines=$(dmesg | grep -c -E "(kvm|$vendor)\.[a-z_]+=1(00)? ignored")
        if [ "${got# }" = "$want" ] && [ "$(param kvm enable_pmu) $(param kvm halt_poll_ns)" = "N 0" ] && [ "$lines" = 6 ]; then
            pass params/feature_at_load_ignored
        else
            fail params/feature_at_load_ignored "values:$got, kvm enable_pmu/halt_poll_ns: $(param kvm enable_pmu)/$(param kvm halt_poll_ns); $lines dmesg lines: $(dmesg | grep ignored | tr '\n' ';')"
        fi
        [ -c /dev/kvm ] && pass params/feature_at_load_runs || fail params/feature_at_load_runs "no /dev/kvm"
    else
        fail params/feature_at_load_ignored "the modules do not load: $out"
    fi
    bad=$(dmesg_bad)
    [ -z "$bad" ] && pass params/feature_at_load_dmesg_clean || fail params/feature_at_load_dmesg_clean "$bad"
    unload_all
fi

# Both sets: upstream's spellings of nx_huge_pages load.
unload_all
[ -z "$MOD_PRE" ] || grep -q '^irqbypass ' /proc/modules || insmod "$MOD_PRE"
# auto reads Y exactly on CPUs with the iTLB multihit bug (N on the test VM's
# AMD CPU: huge pages allowed); force and off read Y and N.
if insmod "$MOD_KVM" nx_huge_pages=auto; then
    want=N; grep -q -w itlb_multihit /proc/cpuinfo && want=Y
    v=$(cat /sys/module/kvm/parameters/nx_huge_pages)
    echo force > /sys/module/kvm/parameters/nx_huge_pages && v="$v $(cat /sys/module/kvm/parameters/nx_huge_pages)"
    echo off > /sys/module/kvm/parameters/nx_huge_pages && v="$v $(cat /sys/module/kvm/parameters/nx_huge_pages)"
    [ "$v" = "$want Y N" ] && pass params/nx_huge_pages_words || fail params/nx_huge_pages_words "auto force off read '$v' (want '$want Y N')"
else
    fail params/nx_huge_pages_words "kvm does not load with nx_huge_pages=auto"
fi
unload_all

# Both sets: the writable parameters take values and read them back.
load_all
ok=1 why=""
for kv in kvm/force_emulation_prefix=1 kvm/force_emulation_prefix=0 kvm/ignore_msrs=Y kvm/ignore_msrs=N \
          kvm/report_ignored_msrs=N kvm/report_ignored_msrs=Y kvm/min_timer_period_us=500 kvm/min_timer_period_us=200 \
          kvm/tsc_tolerance_ppm=100 kvm/tsc_tolerance_ppm=250; do
    p=${kv%=*} v=${kv#*=}
    echo "$v" > /sys/module/${p%%/*}/parameters/${p#*/} 2>/dev/null || { ok=0; why="$why $kv refused;"; continue; }
    [ "$(cat /sys/module/${p%%/*}/parameters/${p#*/})" = "$v" ] || { ok=0; why="$why $kv reads $(cat /sys/module/${p%%/*}/parameters/${p#*/});"; }
done
[ $ok = 1 ] && pass params/writable || fail params/writable "$why"

# Both sets: a failed VM entry prints the hint, or with dump_invalid_vmcb/vmcs
# the VMCB/VMCS (the API suite's guest with an invalid CS makes one).
if [ $vendor = kvm_amd ]; then dp=dump_invalid_vmcb want="VMCB State Save Area:"; else dp=dump_invalid_vmcs want="Guest State"; fi
dmesg_mark
hostrun "$HOST_REPO/target/release/kvm-api-tests" guest/fail_entry_invalid_cs > /dev/null 2>&1
dmesg | grep -q "set $vendor.$dp=1 to dump internal KVM state" && pass params/invalid_entry_hint || fail params/invalid_entry_hint "no hint in dmesg: $(dmesg | tail -3 | tr '\n' ';')"
echo 1 > /sys/module/$vendor/parameters/$dp
dmesg_mark
hostrun "$HOST_REPO/target/release/kvm-api-tests" guest/fail_entry_invalid_cs > /dev/null 2>&1
dmesg | grep -q "$want" && pass params/invalid_entry_dump || fail params/invalid_entry_dump "no '$want' in dmesg: $(dmesg | tail -3 | tr '\n' ';')"
echo 0 > /sys/module/$vendor/parameters/$dp
unload_all
