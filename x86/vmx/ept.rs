// SPDX-License-Identifier: GPL-2.0
//! Extended page table entries (Intel SDM vol. 3, 29.3.2): read/write/execute
//! permission bits, write-back memory type on leaves.

use kvm::TdpFormat;

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXEC: u64 = 1 << 2;
const MEMTYPE_WB: u64 = 6 << 3;

pub(crate) struct EptFormat;

impl TdpFormat for EptFormat {
    fn leaf(&self, pa: u64, writable: bool) -> u64 {
        (pa & 0x000f_ffff_ffff_f000) | READ | EXEC | MEMTYPE_WB | if writable { WRITE } else { 0 }
    }
    fn table(&self, pa: u64) -> u64 {
        (pa & 0x000f_ffff_ffff_f000) | READ | WRITE | EXEC
    }
    fn present(&self, pte: u64) -> bool {
        pte & (READ | WRITE | EXEC) != 0
    }
    fn write_protect(&self, pte: u64) -> u64 {
        pte & !WRITE
    }
}

pub(crate) static EPT: EptFormat = EptFormat;
