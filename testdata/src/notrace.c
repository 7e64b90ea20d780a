/* SPDX-License-Identifier: MIT */
/*
 * notrace.c - notrace (no_instrument_function) functions mixed with traced
 * ones in the same section. Only the traced ones have _mcount calls.
 */
#include "kdefs.h"

extern unsigned long read_clock(void);
extern void trace_event(int id, unsigned long v);

static unsigned long last_stamp;

notrace unsigned long sched_clock_raw(void)
{
	return read_clock() * 3 / 2;
}

static notrace noinline unsigned long clock_delta(unsigned long now)
{
	unsigned long d = now - last_stamp;

	last_stamp = now;
	return d;
}

unsigned long traced_clock(void)
{
	return clock_delta(sched_clock_raw());
}

notrace int notrace_sum(const int *v, int n)
{
	int s = 0, i;

	for (i = 0; i < n; i++)
		s += v[i];
	trace_event(1, s);
	return s;
}

void traced_event(int id)
{
	switch (id & 3) {
	case 0: trace_event(id, 0); break;
	case 1: trace_event(id, traced_clock()); break;
	case 2: trace_event(id, sched_clock_raw()); break;
	default: break;
	}
}
