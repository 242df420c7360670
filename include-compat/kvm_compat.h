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

/* Word `word` of the kernel's feature bits (boot_cpu_data.x86_capability), 0 past
 * the end: CPUID bits the kernel turned off (noxsave, clearcpuid=, a failed XSAVE
 * setup) are off there. */
u32 kvm_rs_boot_cpu_cap_word(unsigned int word);

/* CR4 through the kernel's shadow (cr4_set_bits()/cr4_clear_bits()/__read_cr4()). */
void kvm_rs_cr4_set_bits(unsigned long mask);
void kvm_rs_cr4_clear_bits(unsigned long mask);
unsigned long kvm_rs_read_cr4(void);

/* CPU identity (smp_processor_id(), nr_cpu_ids, cpu_online()). */
unsigned int kvm_rs_smp_processor_id(void);
unsigned int kvm_rs_nr_cpu_ids(void);
unsigned int kvm_rs_num_online_cpus(void);
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

/* The size of a page (PAGE_SIZE). */
unsigned long kvm_rs_page_size(void);

/* Pages and user memory. */
void *kvm_rs_page_address(struct page *page);
void kvm_rs_get_page(struct page *page);
void kvm_rs_put_page(struct page *page);
void kvm_rs_set_page_dirty_lock(struct page *page);

/* 2^order physically contiguous pages (alloc_pages()/__free_pages()). */
struct page *kvm_rs_alloc_pages(unsigned int order);
void kvm_rs_free_pages(struct page *page, unsigned int order);

/* The current task: its mm (compared, grabbed and dropped), pending signals,
 * rescheduling. */
struct mm_struct *kvm_rs_current_mm(void);
void kvm_rs_mmgrab(struct mm_struct *mm);
void kvm_rs_mmdrop(struct mm_struct *mm);
bool kvm_rs_signal_pending(void);
void kvm_rs_cond_resched(void);
bool kvm_rs_sched_info_on(void);
u64 kvm_rs_current_run_delay(void);
bool kvm_rs_need_resched(void);

/* KVM_SET_SIGNAL_MASK around KVM_RUN (kvm_sigset_activate/deactivate). */
void kvm_rs_sigmask_activate(u64 set);
void kvm_rs_sigmask_deactivate(void);

/* IRQ and preemption control around VM entry. */
void kvm_rs_local_irq_disable(void);
void kvm_rs_local_irq_enable(void);
void kvm_rs_preempt_disable(void);
unsigned long kvm_rs_local_irq_save(void);
void kvm_rs_local_irq_restore(unsigned long flags);
void kvm_rs_preempt_enable(void);

/* Reload the task's FPU registers if the kernel deferred it (before VM entry). */
void kvm_rs_fpu_load_if_needed(void);

/* A VMA being mmap()ed: its range and offset. */
struct vm_area_struct;
unsigned long kvm_rs_vma_start(struct vm_area_struct *vma);
unsigned long kvm_rs_vma_end(struct vm_area_struct *vma);
unsigned long kvm_rs_vma_pgoff(struct vm_area_struct *vma);
/*
 * Gives a vCPU mapping a fault handler that raises SIGBUS: pages the mmap did
 * not insert (offsets with nothing behind them) fail on access, as upstream's
 * kvm_vcpu_fault, instead of being filled with anonymous memory.
 */
void kvm_rs_vma_set_sigbus_ops(struct vm_area_struct *vma);
/* A shared mapping without execute permission (the dirty ring's condition). */
bool kvm_rs_vma_shared_noexec(struct vm_area_struct *vma);

/* The direct-map address of a physical address (__va()). */
void *kvm_rs_phys_to_virt(u64 pa);

/* file->private_data. */
void *kvm_rs_file_private(struct file *file);

/* A kick: an IPI to `cpu` that makes a CPU running a guest exit it. */
void kvm_rs_kick_cpu(int cpu);
/* smp_call_function_single(cpu, func, info, wait = 1): 0, or -ENXIO if offline. */
int kvm_rs_call_on_cpu(int cpu, void (*func)(void *info), void *info);

/* The in-kernel irqchip: timers, wait queues, eventfds (x86/kvm/irq/sys.rs). */
struct hrtimer;
struct wait_queue_head;
struct wait_queue_entry;
struct eventfd_ctx;
struct poll_table_struct;
/* A reschedule IPI: makes `cpu` leave a guest; safe from any context. */
void kvm_rs_send_reschedule(int cpu);
/* hrtimer_init(CLOCK_MONOTONIC, HRTIMER_MODE_ABS_HARD) with its callback. */
void kvm_rs_hrtimer_init(struct hrtimer *t, int (*fn)(struct hrtimer *t));
/* hrtimer_start() at absolute CLOCK_MONOTONIC ns (hard-IRQ expiry). */
void kvm_rs_hrtimer_start(struct hrtimer *t, u64 abs_ns);
u64 kvm_rs_ktime_get_ns(void);
/* ktime_get_boottime_ns(), ktime_get_real_ns(). */
u64 kvm_rs_ktime_get_boottime_ns(void);
u64 kvm_rs_ktime_get_real_ns(void);
/* The host TSC frequency in kHz (tsc_khz). */
unsigned int kvm_rs_tsc_khz(void);
/* check_tsc_unstable(): non-zero once the kernel found the TSC unreliable. */
int kvm_rs_check_tsc_unstable(void);
/* The IA32_ARCH_CAPABILITIES value offered to guests (feature MSR). */
u64 kvm_rs_arch_capabilities(void);
/* The host runs with LFENCE dispatch-serializing (DE_CFG bit 1 offered). */
bool kvm_rs_lfence_serializing(void);
/* vfio_file_is_valid() through symbol_get (false without the vfio module). */
bool kvm_rs_vfio_file_is_valid(struct file *file);
/*
 * The page behind hva for one guest fault (upstream's hva_to_pfn): FOLL_WRITE
 * if write_fault; otherwise, if want_writable, writable only when the host PTE
 * already is (gup-fast without faulting), else read-only. Returns 1 and a page
 * reference (*writable says how it was taken), or a negative errno.
 */
int kvm_rs_hva_to_page(unsigned long hva, bool write_fault, bool want_writable,
		       struct page **page, bool *writable);
/*
 * The size of the current process's mapping at hva: 1 (4K, or nothing
 * mapped), 2 (a 2M PMD leaf: THP or hugetlbfs) or 3 (a 1G PUD leaf), read
 * without locks with interrupts off as upstream's host_pfn_mapping_level. The
 * caller holds off invalidations of hva (the MMU-notifier sequence check), so
 * the answer stays true until its mapping is in place.
 */
int kvm_rs_host_mapping_level(unsigned long hva);
/* kvm.nx_huge_pages in effect (params.c): guest memory in 4 KiB mappings only. */
bool kvm_rs_nx_huge_pages_on(void);
/* pfn_to_page() of a physical address. */
struct page *kvm_rs_phys_to_page(u64 pa);
/* Marks a page a guest may write dirty (upstream's kvm_set_page_dirty). */
void kvm_rs_kvm_set_page_dirty(struct page *page);

/* The VM's MMU notifier (x86/kvm/mmu_notifier.c). */
struct kvm_rs_mmu_notifier;
struct kvm_rs_mmu_notifier *kvm_rs_mmu_notifier_alloc(void);
int kvm_rs_mmu_notifier_register(struct kvm_rs_mmu_notifier *n, const void *vm);
void kvm_rs_mmu_notifier_free(struct kvm_rs_mmu_notifier *n);
/* Its callbacks, implemented in Rust (x86/kvm/mmu_notifier.rs). */
void kvm_rs_mn_invalidate_start(const void *vm, unsigned long start, unsigned long end);
void kvm_rs_mn_invalidate_end(const void *vm, unsigned long start, unsigned long end);
bool kvm_rs_mn_age(const void *vm, unsigned long start, unsigned long end, bool clear, bool flush);
void kvm_rs_mn_release(const void *vm);
void kvm_rs_init_waitqueue_head(struct wait_queue_head *wq);
/* wake_up(): TASK_NORMAL, one exclusive waiter; safe from hard-IRQ context. */
void kvm_rs_wake_up(struct wait_queue_head *wq);
/* init_wait() + prepare_to_wait(TASK_INTERRUPTIBLE). */
void kvm_rs_prepare_to_wait(struct wait_queue_head *wq, struct wait_queue_entry *e);
/* init_waitqueue_func_entry(). */
void kvm_rs_init_wait_func(struct wait_queue_entry *e, int (*fn)(struct wait_queue_entry *e, unsigned mode, int flags, void *key));
/* init_poll_funcptr() on a poll table, then vfs_poll(): returns the file's mask. */
unsigned int kvm_rs_vfs_poll(struct file *f, struct poll_table_struct *pt,
			     void (*qproc)(struct file *f, struct wait_queue_head *wq, struct poll_table_struct *pt));
struct work_struct;
/* INIT_WORK() and schedule_work() (system workqueue). */
void kvm_rs_init_work(struct work_struct *w, void (*fn)(struct work_struct *w));
void kvm_rs_schedule_work(struct work_struct *w);
/* eventfd_signal(). */
void kvm_rs_eventfd_signal(struct eventfd_ctx *ctx);

#endif
