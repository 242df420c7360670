# Everything that runs in one boot of the test VM: the module tests, the module
# lifecycle tests and the API suite, for the module set(s) given as arguments (default: ours upstream).
sets=${*:-ours upstream}
for MODSET in $sets; do
    export MODSET
    . "$REPO/tests/vm/modules.sh"
    . "$REPO/tests/vm/params.sh"
    . "$REPO/tests/vm/lifecycle.sh"
    . "$REPO/tests/vm/api.sh"
done
exit 0
