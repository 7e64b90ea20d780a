/* SPDX-License-Identifier: MIT */
/*
 * main.c - the untraced driver: calls the traced functions, prints the results and the
 * counters the trampoline (tramp.S) and _mcount (mcount.S) keep, one line:
 *   sum=78 calls=11 flags=11 mcount=0 bprime=0
 * sum is 78 whatever the call-site state (82 when fb is redirected to fb_prime).
 */
#include "sys.h"

extern volatile unsigned long tramp_calls, tramp_flags, mcount_calls;
extern int fa(int), fb(int, int), fc(int);
volatile unsigned long bprime_calls;

/* B': what a redirected fb runs instead (x * y, so the sum shows it) */
__attribute__((noinline, noipa)) int fb_prime(int x, int y)
{
	bprime_calls++;
	return x * y;
}

static char buf[128];
static int len;

static void puts_(const char *s)
{
	while (*s)
		buf[len++] = *s++;
}

static void putu(unsigned long v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		buf[len++] = tmp[--n];
}

int main(void)
{
	long sum = 0;
	int i;

	for (i = 0; i < 5; i++)
		sum += fa(i);
	for (i = 0; i < 3; i++)
		sum += fb(10, i);
	sum += fc(4);
	puts_("sum=");
	putu(sum);
	puts_(" calls=");
	putu(tramp_calls);
	puts_(" flags=");
	putu(tramp_flags);
	puts_(" mcount=");
	putu(mcount_calls);
	puts_(" bprime=");
	putu(bprime_calls);
	puts_("\n");
	sys3(SYS_write, 1, (long)buf, len);
	return 0;
}
