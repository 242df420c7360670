// SPDX-License-Identifier: GPL-2.0
/*
 * Bodies of the helpers declared in kvm_compat.h: each wraps one static inline
 * function or macro of the kernel so that Rust can call it. They are exported so
 * the vendor modules' Rust code (generic code of kvm.ko instantiated there) can
 * call them too.
 */
#include <linux/module.h>
#include <asm/cpufeature.h>
#include <asm/processor.h>
#include <linux/smp.h>
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/cpumask.h>
#include <linux/mm.h>
#include <linux/preempt.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/stat.h>
#include <linux/highmem.h>
#include <linux/fs.h>
#include <asm/msr.h>
#include <asm/tsc.h>
#include <linux/vfio.h>
#include <asm/vmx.h>
#include <asm/cpufeature.h>
#include <asm/msr-index.h>
#include <asm/fpu/api.h>
#include <asm/fpu/sched.h>
#include <asm/io.h>
#include <asm/processor.h>
#include <asm/tlbflush.h>
#include <trace/events/ipi.h>
#include <linux/hrtimer.h>
#include <linux/timekeeping.h>
#include <linux/wait.h>
#include <linux/poll.h>
#include <linux/eventfd.h>
#include <linux/workqueue.h>
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
u32 kvm_rs_boot_cpu_cap_word(unsigned int word)
{
	return word < NCAPINTS ? boot_cpu_data.x86_capability[word] : 0;
}
EXPORT_SYMBOL_GPL(kvm_rs_boot_cpu_cap_word);

unsigned int kvm_rs_num_online_cpus(void) { return num_online_cpus(); }
EXPORT_SYMBOL_GPL(kvm_rs_num_online_cpus);
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

void *kvm_rs_page_address(struct page *page) { return page_address(page); }
EXPORT_SYMBOL_GPL(kvm_rs_page_address);
void kvm_rs_get_page(struct page *page) { get_page(page); }
EXPORT_SYMBOL_GPL(kvm_rs_get_page);
void kvm_rs_put_page(struct page *page) { put_page(page); }
EXPORT_SYMBOL_GPL(kvm_rs_put_page);
void kvm_rs_set_page_dirty_lock(struct page *page) { set_page_dirty_lock(page); }
EXPORT_SYMBOL_GPL(kvm_rs_set_page_dirty_lock);

struct mm_struct *kvm_rs_current_mm(void) { return current->mm; }
EXPORT_SYMBOL_GPL(kvm_rs_current_mm);
void kvm_rs_mmgrab(struct mm_struct *mm) { mmgrab(mm); }
EXPORT_SYMBOL_GPL(kvm_rs_mmgrab);
void kvm_rs_mmdrop(struct mm_struct *mm) { mmdrop(mm); }
EXPORT_SYMBOL_GPL(kvm_rs_mmdrop);
bool kvm_rs_signal_pending(void) { return signal_pending(current); }
EXPORT_SYMBOL_GPL(kvm_rs_signal_pending);
void kvm_rs_cond_resched(void) { cond_resched(); }
EXPORT_SYMBOL_GPL(kvm_rs_cond_resched);
/* Steal time: whether the scheduler keeps run_delay, and the current task's. */
bool kvm_rs_sched_info_on(void) { return sched_info_on(); }
EXPORT_SYMBOL_GPL(kvm_rs_sched_info_on);
u64 kvm_rs_current_run_delay(void)
{
#ifdef CONFIG_SCHED_INFO
	return current->sched_info.run_delay;
#else
	return 0;
#endif
}
EXPORT_SYMBOL_GPL(kvm_rs_current_run_delay);
bool kvm_rs_need_resched(void) { return need_resched(); }
EXPORT_SYMBOL_GPL(kvm_rs_need_resched);

void kvm_rs_local_irq_disable(void) { local_irq_disable(); }
EXPORT_SYMBOL_GPL(kvm_rs_local_irq_disable);
void kvm_rs_local_irq_enable(void) { local_irq_enable(); }
EXPORT_SYMBOL_GPL(kvm_rs_local_irq_enable);
unsigned long kvm_rs_local_irq_save(void) { unsigned long flags; local_irq_save(flags); return flags; }
EXPORT_SYMBOL_GPL(kvm_rs_local_irq_save);
void kvm_rs_local_irq_restore(unsigned long flags) { local_irq_restore(flags); }
EXPORT_SYMBOL_GPL(kvm_rs_local_irq_restore);
void kvm_rs_preempt_disable(void) { preempt_disable(); }
EXPORT_SYMBOL_GPL(kvm_rs_preempt_disable);
void kvm_rs_preempt_enable(void) { preempt_enable(); }
EXPORT_SYMBOL_GPL(kvm_rs_preempt_enable);

unsigned long kvm_rs_vma_start(struct vm_area_struct *vma) { return vma->vm_start; }
EXPORT_SYMBOL_GPL(kvm_rs_vma_start);
unsigned long kvm_rs_vma_end(struct vm_area_struct *vma) { return vma->vm_end; }
EXPORT_SYMBOL_GPL(kvm_rs_vma_end);
unsigned long kvm_rs_vma_pgoff(struct vm_area_struct *vma) { return vma->vm_pgoff; }
EXPORT_SYMBOL_GPL(kvm_rs_vma_pgoff);
static vm_fault_t kvm_rs_vcpu_sigbus_fault(struct vm_fault *vmf)
{
	return VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct kvm_rs_vcpu_vm_ops = {
	.fault = kvm_rs_vcpu_sigbus_fault,
};

void kvm_rs_vma_set_sigbus_ops(struct vm_area_struct *vma)
{
	vma->vm_ops = &kvm_rs_vcpu_vm_ops;
}
EXPORT_SYMBOL_GPL(kvm_rs_vma_set_sigbus_ops);

bool kvm_rs_vma_shared_noexec(struct vm_area_struct *vma)
{
	return (vma->vm_flags & VM_SHARED) && !(vma->vm_flags & VM_EXEC);
}
EXPORT_SYMBOL_GPL(kvm_rs_vma_shared_noexec);

void *kvm_rs_phys_to_virt(u64 pa) { return __va(pa); }
EXPORT_SYMBOL_GPL(kvm_rs_phys_to_virt);

void *kvm_rs_file_private(struct file *file) { return file->private_data; }
EXPORT_SYMBOL_GPL(kvm_rs_file_private);

static void kvm_rs_kick_noop(void *info) { }
void kvm_rs_kick_cpu(int cpu) { smp_call_function_single(cpu, kvm_rs_kick_noop, NULL, 0); }
EXPORT_SYMBOL_GPL(kvm_rs_kick_cpu);

int kvm_rs_call_on_cpu(int cpu, void (*func)(void *info), void *info)
{
	return smp_call_function_single(cpu, func, info, 1);
}
EXPORT_SYMBOL_GPL(kvm_rs_call_on_cpu);

void kvm_rs_fpu_load_if_needed(void)
{ if (test_thread_flag(TIF_NEED_FPU_LOAD)) switch_fpu_return(); }
EXPORT_SYMBOL_GPL(kvm_rs_fpu_load_if_needed);

struct page *kvm_rs_alloc_pages(unsigned int order) { return alloc_pages(GFP_KERNEL_ACCOUNT | __GFP_ZERO, order); }
EXPORT_SYMBOL_GPL(kvm_rs_alloc_pages);
void kvm_rs_free_pages(struct page *page, unsigned int order) { __free_pages(page, order); }
EXPORT_SYMBOL_GPL(kvm_rs_free_pages);

void kvm_rs_sigmask_activate(u64 set)
{
	sigset_t s;

	s.sig[0] = set;
	sigprocmask(SIG_SETMASK, &s, &current->real_blocked);
}
EXPORT_SYMBOL_GPL(kvm_rs_sigmask_activate);
void kvm_rs_sigmask_deactivate(void)
{
	sigprocmask(SIG_SETMASK, &current->real_blocked, NULL);
	sigemptyset(&current->real_blocked);
}
EXPORT_SYMBOL_GPL(kvm_rs_sigmask_deactivate);

void kvm_rs_send_reschedule(int cpu) { smp_send_reschedule(cpu); }
EXPORT_SYMBOL_GPL(kvm_rs_send_reschedule);

void kvm_rs_hrtimer_init(struct hrtimer *t, int (*fn)(struct hrtimer *t))
{
	hrtimer_init(t, CLOCK_MONOTONIC, HRTIMER_MODE_ABS_HARD);
	t->function = (enum hrtimer_restart (*)(struct hrtimer *))fn;
}
EXPORT_SYMBOL_GPL(kvm_rs_hrtimer_init);
void kvm_rs_hrtimer_start(struct hrtimer *t, u64 abs_ns) { hrtimer_start(t, ns_to_ktime(abs_ns), HRTIMER_MODE_ABS_HARD); }
EXPORT_SYMBOL_GPL(kvm_rs_hrtimer_start);
u64 kvm_rs_ktime_get_ns(void) { return ktime_get_ns(); }
EXPORT_SYMBOL_GPL(kvm_rs_ktime_get_ns);
u64 kvm_rs_ktime_get_boottime_ns(void) { return ktime_get_boottime_ns(); }
EXPORT_SYMBOL_GPL(kvm_rs_ktime_get_boottime_ns);
u64 kvm_rs_ktime_get_real_ns(void) { return ktime_get_real_ns(); }
EXPORT_SYMBOL_GPL(kvm_rs_ktime_get_real_ns);
unsigned int kvm_rs_tsc_khz(void) { return tsc_khz; }
EXPORT_SYMBOL_GPL(kvm_rs_tsc_khz);

void kvm_rs_init_waitqueue_head(struct wait_queue_head *wq) { init_waitqueue_head(wq); }
EXPORT_SYMBOL_GPL(kvm_rs_init_waitqueue_head);
void kvm_rs_wake_up(struct wait_queue_head *wq) { wake_up(wq); }
EXPORT_SYMBOL_GPL(kvm_rs_wake_up);
void kvm_rs_prepare_to_wait(struct wait_queue_head *wq, struct wait_queue_entry *e)
{
	init_wait(e);
	prepare_to_wait(wq, e, TASK_INTERRUPTIBLE);
}
EXPORT_SYMBOL_GPL(kvm_rs_prepare_to_wait);
void kvm_rs_init_wait_func(struct wait_queue_entry *e, int (*fn)(struct wait_queue_entry *e, unsigned mode, int flags, void *key))
{ init_waitqueue_func_entry(e, fn); }
EXPORT_SYMBOL_GPL(kvm_rs_init_wait_func);
unsigned int kvm_rs_vfs_poll(struct file *f, struct poll_table_struct *pt,
			     void (*qproc)(struct file *f, struct wait_queue_head *wq, struct poll_table_struct *pt))
{
	init_poll_funcptr(pt, qproc);
	return vfs_poll(f, pt);
}
EXPORT_SYMBOL_GPL(kvm_rs_vfs_poll);
void kvm_rs_eventfd_signal(struct eventfd_ctx *ctx) { eventfd_signal(ctx); }
EXPORT_SYMBOL_GPL(kvm_rs_eventfd_signal);
void kvm_rs_init_work(struct work_struct *w, void (*fn)(struct work_struct *w)) { INIT_WORK(w, fn); }
EXPORT_SYMBOL_GPL(kvm_rs_init_work);
void kvm_rs_schedule_work(struct work_struct *w) { schedule_work(w); }
EXPORT_SYMBOL_GPL(kvm_rs_schedule_work);

int kvm_rs_check_tsc_unstable(void) { return check_tsc_unstable(); }
EXPORT_SYMBOL_GPL(kvm_rs_check_tsc_unstable);

/*
 * The IA32_ARCH_CAPABILITIES value KVM offers guests, from the host's own
 * and the kernel's view of the CPU's vulnerabilities (the facts upstream's
 * kvm_get_arch_capabilities uses: which "not affected" bits KVM may pass on,
 * and which it can add because the host is not affected).
 */
u64 kvm_rs_arch_capabilities(void)
{
	const u64 passed_on = ARCH_CAP_RDCL_NO | ARCH_CAP_IBRS_ALL | ARCH_CAP_RSBA |
		ARCH_CAP_SKIP_VMENTRY_L1DFLUSH | ARCH_CAP_SSB_NO | ARCH_CAP_MDS_NO |
		ARCH_CAP_PSCHANGE_MC_NO | ARCH_CAP_TSX_CTRL_MSR | ARCH_CAP_TAA_NO |
		ARCH_CAP_SBDR_SSDP_NO | ARCH_CAP_FBSDP_NO | ARCH_CAP_PSDP_NO |
		ARCH_CAP_FB_CLEAR | ARCH_CAP_RRSBA | ARCH_CAP_PBRSB_NO | ARCH_CAP_GDS_NO |
		ARCH_CAP_RFDS_NO | ARCH_CAP_RFDS_CLEAR | ARCH_CAP_BHI_NO | ARCH_CAP_ITS_NO;
	u64 host = 0, caps;

	if (boot_cpu_has(X86_FEATURE_ARCH_CAPABILITIES))
		rdmsrl_safe(MSR_IA32_ARCH_CAPABILITIES, &host);
	caps = (host & passed_on) | ARCH_CAP_PSCHANGE_MC_NO;
#if IS_ENABLED(CONFIG_KVM_INTEL)
	if (l1tf_vmx_mitigation != VMENTER_L1D_FLUSH_NEVER)
		caps |= ARCH_CAP_SKIP_VMENTRY_L1DFLUSH;
#else
	caps |= ARCH_CAP_SKIP_VMENTRY_L1DFLUSH;
#endif
	if (!boot_cpu_has_bug(X86_BUG_CPU_MELTDOWN))
		caps |= ARCH_CAP_RDCL_NO;
	if (!boot_cpu_has_bug(X86_BUG_SPEC_STORE_BYPASS))
		caps |= ARCH_CAP_SSB_NO;
	if (!boot_cpu_has_bug(X86_BUG_MDS))
		caps |= ARCH_CAP_MDS_NO;
	if (!boot_cpu_has_bug(X86_BUG_RFDS))
		caps |= ARCH_CAP_RFDS_NO;
	if (!boot_cpu_has_bug(X86_BUG_ITS))
		caps |= ARCH_CAP_ITS_NO;
	if (!boot_cpu_has(X86_FEATURE_RTM))
		caps &= ~ARCH_CAP_TAA_NO;
	else if (!boot_cpu_has_bug(X86_BUG_TAA))
		caps |= ARCH_CAP_TAA_NO;
	if (!boot_cpu_has_bug(X86_BUG_GDS) || gds_ucode_mitigated())
		caps |= ARCH_CAP_GDS_NO;
	return caps;
}
EXPORT_SYMBOL_GPL(kvm_rs_arch_capabilities);

bool kvm_rs_lfence_serializing(void) { return cpu_feature_enabled(X86_FEATURE_LFENCE_RDTSC); }
EXPORT_SYMBOL_GPL(kvm_rs_lfence_serializing);

/*
 * Whether @file is a VFIO group or device file, asked of the vfio module if
 * it is loaded (no VFIO loaded: no file can be one).
 */
bool kvm_rs_vfio_file_is_valid(struct file *file)
{
	bool (*is_valid)(struct file *file);
	bool ret;

	is_valid = symbol_get(vfio_file_is_valid);
	if (!is_valid)
		return false;
	ret = is_valid(file);
	symbol_put(vfio_file_is_valid);
	return ret;
}
EXPORT_SYMBOL_GPL(kvm_rs_vfio_file_is_valid);

int kvm_rs_hva_to_page(unsigned long hva, bool write_fault, bool want_writable,
		       struct page **page, bool *writable)
{
	int n;

	hva &= PAGE_MASK;
	if (!write_fault && want_writable &&
	    get_user_pages_fast_only(hva, 1, FOLL_WRITE, page) == 1) {
		*writable = true;
		return 1;
	}
	n = get_user_pages_fast(hva, 1, write_fault ? FOLL_WRITE : 0, page);
	if (n == 1)
		*writable = write_fault;
	return n == 0 ? -EFAULT : n;
}
EXPORT_SYMBOL_GPL(kvm_rs_hva_to_page);

int kvm_rs_host_mapping_level(unsigned long hva)
{
	struct mm_struct *mm = current->mm;
	unsigned long flags;
	int level = 1;
	pgd_t pgd;
	p4d_t p4d;
	pud_t pud;
	pmd_t pmd;

	if (!mm)
		return 1;
	/*
	 * Interrupts off keep the page tables from being freed under the walk
	 * (their freeing waits for an IPI or RCU grace period, as gup-fast
	 * relies on); each level is read once into a local copy.
	 */
	local_irq_save(flags);
	pgd = READ_ONCE(*pgd_offset(mm, hva));
	if (pgd_none(pgd))
		goto out;
	p4d = READ_ONCE(*p4d_offset(&pgd, hva));
	if (p4d_none(p4d) || !p4d_present(p4d))
		goto out;
	pud = READ_ONCE(*pud_offset(&p4d, hva));
	if (pud_none(pud) || !pud_present(pud))
		goto out;
	if (pud_leaf(pud)) {
		level = 3;
		goto out;
	}
	pmd = READ_ONCE(*pmd_offset(&pud, hva));
	if (pmd_none(pmd) || !pmd_present(pmd))
		goto out;
	if (pmd_leaf(pmd))
		level = 2;
out:
	local_irq_restore(flags);
	return level;
}
EXPORT_SYMBOL_GPL(kvm_rs_host_mapping_level);

struct page *kvm_rs_phys_to_page(u64 pa) { return pfn_to_page(PHYS_PFN(pa)); }
EXPORT_SYMBOL_GPL(kvm_rs_phys_to_page);

/* Upstream's kvm_set_page_dirty: the flag only, for pages with A/D tracking. */
void kvm_rs_kvm_set_page_dirty(struct page *page)
{
	if (!PageReserved(page))
		SetPageDirty(page);
}
EXPORT_SYMBOL_GPL(kvm_rs_kvm_set_page_dirty);
