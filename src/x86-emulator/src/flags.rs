//! Arithmetic flags (CF, PF, AF, ZF, SF, OF) of the ALU instructions.

pub const CF: u64 = 1 << 0;
pub const PF: u64 = 1 << 2;
pub const AF: u64 = 1 << 4;
pub const ZF: u64 = 1 << 6;
pub const SF: u64 = 1 << 7;
pub const DF: u64 = 1 << 10;
pub const OF: u64 = 1 << 11;
pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;

pub fn mask(size: u8) -> u64 {
    if size >= 8 { u64::MAX } else { (1u64 << (8 * size as u32)) - 1 }
}

fn sign(size: u8) -> u64 {
    1u64 << (8 * size as u32 - 1)
}

fn szp(r: u64, size: u8) -> u64 {
    let r = r & mask(size);
    let mut f = 0;
    if r == 0 {
        f |= ZF;
    }
    if r & sign(size) != 0 {
        f |= SF;
    }
    if (r as u8).count_ones() % 2 == 0 {
        f |= PF;
    }
    f
}

/// a + b + carry_in: (result, flags).
pub fn add(a: u64, b: u64, carry_in: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let wide = a as u128 + b as u128 + carry_in as u128;
    let r = (wide as u64) & m;
    let mut f = szp(r, size);
    if wide > m as u128 {
        f |= CF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if (!(a ^ b) & (a ^ r)) & sign(size) != 0 {
        f |= OF;
    }
    (r, f)
}

/// a - b - borrow_in: (result, flags).
pub fn sub(a: u64, b: u64, borrow_in: bool, size: u8) -> (u64, u64) {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(borrow_in as u64) & m;
    let mut f = szp(r, size);
    if (b as u128 + borrow_in as u128) > a as u128 {
        f |= CF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if ((a ^ b) & (a ^ r)) & sign(size) != 0 {
        f |= OF;
    }
    (r, f)
}

/// AND/OR/XOR/TEST: CF = OF = 0, AF undefined (cleared).
pub fn logic(r: u64, size: u8) -> (u64, u64) {
    let r = r & mask(size);
    (r, szp(r, size))
}
