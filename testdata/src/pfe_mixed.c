/* SPDX-License-Identifier: MIT */
/*
 * pfe_mixed.c - compiled with -pg; one function also asks for a pad by attribute,
 * so the object has both _mcount calls and __patchable_function_entries.
 */
#include "kdefs.h"

extern int mix_ext(int x);

int mix_pg(int x)
{
	return mix_ext(x) + 1;
}

__attribute__((__patchable_function_entry__(3, 0))) int mix_padded(int x)
{
	return mix_ext(x) * 3;
}

notrace int mix_plain(int x)
{
	return x * 7;
}
