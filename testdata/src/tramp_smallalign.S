/* SPDX-License-Identifier: MIT */
/* tramp_smallalign.S - ftrace_regs_caller at offset 0, but its section only asks for 16 bytes. */
	.section .text.ftrace_tramp, "ax", @progbits
	.balign	16
	.set	noreorder
	.globl	ftrace_regs_caller
	.type	ftrace_regs_caller, @function
ftrace_regs_caller:
	.set noat
	jr	$1
	.set at
	nop
	.size	ftrace_regs_caller, . - ftrace_regs_caller

	.text
	.globl	_start
_start:
	b	_start
	nop
