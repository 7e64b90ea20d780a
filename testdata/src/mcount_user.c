/* SPDX-License-Identifier: MIT */
/*
 * mcount_user.c - like arch/mips/kernel/ftrace.c and kernel/trace/ftrace.c:
 * built WITHOUT -pg, it refers to _mcount only by address.  The compiler
 * materialises &_mcount with lui/addiu (R_MIPS_HI16 + R_MIPS_LO16 against
 * _mcount; with -mlong-calls too).  None of these are calls, so none of
 * them should end up in __mcount_loc.
 */
#include "kdefs.h"

extern void _mcount(void);
extern void ftrace_caller(void);
extern int ftrace_modify_code(unsigned long ip, unsigned int new_code);
extern int ftrace_graph_active;

#define MCOUNT_ADDR	((unsigned long)(_mcount))
#define FTRACE_ADDR	((unsigned long)(ftrace_caller))
#define INSN_NOP	0x00000000u
#define INSN_B_1F	(0x10000000u | 4)
#define JAL		0x0c000000u
#define ADDR_MASK	0x03ffffffu

struct dyn_ftrace {
	unsigned long ip;
	unsigned long flags;
};

static unsigned int insn_jal_mcount;

unsigned long mcount_addr(void)
{
	return (unsigned long)&_mcount;
}

int is_mcount_addr(unsigned long addr)
{
	if (addr == (unsigned long)_mcount)
		return 1;
	return addr == FTRACE_ADDR;
}

void ftrace_dyn_arch_init_insns(void)
{
	insn_jal_mcount = JAL | ((MCOUNT_ADDR >> 2) & ADDR_MASK);
}

int ftrace_make_nop(void *mod, struct dyn_ftrace *rec, unsigned long addr)
{
	unsigned int new;

	if (addr != MCOUNT_ADDR && addr != FTRACE_ADDR)
		return -22;
	new = mod ? INSN_B_1F : INSN_NOP;
	return ftrace_modify_code(rec->ip, new);
}

int ftrace_make_call(struct dyn_ftrace *rec, unsigned long addr)
{
	unsigned int new;

	switch (ftrace_graph_active) {
	case 0:
		new = JAL | ((addr >> 2) & ADDR_MASK);
		break;
	default:
		new = insn_jal_mcount;
		break;
	}
	return ftrace_modify_code(rec->ip, new);
}
