/* SPDX-License-Identifier: MIT */
/*
 * weakonly.c - weak functions alone in their sections, as in Linux 6.1
 * init/calibrate.c (calibrate_delay_is_known) under clang with
 * -ffunction-sections: clang's integrated assembler (and gas >= 2.36) emits
 * no section symbol for a section nothing refers to, so the only symbol in
 * the section is the weak one and recordmcount fails ("Cannot find symbol
 * for section"). weakover.c overrides two of them; linked together, each
 * table entry must stay on the code it came from (tests/test_weakonly.py).
 */
#include "kdefs.h"

extern int ext(int);

long __weak calibrate_delay_is_known(void)		/* overridden */
{
	return ext(1);
}

int __weak __section(".text.weakhook") arch_hook(int x)	/* kept */
{
	return ext(x + 2) - 1;
}

int __weak __section(".init.text") weak_setup(int x)	/* overridden */
{
	return ext(x) * 3;
}

int strong_user(int x)
{
	return (int)calibrate_delay_is_known() + arch_hook(x);
}
