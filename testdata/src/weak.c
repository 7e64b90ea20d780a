/* SPDX-License-Identifier: MIT */
/*
 * weak.c - weak functions (like the arch_* hooks in kernel/ and mm/).
 *
 * .text holds weak and strong functions mixed (the section symbol or a
 * strong function can serve as the relocation base).
 * .text.weakonly holds ONLY weak functions: the only symbols defined in
 * it are STB_WEAK, so recordmcount must use the section symbol - and fails
 * with "Cannot find symbol for section" when the assembler or a later
 * tool drops that section symbol (see weakstrip.o).
 */
#include "kdefs.h"

extern void printk(const char *fmt, ...);
extern unsigned long read_c0_count(void);
extern void flush_range(unsigned long start, unsigned long end);

int __weak arch_setup(int cpu)
{
	return cpu ? 0 : 1;
}

unsigned long weak_user(int cpu)
{
	unsigned long t = read_c0_count();

	if (arch_setup(cpu))
		printk("cpu%d setup\n", cpu);
	return read_c0_count() - t;
}

void __weak arch_flush(unsigned long start, unsigned long len)
{
	unsigned long end = start + len;

	while (start < end) {
		flush_range(start, start + 4096);
		start += 4096;
	}
}

int __weak __section(".text.weakonly") arch_probe_one(int id)
{
	switch (id) {
	case 0x10: return 1;
	case 0x11: return 3;
	case 0x20: return 7;
	default:
		printk("unknown id %x\n", id);
		return -19;
	}
}

void __weak __section(".text.weakonly") arch_cpu_idle(void)
{
	unsigned long t = read_c0_count();

	while (read_c0_count() - t < 100)
		;
}
