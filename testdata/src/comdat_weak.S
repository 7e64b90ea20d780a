/* SPDX-License-Identifier: MIT */
/*
 * comdat_weak.S - a weak function alone in a COMDAT group section, with the
 * -pg call sequence (move at,ra; jal _mcount; addiu sp,sp,-8). Assembled by
 * clang's integrated assembler, which emits no section symbol for it: the
 * group's signature symbol (the weak function) is a global-area symbol whose
 * index moves when recordpatch adds a local section symbol.
 */
	.set	noreorder
	.set	noat
	.section .text.grp_fn,"axG",@progbits,grp_fn,comdat
	.weak	grp_fn
	.type	grp_fn,@function
grp_fn:
	move	$1, $31
	jal	_mcount
	addiu	$sp, $sp, -8
	jr	$31
	move	$2, $4
	.size	grp_fn, .-grp_fn

	.text
	.globl	grp_user
	.type	grp_user,@function
grp_user:
	move	$1, $31
	jal	_mcount
	addiu	$sp, $sp, -8
	j	grp_fn
	nop
	.size	grp_user, .-grp_user
