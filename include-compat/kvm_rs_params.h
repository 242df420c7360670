/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Module parameters whose value is fixed to the one kvm-rs runs with: upstream
 * 6.12's name, type and sysfs permissions, and a value that says what the module
 * does (a feature that is not implemented reads as off, as upstream's parameter
 * reads on hardware without the feature).
 *
 * The setter parses the value with the kernel's parser for the type and hands
 * the comparison with the fixed value to the module's Rust hook, which decides:
 * while the module loads, a different value is reported in dmesg and dropped
 * (the module loads and runs without the feature, as upstream does when the
 * hardware lacks it); once loaded, writing a different value through sysfs
 * fails with EINVAL. The variable itself is never written.
 *
 *   KVM_RS_FIXED_PARAM(hook, name, C type, param type, perm, value, description)
 *
 * hook: int hook(const char *name, const char *val, bool same, const char *why)
 */
#ifndef KVM_RS_PARAMS_H
#define KVM_RS_PARAMS_H

#include <linux/moduleparam.h>

#define KVM_RS_FIXED_PARAM(hook, name, ctype, ptype, perm, value, why)		\
	static ctype kvm_rs_fixed_##name = (value);					\
	static int kvm_rs_fixed_set_##name(const char *val,				\
					   const struct kernel_param *kp)		\
	{										\
		struct kernel_param tmp = *kp;						\
		ctype v = 0;								\
		int r;									\
											\
		tmp.arg = &v;								\
		r = param_set_##ptype(val, &tmp);					\
		if (r)									\
			return r;							\
		return hook(#name, val ? val : "", v == (value), why);			\
	}										\
	static const struct kernel_param_ops kvm_rs_fixed_ops_##name = {		\
		.set = kvm_rs_fixed_set_##name,						\
		.get = param_get_##ptype,						\
	};										\
	module_param_cb(name, &kvm_rs_fixed_ops_##name, &kvm_rs_fixed_##name, perm);	\
	__MODULE_PARM_TYPE(name, #ptype);						\
	MODULE_PARM_DESC(name, why)

#endif
