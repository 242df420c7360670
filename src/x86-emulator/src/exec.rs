//! Execution of the decoded MMIO instructions.

use super::decode::{Insn, MemRef, Op, Operand, Seg};
use super::flags::{self, mask};
use super::paging::PageFault;

/// The registers the emulator reads and writes (committed by the caller only when
/// [`execute`] succeeds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
}

/// Why execution stopped before the instruction completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An MMIO read needs data from user space; execute again once it is there.
    NeedMmioRead,
    /// The access faulted in the guest's page tables: inject this #PF.
    PageFault(PageFault),
    /// #GP (a non-canonical address).
    GeneralProtection,
    /// An instruction (or operand form) the emulator does not execute.
    Unsupported,
    /// Guest memory the kernel could not access.
    Internal,
}

/// The machine around the instruction: segment bases and memory by linear address.
pub trait Env {
    /// The base of `seg` as the current mode uses it (0 for ES/CS/SS/DS in 64-bit
    /// mode).
    fn seg_base(&self, seg: Seg) -> u64;
    /// Whether the code runs in 64-bit mode (linear addresses are not truncated).
    fn long_mode(&self) -> bool;
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Stop>;
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Stop>;
}

fn get_reg(r: &Regs, op: Operand, size: u8) -> u64 {
    match op {
        Operand::Reg(i) => r.gprs[(i & 15) as usize] & mask(size),
        Operand::Reg8Legacy(i) => {
            let i = (i & 7) as usize;
            if i < 4 { r.gprs[i] & 0xff } else { (r.gprs[i - 4] >> 8) & 0xff }
        }
        Operand::Imm(v) => v & mask(size),
        _ => 0,
    }
}

fn set_reg(r: &mut Regs, op: Operand, size: u8, v: u64) {
    match op {
        Operand::Reg(i) => {
            let g = &mut r.gprs[(i & 15) as usize];
            *g = match size {
                1 => (*g & !0xff) | (v & 0xff),
                2 => (*g & !0xffff) | (v & 0xffff),
                4 => v & 0xffff_ffff,
                _ => v,
            };
        }
        Operand::Reg8Legacy(i) => {
            let i = (i & 7) as usize;
            if i < 4 {
                r.gprs[i] = (r.gprs[i] & !0xff) | (v & 0xff);
            } else {
                r.gprs[i - 4] = (r.gprs[i - 4] & !0xff00) | ((v & 0xff) << 8);
            }
        }
        _ => {}
    }
}

fn addr_mask(insn: &Insn) -> u64 {
    mask(insn.addr_size)
}

fn linear(insn: &Insn, r: &Regs, env: &dyn Env, m: &MemRef, extra: i64) -> u64 {
    let mut ea: u64 = m.disp as u64;
    if let Some(b) = m.base {
        ea = ea.wrapping_add(r.gprs[(b & 15) as usize]);
    }
    if let Some(i) = m.index {
        ea = ea.wrapping_add(r.gprs[(i & 15) as usize].wrapping_mul(m.scale as u64));
    }
    if m.rip_relative {
        ea = ea.wrapping_add(r.rip.wrapping_add(insn.len as u64));
    }
    ea = ea.wrapping_add(extra as u64) & addr_mask(insn);
    let lin = env.seg_base(m.seg).wrapping_add(ea);
    if env.long_mode() { lin } else { lin & 0xffff_ffff }
}

fn read_mem(env: &mut dyn Env, lin: u64, size: u8) -> Result<u64, Stop> {
    let mut b = [0u8; 8];
    env.read(lin, &mut b[..size as usize])?;
    Ok(u64::from_le_bytes(b))
}

fn write_mem(env: &mut dyn Env, lin: u64, size: u8, v: u64) -> Result<(), Stop> {
    env.write(lin, &v.to_le_bytes()[..size as usize])
}

/// Reads an operand (register, immediate or memory).
fn load(insn: &Insn, r: &Regs, env: &mut dyn Env, op: Operand, size: u8) -> Result<u64, Stop> {
    match op {
        Operand::Mem(m) => {
            let lin = linear(insn, r, env, &m, 0);
            read_mem(env, lin, size)
        }
        Operand::None => Err(Stop::Unsupported),
        other => Ok(get_reg(r, other, size)),
    }
}

fn store(insn: &Insn, r: &mut Regs, env: &mut dyn Env, op: Operand, size: u8, v: u64) -> Result<(), Stop> {
    match op {
        Operand::Mem(m) => {
            let lin = linear(insn, r, env, &m, 0);
            write_mem(env, lin, size, v)
        }
        Operand::Reg(_) | Operand::Reg8Legacy(_) => {
            set_reg(r, op, size, v);
            Ok(())
        }
        _ => Err(Stop::Unsupported),
    }
}

fn set_arith_flags(r: &mut Regs, f: u64) {
    r.rflags = (r.rflags & !flags::ARITH) | f;
}

/// Executes `insn` on `regs` (updated only on success, RIP included).
pub fn execute(insn: &Insn, regs: &mut Regs, env: &mut dyn Env) -> Result<(), Stop> {
    let mut r = *regs;
    let size = insn.size;
    let mut advance = true;
    match insn.op {
        Op::Mov => {
            let v = load(insn, &r, env, insn.src, size)?;
            store(insn, &mut r, env, insn.dst, size, v)?;
        }
        Op::Movzx | Op::Movsx => {
            let v = load(insn, &r, env, insn.src, insn.src_size)?;
            let v = if insn.op == Op::Movsx {
                let sh = 64 - 8 * insn.src_size as u32;
                (((v << sh) as i64) >> sh) as u64
            } else {
                v
            };
            store(insn, &mut r, env, insn.dst, size, v & mask(size))?;
        }
        Op::Add | Op::Or | Op::Adc | Op::Sbb | Op::And | Op::Sub | Op::Xor | Op::Cmp | Op::Test => {
            let a = load(insn, &r, env, insn.dst, size)?;
            let b = load(insn, &r, env, insn.src, size)?;
            let cf = r.rflags & flags::CF != 0;
            let (res, f) = match insn.op {
                Op::Add => flags::add(a, b, false, size),
                Op::Adc => flags::add(a, b, cf, size),
                Op::Sub | Op::Cmp => flags::sub(a, b, false, size),
                Op::Sbb => flags::sub(a, b, cf, size),
                Op::And | Op::Test => flags::logic(a & b, size),
                Op::Or => flags::logic(a | b, size),
                _ => flags::logic(a ^ b, size),
            };
            if !matches!(insn.op, Op::Cmp | Op::Test) {
                store(insn, &mut r, env, insn.dst, size, res)?;
            }
            set_arith_flags(&mut r, f);
        }
        Op::Xchg => {
            let a = load(insn, &r, env, insn.dst, size)?;
            let b = load(insn, &r, env, insn.src, size)?;
            store(insn, &mut r, env, insn.dst, size, b)?;
            store(insn, &mut r, env, insn.src, size, a)?;
        }
        Op::Bt | Op::Bts | Op::Btr | Op::Btc => {
            let bits: i64 = 8 * size as i64;
            let (offset, bit) = match (insn.src, insn.dst) {
                (Operand::Imm(i), _) => (0i64, (i as i64) & (bits - 1)),
                (src, Operand::Mem(_)) => {
                    // A register bit offset reaches beyond the operand (signed).
                    let off = get_reg(&r, src, size);
                    let off = (((off << (64 - bits)) as i64) >> (64 - bits)) as i64;
                    ((off >> (bits.trailing_zeros())) * size as i64, off & (bits - 1))
                }
                (src, _) => (0, get_reg(&r, src, size) as i64 & (bits - 1)),
            };
            let dst = match insn.dst {
                Operand::Mem(m) => {
                    let lin = linear(insn, &r, env, &m, offset);
                    Some(lin)
                }
                _ => None,
            };
            let v = match dst {
                Some(lin) => read_mem(env, lin, size)?,
                None => get_reg(&r, insn.dst, size),
            };
            let was = (v >> bit) & 1 != 0;
            let nv = match insn.op {
                Op::Bts => v | (1 << bit),
                Op::Btr => v & !(1 << bit),
                Op::Btc => v ^ (1 << bit),
                _ => v,
            };
            if insn.op != Op::Bt {
                match dst {
                    Some(lin) => write_mem(env, lin, size, nv)?,
                    None => set_reg(&mut r, insn.dst, size, nv),
                }
            }
            r.rflags = if was { r.rflags | flags::CF } else { r.rflags & !flags::CF };
        }
        Op::Stos | Op::Movs => {
            let am = addr_mask(insn);
            let count = r.gprs[1] & am;
            if insn.rep && count == 0 {
                // Nothing to do.
            } else {
                let step: u64 = if r.rflags & flags::DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
                let es = env.seg_base(Seg::Es);
                let di = r.gprs[7] & am;
                let mut dst_lin = es.wrapping_add(di);
                if !env.long_mode() {
                    dst_lin &= 0xffff_ffff;
                }
                let v = if insn.op == Op::Stos {
                    r.gprs[0] & mask(size)
                } else {
                    let si = r.gprs[6] & am;
                    let mut src_lin = env.seg_base(insn.seg_override.unwrap_or(Seg::Ds)).wrapping_add(si);
                    if !env.long_mode() {
                        src_lin &= 0xffff_ffff;
                    }
                    read_mem(env, src_lin, size)?
                };
                write_mem(env, dst_lin, size, v)?;
                let upd = |reg: u64| (reg & !am) | (reg.wrapping_add(step) & am);
                r.gprs[7] = upd(r.gprs[7]);
                if insn.op == Op::Movs {
                    r.gprs[6] = upd(r.gprs[6]);
                }
                if insn.rep {
                    let c = (count - 1) & am;
                    r.gprs[1] = (r.gprs[1] & !am) | c;
                    // One element per execution: RIP stays on the instruction until
                    // the count runs out, so the guest executes it again.
                    advance = c == 0;
                }
            }
        }
        Op::Other => return Err(Stop::Unsupported),
    }
    if advance {
        r.rip = r.rip.wrapping_add(insn.len as u64);
    }
    *regs = r;
    Ok(())
}
