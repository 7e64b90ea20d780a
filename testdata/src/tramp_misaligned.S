/* SPDX-License-Identifier: MIT */
/* tramp_misaligned.S - a 64 KiB-aligned section, but ftrace_regs_caller sits 0x20 into it. */
	.section .text.ftrace_tramp, "ax", @progbits
	.balign	65536
	.set	noreorder
ftrace_stub_before:
	.rept	8
	nop
	.endr
	.globl	ftrace_regs_caller
	.type	ftrace_regs_caller, @function
ftrace_regs_caller:
	.set noat
	jr	$1
	.set at
	nop
	.size	ftrace_regs_caller, . - ftrace_regs_caller
