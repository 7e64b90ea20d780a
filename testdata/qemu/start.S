/* SPDX-License-Identifier: MIT */
/* start.S - entry point: main() with an ABI-sized frame, then exit(main's value). */
	.text
	.set	noreorder
	.globl	_start
	.ent	_start
_start:
#ifdef __mips64
	daddiu	$29, $29, -32
#else
	addiu	$29, $29, -32
#endif
	jal	main
	nop
	move	$4, $2
#ifdef __mips64
	li	$2, 5058
#else
	li	$2, 4001
#endif
	syscall
1:	b	1b
	nop
	.end	_start
