// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_intel's module parameters (see x86/svm/params.c for why they are C).
 */
#include <linux/moduleparam.h>

/* Extended page tables. Shadow paging is not implemented: ept=0 refuses to load. */
bool kvm_intel_ept = true;
module_param_named(ept, kvm_intel_ept, bool, 0444);
