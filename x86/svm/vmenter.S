/* SPDX-License-Identifier: GPL-2.0 */
/*
 * VMRUN for kvm-amd: loads the guest's general-purpose registers (RAX and RSP
 * live in the VMCB), runs the guest, stores them back. The host's FS/GS/TR/LDTR,
 * KernelGsBase, STAR/LSTAR/CSTAR/SFMASK and SYSENTER MSRs, which VMRUN does not
 * switch, are swapped with VMSAVE/VMLOAD around it. Called with GIF clear (CLGI),
 * so no interrupt or NMI can see the host running with guest segment state.
 *
 * void kvm_rs_svm_vcpu_run(u64 vmcb_pa, u64 *gprs, u64 host_save_pa)
 *   gprs: 16 registers in x86 encoding order (rax, rcx, rdx, rbx, rsp, rbp,
 *   rsi, rdi, r8..r15); the rax and rsp slots are not used here.
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/nospec-branch.h>

#define GPR(n) (8 * (n))

.text

SYM_FUNC_START(kvm_rs_svm_vcpu_run)
	push %rbp
	mov  %rsp, %rbp
	push %r15
	push %r14
	push %r13
	push %r12
	push %rbx
	/* 16(%rsp) = gprs, 8(%rsp) = host save area, 0(%rsp) = VMCB */
	push %rsi
	push %rdx
	push %rdi

	/* Host state VMRUN does not save. */
	mov %rdx, %rax
	vmsave %rax

	/* Guest state VMRUN does not load. */
	mov (%rsp), %rax
	vmload %rax

	/* Guest GPRs; RSI (the pointer) last. */
	mov GPR(1)(%rsi), %rcx
	mov GPR(2)(%rsi), %rdx
	mov GPR(3)(%rsi), %rbx
	mov GPR(5)(%rsi), %rbp
	mov GPR(7)(%rsi), %rdi
	mov GPR(8)(%rsi), %r8
	mov GPR(9)(%rsi), %r9
	mov GPR(10)(%rsi), %r10
	mov GPR(11)(%rsi), %r11
	mov GPR(12)(%rsi), %r12
	mov GPR(13)(%rsi), %r13
	mov GPR(14)(%rsi), %r14
	mov GPR(15)(%rsi), %r15
	mov GPR(6)(%rsi), %rsi

	/* Flush CPU buffers (MDS and friends) where the host's mitigation asks
	 * for it before entering a guest; clobbers EFLAGS.ZF only. */
	VM_CLEAR_CPU_BUFFERS

	/* RAX = VMCB physical address, still in (%rsp). */
	vmrun %rax

	/* #VMEXIT: RAX and RSP are the host's again. */
	mov 16(%rsp), %rax
	mov %rcx, GPR(1)(%rax)
	mov %rdx, GPR(2)(%rax)
	mov %rbx, GPR(3)(%rax)
	mov %rbp, GPR(5)(%rax)
	mov %rsi, GPR(6)(%rax)
	mov %rdi, GPR(7)(%rax)
	mov %r8,  GPR(8)(%rax)
	mov %r9,  GPR(9)(%rax)
	mov %r10, GPR(10)(%rax)
	mov %r11, GPR(11)(%rax)
	mov %r12, GPR(12)(%rax)
	mov %r13, GPR(13)(%rax)
	mov %r14, GPR(14)(%rax)
	mov %r15, GPR(15)(%rax)

	/* Guest state VMRUN does not save, then the host's back. */
	mov (%rsp), %rax
	vmsave %rax
	mov 8(%rsp), %rax
	vmload %rax

	/* Guest values must not stay in registers for speculation to use. */
	xor %ecx, %ecx
	xor %edx, %edx
	xor %esi, %esi
	xor %edi, %edi
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d

	/* The guest may have filled the RSB with its own return targets. */
	FILL_RETURN_BUFFER %rax, RSB_CLEAR_LOOPS, X86_FEATURE_RSB_VMEXIT

	add $24, %rsp
	pop %rbx
	pop %r12
	pop %r13
	pop %r14
	pop %r15
	pop %rbp
	RET
SYM_FUNC_END(kvm_rs_svm_vcpu_run)
