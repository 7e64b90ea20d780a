/* SPDX-License-Identifier: MIT */
/*
 * tramp.S - user-space stand-ins for the kernel's ftrace entry points.
 *
 * ftrace_regs_caller: what a patched pad calls (`lui at,%hi(ftrace_regs_caller);
 * jalr at,at; li FLAG,X`). On entry at = the function body (the word after the pad),
 * ra = the traced function's caller, FLAG = X. It counts the call, adds FLAG to
 * tramp_flags, and returns through at with every register but at as it found them.
 * 64 KiB aligned: the pad loads its address with lui alone.
 *
 * _mcount: what a -pg call site calls (`move at,ra; jal _mcount; <slot>`). On entry
 * ra = the traced function (after the delay slot), at = its caller. It counts the call
 * and returns with ra = at; on o32 it also pops the 8 bytes the caller's delay slot
 * (`addiu sp,sp,-8`) pushed.
 *
 * FLAG is t0 in the ABI's own naming: $8 on o32, $12 on n64.
 */
#ifdef __mips64
#define REG_S	sd
#define REG_L	ld
#define ADDIU	daddiu
#define ADDU	daddu
#define FLAG	$12
#define POP	0
#else
#define REG_S	sw
#define REG_L	lw
#define ADDIU	addiu
#define ADDU	addu
#define FLAG	$8
#define POP	8
#endif

	.data
	.align	3
	.globl	tramp_calls, tramp_flags, mcount_calls
#ifdef __mips64
tramp_calls:	.dword	0
tramp_flags:	.dword	0
mcount_calls:	.dword	0
#else
tramp_calls:	.word	0
tramp_flags:	.word	0
mcount_calls:	.word	0
#endif

	.text
	.set	noreorder
	.set	noat
	.align	16
	.globl	ftrace_regs_caller
	.ent	ftrace_regs_caller
ftrace_regs_caller:
	ADDIU	$29, $29, -16
	REG_S	$2, 0($29)
	REG_S	$3, 8($29)
	lui	$2, %hi(tramp_calls)
	REG_L	$3, %lo(tramp_calls)($2)
	ADDIU	$3, $3, 1
	REG_S	$3, %lo(tramp_calls)($2)
	lui	$2, %hi(tramp_flags)
	REG_L	$3, %lo(tramp_flags)($2)
	ADDU	$3, $3, FLAG
	REG_S	$3, %lo(tramp_flags)($2)
	REG_L	$2, 0($29)
	REG_L	$3, 8($29)
	jr	$1
	ADDIU	$29, $29, 16
	.end	ftrace_regs_caller

	.globl	_mcount
	.ent	_mcount
_mcount:
	ADDIU	$29, $29, -16
	REG_S	$2, 0($29)
	REG_S	$3, 8($29)
	lui	$2, %hi(mcount_calls)
	REG_L	$3, %lo(mcount_calls)($2)
	ADDIU	$3, $3, 1
	REG_S	$3, %lo(mcount_calls)($2)
	REG_L	$2, 0($29)
	REG_L	$3, 8($29)
	ADDIU	$29, $29, 16 + POP
	jr	$31
	move	$31, $1
	.end	_mcount
