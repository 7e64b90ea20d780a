/* SPDX-License-Identifier: MIT */
/*
 * pfe_setmode.c - compiled with -fpatchable-function-entry=3, but set_mode asks for a
 * 2-nop pad with the patchable_function_entry attribute: a pad of the wrong size in a
 * function whose name contains "mode" (issue 13: audit once classed it by the words of
 * its message, as a microMIPS pad in the wrong ISA mode).
 */
int sm_state;

__attribute__((patchable_function_entry(2)))
void set_mode(int m)
{
	sm_state = m;
}

int get_mode(void)
{
	return sm_state;
}

void reset_mode(void)
{
	sm_state = 0;
}

int mode_bits(int m)
{
	return m & 7;
}

int next_mode(int m)
{
	return (m + 1) & 7;
}
