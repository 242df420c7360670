// SPDX-License-Identifier: GPL-2.0
//! Extended page table entries (Intel SDM vol. 3, 29.3.2): read/write/execute
//! permission bits, write-back memory type on leaves.

use core::sync::atomic::{AtomicU32, Ordering};
use kvm::TdpFormat;

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const EXEC: u64 = 1 << 2;
const MEMTYPE_WB: u64 = 6 << 3;

pub(crate) struct EptFormat {
    /// The largest leaf level IA32_VMX_EPT_VPID_CAP offers (set once by
    /// hardware_setup, before any VM exists).
    max_level: AtomicU32,
}

impl EptFormat {
    /// Records the EPT capabilities' page sizes (upstream's
    /// ept_cap_has_1g_page / ept_cap_has_2m_page).
    pub(crate) fn set_caps(&self, ept_vpid_cap: u64) {
        use crate::vmcs_config::controls::{EPT_CAP_1GB_PAGE, EPT_CAP_2MB_PAGE};
        let level = if ept_vpid_cap & EPT_CAP_1GB_PAGE != 0 {
            3
        } else if ept_vpid_cap & EPT_CAP_2MB_PAGE != 0 {
            2
        } else {
            1
        };
        self.max_level.store(level, Ordering::Relaxed);
    }
}

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
    fn max_level(&self) -> u32 {
        self.max_level.load(Ordering::Relaxed)
    }
    fn no_exec(&self, leaf: u64) -> u64 {
        leaf & !EXEC
    }
    fn exec(&self, leaf: u64) -> u64 {
        leaf | EXEC
    }
}

pub(crate) static EPT: EptFormat = EptFormat { max_level: AtomicU32::new(1) };
