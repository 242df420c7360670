# The main job inside the test VM: load our modules, show what /dev/kvm offers and
# run guest code on it.
MODSET=ours
. "$REPO/tests/vm/lib.sh"
load_all || { echo "main-job: loading kvm.ko + kvm-amd.ko failed"; exit 1; }
ls -l /dev/kvm
hostrun "$TESTBIN/kvm-api-tests" || exit 1
unload_all
exit 0
