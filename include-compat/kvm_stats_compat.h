/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C glue of the binary statistics, debugfs and trace events of kvm.ko
 * (x86/kvm/stats, x86/kvm/trace): calls that need macros or static inlines.
 * The logic (what is counted, what a file shows) is in Rust.
 */
#ifndef KVM_RS_STATS_COMPAT_H
#define KVM_RS_STATS_COMPAT_H

#include <linux/types.h>

struct file;
struct file_operations;
struct dentry;

/* KVM_GET_STATS_FD's file: get_unused_fd_flags(O_CLOEXEC), anon_inode_getfile
 * (O_RDONLY), FMODE_PREAD, fd_install, as upstream's kvm_vm_ioctl_get_stats_fd.
 * Returns the fd or a negative errno (nothing installed then). */
int kvm_rs_stats_getfd(const char *name, const struct file_operations *fops, void *priv);

/* debugfs_create_dir(); NULL when debugfs refused (or is not built in). */
struct dentry *kvm_rs_debugfs_dir(const char *name, struct dentry *parent);
/* A "%llu\n" attribute file (DEFINE_DEBUGFS_ATTRIBUTE) whose get/set are
 * kvm_rs_stat_get()/kvm_rs_stat_set() on `data`. */
void kvm_rs_debugfs_stat(const char *name, unsigned short mode, struct dentry *parent, void *data);
/* debugfs_lookup() + dput(): whether `name` exists under `parent`. */
bool kvm_rs_debugfs_exists(const char *name, struct dentry *parent);
/* debugfs_remove() (recursive; waits for reads in progress; NULL is fine). */
void kvm_rs_debugfs_remove(struct dentry *d);
/* A read-only vcpuN/ file: "%llu\n" (or "%lld\n" if `is_signed`) of
 * kvm_rs_vcpu_file_get() on `data`. */
void kvm_rs_debugfs_vcpu_file(const char *name, struct dentry *parent, void *data, bool is_signed);
int kvm_rs_vcpu_file_get(void *data, u64 *val);
/* Rust: the value of a stat file, and clearing it (val must be 0). */
int kvm_rs_stat_get(void *data, u64 *val);
int kvm_rs_stat_set(void *data, u64 val);

/* The trace events (x86/kvm/trace/kvm_trace.c). */
bool kvm_rs_trace_kvm_entry_enabled(void);
bool kvm_rs_trace_kvm_exit_enabled(void);
bool kvm_rs_trace_kvm_pio_enabled(void);
bool kvm_rs_trace_kvm_mmio_enabled(void);
bool kvm_rs_trace_kvm_cpuid_enabled(void);
bool kvm_rs_trace_kvm_msr_enabled(void);
bool kvm_rs_trace_kvm_cr_enabled(void);
bool kvm_rs_trace_kvm_inj_virq_enabled(void);
bool kvm_rs_trace_kvm_page_fault_enabled(void);
void kvm_rs_trace_kvm_entry(u32 vcpu_id, u64 rip, bool immediate_exit);
void kvm_rs_trace_kvm_exit(u32 vcpu_id, u64 rip, u32 isa, u32 reason, u64 info1,
			   u64 info2, u32 intr_info, u32 error_code);
void kvm_rs_trace_kvm_pio(u32 rw, u32 port, u32 size, u32 count, u32 val);
void kvm_rs_trace_kvm_mmio(int type, int len, u64 gpa, u64 val);
void kvm_rs_trace_kvm_cpuid(u32 function, u32 index, u64 rax, u64 rbx, u64 rcx,
			    u64 rdx, bool found, bool used_max_basic);
void kvm_rs_trace_kvm_msr(u32 write, u32 ecx, u64 data, bool exception);
void kvm_rs_trace_kvm_cr(u32 rw, u32 cr, u64 val);
void kvm_rs_trace_kvm_inj_virq(u32 vector, bool soft, bool reinjected);
void kvm_rs_trace_kvm_page_fault(u32 vcpu_id, u64 rip, u64 fault_address, u64 error_code);

#endif
