/* SPDX-License-Identifier: MIT */
/* Minimal stand-ins for <linux/compiler_types.h> / <linux/init.h>. */
#ifndef KDEFS_H
#define KDEFS_H

#define noinline	__attribute__((__noinline__))
#define notrace		__attribute__((__no_instrument_function__))
#define __weak		__attribute__((__weak__))
#define __cold		__attribute__((__cold__))
#define __section(s)	__attribute__((__section__(s)))
#define __used		__attribute__((__used__))

#define __init		__section(".init.text") __cold
#define __exit		__section(".exit.text") __used __cold notrace
#define __ref		__section(".ref.text") noinline
#define __sched		__section(".sched.text")
#define __lockfunc	__section(".spinlock.text")
#define __cpuidle	__section(".cpuidle.text")
/*
 * In the real kernel noinstr also implies notrace; here it deliberately
 * does NOT, so that the compiler emits _mcount calls in a section that
 * recordmcount does not treat as mcounted (like .entry.text).
 */
#define __noinstr_traced __section(".noinstr.text")
#define __entry_text	__section(".entry.text")

#define __initdata	__section(".init.data")

#define unlikely(x)	__builtin_expect(!!(x), 0)
#define likely(x)	__builtin_expect(!!(x), 1)

#endif
