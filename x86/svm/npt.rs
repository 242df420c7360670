// SPDX-License-Identifier: GPL-2.0
//! Nested page table entries (AMD APM vol. 2, 15.25): the long-mode page-table
//! format; every level must allow user access, since the guest's accesses count
//! as user accesses in the nested walk.

use kvm::TdpFormat;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
/// No execute (valid in nested page tables: the host runs with EFER.NXE).
const NX: u64 = 1 << 63;

pub(crate) struct NptFormat;

impl TdpFormat for NptFormat {
    fn leaf(&self, pa: u64, writable: bool) -> u64 {
        (pa & 0x000f_ffff_ffff_f000) | PRESENT | USER | ACCESSED | if writable { WRITABLE | DIRTY } else { 0 }
    }
    fn table(&self, pa: u64) -> u64 {
        (pa & 0x000f_ffff_ffff_f000) | PRESENT | WRITABLE | USER | ACCESSED
    }
    fn present(&self, pte: u64) -> bool {
        pte & PRESENT != 0
    }
    fn write_protect(&self, pte: u64) -> u64 {
        pte & !(WRITABLE | DIRTY)
    }
    fn accessed_mask(&self) -> u64 {
        ACCESSED
    }
    /// 2M and 1G leaves: NPT takes the long-mode page-table format, whose
    /// 1G pages every CPU with NPT has (upstream configures PG_LEVEL_1G too).
    fn max_level(&self) -> u32 {
        3
    }
    fn no_exec(&self, leaf: u64) -> u64 {
        leaf | NX
    }
    fn exec(&self, leaf: u64) -> u64 {
        leaf & !NX
    }
}

pub(crate) static NPT: NptFormat = NptFormat;
