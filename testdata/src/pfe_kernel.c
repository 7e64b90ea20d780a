/* SPDX-License-Identifier: MIT */
/*
 * pfe_kernel.c - the shape of a kernel object built with -fpatchable-function-entry=3
 * (MIPS_FTRACE_PATCHABLE_ENTRY, kernel/pfe/) and no -ffunction-sections: traced
 * functions in .text, .init.text and .sched.text, one notrace function, and calls
 * between them. GCC writes one __patchable_function_entries table, linked
 * (SHF_LINK_ORDER) to .text, that also lists the .init.text and .sched.text pads, and
 * puts every pad before its function's label (PR99217): what the kernel build's
 * `recordpatch record --repair` sees in every object (measured: init/main.o,
 * kernel/time/hrtimer.o of Linux 6.1).
 */
#include "kdefs.h"

#define pfe_notrace __attribute__((__patchable_function_entry__(0, 0)))

extern int pfe_ext(int);

static noinline int pk_helper(int x)
{
	return pfe_ext(x) * 3 + 1;
}

int pk_text(int x)
{
	return pk_helper(x) + 2;
}

int __init pk_setup(char *s)
{
	return pk_text(*s);
}

int __init pk_early(int x)
{
	return pk_helper(x) ^ pk_setup((char *)0);
}

int __init pk_late(int x)
{
	return pk_early(x) + 1;
}

int __sched pk_schedule(int x)
{
	return pfe_ext(x + 7);
}

int __sched pk_schedule_timeout(int x)
{
	return pk_schedule(x) - 1;
}

pfe_notrace int pk_untraced(int x)
{
	return pfe_ext(x) - 5;
}

/*
 * A static function passed by address from two tail calls (the shape of
 * drivers/ata/libata-sff.o): gas fills the delay slots with the %lo halves and moves
 * each %hi relocation before *a* %lo with the same symbol and addend, so a %lo can have
 * no %hi before it in the table. --repair must still move it to the pad.
 */
extern int pk_wait(void *l, long d, int (*ready)(void *));

static noinline int pk_ready(void *l)
{
	return *(int *)l == 3;
}

int pk_wait_a(void *l, long d)
{
	return pk_wait(l, d, pk_ready);
}

int pk_wait_b(void *l, long d)
{
	pk_wait(l, d + 1, pk_ready);
	return pk_wait(l, d, pk_ready);
}
