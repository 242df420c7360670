//! Decoding: prefixes, REX, opcode (one-byte and 0F two-byte maps), ModRM, SIB,
//! displacement and immediate, in 16-, 32- and 64-bit code.

/// The code size the CPU executes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Real mode, virtual-8086 mode or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (protected or compatibility mode).
    Bits32,
    /// 64-bit mode (long mode with CS.L).
    Bits64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

/// A memory operand: segment and the pieces of its effective address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRef {
    pub seg: Seg,
    pub base: Option<u8>,
    pub index: Option<u8>,
    pub scale: u8,
    pub disp: i64,
    /// RIP-relative (64-bit mode): disp is relative to the next instruction.
    pub rip_relative: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    None,
    Reg(u8),
    /// An 8-bit register without REX where 4..7 mean AH, CH, DH, BH.
    Reg8Legacy(u8),
    Mem(MemRef),
    Imm(u64),
}

/// The instructions the executor knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Mov,
    Movzx,
    Movsx,
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    Xchg,
    Bt,
    Bts,
    Btr,
    Btc,
    Stos,
    Movs,
    /// Decoded for its length only.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub len: u8,
    pub op: Op,
    /// Destination and source operands (Intel order).
    pub dst: Operand,
    pub src: Operand,
    /// Operand size in bytes for the destination (1, 2, 4, 8).
    pub size: u8,
    /// Source size for MOVZX/MOVSX.
    pub src_size: u8,
    /// Address size in bytes (2, 4, 8).
    pub addr_size: u8,
    pub rep: bool,
    pub lock: bool,
    pub seg_override: Option<Seg>,
    pub rex: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran out of bytes (the instruction is longer than what was fetched).
    Truncated,
    /// More than 15 bytes.
    TooLong,
    /// An opcode this decoder does not know.
    Unknown(u16),
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= 15 {
            return Err(DecodeError::TooLong);
        }
        let v = *self.b.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }
    fn imm(&mut self, n: u8) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= (self.next()? as u64) << (8 * i);
        }
        Ok(v)
    }
    fn simm(&mut self, n: u8) -> Result<i64, DecodeError> {
        let v = self.imm(n)?;
        let shift = 64 - 8 * n as u32;
        Ok(((v << shift) as i64) >> shift)
    }
}

/// ModRM-using opcodes of the one-byte map and their immediate sizes
/// (0 = none, 1 = imm8, 0xff = imm16/32 by operand size).
fn one_byte_layout(op: u8) -> Option<(bool, u8)> {
    Some(match op {
        0x00..=0x3f => match op & 7 {
            0..=3 => (true, 0),
            4 => (false, 1),
            5 => (false, 0xff),
            _ => (false, 0), // segment push/pop, DAA... (invalid in 64-bit; length 1)
        },
        0x40..=0x61 => (false, 0),
        0x62 | 0x63 => (true, 0),
        0x68 => (false, 0xff),
        0x69 => (true, 0xff),
        0x6a => (false, 1),
        0x6b => (true, 1),
        0x6c..=0x6f => (false, 0),
        0x70..=0x7f => (false, 1),
        0x80 | 0x82 | 0x83 => (true, 1),
        0x81 => (true, 0xff),
        0x84..=0x8f => (true, 0),
        0x90..=0x99 | 0x9b..=0x9f => (false, 0),
        0x9a | 0xea => (false, 0), // far pointer: sized below
        0xa0..=0xa3 => (false, 0), // moffs: sized below
        0xb8..=0xbf => (false, 0), // imm16/32/64: sized below
        0xc8 => (false, 0),        // ENTER: sized below
        0xa4..=0xa7 | 0xaa..=0xaf => (false, 0),
        0xa8 => (false, 1),
        0xa9 => (false, 0xff),
        0xb0..=0xb7 => (false, 1),
        0xc0 | 0xc1 => (true, 1),
        0xc2 => (false, 2),
        0xc3 | 0xc9 | 0xcb | 0xcc | 0xce | 0xcf => (false, 0),
        0xc4 | 0xc5 => (true, 0),
        0xc6 => (true, 1),
        0xc7 => (true, 0xff),
        0xca => (false, 2),
        0xcd => (false, 1),
        0xd0..=0xd3 => (true, 0),
        0xd4 | 0xd5 => (false, 1),
        0xd6 | 0xd7 => (false, 0),
        0xd8..=0xdf => (true, 0),
        0xe0..=0xe7 => (false, 1),
        0xe8 | 0xe9 => (false, 0xff),
        0xeb => (false, 1),
        0xec..=0xef | 0xf1 | 0xf4 | 0xf5 | 0xf8..=0xfd => (false, 0),
        0xf6 => (true, 0x80), // imm8 only for /0 and /1 (TEST)
        0xf7 => (true, 0x81), // imm16/32 only for /0 and /1
        0xfe | 0xff => (true, 0),
        _ => return None,
    })
}

/// ModRM and immediate of the 0F map (the common opcodes).
fn two_byte_layout(op: u8) -> Option<(bool, u8)> {
    Some(match op {
        0x00..=0x03 | 0x0d | 0x10..=0x17 | 0x18..=0x1f | 0x20..=0x23 | 0x28..=0x2f => (true, 0),
        0x05..=0x09 | 0x0b | 0x30..=0x35 | 0x37 | 0x77 | 0xa0..=0xa2 | 0xa8..=0xaa | 0xc8..=0xcf => (false, 0),
        0x40..=0x4f | 0x50..=0x6f | 0x74..=0x76 | 0x7e | 0x7f => (true, 0),
        0x70..=0x73 => (true, 1),
        0x80..=0x8f => (false, 0xfe), // rel16/32
        0x90..=0x9f => (true, 0),
        0xa3 | 0xa5 | 0xab | 0xad | 0xaf | 0xb0..=0xb3 | 0xb5..=0xb7 | 0xbb..=0xbf | 0xc0 | 0xc1 | 0xc3 | 0xc7 => (true, 0),
        0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => (true, 1),
        0xae => (true, 0),
        0xd0..=0xff => (true, 0),
        _ => return None,
    })
}

/// Decodes one instruction from `bytes` in `mode`.
pub fn decode(bytes: &[u8], mode: Mode) -> Result<Insn, DecodeError> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let mut opsize_prefix = false;
    let mut addr_prefix = false;
    let mut rep = false;
    let mut lock = false;
    let mut seg_override = None;
    let mut rex = 0u8;
    let mut b;
    loop {
        b = c.next()?;
        match b {
            0x66 => opsize_prefix = true,
            0x67 => addr_prefix = true,
            0xf2 | 0xf3 => rep = true,
            0xf0 => lock = true,
            0x26 => seg_override = Some(Seg::Es),
            0x2e => seg_override = Some(Seg::Cs),
            0x36 => seg_override = Some(Seg::Ss),
            0x3e => seg_override = Some(Seg::Ds),
            0x64 => seg_override = Some(Seg::Fs),
            0x65 => seg_override = Some(Seg::Gs),
            _ => break,
        }
        rex = 0;
    }
    if mode == Mode::Bits64 && (0x40..=0x4f).contains(&b) {
        rex = b;
        b = c.next()?;
    }
    let rex_w = rex & 8 != 0;
    let size = match mode {
        Mode::Bits64 if rex_w => 8,
        Mode::Bits16 => if opsize_prefix { 4 } else { 2 },
        _ => if opsize_prefix { 2 } else { 4 },
    };
    let addr_size = match mode {
        Mode::Bits16 => if addr_prefix { 4 } else { 2 },
        Mode::Bits32 => if addr_prefix { 2 } else { 4 },
        Mode::Bits64 => if addr_prefix { 4 } else { 8 },
    };
    let two_byte = b == 0x0f;
    let opcode = if two_byte { c.next()? } else { b };
    let layout = if two_byte { two_byte_layout(opcode) } else { one_byte_layout(opcode) };
    let (has_modrm, imm_kind) = layout.ok_or(DecodeError::Unknown(if two_byte { 0x0f00 | opcode as u16 } else { opcode as u16 }))?;

    let mut insn = Insn {
        len: 0,
        op: Op::Other,
        dst: Operand::None,
        src: Operand::None,
        size,
        src_size: size,
        addr_size,
        rep,
        lock,
        seg_override,
        rex,
    };

    let mut modrm_reg = 0u8;
    let mut rm = Operand::None;
    if has_modrm {
        let m = c.next()?;
        let md = m >> 6;
        modrm_reg = ((m >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
        let rmf = m & 7;
        if md == 3 {
            rm = Operand::Reg(rmf | if rex & 1 != 0 { 8 } else { 0 });
        } else if addr_size == 2 {
            let (base, index, default_seg) = match rmf {
                0 => (Some(3), Some(6), Seg::Ds),
                1 => (Some(3), Some(7), Seg::Ds),
                2 => (Some(5), Some(6), Seg::Ss),
                3 => (Some(5), Some(7), Seg::Ss),
                4 => (Some(6), None, Seg::Ds),
                5 => (Some(7), None, Seg::Ds),
                6 => if md == 0 { (None, None, Seg::Ds) } else { (Some(5), None, Seg::Ss) },
                _ => (Some(3), None, Seg::Ds),
            };
            let disp = match md {
                0 if rmf == 6 => c.simm(2)?,
                1 => c.simm(1)?,
                2 => c.simm(2)?,
                _ => 0,
            };
            rm = Operand::Mem(MemRef { seg: seg_override.unwrap_or(default_seg), base, index, scale: 1, disp, rip_relative: false });
        } else {
            let mut base = Some(rmf | if rex & 1 != 0 { 8 } else { 0 });
            let mut index = None;
            let mut scale = 1;
            let mut rip_relative = false;
            if rmf == 4 {
                let sib = c.next()?;
                scale = 1 << (sib >> 6);
                let idx = ((sib >> 3) & 7) | if rex & 2 != 0 { 8 } else { 0 };
                if idx != 4 {
                    index = Some(idx);
                }
                let sbase = sib & 7;
                base = Some(sbase | if rex & 1 != 0 { 8 } else { 0 });
                if sbase == 5 && md == 0 {
                    base = None;
                }
            } else if rmf == 5 && md == 0 {
                base = None;
                rip_relative = mode == Mode::Bits64;
            }
            let disp = match md {
                0 if base.is_none() => c.simm(4)?,
                1 => c.simm(1)?,
                2 => c.simm(4)?,
                _ => 0,
            };
            let default_seg = match base {
                Some(4) | Some(5) if !rip_relative => Seg::Ss,
                _ => Seg::Ds,
            };
            rm = Operand::Mem(MemRef { seg: seg_override.unwrap_or(default_seg), base, index, scale, disp, rip_relative });
        }
    }

    let imm_len = |k: u8| -> u8 {
        match k {
            0 => 0,
            1 => 1,
            2 => 2,
            0xfe => if size == 2 { 2 } else { 4 },
            0xff => if size == 2 { 2 } else { 4 },
            0x80 => if modrm_reg & 7 <= 1 { 1 } else { 0 },
            0x81 => if modrm_reg & 7 <= 1 { if size == 2 { 2 } else { 4 } } else { 0 },
            _ => 0,
        }
    };
    // Opcodes with an unusual immediate: moffs (A0-A3), MOV r, imm64 (B8+), ENTER.
    let imm = match (two_byte, opcode) {
        (false, 0xa0..=0xa3) => c.imm(addr_size)?,
        (false, 0xb8..=0xbf) => c.imm(if size == 8 { 8 } else if size == 2 { 2 } else { 4 })?,
        (false, 0xc8) => { c.imm(3)? }
        (false, 0x9a) | (false, 0xea) if mode != Mode::Bits64 => c.imm(if size == 2 { 4 } else { 6 })?,
        _ => {
            let n = imm_len(imm_kind);
            // imm32 is sign-extended to 64-bit operands.
            if n == 4 && size == 8 { c.simm(4)? as u64 } else { c.imm(n)? }
        }
    };

    let reg_operand = |r: u8, sz: u8| if sz == 1 && rex == 0 { Operand::Reg8Legacy(r) } else { Operand::Reg(r) };
    let rm8 = |o: Operand| match o {
        Operand::Reg(r) if rex == 0 => Operand::Reg8Legacy(r),
        other => other,
    };

    if !two_byte {
        match opcode {
            // ALU r/m, r ; r, r/m ; AL/eAX, imm
            0x00..=0x3d if opcode & 7 <= 5 && opcode & 0x7 != 6 && opcode & 0x7 != 7 => {
                let alu = [Op::Add, Op::Or, Op::Adc, Op::Sbb, Op::And, Op::Sub, Op::Xor, Op::Cmp][(opcode >> 3) as usize];
                let byte = opcode & 1 == 0;
                let sz = if byte { 1 } else { size };
                insn.op = alu;
                insn.size = sz;
                match opcode & 7 {
                    0 | 1 => { insn.dst = if byte { rm8(rm) } else { rm }; insn.src = reg_operand(modrm_reg, sz); }
                    2 | 3 => { insn.dst = reg_operand(modrm_reg, sz); insn.src = if byte { rm8(rm) } else { rm }; }
                    _ => { insn.dst = Operand::Reg(0); insn.src = Operand::Imm(imm); }
                }
            }
            0x80..=0x83 => {
                insn.op = [Op::Add, Op::Or, Op::Adc, Op::Sbb, Op::And, Op::Sub, Op::Xor, Op::Cmp][(modrm_reg & 7) as usize];
                let byte = opcode != 0x81 && opcode != 0x83;
                insn.size = if byte { 1 } else { size };
                insn.dst = if byte { rm8(rm) } else { rm };
                // 83: imm8 sign-extended to the operand size.
                let v = if opcode == 0x83 { imm as u8 as i8 as i64 as u64 } else { imm };
                insn.src = Operand::Imm(v);
            }
            0x84 | 0x85 => {
                insn.op = Op::Test;
                let sz = if opcode == 0x84 { 1 } else { size };
                insn.size = sz;
                insn.dst = if sz == 1 { rm8(rm) } else { rm };
                insn.src = reg_operand(modrm_reg, sz);
            }
            0x86 | 0x87 => {
                insn.op = Op::Xchg;
                let sz = if opcode == 0x86 { 1 } else { size };
                insn.size = sz;
                insn.dst = if sz == 1 { rm8(rm) } else { rm };
                insn.src = reg_operand(modrm_reg, sz);
            }
            0x88..=0x8b => {
                insn.op = Op::Mov;
                let sz = if opcode & 1 == 0 { 1 } else { size };
                insn.size = sz;
                let r = reg_operand(modrm_reg, sz);
                let m = if sz == 1 { rm8(rm) } else { rm };
                if opcode <= 0x89 { insn.dst = m; insn.src = r; } else { insn.dst = r; insn.src = m; }
            }
            0xa0..=0xa3 => {
                insn.op = Op::Mov;
                let sz = if opcode & 1 == 0 { 1 } else { size };
                insn.size = sz;
                let m = Operand::Mem(MemRef { seg: seg_override.unwrap_or(Seg::Ds), base: None, index: None, scale: 1, disp: imm as i64, rip_relative: false });
                if opcode <= 0xa1 { insn.dst = Operand::Reg(0); insn.src = m; } else { insn.dst = m; insn.src = Operand::Reg(0); }
            }
            0xa4 | 0xa5 => { insn.op = Op::Movs; insn.size = if opcode == 0xa4 { 1 } else { size }; }
            0xaa | 0xab => { insn.op = Op::Stos; insn.size = if opcode == 0xaa { 1 } else { size }; }
            0xa8 | 0xa9 => {
                insn.op = Op::Test;
                insn.size = if opcode == 0xa8 { 1 } else { size };
                insn.dst = Operand::Reg(0);
                insn.src = Operand::Imm(imm);
            }
            0xc6 | 0xc7 if modrm_reg & 7 == 0 => {
                insn.op = Op::Mov;
                insn.size = if opcode == 0xc6 { 1 } else { size };
                insn.dst = if opcode == 0xc6 { rm8(rm) } else { rm };
                insn.src = Operand::Imm(imm);
            }
            0xf6 | 0xf7 if modrm_reg & 7 <= 1 => {
                insn.op = Op::Test;
                insn.size = if opcode == 0xf6 { 1 } else { size };
                insn.dst = if opcode == 0xf6 { rm8(rm) } else { rm };
                insn.src = Operand::Imm(imm);
            }
            _ => {}
        }
    } else {
        match opcode {
            0xb6 | 0xb7 | 0xbe | 0xbf => {
                insn.op = if opcode < 0xb8 { Op::Movzx } else { Op::Movsx };
                insn.src_size = if opcode & 1 == 0 { 1 } else { 2 };
                insn.dst = Operand::Reg(modrm_reg);
                insn.src = if insn.src_size == 1 { rm8(rm) } else { rm };
            }
            0xa3 | 0xab | 0xb3 | 0xbb => {
                insn.op = match opcode { 0xa3 => Op::Bt, 0xab => Op::Bts, 0xb3 => Op::Btr, _ => Op::Btc };
                insn.dst = rm;
                insn.src = Operand::Reg(modrm_reg);
            }
            0xba if modrm_reg & 7 >= 4 => {
                insn.op = [Op::Bt, Op::Bts, Op::Btr, Op::Btc][(modrm_reg & 3) as usize];
                insn.dst = rm;
                insn.src = Operand::Imm(imm & 0xff);
            }
            _ => {}
        }
    }
    insn.len = c.pos as u8;
    Ok(insn)
}
