/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input of our own bindgen run (Kbuild rule in Kbuild): the kernel APIs that
 * Linux 6.12's `kernel` crate does not bind, plus the helpers of include-compat/.
 * The raw output is used only by the small wrapper modules under x86/kvm/sys/.
 */
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/anon_inodes.h>
#include <linux/syscore_ops.h>
#include <linux/cpuhotplug.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <asm/reboot.h>
#include <linux/hrtimer.h>
#include <linux/wait.h>
#include <linux/poll.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <asm/fpu/api.h>
#include <asm/fpu/types.h>
#include "../include-compat/kvm_compat.h"
#include "../include-compat/kvm_stats_compat.h"
