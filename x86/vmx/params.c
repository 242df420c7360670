// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_intel's module parameters: upstream 6.12's names, types and permissions
 * (arch/x86/kvm/vmx/vmx.c, nested.c; see x86/svm/params.c for why they are C).
 * KVM_RS_FIXED_PARAM ones name what kvm-rs does not implement and read as the
 * value it runs with (include-compat/kvm_rs_params.h).
 */
#include <linux/moduleparam.h>
#include <linux/types.h>
#include "kvm_rs_params.h"

int kvm_intel_param_fixed(const char *name, const char *val, bool same, const char *why);

/* nested.c */
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, enable_shadow_vmcs, bool, bool, 0444, false,
	"Shadow VMCS for nested guests; nested virtualization is not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, nested_early_check, bool, bool, 0444, false,
	"Check nested VM-entry with the hardware first; nested virtualization is not implemented by kvm-rs: always N");

/* vmx.c. VPID and virtual NMIs are used when the CPU has them; they read what is used. */
bool kvm_intel_vpid = true;
module_param_named(vpid, kvm_intel_vpid, bool, 0444);
MODULE_PARM_DESC(vpid, "Tag TLB entries with a VPID per vCPU (reads N when the CPU cannot)");
bool kvm_intel_vnmi = true;
module_param_named(vnmi, kvm_intel_vnmi, bool, 0444);
MODULE_PARM_DESC(vnmi, "Use virtual NMIs (reads N when the CPU lacks them)");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, flexpriority, bool, bool, 0444, false,
	"TPR shadow with APIC-access virtualization; not implemented by kvm-rs: always N");
/* Extended page tables. Shadow paging is not implemented: ept=0 refuses to load. */
bool kvm_intel_ept = true;
module_param_named(ept, kvm_intel_ept, bool, 0444);
MODULE_PARM_DESC(ept, "Extended page tables; shadow paging is not implemented by kvm-rs, ept=0 refuses to load");
/* Real-mode emulation is not implemented: unrestricted_guest=0 refuses to load. */
bool kvm_intel_unrestricted_guest = true;
module_param_named(unrestricted_guest, kvm_intel_unrestricted_guest, bool, 0444);
MODULE_PARM_DESC(unrestricted_guest, "Unrestricted guest (real mode in VMX); real-mode emulation is not implemented by kvm-rs, unrestricted_guest=0 refuses to load");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, eptad, bool, bool, 0444, false,
	"EPT accessed/dirty bits; not used by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, emulate_invalid_guest_state, bool, bool, 0444, false,
	"Emulate guest states VMX cannot run; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, fasteoi, bool, bool, 0444, false,
	"Fast path for EOI writes through the APIC-access page; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, enable_apicv, bool, bool, 0444, false,
	"APIC virtualization and posted interrupts; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, enable_ipiv, bool, bool, 0444, false,
	"IPI virtualization; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, nested, bool, bool, 0444, false,
	"Nested virtualization (VMX in guests); not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, pml, bool, bool, 0444, false,
	"Page-modification logging for dirty tracking; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, error_on_inconsistent_vmcs_config, bool, bool, 0444, true,
	"Refuse to load on an unusable VMCS configuration; kvm-rs always does: always Y");
bool kvm_intel_dump_invalid_vmcs;
module_param_named(dump_invalid_vmcs, kvm_intel_dump_invalid_vmcs, bool, 0644);
MODULE_PARM_DESC(dump_invalid_vmcs, "Dump the VMCS to the kernel log when VM entry fails");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, preemption_timer, bool, bool, 0444, false,
	"VMX preemption timer for the LAPIC timer; not used by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, allow_smaller_maxphyaddr, bool, bool, 0444, false,
	"Let guests have a smaller MAXPHYADDR than the host; not implemented by kvm-rs: always N");
/* Pause-loop exiting is not used: all five read 0, as upstream's without PLE. */
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, ple_gap, unsigned int, uint, 0444, 0,
	"Pause-loop exiting gap; PLE is not used by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, ple_window, unsigned int, uint, 0444, 0,
	"Pause-loop exiting window; PLE is not used by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, ple_window_grow, unsigned int, uint, 0444, 0,
	"Pause-loop exiting window growth; PLE is not used by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, ple_window_shrink, unsigned int, uint, 0444, 0,
	"Pause-loop exiting window shrink; PLE is not used by kvm-rs: always 0");
KVM_RS_FIXED_PARAM(kvm_intel_param_fixed, ple_window_max, unsigned int, uint, 0444, 0,
	"Pause-loop exiting window maximum; PLE is not used by kvm-rs: always 0");
