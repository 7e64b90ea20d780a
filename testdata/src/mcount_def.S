/* SPDX-License-Identifier: MIT */
/*
 * mcount_def.S - a global _mcount definition, shaped like
 * arch/mips/kernel/mcount.S (CONFIG_DYNAMIC_FTRACE).  Built without -pg
 * (Kbuild does not pass -pg to .S files).  Linked into vmlinux.o so that
 * _mcount is a defined global symbol there, as in the real vmlinux.o.
 */
#include <asm/regdef-lite.h>

	.text
	.set	noreorder
	.set	noat

	.globl	ftrace_caller
	.type	ftrace_caller, @function
	.ent	ftrace_caller
ftrace_caller:
	.globl	_mcount
	.type	_mcount, @function
_mcount:
	/* return to caller: at holds the caller's ra, ra points after the call */
	jr	ra
	 move	ra, AT
	.globl	ftrace_call
ftrace_call:
	nop
	jr	ra
	 nop
	.end	ftrace_caller
	.size	ftrace_caller, . - ftrace_caller
	.size	_mcount, . - _mcount
