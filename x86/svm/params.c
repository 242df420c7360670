// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_amd's module parameters: upstream 6.12's names, types and permissions
 * (arch/x86/kvm/svm/svm.c, avic.c). The 6.12 `kernel` crate's module! macro has
 * no parameters, so they are declared here; the Rust code reads the values
 * (x86/svm/params.rs). KVM_RS_FIXED_PARAM ones name what kvm-rs does not
 * implement and read as the value it runs with (include-compat/kvm_rs_params.h).
 */
#include <linux/moduleparam.h>
#include <linux/types.h>
#include "kvm_rs_params.h"

int kvm_amd_param_fixed(const char *name, const char *val, bool same, const char *why);

/* avic.c */
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, force_avic, bool, bool, 0444, false,
	"Use AVIC even where the CPU does not advertise it; AVIC is not implemented by kvm-rs: always N");

/*
 * PAUSE filtering is not implemented: the count and threshold read 0, as
 * upstream's do on CPUs without the feature; the window tuning below then has
 * no effect, as upstream's.
 */
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, pause_filter_thresh, unsigned short, ushort, 0444, 0,
	"PAUSE filter threshold; PAUSE filtering is not implemented by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, pause_filter_count, unsigned short, ushort, 0444, 0,
	"PAUSE filter count; PAUSE filtering is not implemented by kvm-rs: always 0");
unsigned short kvm_amd_pause_filter_count_grow = 2;
module_param_named(pause_filter_count_grow, kvm_amd_pause_filter_count_grow, ushort, 0444);
MODULE_PARM_DESC(pause_filter_count_grow, "PAUSE filter count growth factor (no effect while pause_filter_count is 0)");
unsigned short kvm_amd_pause_filter_count_shrink;
module_param_named(pause_filter_count_shrink, kvm_amd_pause_filter_count_shrink, ushort, 0444);
MODULE_PARM_DESC(pause_filter_count_shrink, "PAUSE filter count shrink divisor (no effect while pause_filter_count is 0)");
unsigned short kvm_amd_pause_filter_count_max = 0xffff;
module_param_named(pause_filter_count_max, kvm_amd_pause_filter_count_max, ushort, 0444);
MODULE_PARM_DESC(pause_filter_count_max, "PAUSE filter count maximum (no effect while pause_filter_count is 0)");

/* Nested paging (NPT). Shadow paging is not implemented: npt=0 refuses to load. */
bool kvm_amd_npt = true;
module_param_named(npt, kvm_amd_npt, bool, 0444);
MODULE_PARM_DESC(npt, "Nested paging; shadow paging is not implemented by kvm-rs, npt=0 refuses to load");

KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, nested, int, int, 0444, 0,
	"Nested virtualization (SVM in guests); not implemented by kvm-rs: always 0");
/* Next-RIP save: used when the CPU has it; reads what is used. */
int kvm_amd_nrips = 1;
module_param_named(nrips, kvm_amd_nrips, int, 0444);
MODULE_PARM_DESC(nrips, "Use the CPU's next-RIP save (reads 0 when the CPU lacks it)");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, vls, int, int, 0444, 0,
	"Virtual VMLOAD/VMSAVE for nested guests; nested virtualization is not implemented by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, vgif, int, int, 0444, 0,
	"Virtual GIF for nested guests; nested virtualization is not implemented by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, lbrv, int, int, 0444, 0,
	"LBR virtualization; not implemented by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, tsc_scaling, int, int, 0444, 0,
	"TSC ratio scaling; not implemented by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, avic, bool, bool, 0444, false,
	"AVIC (APIC virtualization); not implemented by kvm-rs: always N");
bool kvm_amd_dump_invalid_vmcb;
module_param_named(dump_invalid_vmcb, kvm_amd_dump_invalid_vmcb, bool, 0644);
MODULE_PARM_DESC(dump_invalid_vmcb, "Dump the VMCB to the kernel log when VMRUN fails");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, intercept_smi, bool, bool, 0444, true,
	"Intercept SMIs while a guest runs; kvm-rs always does: always Y");
KVM_RS_FIXED_PARAM(kvm_amd_param_fixed, vnmi, bool, bool, 0444, false,
	"Virtual NMI; not implemented by kvm-rs: always N");
