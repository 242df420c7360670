# The user-space API suite (kvm-api-tests) against one module set (runs in the VM).
. "$REPO/tests/vm/lib.sh"
unload_all
load_all || { fail api/load "cannot load the $MODSET modules"; return 0; }
dmesg_mark
api_skips
hostrun "$TESTBIN/kvm-api-tests" ${API_FILTER:-} 2>&1 | sed "s#^\(PASS\|FAIL\|SKIP\) #\1 $MODSET/#"
bad=$(dmesg_bad)
[ -z "$bad" ] && pass api/dmesg_clean || fail api/dmesg_clean "$bad"
unload_all
loaded kvm && fail api/unload "kvm still loaded" || pass api/unload
