//! Control registers and the guest's own mode switches: real -> protected ->
//! long mode by MOV to CR0/CR4 and WRMSR EFER, LMSW, the checks a MOV to CR
//! makes (#GP), PAE paging (whose PDPTEs the CPU loads with CR3), and CR8 as the
//! task-priority register user space owns (KVM_EXIT_SET_TPR).
//!
//! On VMX these writes exit to kvm.ko (the host owns every CR0 bit but TS/WP and
//! most of CR4), on SVM mostly not: the same guests check both.
//! The guest code is assembled from the source in the comment above each array.

use crate::guest::*;
use crate::harness::{TestFn, TestResult};
use crate::{check, check_eq};
use kvm_uapi::*;

pub fn tests() -> Vec<(&'static str, TestFn)> {
    vec![
        ("guest/modes_real_to_long_by_cr0_cr4_efer", real_to_long_mode),
        ("guest/modes_lmsw_sets_pe_cannot_clear_it", lmsw),
        ("guest/modes_bad_cr0_cr4_writes_gp", bad_cr_writes),
        ("guest/modes_pae_paging_pdptrs", pae_paging),
        ("guest/modes_cr8_tpr_set_tpr_exit", cr8_tpr),
    ]
}

const CODE: usize = 0x1000;
const GDT: usize = 0x500;
const GDTR: usize = 0x5f0;
const IDT: usize = 0x600;

/// Null, flat 32-bit code (0x08), flat data (0x10), 64-bit code (0x18); the
/// GDTR pseudo-descriptor at GDTR.
fn poke_gdt(mem: *mut u8) {
    let descriptors: [u64; 4] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0x00af_9a00_0000_ffff];
    for (i, d) in descriptors.iter().enumerate() {
        poke(mem, GDT + 8 * i, &d.to_le_bytes());
    }
    poke(mem, GDTR, &[0x1f, 0x00]);
    poke(mem, GDTR + 2, &(GDT as u32).to_le_bytes());
}

/// Flat 32-bit protected mode, paging off, with the GDT above in memory (so
/// exceptions and IRET can load CS) and an IDT of `idt_limit` at IDT.
fn protected_mode_with_gdt(v: &Vcpu, mem: *mut u8, rip: u64, idt_limit: u16) -> TestResult {
    poke_gdt(mem);
    v.protected_mode_at(rip)?;
    let mut s = v.sregs()?;
    s.gdt.base = GDT as u64;
    s.gdt.limit = 0x1f;
    s.idt.base = IDT as u64;
    s.idt.limit = idt_limit;
    v.set_sregs(&s).map_err(|e| format!("SET_SREGS: errno {e}"))?;
    Ok(())
}

fn real_to_long_mode() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    v.set_supported_cpuid(&vm.kvm)?; // EFER.LME needs LM in the guest's CPUID
    poke_gdt(mem);
    // Identity map of the first 1G with 2M pages: PML4 0x2000, PDPT 0x3000, PD 0x4000.
    poke(mem, 0x2000, &(0x3000u64 | 3).to_le_bytes());
    poke(mem, 0x3000, &(0x4000u64 | 3).to_le_bytes());
    for i in 0..512u64 {
        poke(mem, 0x4000 + 8 * i as usize, &((i << 21) | 0x83).to_le_bytes());
    }
    // .code16: cli; lgdtl 0x5f0; mov %cr0,%eax; or $1,%eax; mov %eax,%cr0;
    //   ljmpl $0x08,$pm32
    // .code32 pm32: mov $0x10,%ax; mov %ax,%ds; mov %ax,%es; mov %ax,%ss;
    //   mov $0x8000,%esp; mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4;
    //   mov $0x2000,%eax; mov %eax,%cr3; mov $0xc0000080,%ecx; rdmsr;
    //   or $0x100,%eax; wrmsr; mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0;
    //   ljmp $0x18,$lm64
    // .code64 lm64: mov %cr0,%rbx; mov %cr4,%rsi; mov $0xc0000080,%ecx; rdmsr;
    //   mov %rax,%rdi; mov $0x64,%al; out %al,$0x10; hlt
    poke(mem, CODE, &[
        0xfa, 0x66, 0x0f, 0x01, 0x16, 0xf0, 0x05, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22,
        0xc0, 0x66, 0xea, 0x19, 0x10, 0x00, 0x00, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e,
        0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x80, 0x00, 0x00, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22,
        0xe0, 0xb8, 0x00, 0x20, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32,
        0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f,
        0x22, 0xc0, 0xea, 0x59, 0x10, 0x00, 0x00, 0x18, 0x00, 0x0f, 0x20, 0xc3, 0x0f, 0x20, 0xe6, 0xb9,
        0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x48, 0x89, 0xc7, 0xb0, 0x64, 0xe6, 0x10, 0xf4,
    ]);
    v.real_mode_at(CODE as u64)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    check!(v.io().port == 0x10 && v.io_data()[0] == 0x64, "out to {:#x}", v.io().port);
    let r = v.regs()?;
    // The guest reads back what it wrote: CD/NW of the reset value stay visible
    // to it even where the hardware runs it with caching on.
    check_eq!(r.rbx, 0xe000_0011);
    check_eq!(r.rsi, 0x20);
    check_eq!(r.rdi & 0x500, 0x500); // LME and LMA
    let s = v.sregs()?;
    check_eq!((s.cr0, s.cr4, s.cr3), (0xe000_0011, 0x20, 0x2000));
    check_eq!(s.efer & 0x500, 0x500);
    check!(s.cs.l == 1 && s.cs.selector == 0x18, "cs {:?}", (s.cs.l, s.cs.selector));
    expect_exit(&v, KVM_EXIT_HLT)
}

fn lmsw() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // .code16: mov $1,%ax; lmsw %ax; smsw %bx; xor %ax,%ax; lmsw %ax; smsw %cx; hlt
    poke(mem, CODE, &[
        0xb8, 0x01, 0x00, 0x0f, 0x01, 0xf0, 0x0f, 0x01, 0xe3, 0x31, 0xc0, 0x0f, 0x01, 0xf0, 0x0f, 0x01,
        0xe1, 0xf4,
    ]);
    v.real_mode_at(CODE as u64)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    // Reset CR0 is 0x60000010: LMSW sets PE, and cannot clear it again.
    check_eq!((r.rbx & 0xffff, r.rcx & 0xffff), (0x11, 0x11));
    check_eq!(v.sregs()?.cr0, 0x6000_0011);
    Ok(())
}

fn bad_cr_writes() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x10000)?;
    // #GP handler at 0x1800: count the fault on port 0x0d, skip the 3-byte MOV.
    // .code32: add $4,%esp; addl $3,(%esp); push %eax; mov $13,%al; out %al,$0x0d;
    //   pop %eax; iret
    poke(mem, 0x1800, &[0x83, 0xc4, 0x04, 0x83, 0x04, 0x24, 0x03, 0x50, 0xb0, 0x0d, 0xe6, 0x0d, 0x58, 0xcf]);
    // IDT entry 13: 32-bit interrupt gate to 0x08:0x1800.
    poke(mem, IDT + 13 * 8, &[0x00, 0x18, 0x08, 0x00, 0x00, 0x8e, 0x00, 0x00]);
    // .code32: mov %cr0,%eax; mov %eax,%ebx; and $~1,%eax; or $0x80000000,%eax;
    //   mov %eax,%cr0 (PG without PE); mov %ebx,%eax; and $~0x40000000,%eax;
    //   or $0x20000000,%eax; mov %eax,%cr0 (NW without CD); mov %cr4,%eax;
    //   or $0x10000000,%eax; mov %eax,%cr4 (reserved bit 28); mov %cr0,%ecx;
    //   mov %cr4,%edx; hlt
    poke(mem, CODE, &[
        0x0f, 0x20, 0xc0, 0x89, 0xc3, 0x83, 0xe0, 0xfe, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0,
        0x89, 0xd8, 0x25, 0xff, 0xff, 0xff, 0xbf, 0x0d, 0x00, 0x00, 0x00, 0x20, 0x0f, 0x22, 0xc0, 0x0f,
        0x20, 0xe0, 0x0d, 0x00, 0x00, 0x00, 0x10, 0x0f, 0x22, 0xe0, 0x0f, 0x20, 0xc1, 0x0f, 0x20, 0xe2,
        0xf4,
    ]);
    protected_mode_with_gdt(&v, mem, CODE as u64, 0xff)?;
    for n in 1..=3 {
        expect_exit(&v, KVM_EXIT_IO).map_err(|e| format!("#GP {n}: {e}"))?;
        check!(v.io().port == 0x0d && v.io_data()[0] == 13, "#GP {n}: out to {:#x}", v.io().port);
    }
    expect_exit(&v, KVM_EXIT_HLT)?;
    let r = v.regs()?;
    check_eq!((r.rcx & 0xffff_ffff, r.rdx & 0xffff_ffff), (0x11, 0));
    let s = v.sregs()?;
    check_eq!((s.cr0, s.cr4), (0x11, 0));
    Ok(())
}

fn pae_paging() -> TestResult {
    let (_vm, v, mem) = vm_with_ram(0x60_0000)?;
    // Two PDPTs in one page: A at 0x6000 maps 1G-3G.. as [0] identity 2M (PD
    // 0x7000), [1] 0x40000000 -> 0x200000 (PD 0x8000); B at 0x6020 differs in
    // [1]: 0x40000000 -> 0x400000 (PD 0x9000). PAE PDPTEs have only P + address.
    poke(mem, 0x6000, &(0x7000u64 | 1).to_le_bytes());
    poke(mem, 0x6008, &(0x8000u64 | 1).to_le_bytes());
    poke(mem, 0x6020, &(0x7000u64 | 1).to_le_bytes());
    poke(mem, 0x6028, &(0x9000u64 | 1).to_le_bytes());
    poke(mem, 0x7000, &0x83u64.to_le_bytes());
    poke(mem, 0x8000, &(0x20_0000u64 | 0x83).to_le_bytes());
    poke(mem, 0x9000, &(0x40_0000u64 | 0x83).to_le_bytes());
    poke(mem, 0x20_0000, &0x1111_1111u32.to_le_bytes());
    poke(mem, 0x40_0000, &0x2222_2222u32.to_le_bytes());
    // .code32: mov %cr4,%eax; or $0x20,%eax; mov %eax,%cr4; mov $0x6000,%eax;
    //   mov %eax,%cr3; mov %cr0,%eax; or $0x80000000,%eax; mov %eax,%cr0;
    //   mov 0x40000000,%ebx; mov $0x6020,%eax; mov %eax,%cr3; mov 0x40000000,%ecx;
    //   out %al,$0x10; mov 0x40000000,%esi; hlt
    poke(mem, CODE, &[
        0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x60, 0x00, 0x00, 0x0f, 0x22,
        0xd8, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0x8b, 0x1d, 0x00, 0x00,
        0x00, 0x40, 0xb8, 0x20, 0x60, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0x8b, 0x0d, 0x00, 0x00, 0x00, 0x40,
        0xe6, 0x10, 0x8b, 0x35, 0x00, 0x00, 0x00, 0x40, 0xf4,
    ]);
    // .code32 at 0x1100: mov 0x40000000,%edx; hlt
    poke(mem, 0x1100, &[0x8b, 0x15, 0x00, 0x00, 0x00, 0x40, 0xf4]);
    protected_mode_with_gdt(&v, mem, CODE as u64, 0)?;
    expect_exit(&v, KVM_EXIT_IO)?;
    let r = v.regs()?;
    check_eq!((r.rbx & 0xffff_ffff, r.rcx & 0xffff_ffff), (0x1111_1111, 0x2222_2222));
    // After an exit the guest still uses the PDPTEs it loaded itself with CR3.
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rsi & 0xffff_ffff, 0x2222_2222);
    // KVM_SET_SREGS into PAE paging loads the PDPTEs from the new CR3.
    let mut s = v.sregs()?;
    check_eq!((s.cr0 & 0x8000_0001, s.cr4 & 0x20, s.cr3), (0x8000_0001, 0x20, 0x6020));
    s.cr3 = 0x6000;
    v.set_sregs(&s).map_err(|e| format!("SET_SREGS: errno {e}"))?;
    let mut r = v.regs()?;
    r.rip = 0x1100;
    v.set_regs(&r)?;
    expect_exit(&v, KVM_EXIT_HLT)?;
    check_eq!(v.regs()?.rdx & 0xffff_ffff, 0x1111_1111);
    Ok(())
}

fn run_cr8(v: &Vcpu) -> u64 {
    // SAFETY: the mapped kvm_run page.
    unsafe { std::ptr::addr_of!((*v.run).cr8).read_volatile() }
}

fn cr8_tpr() -> TestResult {
    let (vm, v, mem) = vm_with_ram(0x10000)?;
    // .code64: mov $5,%eax; mov %rax,%cr8; mov %cr8,%rbx; out %al,$0x10;
    //   mov $2,%eax; mov %rax,%cr8; mov $16,%eax; mov %rax,%cr8; hlt
    poke(mem, CODE, &[
        0xb8, 0x05, 0x00, 0x00, 0x00, 0x44, 0x0f, 0x22, 0xc0, 0x44, 0x0f, 0x20, 0xc3, 0xe6, 0x10, 0xb8,
        0x02, 0x00, 0x00, 0x00, 0x44, 0x0f, 0x22, 0xc0, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x44, 0x0f, 0x22,
        0xc0, 0xf4,
    ]);
    v.long_mode_at(&vm.kvm, mem, CODE as u64)?;
    // Raising the TPR needs no word to user space; it sees the value in kvm_run.
    expect_exit(&v, KVM_EXIT_IO)?;
    check_eq!(v.regs()?.rbx, 5);
    check_eq!(run_cr8(&v), 5);
    // Lowering it may unblock an interrupt user space holds: KVM_EXIT_SET_TPR.
    expect_exit(&v, KVM_EXIT_SET_TPR)?;
    check_eq!(run_cr8(&v), 2);
    check_eq!(v.regs()?.rip, CODE as u64 + 24);
    // CR8 has 4 bits: 16 is #GP (no IDT: triple fault).
    expect_exit(&v, KVM_EXIT_SHUTDOWN)?;
    check_eq!(v.sregs()?.cr8, 2);
    Ok(())
}
