/* SPDX-License-Identifier: MIT */
/*
 * pfe_isa.c - MIPS32 and microMIPS functions in one file, with
 * -fpatchable-function-entry=3: GCC emits each pad before the `.set
 * micromips`/`.set nomicromips` of its function, i.e. in the ISA mode of the
 * function before it.
 */
#include "kdefs.h"

noinline int isa_first(int x)
{
	return x + 1;
}

__attribute__((__micromips__)) noinline int isa_micro(int x)
{
	return x * 3;
}

noinline int isa_after_micro(int x)
{
	return isa_micro(x) + isa_first(x);
}
