/* SPDX-License-Identifier: MIT */
/*
 * patchable.c - functions built with -fpatchable-function-entry=N[,M] (no -pg),
 * as the MIPS DYNAMIC_FTRACE_WITH_REGS design builds the kernel. Calls between
 * them take every shape a repair must move: jal to a global symbol, jal/j to a
 * static function (against the section symbol with -ffunction-sections), the
 * address of a static function in data (R_MIPS_32/64) and in code (%hi/%lo).
 */
#include "kdefs.h"

#define pfe_notrace __attribute__((__patchable_function_entry__(0, 0)))

static noinline int pfe_helper(int x)
{
	return x * 3 + 1;
}

int pfe_global(int x)
{
	return pfe_helper(x) + 2;
}

int pfe_sum(int n)
{
	int s = 0;

	for (int i = 0; i < n; i++)
		s += pfe_global(i);
	return s;
}

static int (*const pfe_ops[])(int) = { pfe_helper, pfe_global };

int pfe_call(int i, int x)
{
	return pfe_ops[i & 1](x);
}

unsigned long pfe_addr(void)
{
	return (unsigned long)&pfe_helper;
}

__weak int pfe_weak(int x)
{
	return x - 1;
}

/* a notrace function of such a kernel: no pad, no entry */
pfe_notrace int pfe_untraced(int x)
{
	return x ^ 5;
}
