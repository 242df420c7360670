// SPDX-License-Identifier: GPL-2.0
/*
 * kvm.ko's module parameters: upstream 6.12's names, types and permissions
 * (virt/kvm/kvm_main.c, arch/x86/kvm/x86.c, lapic.c, mmu/mmu.c, mmu/spte.c).
 * The 6.12 `kernel` crate's module! macro has no parameters, so they are
 * declared here; x86/kvm/params.rs reads them and decides what a value does.
 *
 * Plain parameters are implemented (or, like upstream's, have no effect in the
 * configuration kvm-rs always runs in: TDP, no posted interrupts, no halt
 * polling); KVM_RS_FIXED_PARAM ones name what kvm-rs does not implement and
 * read as the value it runs with (include-compat/kvm_rs_params.h).
 */
#include <linux/moduleparam.h>
#include <linux/sysfs.h>
#include <asm/cpufeature.h>
#include <linux/types.h>
#include "kvm_rs_params.h"

int kvm_rs_param_fixed(const char *name, const char *val, bool same, const char *why);

#define KVM_RS_NX_HUGE_PAGES_WHY "Mitigate iTLB multihit (off/force/auto; auto: on if the CPU has the bug): huge guest mappings are not executable, a fetch from one maps 4 KiB pieces (set at run time: for new mappings)"

/* virt/kvm/kvm_main.c */
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, halt_poll_ns, unsigned int, uint, 0644, 0,
	"Halt polling window in ns; halt polling is not implemented by kvm-rs: always 0 (a halted vCPU sleeps at once)");
unsigned int kvm_rs_halt_poll_ns_grow = 2;
module_param_named(halt_poll_ns_grow, kvm_rs_halt_poll_ns_grow, uint, 0644);
MODULE_PARM_DESC(halt_poll_ns_grow, "Halt polling window growth factor (no effect while halt_poll_ns is 0)");
unsigned int kvm_rs_halt_poll_ns_grow_start = 10000;
module_param_named(halt_poll_ns_grow_start, kvm_rs_halt_poll_ns_grow_start, uint, 0644);
MODULE_PARM_DESC(halt_poll_ns_grow_start, "Halt polling window start in ns (no effect while halt_poll_ns is 0)");
unsigned int kvm_rs_halt_poll_ns_shrink = 2;
module_param_named(halt_poll_ns_shrink, kvm_rs_halt_poll_ns_shrink, uint, 0644);
MODULE_PARM_DESC(halt_poll_ns_shrink, "Halt polling window shrink divisor (no effect while halt_poll_ns is 0)");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, enable_virt_at_load, bool, bool, 0444, true,
	"Enable virtualization when the vendor module loads; kvm-rs always does: always Y");

/* arch/x86/kvm/mmu/spte.c, mmu/mmu.c */
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, mmio_caching, bool, bool, 0444, false,
	"Cache MMIO accesses in the page tables; not implemented by kvm-rs (every MMIO access faults): always N");
/*
 * nx_huge_pages (iTLB multihit mitigation): upstream's words, parsed in Rust
 * (0 N, 1 Y, 2 auto). With Y huge guest mappings are made non-executable and
 * an instruction fetch from one maps 4 KiB executable pieces, as upstream
 * (which also has a thread recovering huge mappings later; kvm-rs does not).
 * auto, the default, is Y exactly on CPUs with the iTLB multihit bug.
 */
int kvm_rs_param_nx_huge_pages(const char *val);
static int kvm_rs_nx_huge_pages_mode = 2;
bool kvm_rs_nx_huge_pages_on(void)
{
	int mode = READ_ONCE(kvm_rs_nx_huge_pages_mode);

	return mode == 2 ? boot_cpu_has_bug(X86_BUG_ITLB_MULTIHIT) : mode;
}
static int kvm_rs_nx_huge_pages_set(const char *val, const struct kernel_param *kp)
{
	int mode = kvm_rs_param_nx_huge_pages(val ? val : "");

	if (mode < 0)
		return mode;
	WRITE_ONCE(kvm_rs_nx_huge_pages_mode, mode);
	return 0;
}
static int kvm_rs_nx_huge_pages_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%c\n", kvm_rs_nx_huge_pages_on() ? 'Y' : 'N');
}
static const struct kernel_param_ops kvm_rs_nx_huge_pages_ops = {
	.set = kvm_rs_nx_huge_pages_set,
	.get = kvm_rs_nx_huge_pages_get,
};
module_param_cb(nx_huge_pages, &kvm_rs_nx_huge_pages_ops, NULL, 0644);
__MODULE_PARM_TYPE(nx_huge_pages, "bool");
MODULE_PARM_DESC(nx_huge_pages, KVM_RS_NX_HUGE_PAGES_WHY);
unsigned int kvm_rs_nx_huge_pages_recovery_ratio = 60;
module_param_named(nx_huge_pages_recovery_ratio, kvm_rs_nx_huge_pages_recovery_ratio, uint, 0644);
MODULE_PARM_DESC(nx_huge_pages_recovery_ratio, "Share of split huge pages recovered per period (no effect: kvm-rs does not recover huge pages split by instruction fetches)");
unsigned int kvm_rs_nx_huge_pages_recovery_period_ms;
module_param_named(nx_huge_pages_recovery_period_ms, kvm_rs_nx_huge_pages_recovery_period_ms, uint, 0644);
MODULE_PARM_DESC(nx_huge_pages_recovery_period_ms, "Period of the huge page recovery in ms (no effect: kvm-rs does not recover huge pages split by instruction fetches)");
bool kvm_rs_flush_on_reuse;
module_param_named(flush_on_reuse, kvm_rs_flush_on_reuse, bool, 0644);
MODULE_PARM_DESC(flush_on_reuse, "Flush and sync shadow page tables on root reuse (no effect with two-dimensional paging, as upstream)");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, tdp_mmu, bool, bool, 0444, true,
	"Use the TDP MMU for nested/extended page tables; it is kvm-rs's only MMU: always Y");

/* arch/x86/kvm/lapic.c */
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, lapic_timer_advance, bool, bool, 0444, false,
	"Fire TSC-deadline timers early to hide the entry latency; not implemented by kvm-rs: always N");

/* arch/x86/kvm/x86.c */
bool kvm_rs_ignore_msrs;
module_param_named(ignore_msrs, kvm_rs_ignore_msrs, bool, 0644);
MODULE_PARM_DESC(ignore_msrs, "Unknown MSRs read as 0 and ignore writes instead of raising #GP");
bool kvm_rs_report_ignored_msrs = true;
module_param_named(report_ignored_msrs, kvm_rs_report_ignored_msrs, bool, 0644);
MODULE_PARM_DESC(report_ignored_msrs, "Log the accesses that ignore_msrs lets through");
unsigned int kvm_rs_min_timer_period_us = 200;
module_param_named(min_timer_period_us, kvm_rs_min_timer_period_us, uint, 0644);
MODULE_PARM_DESC(min_timer_period_us, "Shortest period of a periodic LAPIC or PIT timer in us (applies when the timer is next programmed)");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, kvmclock_periodic_sync, bool, bool, 0444, false,
	"Refresh the kvmclock records every 300 s; not implemented by kvm-rs (records are refreshed on clock and TSC changes): always N");
unsigned int kvm_rs_tsc_tolerance_ppm = 250;
module_param_named(tsc_tolerance_ppm, kvm_rs_tsc_tolerance_ppm, uint, 0644);
MODULE_PARM_DESC(tsc_tolerance_ppm, "A guest TSC rate this close (ppm) to the host's runs at the host's rate");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, vector_hashing, bool, bool, 0444, true,
	"Pick the target of lowest-priority interrupts by vector hashing; kvm-rs always does: always Y");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, enable_vmware_backdoor, bool, bool, 0444, false,
	"VMware backdoor I/O ports and pseudo-PMCs; not implemented by kvm-rs: always N");
int kvm_rs_force_emulation_prefix;
module_param_named(force_emulation_prefix, kvm_rs_force_emulation_prefix, int, 0644);
MODULE_PARM_DESC(force_emulation_prefix, "Non-zero: ud2 followed by 'kvm' makes KVM emulate the next instruction (bit 1: also clear RFLAGS.RF); for testing");
int kvm_rs_pi_inject_timer = -1;
module_param_named(pi_inject_timer, kvm_rs_pi_inject_timer, bint, 0644);
MODULE_PARM_DESC(pi_inject_timer, "Inject timer interrupts through posted interrupts (no effect: no posted interrupts, as upstream without APICv)");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, enable_pmu, bool, bool, 0444, false,
	"PMU virtualization; not implemented by kvm-rs: always N");
KVM_RS_FIXED_PARAM(kvm_rs_param_fixed, eager_page_split, bool, bool, 0644, true,
	"Split huge pages into 4 KiB ones when dirty logging starts; kvm-rs always does: always Y");
bool kvm_rs_mitigate_smt_rsb;
module_param_named(mitigate_smt_rsb, kvm_rs_mitigate_smt_rsb, bool, 0444);
MODULE_PARM_DESC(mitigate_smt_rsb, "Do not let guests run with HLT/PAUSE/MWAIT exits disabled on SMT_RSB CPUs (kvm-rs never disables those exits)");
