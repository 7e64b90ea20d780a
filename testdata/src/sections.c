/* SPDX-License-Identifier: MIT */
/*
 * sections.c - traced functions placed in the special text sections that
 * recordmcount knows about, plus two executable sections it does NOT
 * record (.entry.text and .noinstr.text).
 *
 *   .text            setup_one, sections_probe          mcounted
 *   .init.text       sections_init, parse_opts (__init)  mcounted
 *   .exit.text       sections_exit (__exit => notrace)   no calls at all
 *   .text.unlikely   report_failure (__cold)             mcounted (.text*)
 *   .sched.text      schedule_one, wait_for (__sched)    mcounted
 *   .ref.text        late_ref (__ref)                    mcounted
 *   .spinlock.text   _raw_lock (__lockfunc)              mcounted
 *   .cpuidle.text    cpu_idle_poll (__cpuidle)           mcounted
 *   .entry.text      handle_syscall                      NOT mcounted, has _mcount call
 *   .noinstr.text    irqentry_enter                      NOT mcounted, has _mcount call
 */
#include "kdefs.h"

extern void printk(const char *fmt, ...);
extern int register_driver(void *drv);
extern void unregister_driver(void *drv);
extern void cpu_relax(void);
extern int need_resched(void);
extern void context_switch(int cpu);
extern long sys_call_table_dispatch(long nr, long a0, long a1);
extern void arch_spin_lock(volatile int *l);
extern int panic_on_fail;

static int opt_verbose __initdata;
static char drv_data[64];
static volatile int idle_flag;

static int __init parse_opts(const char *s)
{
	int n = 0;

	while (*s) {
		if (*s == 'v')
			opt_verbose++;
		else if (*s >= '0' && *s <= '9')
			n = n * 10 + (*s - '0');
		s++;
	}
	return n;
}

int __init sections_init(const char *cmdline)
{
	int n = parse_opts(cmdline);

	if (opt_verbose)
		printk("sections: %d\n", n);
	return register_driver(drv_data);
}

void __exit sections_exit(void)
{
	unregister_driver(drv_data);
}

void __cold noinline report_failure(int err)
{
	printk("sections: failure %d\n", err);
	if (panic_on_fail)
		printk("sections: would panic\n");
}

int setup_one(int cpu)
{
	int err = register_driver(drv_data + cpu);

	if (unlikely(err))
		report_failure(err);
	return err;
}

void __sched schedule_one(int cpu)
{
	int loops = 0;

	while (need_resched()) {
		context_switch(cpu);
		if (++loops > 16)
			break;
	}
}

void __sched wait_for(volatile int *flag)
{
	while (!*flag) {
		schedule_one(0);
		cpu_relax();
	}
}

int __ref late_ref(const char *s)
{
	return sections_init(s);
}

void __lockfunc _raw_lock(volatile int *l)
{
	arch_spin_lock(l);
}

void __cpuidle cpu_idle_poll(void)
{
	while (!idle_flag && !need_resched())
		cpu_relax();
}

long __entry_text handle_syscall(long nr, long a0, long a1)
{
	if (nr < 0 || nr > 450)
		return -38;
	return sys_call_table_dispatch(nr, a0, a1);
}

void __noinstr_traced irqentry_enter(int irq)
{
	if (irq > 0)
		context_switch(irq);
	else
		cpu_relax();
}

int sections_probe(void)
{
	int cpu, ret = 0;

	for (cpu = 0; cpu < 4; cpu++)
		ret |= setup_one(cpu);
	return ret;
}
