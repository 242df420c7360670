/* SPDX-License-Identifier: GPL-2.0 */
/*
 * VM entry for kvm-intel: stores HOST_RSP/HOST_RIP in the current VMCS, loads
 * the guest's general-purpose registers (RSP/RIP/RFLAGS are VMCS fields),
 * VMLAUNCHes or VMRESUMEs, and on VM exit stores them back.
 *
 * int kvm_rs_vmx_vcpu_run(u64 *gprs, int resume)
 *   gprs: 16 registers in x86 encoding order (the rsp slot is unused).
 *   resume: bit 0 set for VMRESUME (the VMCS was launched since its VMCLEAR).
 *   Returns 0 after a VM exit, 1 if VMLAUNCH/VMRESUME failed (VMfail).
 */
#include <linux/linkage.h>
#include <asm/asm.h>
#include <asm/nospec-branch.h>
#include <asm/unwind_hints.h>

#define GPR(n) (8 * (n))
#define HOST_RSP 0x6c14
#define HOST_RIP 0x6c16

.text

SYM_FUNC_START(kvm_rs_vmx_vcpu_run)
	push %rbp
	mov  %rsp, %rbp
	push %r15
	push %r14
	push %r13
	push %r12
	push %rbx
	push %rdi		/* gprs at (%rsp) */

	mov $HOST_RSP, %rdx
	vmwrite %rsp, %rdx
	lea kvm_rs_vmx_vmexit(%rip), %rax
	mov $HOST_RIP, %rdx
	vmwrite %rax, %rdx

	/* CF = resume; the moves below keep it, CLEAR_CPU_BUFFERS only clobbers ZF. */
	bt $0, %esi

	mov GPR(0)(%rdi), %rax
	mov GPR(1)(%rdi), %rcx
	mov GPR(2)(%rdi), %rdx
	mov GPR(3)(%rdi), %rbx
	mov GPR(5)(%rdi), %rbp
	mov GPR(6)(%rdi), %rsi
	mov GPR(8)(%rdi), %r8
	mov GPR(9)(%rdi), %r9
	mov GPR(10)(%rdi), %r10
	mov GPR(11)(%rdi), %r11
	mov GPR(12)(%rdi), %r12
	mov GPR(13)(%rdi), %r13
	mov GPR(14)(%rdi), %r14
	mov GPR(15)(%rdi), %r15
	mov GPR(7)(%rdi), %rdi

	/* Flush CPU buffers (MDS and friends) where the host's mitigation asks
	 * for it, as upstream's __vmx_vcpu_run does; clobbers EFLAGS.ZF only. */
	CLEAR_CPU_BUFFERS

	jnc .Lvmlaunch
	/* A successful VMRESUME/VMLAUNCH continues at kvm_rs_vmx_vmexit (HOST_RIP)
	 * with this stack: tell objtool to carry the unwind state there. */
	UNWIND_HINT_SAVE
	vmresume
	jmp .Lvmfail
.Lvmlaunch:
	vmlaunch
.Lvmfail:
	/* VMfail: the host registers are the guest's now; the stack is intact. */
	mov $1, %eax
	jmp .Lvmx_out

	/* VM exit (HOST_RIP): RSP = HOST_RSP (gprs at (%rsp)), the rest is the
	 * guest's. */
SYM_INNER_LABEL_ALIGN(kvm_rs_vmx_vmexit, SYM_L_GLOBAL)
	UNWIND_HINT_RESTORE
	ENDBR
	push %rax
	mov 8(%rsp), %rax
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
	pop %rcx
	mov %rcx, GPR(0)(%rax)

	xor %ecx, %ecx
	xor %edx, %edx
	xor %esi, %esi
	xor %edi, %edi
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d
	/* Stuff the RSB before the first RET (retpoline/IBRS hosts), or the
	 * single call eIBRS hosts with PBRSB need. */
	FILL_RETURN_BUFFER %rax, RSB_CLEAR_LOOPS, X86_FEATURE_RSB_VMEXIT, \
			   X86_FEATURE_RSB_VMEXIT_LITE
	xor %eax, %eax

.Lvmx_out:
	add $8, %rsp
	pop %rbx
	pop %r12
	pop %r13
	pop %r14
	pop %r15
	pop %rbp
	RET
SYM_FUNC_END(kvm_rs_vmx_vcpu_run)
