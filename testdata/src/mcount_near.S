/* SPDX-License-Identifier: MIT */
/*
 * mcount_near.S - code that refers to _mcount the way a long call does but is no call
 * (the shapes ftrace's own code and hand-written assembly can have). Each function is one
 * near miss of GCC's -mlong-calls -pg sequence
 *     lui v1,%hi(_mcount); addiu v1,v1,%lo(_mcount); move at,ra; jalr v1
 * Debian's recordmcount records every one of them (any relocation against _mcount);
 * GNU objdump shows none is a call; recordpatch must record none.
 */
#include <asm/regdef-lite.h>

#if _MIPS_SIM == _ABI64
#define ADDIU	daddiu
#define STORE	sd
#else
#define ADDIU	addiu
#define STORE	sw
#endif

	.text
	.set	noreorder
	.set	noat

	/* the address of _mcount kept in v1 and stored: no jump at all */
	.globl	near_store
	.ent	near_store
near_store:
	lui	v1, %hi(_mcount)
	ADDIU	v1, v1, %lo(_mcount)
	STORE	v1, 0($4)
	jr	ra
	 nop
	.end	near_store

	/* a tail jump to _mcount (jr, not jalr) */
	.globl	near_jump
	.ent	near_jump
near_jump:
	lui	v1, %hi(_mcount)
	ADDIU	v1, v1, %lo(_mcount)
	move	AT, ra
	jr	v1
	 nop
	.end	near_jump

	/* jalr through another register than the one loaded */
	.globl	near_other_reg
	.ent	near_other_reg
near_other_reg:
	lui	v1, %hi(_mcount)
	ADDIU	v1, v1, %lo(_mcount)
	move	AT, ra
	jalr	v0
	 nop
	jr	ra
	 nop
	.end	near_other_reg

	/* R_MIPS_26 on a j (no link), after move at,ra */
	.globl	near_j
	.ent	near_j
near_j:
	move	AT, ra
	j	_mcount
	 nop
	.end	near_j
