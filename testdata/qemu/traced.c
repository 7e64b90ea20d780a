/* SPDX-License-Identifier: MIT */
/*
 * traced.c - the functions ftrace would patch: built with -fpatchable-function-entry=3 or =4
 * (pads), or -pg (_mcount calls). fc calls the others, so a traced call nests in a traced one.
 */
#define T __attribute__((noinline, noipa))

T int fa(int x)
{
	return 3 * x + 1;
}

T int fb(int x, int y)
{
	return x - y;
}

T int fc(int x)
{
	return fa(x) + fb(x, 1);
}
