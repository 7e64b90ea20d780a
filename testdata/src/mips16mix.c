/* A MIPS32 -pg object with a MIPS16 function in it (issue 12). GCC cannot profile MIPS16
 * code ("sorry, unimplemented: mips16 function profiling"; clang 14 crashes), so the
 * MIPS16 function is notrace: its code sits between traced MIPS32 functions, which must
 * be recorded as usual, and no word of it may be taken for a call. */
#include "kdefs.h"

int m16_total;

__attribute__((mips16, no_instrument_function)) int m16_scale(int x)
{
	m16_total += x;
	return x * 5 + 3;
}

__attribute__((nomips16)) int m32_before(int x)
{
	return m16_scale(x) + 1;
}

__attribute__((nomips16)) int m32_after(int x)
{
	return m16_scale(x - 1) * 2;
}
