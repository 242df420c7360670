//! The guest page-table walk: linear to guest-physical addresses for the
//! emulator's instruction fetch and data accesses, in every paging mode (none,
//! 32-bit with 4M pages, PAE, 4-level with 2M/1G pages).

/// The guest's paging configuration.
#[derive(Clone, Copy, Debug)]
pub struct PagingMode {
    pub cr0_pg: bool,
    pub cr0_wp: bool,
    pub cr3: u64,
    pub cr4_pae: bool,
    pub cr4_pse: bool,
    pub efer_lma: bool,
    pub efer_nxe: bool,
    /// CPL 3.
    pub user: bool,
}

/// The access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// A #PF to inject: the error code and the faulting linear address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    pub error_code: u32,
    pub address: u64,
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    Fault(PageFault),
    /// A page-table entry could not be read (not in guest RAM).
    TableUnreadable(u64),
}

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Translates `linear` for `access`; `read_pte(gpa, size)` reads a page-table
/// entry (4 or 8 bytes) from guest-physical memory.
pub fn translate(
    linear: u64,
    access: Access,
    m: &PagingMode,
    read_pte: &mut dyn FnMut(u64, u8) -> Option<u64>,
) -> Result<u64, WalkError> {
    if !m.cr0_pg {
        return Ok(linear & 0xffff_ffff);
    }
    let fault = |present: bool| {
        let mut ec = 0u32;
        if present {
            ec |= 1;
        }
        if access == Access::Write {
            ec |= 2;
        }
        if m.user {
            ec |= 4;
        }
        if access == Access::Fetch && m.efer_nxe {
            ec |= 16;
        }
        WalkError::Fault(PageFault { error_code: ec, address: linear })
    };
    let (levels, entry_size, mut table): (u32, u8, u64) = if m.efer_lma {
        (4, 8, m.cr3 & ADDR)
    } else if m.cr4_pae {
        // The PDPTE from CR3[31:5].
        let pdpte_addr = (m.cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8;
        let pdpte = read_pte(pdpte_addr, 8).ok_or(WalkError::TableUnreadable(pdpte_addr))?;
        if pdpte & P == 0 {
            return Err(fault(false));
        }
        (2, 8, pdpte & ADDR)
    } else {
        (2, 4, m.cr3 & 0xffff_f000)
    };
    let mut writable = true;
    let mut user_ok = true;
    let mut nx = false;
    for level in (1..=levels).rev() {
        let (shift, bits) = if entry_size == 8 { (12 + 9 * (level - 1), 9) } else { (12 + 10 * (level - 1), 10) };
        let idx = (linear >> shift) & ((1 << bits) - 1);
        let addr = table + idx * entry_size as u64;
        let pte = read_pte(addr, entry_size).ok_or(WalkError::TableUnreadable(addr))?;
        if pte & P == 0 {
            return Err(fault(false));
        }
        writable &= pte & RW != 0;
        user_ok &= pte & US != 0;
        if entry_size == 8 {
            nx |= pte & NX != 0 && m.efer_nxe;
        }
        let large = level > 1 && pte & PS != 0 && (entry_size == 8 || m.cr4_pse) && level <= 3;
        if level == 1 || large {
            if m.user && !user_ok
                || access == Access::Write && !writable && (m.user || m.cr0_wp)
                || access == Access::Fetch && nx
            {
                return Err(fault(true));
            }
            let page_bits = shift;
            let base = if entry_size == 4 && large {
                // 4M page: bits 31:22, plus PSE-36 bits 20:13 -> 39:32.
                (pte & 0xffc0_0000) | ((pte >> 13) & 0xff) << 32
            } else {
                pte & ADDR & !((1u64 << page_bits) - 1)
            };
            return Ok(base | (linear & ((1u64 << page_bits) - 1)));
        }
        table = if entry_size == 4 { pte & 0xffff_f000 } else { pte & ADDR };
    }
    Err(fault(false))
}
