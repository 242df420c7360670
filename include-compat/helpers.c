// SPDX-License-Identifier: GPL-2.0
/*
 * Bodies of the helpers declared in kvm_compat.h: each wraps one static inline
 * function or macro of the kernel so that Rust can call it. They are exported so
 * the vendor modules' Rust code (generic code of kvm.ko instantiated there) can
 * call them too.
 */
#include <linux/module.h>
#include <linux/smp.h>
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/cpumask.h>
#include <linux/mm.h>
#include <linux/preempt.h>
#include <asm/msr.h>
#include <asm/io.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>
#include "kvm_compat.h"

int kvm_rs_rdmsr_safe(u32 msr, u64 *value) { return rdmsrl_safe(msr, value); }
EXPORT_SYMBOL_GPL(kvm_rs_rdmsr_safe);
int kvm_rs_wrmsr_safe(u32 msr, u64 value) { return wrmsrl_safe(msr, value); }
EXPORT_SYMBOL_GPL(kvm_rs_wrmsr_safe);
u64 kvm_rs_rdmsr(u32 msr) { u64 v; rdmsrl(msr, v); return v; }
EXPORT_SYMBOL_GPL(kvm_rs_rdmsr);
void kvm_rs_wrmsr(u32 msr, u64 value) { wrmsrl(msr, value); }
EXPORT_SYMBOL_GPL(kvm_rs_wrmsr);

void kvm_rs_cpuid_count(u32 leaf, u32 subleaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx)
{ cpuid_count(leaf, subleaf, eax, ebx, ecx, edx); }
EXPORT_SYMBOL_GPL(kvm_rs_cpuid_count);

void kvm_rs_cr4_set_bits(unsigned long mask) { cr4_set_bits(mask); }
EXPORT_SYMBOL_GPL(kvm_rs_cr4_set_bits);
void kvm_rs_cr4_clear_bits(unsigned long mask) { cr4_clear_bits(mask); }
EXPORT_SYMBOL_GPL(kvm_rs_cr4_clear_bits);
unsigned long kvm_rs_read_cr4(void) { return __read_cr4(); }
EXPORT_SYMBOL_GPL(kvm_rs_read_cr4);

unsigned int kvm_rs_smp_processor_id(void) { return raw_smp_processor_id(); }
EXPORT_SYMBOL_GPL(kvm_rs_smp_processor_id);
unsigned int kvm_rs_nr_cpu_ids(void) { return nr_cpu_ids; }
EXPORT_SYMBOL_GPL(kvm_rs_nr_cpu_ids);
void kvm_rs_migrate_disable(void) { migrate_disable(); }
EXPORT_SYMBOL_GPL(kvm_rs_migrate_disable);
void kvm_rs_migrate_enable(void) { migrate_enable(); }
EXPORT_SYMBOL_GPL(kvm_rs_migrate_enable);

void kvm_rs_on_each_cpu(void (*func)(void *info), void *info) { on_each_cpu(func, info, 1); }
EXPORT_SYMBOL_GPL(kvm_rs_on_each_cpu);

int kvm_rs_cpuhp_setup_dyn(const char *name, int (*online)(unsigned int cpu),
			   int (*offline)(unsigned int cpu))
{ return cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, name, online, offline); }
EXPORT_SYMBOL_GPL(kvm_rs_cpuhp_setup_dyn);
void kvm_rs_cpuhp_remove(int state) { cpuhp_remove_state(state); }
EXPORT_SYMBOL_GPL(kvm_rs_cpuhp_remove);

u64 kvm_rs_page_to_phys(struct page *page) { return page_to_phys(page); }
EXPORT_SYMBOL_GPL(kvm_rs_page_to_phys);
unsigned long kvm_rs_page_size(void) { return PAGE_SIZE; }
EXPORT_SYMBOL_GPL(kvm_rs_page_size);
