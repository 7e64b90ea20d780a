/* SPDX-License-Identifier: MIT */
/*
 * pfe_start.S - entry point of the repaired-object link test: calls into
 * patchable.o the way another object would (jal to its global functions).
 */
	.text
	.set	noreorder
	.globl	_start
	.ent	_start
_start:
	jal	pfe_sum
	li	$4, 10
	jal	pfe_call
	li	$4, 1
	jal	pfe_addr
	nop
	jal	pfe_weak
	li	$4, 3
	jal	pfe_untraced
	li	$4, 4
1:	b	1b
	nop
	.end	_start
