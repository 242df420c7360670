// SPDX-License-Identifier: GPL-2.0
/*
 * Exports the Rust symbols of kvm.ko's crate so kvm-amd.ko and kvm-intel.ko, which
 * are compiled against its metadata (libkvm.rmeta), can link to them. The list is
 * generated from `nm kvm.o` at build time (see Kbuild).
 */
#include <linux/export.h>

#define EXPORT_SYMBOL_RUST(sym) extern int sym; EXPORT_SYMBOL_GPL(sym)
#include "exports_kvm.h"
