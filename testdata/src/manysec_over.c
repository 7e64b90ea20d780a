/* SPDX-License-Identifier: MIT */
/*
 * manysec_over.c - strong definitions of two of gen_manysec.py's weak functions
 * (ms_w5, in a section below SHN_LORESERVE, and ms_w32797, far above it), the
 * ms_sink the generated code calls, and _start: the rest of a static link of
 * clang-manysec/manysec.o (tests/test_weakonly.py).
 */
extern int ms_c3(int);

int ms_sink(int x)
{
	return x + 1;
}

int ms_w5(int x)
{
	return ms_sink(x) * 7;
}

int ms_w32797(int x)
{
	return ms_sink(x) * 11;
}

void _start(void)
{
	ms_c3(ms_w5(1) + ms_w32797(2));
	for (;;)
		;
}
