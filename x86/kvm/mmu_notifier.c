// SPDX-License-Identifier: GPL-2.0
/*
 * The MMU notifier of a VM (upstream's kvm_init_mmu_notifier and
 * kvm_mmu_notifier_ops): the kernel's mmu_notifier API has no binding in
 * Linux 6.12's `kernel` crate, so this file owns the struct mmu_notifier and
 * its ops table and forwards every callback to a thin Rust function of
 * x86/kvm/mmu_notifier.rs with the VM pointer and the HVA range. The locking
 * and the invalidation protocol live on the Rust side.
 */
#include <linux/mmu_notifier.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include "kvm_compat.h"

struct kvm_rs_mmu_notifier {
	struct mmu_notifier mn;
	/* The Rust `Vm` (outlives the registration: unregistered in its drop). */
	const void *vm;
	/* The registered mm (mmgrab'ed), NULL while unregistered. */
	struct mm_struct *mm;
};

static const void *vm_of(struct mmu_notifier *mn)
{
	return container_of(mn, struct kvm_rs_mmu_notifier, mn)->vm;
}

static int kvm_rs_mn_invalidate_range_start(struct mmu_notifier *mn,
					     const struct mmu_notifier_range *range)
{
	kvm_rs_mn_invalidate_start(vm_of(mn), range->start, range->end);
	/*
	 * Never an error: the core WARNs when a notifier that has an
	 * invalidate_range_end fails its start, and calls the end anyway.
	 * The Rust side never sleeps here, so non-blockable ranges (the OOM
	 * reaper) are handled like any other.
	 */
	return 0;
}

static void kvm_rs_mn_invalidate_range_end(struct mmu_notifier *mn,
					   const struct mmu_notifier_range *range)
{
	kvm_rs_mn_invalidate_end(vm_of(mn), range->start, range->end);
}

static int kvm_rs_mn_clear_flush_young(struct mmu_notifier *mn, struct mm_struct *mm,
				       unsigned long start, unsigned long end)
{
	return kvm_rs_mn_age(vm_of(mn), start, end, true, true);
}

static int kvm_rs_mn_clear_young(struct mmu_notifier *mn, struct mm_struct *mm,
				 unsigned long start, unsigned long end)
{
	return kvm_rs_mn_age(vm_of(mn), start, end, true, false);
}

static int kvm_rs_mn_test_young(struct mmu_notifier *mn, struct mm_struct *mm,
				unsigned long address)
{
	return kvm_rs_mn_age(vm_of(mn), address, address + PAGE_SIZE, false, false);
}

static void kvm_rs_mn_release_cb(struct mmu_notifier *mn, struct mm_struct *mm)
{
	kvm_rs_mn_release(vm_of(mn));
}

static const struct mmu_notifier_ops kvm_rs_mmu_notifier_ops = {
	.invalidate_range_start	= kvm_rs_mn_invalidate_range_start,
	.invalidate_range_end	= kvm_rs_mn_invalidate_range_end,
	.clear_flush_young	= kvm_rs_mn_clear_flush_young,
	.clear_young		= kvm_rs_mn_clear_young,
	.test_young		= kvm_rs_mn_test_young,
	.release		= kvm_rs_mn_release_cb,
};

struct kvm_rs_mmu_notifier *kvm_rs_mmu_notifier_alloc(void)
{
	return kzalloc(sizeof(struct kvm_rs_mmu_notifier), GFP_KERNEL_ACCOUNT);
}

int kvm_rs_mmu_notifier_register(struct kvm_rs_mmu_notifier *n, const void *vm)
{
	int r;

	n->vm = vm;
	n->mn.ops = &kvm_rs_mmu_notifier_ops;
	r = mmu_notifier_register(&n->mn, current->mm);
	if (r)
		return r;
	mmgrab(current->mm);
	n->mm = current->mm;
	return 0;
}

/*
 * Unregisters (waiting for callbacks in flight; ->release runs now if the
 * mm is still alive) and frees. May sleep.
 */
void kvm_rs_mmu_notifier_free(struct kvm_rs_mmu_notifier *n)
{
	if (n->mm) {
		mmu_notifier_unregister(&n->mn, n->mm);
		mmdrop(n->mm);
	}
	kfree(n);
}
