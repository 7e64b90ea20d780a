/* SPDX-License-Identifier: MIT */
/*
 * tsections.c - one traced function in every section name Linux 6.1's recordmcount
 * records (scripts/recordmcount.c is_mcounted_section_name: the ".text" prefix and
 * eight exact names), and traced functions in executable sections it must leave out.
 *
 *   .text .text.hot .textual        ts_text, ts_text_hot, ts_textual  recorded (".text" prefix)
 *   .init.text .ref.text            ts_init, ts_ref                   recorded
 *   .sched.text .spinlock.text      ts_sched, ts_lock                 recorded
 *   .irqentry.text                  ts_irqentry                       recorded
 *   .softirqentry.text              ts_softirq                        recorded
 *   .kprobes.text .cpuidle.text     ts_kprobe, ts_idle                recorded
 *   .noinstr.text .entry.text       ts_noinstr, ts_entry              not recorded
 *   .init.text.late .sched.textx    ts_init_late, ts_sched_x          not recorded (exact names)
 *   .data.code .exit.text.traced    ts_in_data, ts_exit               not recorded
 *
 * Every function has the same shape (two calls, so it keeps a frame and its _mcount
 * call sits at the same offset in each section): the reference's "+4 after the
 * previous relocation" filter, whose memory leaks across sections, then never fires
 * and its table is right, so the differential tests can compare with it directly.
 */
#include "kdefs.h"

extern void ts_hook(int where, int arg);

#define TS_FN(name, sec, n)                                   \
	__section(sec) noinline void name(int arg)            \
	{                                                     \
		ts_hook(n, arg);                              \
		ts_hook(n + 100, arg + 1);                    \
	}

TS_FN(ts_text,        ".text",               1)
TS_FN(ts_text_hot,    ".text.hot",           2)
TS_FN(ts_textual,     ".textual",            3)
TS_FN(ts_init,        ".init.text",          4)
TS_FN(ts_ref,         ".ref.text",           5)
TS_FN(ts_sched,       ".sched.text",         6)
TS_FN(ts_lock,        ".spinlock.text",      7)
TS_FN(ts_irqentry,    ".irqentry.text",      8)
TS_FN(ts_softirq,     ".softirqentry.text",  9)
TS_FN(ts_kprobe,      ".kprobes.text",      10)
TS_FN(ts_idle,        ".cpuidle.text",      11)
TS_FN(ts_noinstr,     ".noinstr.text",      12)
TS_FN(ts_entry,       ".entry.text",        13)
TS_FN(ts_init_late,   ".init.text.late",    14)
TS_FN(ts_sched_x,     ".sched.textx",       15)
TS_FN(ts_in_data,     ".data.code",         16)
TS_FN(ts_exit,        ".exit.text.traced",  17)
