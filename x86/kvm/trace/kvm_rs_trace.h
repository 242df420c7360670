/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kvm:* trace events of kvm.ko, with upstream 6.12's names and fields
 * (arch/x86/kvm/trace.h, include/trace/events/kvm.h), so that perf kvm stat,
 * trace-cmd and kvm_stat read them as they read upstream's. Upstream's events
 * take a struct kvm_vcpu and read the fields from it; ours take the values
 * (the Rust caller has them), which changes nothing in the recorded format.
 */
#if !defined(_KVM_RS_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _KVM_RS_TRACE_H

#include <linux/tracepoint.h>
#include <asm/vmx.h>
#include <asm/svm.h>

#undef TRACE_SYSTEM
#define TRACE_SYSTEM kvm

TRACE_EVENT(kvm_entry,
	TP_PROTO(unsigned int vcpu_id, unsigned long rip, bool immediate_exit),
	TP_ARGS(vcpu_id, rip, immediate_exit),
	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(unsigned long,	rip)
		__field(bool,		immediate_exit)
	),
	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->rip		= rip;
		__entry->immediate_exit	= immediate_exit;
	),
	TP_printk("vcpu %u, rip 0x%lx%s", __entry->vcpu_id, __entry->rip,
		  __entry->immediate_exit ? "[immediate exit]" : "")
);

#define KVM_RS_ISA_VMX 1
#define KVM_RS_ISA_SVM 2

TRACE_EVENT(kvm_exit,
	TP_PROTO(unsigned int vcpu_id, unsigned long guest_rip, u32 isa,
		 unsigned int exit_reason, u64 info1, u64 info2, u32 intr_info,
		 u32 error_code),
	TP_ARGS(vcpu_id, guest_rip, isa, exit_reason, info1, info2, intr_info,
		error_code),
	TP_STRUCT__entry(
		__field(unsigned int,	exit_reason)
		__field(unsigned long,	guest_rip)
		__field(u32,		isa)
		__field(u64,		info1)
		__field(u64,		info2)
		__field(u32,		intr_info)
		__field(u32,		error_code)
		__field(unsigned int,	vcpu_id)
	),
	TP_fast_assign(
		__entry->exit_reason	= exit_reason;
		__entry->guest_rip	= guest_rip;
		__entry->isa		= isa;
		__entry->info1		= info1;
		__entry->info2		= info2;
		__entry->intr_info	= intr_info;
		__entry->error_code	= error_code;
		__entry->vcpu_id	= vcpu_id;
	),
	TP_printk("vcpu %u reason %s%s%s rip 0x%lx info1 0x%016llx "
		  "info2 0x%016llx intr_info 0x%08x error_code 0x%08x",
		  __entry->vcpu_id,
		  (__entry->isa == KVM_RS_ISA_VMX) ?
		  __print_symbolic(__entry->exit_reason & 0xffff, VMX_EXIT_REASONS) :
		  __print_symbolic(__entry->exit_reason, SVM_EXIT_REASONS),
		  (__entry->isa == KVM_RS_ISA_VMX && __entry->exit_reason & ~0xffff) ? " " : "",
		  (__entry->isa == KVM_RS_ISA_VMX) ?
		  __print_flags(__entry->exit_reason & ~0xffff, " ", VMX_EXIT_REASON_FLAGS) : "",
		  __entry->guest_rip, __entry->info1, __entry->info2,
		  __entry->intr_info, __entry->error_code)
);

TRACE_EVENT(kvm_pio,
	TP_PROTO(unsigned int rw, unsigned int port, unsigned int size,
		 unsigned int count, unsigned int val),
	TP_ARGS(rw, port, size, count, val),
	TP_STRUCT__entry(
		__field(unsigned int,	rw)
		__field(unsigned int,	port)
		__field(unsigned int,	size)
		__field(unsigned int,	count)
		__field(unsigned int,	val)
	),
	TP_fast_assign(
		__entry->rw	= rw;
		__entry->port	= port;
		__entry->size	= size;
		__entry->count	= count;
		__entry->val	= val;
	),
	TP_printk("pio_%s at 0x%x size %d count %d val 0x%x %s",
		  __entry->rw ? "write" : "read",
		  __entry->port, __entry->size, __entry->count, __entry->val,
		  __entry->count > 1 ? "(...)" : "")
);

TRACE_EVENT(kvm_mmio,
	TP_PROTO(int type, int len, u64 gpa, u64 val),
	TP_ARGS(type, len, gpa, val),
	TP_STRUCT__entry(
		__field(u32,	type)
		__field(u32,	len)
		__field(u64,	gpa)
		__field(u64,	val)
	),
	TP_fast_assign(
		__entry->type	= type;
		__entry->len	= len;
		__entry->gpa	= gpa;
		__entry->val	= val;
	),
	TP_printk("mmio %s len %u gpa 0x%llx val 0x%llx",
		  __print_symbolic(__entry->type,
				   { 0, "unsatisfied-read" }, { 1, "read" }, { 2, "write" }),
		  __entry->len, __entry->gpa, __entry->val)
);

TRACE_EVENT(kvm_cpuid,
	TP_PROTO(unsigned int function, unsigned int index, unsigned long rax,
		 unsigned long rbx, unsigned long rcx, unsigned long rdx,
		 bool found, bool used_max_basic),
	TP_ARGS(function, index, rax, rbx, rcx, rdx, found, used_max_basic),
	TP_STRUCT__entry(
		__field(unsigned int,	function)
		__field(unsigned int,	index)
		__field(unsigned long,	rax)
		__field(unsigned long,	rbx)
		__field(unsigned long,	rcx)
		__field(unsigned long,	rdx)
		__field(bool,		found)
		__field(bool,		used_max_basic)
	),
	TP_fast_assign(
		__entry->function	= function;
		__entry->index		= index;
		__entry->rax		= rax;
		__entry->rbx		= rbx;
		__entry->rcx		= rcx;
		__entry->rdx		= rdx;
		__entry->found		= found;
		__entry->used_max_basic	= used_max_basic;
	),
	TP_printk("func %x idx %x rax %lx rbx %lx rcx %lx rdx %lx, cpuid entry %s%s",
		  __entry->function, __entry->index, __entry->rax,
		  __entry->rbx, __entry->rcx, __entry->rdx,
		  __entry->found ? "found" : "not found",
		  __entry->used_max_basic ? ", used max basic" : "")
);

TRACE_EVENT(kvm_msr,
	TP_PROTO(unsigned write, u32 ecx, u64 data, bool exception),
	TP_ARGS(write, ecx, data, exception),
	TP_STRUCT__entry(
		__field(unsigned,	write)
		__field(u32,		ecx)
		__field(u64,		data)
		__field(u8,		exception)
	),
	TP_fast_assign(
		__entry->write		= write;
		__entry->ecx		= ecx;
		__entry->data		= data;
		__entry->exception	= exception;
	),
	TP_printk("msr_%s %x = 0x%llx%s",
		  __entry->write ? "write" : "read",
		  __entry->ecx, __entry->data,
		  __entry->exception ? " (#GP)" : "")
);

TRACE_EVENT(kvm_cr,
	TP_PROTO(unsigned int rw, unsigned int cr, unsigned long val),
	TP_ARGS(rw, cr, val),
	TP_STRUCT__entry(
		__field(unsigned int,	rw)
		__field(unsigned int,	cr)
		__field(unsigned long,	val)
	),
	TP_fast_assign(
		__entry->rw	= rw;
		__entry->cr	= cr;
		__entry->val	= val;
	),
	TP_printk("cr_%s %x = 0x%lx",
		  __entry->rw ? "write" : "read",
		  __entry->cr, __entry->val)
);

TRACE_EVENT(kvm_inj_virq,
	TP_PROTO(unsigned int vector, bool soft, bool reinjected),
	TP_ARGS(vector, soft, reinjected),
	TP_STRUCT__entry(
		__field(unsigned int,	vector)
		__field(bool,		soft)
		__field(bool,		reinjected)
	),
	TP_fast_assign(
		__entry->vector		= vector;
		__entry->soft		= soft;
		__entry->reinjected	= reinjected;
	),
	TP_printk("%s 0x%x%s",
		  __entry->soft ? "Soft/INTn" : "IRQ", __entry->vector,
		  __entry->reinjected ? " [reinjected]" : "")
);

TRACE_EVENT(kvm_page_fault,
	TP_PROTO(unsigned int vcpu_id, unsigned long guest_rip, u64 fault_address,
		 u64 error_code),
	TP_ARGS(vcpu_id, guest_rip, fault_address, error_code),
	TP_STRUCT__entry(
		__field(unsigned int,	vcpu_id)
		__field(unsigned long,	guest_rip)
		__field(u64,		fault_address)
		__field(u64,		error_code)
	),
	TP_fast_assign(
		__entry->vcpu_id	= vcpu_id;
		__entry->guest_rip	= guest_rip;
		__entry->fault_address	= fault_address;
		__entry->error_code	= error_code;
	),
	TP_printk("vcpu %u rip 0x%lx address 0x%016llx error_code 0x%llx",
		  __entry->vcpu_id, __entry->guest_rip,
		  __entry->fault_address, __entry->error_code)
);

#endif /* _KVM_RS_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE kvm_rs_trace

#include <trace/define_trace.h>
