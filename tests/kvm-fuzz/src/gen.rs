//! Random guest code: raw bytes mixed with instructions that make the kernel
//! work (port and MMIO accesses, control/debug register and MSR writes, system
//! instructions, SVM instructions, mode-dependent encodings). The same bytes
//! mean different things in 16-, 32- and 64-bit code; that is part of the point.

use crate::util::Rng;

/// MSRs worth writing from a guest or through KVM_SET_MSRS.
pub const MSRS: &[u32] = &[
    0x10, 0x1b, 0x3a, 0x48, 0x49, 0x8b, 0xe7, 0xe8, 0x174, 0x175, 0x176, 0x179, 0x17a, 0x17b, 0x1a0, 0x1d9, 0x1db, 0x1dc,
    0x200, 0x201, 0x20e, 0x20f, 0x250, 0x258, 0x259, 0x268, 0x26f, 0x277, 0x2ff, 0x400, 0x401, 0x402, 0x403, 0x47f,
    0x4d0, 0x6e0, 0x800, 0x802, 0x803, 0x808, 0x80b, 0x80f, 0x828, 0x830, 0x832, 0x838, 0x839, 0x83e, 0x83f, 0xda0,
    0x11, 0x12, 0x40000000, 0x40000001, 0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, 0x4b564d05,
    0x4b564d06, 0x4b564d07, 0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000100, 0xc0000101,
    0xc0000102, 0xc0000103, 0xc0000104, 0xc0010000, 0xc0010004, 0xc0010010, 0xc0010015, 0xc0010114, 0xc0010117,
    0xc0010131, 0xc001011f, 0xc0011020, 0xc0011029, 0x3b, 0x6a0, 0x6a2, 0x6a4, 0x6a8, 0x38d, 0x38f, 0x390, 0xc1, 0x186,
    0xffffffff, 0x80000000, 0x1000, 0x2000, 0xc0002000,
];

pub fn msr(r: &mut Rng) -> u32 {
    if r.chance(85) {
        r.pick(MSRS)
    } else {
        r.u32()
    }
}

/// Guest-physical addresses an MMIO access may hit: the APICs, unbacked holes,
/// the top of the 32-bit space, far above RAM.
pub fn mmio_addr(r: &mut Rng) -> u64 {
    match r.below(8) {
        0 => 0xfee0_0000 + (r.below(0x100) << 4),
        1 => 0xfec0_0000 + r.pick(&[0u64, 0x10, 0x20, 0x40]),
        2 => 0xd000_0000 + r.below(0x100_0000),
        3 => 0xffff_f000 + r.below(0x1000),
        4 => 0x20_0000 + r.below(0x10000),
        5 => r.below(0x1_0000_0000),
        6 => 1u64 << r.range(32, 51),
        _ => r.below(0x40_0000),
    }
}

fn imm32(c: &mut Vec<u8>, v: u32) {
    c.extend_from_slice(&v.to_le_bytes());
}

/// `mov eax/ecx/edx/ebx, imm32` (B8+r).
fn mov_r32(c: &mut Vec<u8>, reg: u8, v: u32) {
    c.push(0xb8 + reg);
    imm32(c, v);
}

/// One gadget of hostile code appended to `c`.
pub fn gadget(r: &mut Rng, c: &mut Vec<u8>) {
    match r.below(40) {
        0..=3 => {
            let n = r.range(1, 12) as usize;
            c.extend(r.bytes(n));
        }
        4 => {
            // mov cr0/cr3/cr4, eax
            mov_r32(c, 0, r.val32());
            c.extend_from_slice(&[0x0f, 0x22, r.pick(&[0xc0, 0xd8, 0xe0, 0xd0])]);
        }
        5 => {
            // mov cr8, rax (64-bit) / lock mov cr0 (AMD alternative CR8 encoding)
            mov_r32(c, 0, r.below(16) as u32);
            if r.chance(50) {
                c.extend_from_slice(&[0x44, 0x0f, 0x22, 0xc0]);
            } else {
                c.extend_from_slice(&[0xf0, 0x0f, 0x22, 0xc0]);
            }
        }
        6 => {
            // mov eax, crN
            c.extend_from_slice(&[0x0f, 0x20, r.pick(&[0xc0, 0xd0, 0xd8, 0xe0, 0xe8, 0xf8])]);
        }
        7..=9 => {
            // wrmsr / rdmsr
            let m = msr(r);
            mov_r32(c, 1, m);
            mov_r32(c, 0, crate::util::tcg_safe_msr(m, r.val32() as u64) as u32);
            mov_r32(c, 2, r.val32());
            c.extend_from_slice(if r.chance(70) { &[0x0f, 0x30] } else { &[0x0f, 0x32] });
        }
        10 => {
            // mov drN, eax / mov eax, drN
            mov_r32(c, 0, r.val32());
            let n = r.below(8) as u8;
            c.extend_from_slice(&[0x0f, if r.chance(60) { 0x23 } else { 0x21 }, 0xc0 | (n << 3)]);
        }
        11..=14 => {
            // port I/O through dx, or imm8 forms, or string I/O
            let port = if r.chance(70) { r.pick(&[0x20u32, 0x21, 0x40, 0x43, 0x61, 0x70, 0x71, 0x80, 0xa0, 0xcf8, 0xcfc, 0x3f8, 0x1000, 0x510, 0x604, 0xb2]) } else { r.below(0x10000) as u32 };
            mov_r32(c, 2, port);
            match r.below(8) {
                0 => c.push(0xee),
                1 => c.push(0xef),
                2 => c.extend_from_slice(&[0x66, 0xef]),
                3 => c.push(0xec),
                4 => c.push(0xed),
                5 => c.extend_from_slice(&[0xe6, port as u8]),
                6 => {
                    mov_r32(c, 1, r.pick(&[0u32, 1, 2, 16, 4096, 0xffff_ffff]));
                    c.extend_from_slice(&[0xf3, r.pick(&[0x6e, 0x6f, 0x6c, 0x6d])]);
                }
                _ => c.extend_from_slice(&[0xe4, port as u8]),
            }
        }
        15..=19 => {
            // MMIO: mov [eax], ebx / mov ebx, [eax] / 64-bit forms / other ALU ops on memory
            let a = mmio_addr(r);
            if r.chance(30) {
                c.extend_from_slice(&[0x48, 0xb8]);
                c.extend_from_slice(&a.to_le_bytes());
            } else {
                mov_r32(c, 0, a as u32);
            }
            mov_r32(c, 3, r.val32());
            let ops: &[&[u8]] = &[
                &[0x89, 0x18], &[0x8b, 0x18], &[0x88, 0x18], &[0x8a, 0x18], &[0x66, 0x89, 0x18], &[0x48, 0x89, 0x18],
                &[0x48, 0x8b, 0x18], &[0x01, 0x18], &[0x87, 0x18], &[0x0f, 0xb6, 0x18], &[0x0f, 0xab, 0x18],
                &[0xff, 0x00], &[0xf6, 0x00, 0x55], &[0x0f, 0xc7, 0x08], &[0xf0, 0x0f, 0xb1, 0x18], &[0xa4], &[0xf3, 0xa5],
                &[0xf3, 0xab], &[0xd9, 0x00], &[0x0f, 0x28, 0x00], &[0xc5, 0xfc, 0x28, 0x00], &[0x0f, 0xae, 0x00],
                &[0x0f, 0x01, 0x10], &[0x0f, 0x01, 0x18], &[0x0f, 0x01, 0x38], &[0xff, 0x20], &[0xff, 0x10],
            ];
            c.extend_from_slice(r.pick(ops));
        }
        20 => c.push(0xf4), // hlt
        21 => c.push(r.pick(&[0xfa, 0xfb, 0x9c, 0x9d, 0xcf, 0xcc, 0xce, 0xf1, 0x90])),
        22 => {
            // cpuid with a random leaf
            mov_r32(c, 0, r.pick(&[0u32, 1, 7, 0xb, 0xd, 0x14, 0x40000000, 0x40000001, 0x80000000, 0x80000001, 0x80000008, 0x8000000a, 0x8000001f]));
            mov_r32(c, 1, r.below(4) as u32);
            c.extend_from_slice(&[0x0f, 0xa2]);
        }
        23 => {
            // xsetbv / xgetbv
            mov_r32(c, 1, r.below(3) as u32);
            mov_r32(c, 0, r.pick(&[1u32, 3, 7, 0xe7, 0, 0xffff_ffff]));
            mov_r32(c, 2, r.pick(&[0u32, 0, 1]));
            c.extend_from_slice(if r.chance(70) { &[0x0f, 0x01, 0xd1] } else { &[0x0f, 0x01, 0xd0] });
        }
        24 => {
            // SVM instructions, monitor/mwait, rdtscp, swapgs, ...
            c.extend_from_slice(&[0x0f, 0x01, r.pick(&[0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xc8, 0xc9, 0xf9, 0xf8, 0xfa, 0xfb, 0xd4, 0xc1, 0xc4])]);
        }
        25 => c.extend_from_slice(&[0x0f, r.pick(&[0x05, 0x07, 0x34, 0x35, 0x31, 0x33, 0x0b, 0x08, 0x09, 0xaa, 0x06, 0xa2, 0x0d, 0x37])]),
        26 => c.extend_from_slice(&[0xcd, r.u8()]),
        27 => {
            // far jump / call to a random selector
            c.extend_from_slice(&[r.pick(&[0xea, 0x9a])]);
            imm32(c, r.below(0x10000) as u32);
            c.extend_from_slice(&(r.below(0x10000) as u16).to_le_bytes());
        }
        28 => {
            // mov ss/ds/es, ax ; ltr/lldt ax
            mov_r32(c, 0, r.below(0x10000) as u32);
            let v: &[&[u8]] = &[&[0x8e, 0xd0], &[0x8e, 0xd8], &[0x8e, 0xc0], &[0x0f, 0x00, 0xd8], &[0x0f, 0x00, 0xd0], &[0x0f, 0x01, 0xf0], &[0x0f, 0x00, 0xe0]];
            c.extend_from_slice(r.pick(v));
        }
        29 => {
            // lgdt/lidt from a random address
            mov_r32(c, 0, r.below(0x20_0000) as u32);
            c.extend_from_slice(&[0x0f, 0x01, r.pick(&[0x10, 0x18, 0x00, 0x08])]);
        }
        30 => c.extend_from_slice(&[0xeb, 0xfe]), // jmp $ (the watchdog ends it)
        31 => {
            // prefixes
            for _ in 0..r.range(1, 15) {
                c.push(r.pick(&[0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x48, 0x4f, 0x40]));
            }
        }
        32 => {
            // push/pop flags with TF/AC/IF etc.
            mov_r32(c, 0, r.val32());
            c.extend_from_slice(&[0x50, 0x9d]);
        }
        33 => {
            // in/out with a big rep count, string ops into MMIO
            mov_r32(c, 7, mmio_addr(r) as u32);
            mov_r32(c, 6, mmio_addr(r) as u32);
            mov_r32(c, 1, r.pick(&[1u32, 2, 100, 0x10000]));
            c.extend_from_slice(&[0xf3, r.pick(&[0xa4, 0xa5, 0xaa, 0xab, 0xa6, 0xae])]);
        }
        34 => {
            // jump somewhere random (relative)
            c.push(0xe9);
            imm32(c, (r.below(0x4000) as i32 - 0x2000) as u32);
        }
        35 => {
            // mov esp, random ; then push/call/ret
            mov_r32(c, 4, r.val32());
            c.push(r.pick(&[0x50, 0xc3, 0xcb, 0xe8]));
        }
        36 => c.extend_from_slice(&[0x0f, 0x01, r.pick(&[0xf8, 0xd5, 0xee, 0xef, 0xe8])]),
        37 => {
            // invlpga / invlpg / clflush / wbinvd
            c.extend_from_slice(r.pick(&[&[0x0f, 0x01, 0xdf][..], &[0x0f, 0x01, 0x38], &[0x0f, 0xae, 0x38], &[0x0f, 0x09]]));
        }
        38 => {
            // lmsw ax / smsw / clts
            mov_r32(c, 0, r.below(0x10000) as u32);
            c.extend_from_slice(r.pick(&[&[0x0f, 0x01, 0xf0][..], &[0x0f, 0x01, 0xe0], &[0x0f, 0x06]]));
        }
        _ => c.extend_from_slice(&[0x90; 3]),
    }
}

/// `n` bytes of hostile code.
pub fn code(r: &mut Rng, n: usize) -> Vec<u8> {
    let mut c = Vec::with_capacity(n + 32);
    while c.len() < n {
        gadget(r, &mut c);
    }
    c.truncate(n);
    c
}
