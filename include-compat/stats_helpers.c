// SPDX-License-Identifier: GPL-2.0
/* Bodies of kvm_stats_compat.h's glue (see there). */
#include <linux/module.h>
#include <linux/fs.h>
#include <linux/file.h>
#include <linux/anon_inodes.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/dcache.h>
#include "kvm_stats_compat.h"

int kvm_rs_stats_getfd(const char *name, const struct file_operations *fops, void *priv)
{
	struct file *file;
	int fd = get_unused_fd_flags(O_CLOEXEC);

	if (fd < 0)
		return fd;
	file = anon_inode_getfile(name, fops, priv, O_RDONLY);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	file->f_mode |= FMODE_PREAD;
	fd_install(fd, file);
	return fd;
}

struct dentry *kvm_rs_debugfs_dir(const char *name, struct dentry *parent)
{
	struct dentry *d = debugfs_create_dir(name, parent);

	return IS_ERR(d) ? NULL : d;
}

bool kvm_rs_debugfs_exists(const char *name, struct dentry *parent)
{
	struct dentry *d = debugfs_lookup(name, parent);

	dput(d);
	return d != NULL;
}

DEFINE_DEBUGFS_ATTRIBUTE(kvm_rs_stat_fops, kvm_rs_stat_get, kvm_rs_stat_set, "%llu\n");

void kvm_rs_debugfs_stat(const char *name, unsigned short mode, struct dentry *parent, void *data)
{
	if (parent)
		debugfs_create_file_unsafe(name, mode, parent, data, &kvm_rs_stat_fops);
}

DEFINE_DEBUGFS_ATTRIBUTE(kvm_rs_vcpu_u_fops, kvm_rs_vcpu_file_get, NULL, "%llu\n");
DEFINE_DEBUGFS_ATTRIBUTE_SIGNED(kvm_rs_vcpu_s_fops, kvm_rs_vcpu_file_get, NULL, "%lld\n");

void kvm_rs_debugfs_vcpu_file(const char *name, struct dentry *parent, void *data, bool is_signed)
{
	if (parent)
		debugfs_create_file_unsafe(name, 0444, parent, data,
					   is_signed ? &kvm_rs_vcpu_s_fops : &kvm_rs_vcpu_u_fops);
}

void kvm_rs_debugfs_remove(struct dentry *d)
{
	debugfs_remove(d);
}
