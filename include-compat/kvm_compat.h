/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One-line C helpers that expose to Rust what the kernel provides only as static
 * inline functions or macros (bindgen cannot call those). Each helper does exactly
 * what the inline it wraps does; nothing here decides anything.
 */
#ifndef KVM_RS_COMPAT_H
#define KVM_RS_COMPAT_H

#include <linux/types.h>

struct page;
struct file;
struct cpumask;

/* MSRs: rdmsrl_safe()/wrmsrl_safe() return -EIO instead of faulting on #GP. */
int kvm_rs_rdmsr_safe(u32 msr, u64 *value);
int kvm_rs_wrmsr_safe(u32 msr, u64 value);
u64 kvm_rs_rdmsr(u32 msr);
void kvm_rs_wrmsr(u32 msr, u64 value);

/* CPUID of the current CPU (cpuid_count()). */
void kvm_rs_cpuid_count(u32 leaf, u32 subleaf, u32 *eax, u32 *ebx, u32 *ecx, u32 *edx);

/* CR4 through the kernel's shadow (cr4_set_bits()/cr4_clear_bits()/__read_cr4()). */
void kvm_rs_cr4_set_bits(unsigned long mask);
void kvm_rs_cr4_clear_bits(unsigned long mask);
unsigned long kvm_rs_read_cr4(void);

/* CPU identity (smp_processor_id(), nr_cpu_ids, cpu_online()). */
unsigned int kvm_rs_smp_processor_id(void);
unsigned int kvm_rs_nr_cpu_ids(void);
void kvm_rs_migrate_disable(void);
void kvm_rs_migrate_enable(void);

/* on_each_cpu(func, info, wait = 1). */
void kvm_rs_on_each_cpu(void (*func)(void *info), void *info);

/* cpuhp_setup_state()/cpuhp_remove_state() on the dynamic AP online range. */
int kvm_rs_cpuhp_setup_dyn(const char *name, int (*online)(unsigned int cpu),
			   int (*offline)(unsigned int cpu));
void kvm_rs_cpuhp_remove(int state);

/* Physical address of a page (page_to_phys()) and of a direct-map address (__pa()). */
u64 kvm_rs_page_to_phys(struct page *page);

/* The vendor module's struct module, set as fops.owner (THIS_MODULE of the caller). */

/* The size of a page (PAGE_SIZE). */
unsigned long kvm_rs_page_size(void);

#endif
