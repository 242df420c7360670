// SPDX-License-Identifier: GPL-2.0
/*
 * The kvm:* trace events (kvm_rs_trace.h) instantiated in kvm.ko, and the thin
 * functions Rust calls to emit them (x86/kvm/trace/mod.rs). Each *_enabled()
 * reads the event's static key count (static_key_enabled(): one load, no
 * patched branch): a disabled event costs the caller one call that returns
 * false, and the caller skips gathering the fields. The helpers run on every
 * guest entry and exit with interrupts off; keeping jump-label patch sites
 * out of them (only the emitting functions, reached while an event is on,
 * have one) was needed in the test VM: with a patched branch there, enabling
 * events while a vCPU ran once took an "Oops: int3" on a stale breakpoint
 * under QEMU's TCG.
 */
#include <linux/module.h>
#define CREATE_TRACE_POINTS
#include "kvm_rs_trace.h"
#include "../../../include-compat/kvm_stats_compat.h"

#define KVM_RS_TRACE_ENABLED(name) \
	bool kvm_rs_trace_##name##_enabled(void) { return static_key_enabled(&__tracepoint_##name.key); } \
	EXPORT_SYMBOL_GPL(kvm_rs_trace_##name##_enabled)

KVM_RS_TRACE_ENABLED(kvm_entry);
KVM_RS_TRACE_ENABLED(kvm_exit);
KVM_RS_TRACE_ENABLED(kvm_pio);
KVM_RS_TRACE_ENABLED(kvm_mmio);
KVM_RS_TRACE_ENABLED(kvm_cpuid);
KVM_RS_TRACE_ENABLED(kvm_msr);
KVM_RS_TRACE_ENABLED(kvm_cr);
KVM_RS_TRACE_ENABLED(kvm_inj_virq);
KVM_RS_TRACE_ENABLED(kvm_page_fault);

void kvm_rs_trace_kvm_entry(u32 vcpu_id, u64 rip, bool immediate_exit)
{ trace_kvm_entry(vcpu_id, rip, immediate_exit); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_entry);

void kvm_rs_trace_kvm_exit(u32 vcpu_id, u64 rip, u32 isa, u32 reason, u64 info1,
			   u64 info2, u32 intr_info, u32 error_code)
{ trace_kvm_exit(vcpu_id, rip, isa, reason, info1, info2, intr_info, error_code); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_exit);

void kvm_rs_trace_kvm_pio(u32 rw, u32 port, u32 size, u32 count, u32 val)
{ trace_kvm_pio(rw, port, size, count, val); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_pio);

void kvm_rs_trace_kvm_mmio(int type, int len, u64 gpa, u64 val)
{ trace_kvm_mmio(type, len, gpa, val); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_mmio);

void kvm_rs_trace_kvm_cpuid(u32 function, u32 index, u64 rax, u64 rbx, u64 rcx,
			    u64 rdx, bool found, bool used_max_basic)
{ trace_kvm_cpuid(function, index, rax, rbx, rcx, rdx, found, used_max_basic); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_cpuid);

void kvm_rs_trace_kvm_msr(u32 write, u32 ecx, u64 data, bool exception)
{ trace_kvm_msr(write, ecx, data, exception); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_msr);

void kvm_rs_trace_kvm_cr(u32 rw, u32 cr, u64 val)
{ trace_kvm_cr(rw, cr, val); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_cr);

void kvm_rs_trace_kvm_inj_virq(u32 vector, bool soft, bool reinjected)
{ trace_kvm_inj_virq(vector, soft, reinjected); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_inj_virq);

void kvm_rs_trace_kvm_page_fault(u32 vcpu_id, u64 rip, u64 fault_address, u64 error_code)
{ trace_kvm_page_fault(vcpu_id, rip, fault_address, error_code); }
EXPORT_SYMBOL_GPL(kvm_rs_trace_kvm_page_fault);
