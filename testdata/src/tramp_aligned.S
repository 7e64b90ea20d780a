/* SPDX-License-Identifier: MIT */
/* tramp_aligned.S - ftrace_regs_caller first in a 64 KiB-aligned section: %hi alone reaches it. */
	.section .text.ftrace_tramp, "ax", @progbits
	.balign	65536
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
