# The 1G huge-page test (memory/hugetlbfs_1g_slot_maps_1g: a 1G leaf, its
# eager split to 4K when dirty logging starts, the exact dirty set, the 1G leaf
# again after logging) for each module set given. It needs a test VM booted
# with a 1G hugetlbfs page reserved: the test kernel cannot allocate one at run
# time (no CONTIG_ALLOC), and only a VM of about 6G leaves an aligned free 1G:
#   scripts/vm-run.sh --mem 6G --append "hugepagesz=1G hugepages=1" tests/vm/hugepages-1g.sh
for MODSET in ${*:-ours upstream}; do
    export MODSET API_FILTER=hugetlbfs_1g
    . "$REPO/tests/vm/api.sh"
done
exit 0
