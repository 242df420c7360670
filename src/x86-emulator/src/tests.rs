extern crate std;
use super::*;
use crate::decode::Op;
use crate::paging::{translate, Access, PagingMode, WalkError};
use std::vec;
use std::vec::Vec;

/// RAM below 0x10000; everything from 0xf000_0000 is MMIO whose reads return
/// `mmio_value` once provided and whose writes are recorded.
struct TestEnv {
    ram: Vec<u8>,
    seg_bases: [u64; 6],
    long: bool,
    mmio_value: Option<u64>,
    mmio_writes: Vec<(u64, Vec<u8>)>,
    mmio_reads: Vec<(u64, usize)>,
}

impl TestEnv {
    fn new(long: bool) -> Self {
        TestEnv { ram: vec![0; 0x10000], seg_bases: [0; 6], long, mmio_value: None, mmio_writes: vec![], mmio_reads: vec![] }
    }
}

impl Env for TestEnv {
    fn seg_base(&self, seg: Seg) -> u64 {
        self.seg_bases[seg as usize]
    }
    fn long_mode(&self) -> bool {
        self.long
    }
    fn read(&mut self, lin: u64, buf: &mut [u8]) -> Result<(), Stop> {
        if lin >= 0xf000_0000 {
            self.mmio_reads.push((lin, buf.len()));
            let v = self.mmio_value.ok_or(Stop::NeedMmioRead)?;
            buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
            return Ok(());
        }
        let a = lin as usize;
        buf.copy_from_slice(self.ram.get(a..a + buf.len()).ok_or(Stop::Internal)?);
        Ok(())
    }
    fn write(&mut self, lin: u64, data: &[u8]) -> Result<(), Stop> {
        if lin >= 0xf000_0000 {
            self.mmio_writes.push((lin, data.to_vec()));
            return Ok(());
        }
        let a = lin as usize;
        self.ram.get_mut(a..a + data.len()).ok_or(Stop::Internal)?.copy_from_slice(data);
        Ok(())
    }
}

fn run(bytes: &[u8], mode: Mode, regs: &mut Regs, env: &mut TestEnv) -> Result<Insn, Stop> {
    let insn = decode(bytes, mode).map_err(|_| Stop::Unsupported)?;
    execute(&insn, regs, env)?;
    Ok(insn)
}

#[test]
fn mov_store_register_64() {
    // mov [rax], ebx ; rax = 0xf000_1000
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[0] = 0xf000_1000;
    r.gprs[3] = 0x1122_3344_5566_7788;
    r.rip = 0x100;
    let i = run(&[0x89, 0x18], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(i.len, 2);
    assert_eq!(env.mmio_writes, vec![(0xf000_1000, vec![0x88, 0x77, 0x66, 0x55])]);
    assert_eq!(r.rip, 0x102);
}

#[test]
fn mov_store_rex_w_and_disp32() {
    // mov [rbx + 0x10], rcx  (48 89 4b 10)
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[3] = 0xf000_0000;
    r.gprs[1] = 0xdead_beef_cafe_f00d;
    run(&[0x48, 0x89, 0x4b, 0x10], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[0].0, 0xf000_0010);
    assert_eq!(env.mmio_writes[0].1, 0xdead_beef_cafe_f00du64.to_le_bytes().to_vec());
}

#[test]
fn mov_load_needs_data_then_completes() {
    // mov eax, [rdx] ; 8b 02
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[0] = u64::MAX;
    r.gprs[2] = 0xf000_0040;
    assert_eq!(run(&[0x8b, 0x02], Mode::Bits64, &mut r, &mut env), Err(Stop::NeedMmioRead));
    assert_eq!(r.rip, 0, "nothing committed");
    env.mmio_value = Some(0x1234_5678);
    run(&[0x8b, 0x02], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.gprs[0], 0x1234_5678, "32-bit load zero-extends");
    assert_eq!(r.rip, 2);
}

#[test]
fn byte_and_word_loads_merge() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(0xabcd);
    let mut r = Regs::default();
    r.gprs[0] = 0x1111_1111_1111_1111;
    r.gprs[6] = 0xf000_0000;
    run(&[0x8a, 0x06], Mode::Bits64, &mut r, &mut env).unwrap(); // mov al, [rsi]
    assert_eq!(r.gprs[0], 0x1111_1111_1111_11cd);
    run(&[0x66, 0x8b, 0x06], Mode::Bits64, &mut r, &mut env).unwrap(); // mov ax, [rsi]
    assert_eq!(r.gprs[0], 0x1111_1111_1111_abcd);
    // mov ah, [rsi] without REX: AH.
    run(&[0x8a, 0x26], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.gprs[0], 0x1111_1111_1111_cdcd);
}

#[test]
fn movzx_movsx() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(0x80);
    let mut r = Regs::default();
    r.gprs[6] = 0xf000_0000;
    run(&[0x0f, 0xb6, 0x06], Mode::Bits64, &mut r, &mut env).unwrap(); // movzx eax, byte [rsi]
    assert_eq!(r.gprs[0], 0x80);
    run(&[0x48, 0x0f, 0xbe, 0x06], Mode::Bits64, &mut r, &mut env).unwrap(); // movsx rax, byte [rsi]
    assert_eq!(r.gprs[0], 0xffff_ffff_ffff_ff80);
    env.mmio_value = Some(0x8000);
    run(&[0x0f, 0xbf, 0x06], Mode::Bits64, &mut r, &mut env).unwrap(); // movsx eax, word [rsi]
    assert_eq!(r.gprs[0], 0xffff_8000);
}

#[test]
fn mov_imm_to_memory() {
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0100;
    // mov dword [rdi], 0x12345678 ; c7 07 78 56 34 12
    let i = run(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(i.len, 6);
    assert_eq!(env.mmio_writes[0].1, vec![0x78, 0x56, 0x34, 0x12]);
    // mov byte [rdi+1], 0xab ; c6 47 01 ab
    run(&[0xc6, 0x47, 0x01, 0xab], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[1], (0xf000_0101, vec![0xab]));
    // mov qword [rdi], -1 (imm32 sign-extended) ; 48 c7 07 ff ff ff ff
    run(&[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[2].1, vec![0xff; 8]);
}

#[test]
fn moffs_forms() {
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[0] = 0x55;
    // mov [0xf0000008], al (64-bit moffs) ; a2 + 8 bytes
    let i = run(&[0xa2, 0x08, 0, 0, 0xf0, 0, 0, 0, 0], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(i.len, 9);
    assert_eq!(env.mmio_writes[0], (0xf000_0008, vec![0x55]));
    // 32-bit mode: mov eax, [0xf0000010] ; a1 + 4 bytes
    let mut env = TestEnv::new(false);
    env.mmio_value = Some(0xcafe);
    let mut r = Regs::default();
    let i = run(&[0xa1, 0x10, 0, 0, 0xf0], Mode::Bits32, &mut r, &mut env).unwrap();
    assert_eq!(i.len, 5);
    assert_eq!(env.mmio_reads[0], (0xf000_0010, 4));
    assert_eq!(r.gprs[0], 0xcafe);
}

#[test]
fn real_mode_addressing() {
    // 16-bit: mov [bx+si+4], ax with DS base 0xf0000000 (flat unreal-style base).
    let mut env = TestEnv::new(false);
    env.seg_bases[Seg::Ds as usize] = 0xf000_0000;
    let mut r = Regs::default();
    r.gprs[3] = 0x100;
    r.gprs[6] = 0x20;
    r.gprs[0] = 0xbeef;
    let i = run(&[0x89, 0x40, 0x04], Mode::Bits16, &mut r, &mut env).unwrap();
    assert_eq!(i.len, 3);
    assert_eq!(env.mmio_writes[0], (0xf000_0124, vec![0xef, 0xbe]));
    // 16-bit with 0x66: 32-bit store.
    run(&[0x66, 0x89, 0x40, 0x04], Mode::Bits16, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[1].1.len(), 4);
    // [bp+disp8] defaults to SS.
    env.seg_bases[Seg::Ss as usize] = 0xf100_0000;
    r.gprs[5] = 0x10;
    run(&[0x89, 0x46, 0x02], Mode::Bits16, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[2].0, 0xf100_0012);
}

#[test]
fn sib_and_rip_relative() {
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[3] = 0xf000_0000; // rbx
    r.gprs[1] = 0x10; // rcx
    r.gprs[0] = 7;
    // mov [rbx + rcx*4 + 8], eax ; 89 44 8b 08
    run(&[0x89, 0x44, 0x8b, 0x08], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[0].0, 0xf000_0048);
    // mov [rip + 0x100], eax at rip 0xf000_0000 ; 89 05 00 01 00 00
    r.rip = 0xf000_0000;
    run(&[0x89, 0x05, 0x00, 0x01, 0, 0], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[1].0, 0xf000_0106);
    // r12-based (needs SIB) and r13-based (needs disp8) with REX.B.
    r.gprs[12] = 0xf000_2000;
    run(&[0x41, 0x89, 0x04, 0x24], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[2].0, 0xf000_2000);
    r.gprs[13] = 0xf000_3000;
    run(&[0x41, 0x89, 0x45, 0x00], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[3].0, 0xf000_3000);
}

#[test]
fn alu_read_modify_write() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(0xf0);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0000;
    r.gprs[3] = 0x0f;
    // or [rdi], ebx ; 09 1f
    run(&[0x09, 0x1f], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[0].1, vec![0xff, 0, 0, 0]);
    // and dword [rdi], 0x30 ; 83 27 30
    run(&[0x83, 0x27, 0x30], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[1].1, vec![0x30, 0, 0, 0]);
    // sub [rdi], ebx -> 0xe1
    run(&[0x29, 0x1f], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[2].1, vec![0xe1, 0, 0, 0]);
    // xor eax, [rdi] (register destination)
    r.gprs[0] = 0xff;
    run(&[0x33, 0x07], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.gprs[0], 0x0f);
    // add [rdi], ebx overflow flags: 0xf0 + 0x0f = 0xff, no carry.
    run(&[0x01, 0x1f], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.rflags & flags::CF, 0);
}

#[test]
fn cmp_and_test_set_flags_only() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(5);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0000;
    // cmp dword [rdi], 5 ; 83 3f 05
    run(&[0x83, 0x3f, 0x05], Mode::Bits64, &mut r, &mut env).unwrap();
    assert!(env.mmio_writes.is_empty());
    assert_ne!(r.rflags & flags::ZF, 0);
    // cmp dword [rdi], 6 -> borrow
    run(&[0x83, 0x3f, 0x06], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_ne!(r.rflags & flags::CF, 0);
    assert_ne!(r.rflags & flags::SF, 0);
    // test byte [rdi], 4 ; f6 07 04
    run(&[0xf6, 0x07, 0x04], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.rflags & flags::ZF, 0);
    // test [rdi], eax with eax=2 -> zero
    r.gprs[0] = 2;
    run(&[0x85, 0x07], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_ne!(r.rflags & flags::ZF, 0);
    assert!(env.mmio_writes.is_empty());
}

#[test]
fn xchg_with_memory() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(0x1234);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0000;
    r.gprs[0] = 0x5678;
    run(&[0x87, 0x07], Mode::Bits64, &mut r, &mut env).unwrap(); // xchg [rdi], eax
    assert_eq!(env.mmio_writes[0].1, vec![0x78, 0x56, 0, 0]);
    assert_eq!(r.gprs[0], 0x1234);
}

#[test]
fn bit_tests() {
    let mut env = TestEnv::new(true);
    env.mmio_value = Some(0b100);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0000;
    // bt dword [rdi], 2 ; 0f ba 27 02
    run(&[0x0f, 0xba, 0x27, 0x02], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_ne!(r.rflags & flags::CF, 0);
    assert!(env.mmio_writes.is_empty());
    // bts dword [rdi], 0 ; 0f ba 2f 00
    run(&[0x0f, 0xba, 0x2f, 0x00], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[0].1, vec![0b101, 0, 0, 0]);
    // btr [rdi], eax with eax = 34: dword at +4, bit 2.
    r.gprs[0] = 34;
    run(&[0x0f, 0xb3, 0x07], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[1], (0xf000_0004, vec![0, 0, 0, 0]));
    // btc with a negative offset: -1 -> dword at -4, bit 31.
    r.gprs[0] = u64::MAX;
    r.gprs[7] = 0xf000_0100;
    run(&[0x0f, 0xbb, 0x07], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes[2].0, 0xf000_00fc);
}

#[test]
fn stos_and_rep_stos() {
    let mut env = TestEnv::new(true);
    let mut r = Regs::default();
    r.gprs[7] = 0xf000_0000;
    r.gprs[0] = 0xaabb_ccdd;
    let i = run(&[0xab], Mode::Bits64, &mut r, &mut env).unwrap(); // stosd
    assert_eq!(i.len, 1);
    assert_eq!(env.mmio_writes[0], (0xf000_0000, vec![0xdd, 0xcc, 0xbb, 0xaa]));
    assert_eq!(r.gprs[7], 0xf000_0004);
    assert_eq!(r.rip, 1);
    // rep stosb with rcx=3: one element per execution, RIP stays until done.
    r.rip = 0;
    r.gprs[1] = 3;
    for left in [2u64, 1, 0] {
        run(&[0xf3, 0xaa], Mode::Bits64, &mut r, &mut env).unwrap();
        assert_eq!(r.gprs[1], left);
        assert_eq!(r.rip, if left == 0 { 2 } else { 0 });
    }
    // rep with rcx=0 does nothing but advance.
    r.rip = 0;
    let n = env.mmio_writes.len();
    run(&[0xf3, 0xaa], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(env.mmio_writes.len(), n);
    assert_eq!(r.rip, 2);
    // DF=1 walks down.
    r.rflags |= flags::DF;
    r.gprs[7] = 0xf000_0010;
    run(&[0xaa], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(r.gprs[7], 0xf000_000f);
}

#[test]
fn movs_ram_to_mmio_and_back() {
    let mut env = TestEnv::new(true);
    env.ram[0x100..0x104].copy_from_slice(&[1, 2, 3, 4]);
    let mut r = Regs::default();
    r.gprs[6] = 0x100;
    r.gprs[7] = 0xf000_0000;
    run(&[0xa5], Mode::Bits64, &mut r, &mut env).unwrap(); // movsd
    assert_eq!(env.mmio_writes[0], (0xf000_0000, vec![1, 2, 3, 4]));
    assert_eq!((r.gprs[6], r.gprs[7]), (0x104, 0xf000_0004));
    // MMIO -> RAM
    env.mmio_value = Some(0x0908_0706);
    r.gprs[6] = 0xf000_0000;
    r.gprs[7] = 0x200;
    run(&[0xa5], Mode::Bits64, &mut r, &mut env).unwrap();
    assert_eq!(&env.ram[0x200..0x204], &[6, 7, 8, 9]);
}

#[test]
fn lengths_of_common_instructions() {
    let cases: &[(&[u8], Mode, u8)] = &[
        (&[0x0f, 0xa2], Mode::Bits64, 2),                   // cpuid
        (&[0xf4], Mode::Bits16, 1),                         // hlt
        (&[0x0f, 0x01, 0xd9], Mode::Bits64, 3),             // vmmcall
        (&[0x0f, 0x01, 0xd1], Mode::Bits64, 3),             // xsetbv
        (&[0x0f, 0x30], Mode::Bits32, 2),                   // wrmsr
        (&[0x66, 0x0f, 0x32], Mode::Bits32, 3),             // rdmsr with a prefix
        (&[0xe6, 0x80], Mode::Bits16, 2),                   // out 0x80, al
        (&[0xec], Mode::Bits32, 1),                         // in al, dx
        (&[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8], Mode::Bits64, 10), // mov rax, imm64
        (&[0x66, 0xb8, 1, 2], Mode::Bits32, 4),             // mov ax, imm16
        (&[0xf7, 0x07, 1, 0, 0, 0], Mode::Bits32, 6),       // test dword [edi], imm32
        (&[0xf7, 0x17], Mode::Bits32, 2),                   // not dword [edi]
    ];
    for (bytes, mode, len) in cases {
        assert_eq!(decode(bytes, *mode).map(|i| i.len), Ok(*len), "{bytes:x?}");
    }
    assert_eq!(decode(&[0x89], Mode::Bits64), Err(decode::DecodeError::Truncated));
    assert_eq!(decode(&[0x66; 16], Mode::Bits64), Err(decode::DecodeError::TooLong));
    assert_eq!(decode(&[0x90], Mode::Bits64).map(|i| i.op), Ok(Op::Other));
}

#[test]
fn page_walk_4level_and_faults() {
    // PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 with a 2M page at 0x200000,
    // and a PT at 0x4000 for the first 2M.
    let mut mem = vec![0u8; 0x10000];
    let put = |m: &mut Vec<u8>, a: usize, v: u64| m[a..a + 8].copy_from_slice(&v.to_le_bytes());
    put(&mut mem, 0x1000, 0x2000 | 7);
    put(&mut mem, 0x2000, 0x3000 | 7);
    put(&mut mem, 0x3000, 0x4000 | 7);
    put(&mut mem, 0x3008, 0x20_0000 | 0x80 | 5); // 2M, read-only, user
    put(&mut mem, 0x4000 + 5 * 8, 0x9000 | 3); // 4K page 5 -> 0x9000, supervisor
    let m = PagingMode { cr0_pg: true, cr0_wp: true, cr3: 0x1000, cr4_pae: true, cr4_pse: false, efer_lma: true, efer_nxe: true, user: false };
    let mut rd = |a: u64, n: u8| {
        let a = a as usize;
        mem.get(a..a + n as usize).map(|s| { let mut b = [0u8; 8]; b[..n as usize].copy_from_slice(s); u64::from_le_bytes(b) })
    };
    assert_eq!(translate(0x5123, Access::Read, &m, &mut rd), Ok(0x9123));
    assert_eq!(translate(0x20_1234, Access::Read, &m, &mut rd), Ok(0x20_1234));
    // Write to the read-only 2M page with CR0.WP.
    assert!(matches!(translate(0x20_1234, Access::Write, &m, &mut rd), Err(WalkError::Fault(f)) if f.error_code == 3));
    // Not present.
    assert!(matches!(translate(0x6000, Access::Read, &m, &mut rd), Err(WalkError::Fault(f)) if f.error_code == 0));
    // User access to a supervisor page.
    let mu = PagingMode { user: true, ..m };
    assert!(matches!(translate(0x5000, Access::Read, &mu, &mut rd), Err(WalkError::Fault(f)) if f.error_code == 5));
    // Paging off: identity.
    let off = PagingMode { cr0_pg: false, ..m };
    assert_eq!(translate(0x1234_5678, Access::Fetch, &off, &mut rd), Ok(0x1234_5678));
}

#[test]
fn page_walk_32bit_4m() {
    let mut mem = vec![0u8; 0x4000];
    mem[0x1000 + 4..0x1000 + 8].copy_from_slice(&(0x0080_0000u32 | 0x83).to_le_bytes());
    let m = PagingMode { cr0_pg: true, cr0_wp: false, cr3: 0x1000, cr4_pae: false, cr4_pse: true, efer_lma: false, efer_nxe: false, user: false };
    let mut rd = |a: u64, n: u8| {
        let a = a as usize;
        mem.get(a..a + n as usize).map(|s| { let mut b = [0u8; 8]; b[..n as usize].copy_from_slice(s); u64::from_le_bytes(b) })
    };
    assert_eq!(translate(0x0040_1234, Access::Read, &m, &mut rd), Ok(0x0080_1234));
}

/// Arbitrary bytes never make the decoder or the executor panic (a bounded
/// random-bytes fuzz: 200,000 inputs from a fixed-seed generator, all modes).
#[test]
fn random_bytes_never_panic() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in 0..200_000u32 {
        let mut bytes = [0u8; 16];
        for b in bytes.iter_mut() {
            *b = next() as u8;
        }
        let len = (next() % 17) as usize;
        let mode = [Mode::Bits16, Mode::Bits32, Mode::Bits64][(n % 3) as usize];
        if let Ok(insn) = decode(&bytes[..len], mode) {
            assert!(insn.len as usize <= len && insn.len <= 15);
            let mut env = TestEnv::new(mode == Mode::Bits64);
            env.mmio_value = if n % 2 == 0 { Some(next()) } else { None };
            let mut r = Regs::default();
            for g in r.gprs.iter_mut() {
                *g = next();
            }
            r.rflags = next();
            let _ = execute(&insn, &mut r, &mut env);
        }
    }
}
