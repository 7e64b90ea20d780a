/* SPDX-License-Identifier: MIT */
/*
 * weakover.c - strong definitions that win over weakonly.c's weak ones at
 * link time, and the rest a static link needs (_start, ext).
 */
#include "kdefs.h"

extern int strong_user(int x);

int ext(int x)
{
	return x * 5 + 1;
}

long calibrate_delay_is_known(void)
{
	return ext(7) + 11;
}

int __section(".init.text") weak_setup(int x)
{
	return ext(x) + 13;
}

void _start(void)
{
	strong_user(weak_setup(2));
	for (;;)
		;
}
