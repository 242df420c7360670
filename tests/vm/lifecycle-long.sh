# `make lifecycle-long`: tests/vm/lifecycle.sh with $LIFECYCLE_CYCLES load/unload
# cycles (default 1000), on ours and upstream's (or the sets given as arguments).
: "${LIFECYCLE_CYCLES:=1000}"
export LIFECYCLE_CYCLES
for MODSET in ${*:-ours upstream}; do
    export MODSET
    . "$REPO/tests/vm/lifecycle.sh"
done
exit 0
