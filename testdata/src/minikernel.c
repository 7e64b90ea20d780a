/* SPDX-License-Identifier: MIT */
/* The traced code of the miniature vmlinux (issue 12, src/vmlinux.lds): functions in
 * .text, .sched.text and .init.text that call only each other, so the image links
 * without a C library. */
#include "kdefs.h"

int mk_counter;
static int mk_table[8];

noinline int mk_add(int a, int b)
{
	mk_counter++;
	return a + b;
}

noinline int mk_sum(int n)
{
	int s = 0;
	for (int i = 0; i < n && i < 8; i++)
		s = mk_add(s, mk_table[i]);
	return s;
}

__sched noinline void mk_schedule(void)
{
	mk_counter = mk_sum(mk_counter & 7);
}

int __init mk_init(void)
{
	for (int i = 0; i < 8; i++)
		mk_table[i] = i * 3;
	mk_schedule();
	return mk_sum(8);
}
