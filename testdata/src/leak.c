/* SPDX-License-Identifier: MIT */
/*
 * leak.c - the shape of a real module (Linux 6.1 net/appletalk/sysctl_net_atalk.o) on
 * which recordmcount's "+4 after the previous relocation" filter, whose memory is not
 * reset between sections, drops a real call:
 *
 *   .text        table_exit: no frame, so the _mcount sequence starts at offset 0 and
 *                its last relocation against _mcount sits at 4 (module flavour: the
 *                %lo of `lui v1,%hi(_mcount)`; kernel flavour: `jal _mcount` after
 *                `move at,ra`)
 *   .init.text   table_init: a two-instruction prologue, then the call sequence at 8,
 *                4 bytes after the previous section's last one: the reference drops it.
 *
 * With GCC 12.2 the module flavours (-mlong-calls) hit it on every target; the kernel
 * flavours (jal) do not, and serve as the control (fsections.c hits it with jal).
 */
#include "kdefs.h"

struct table;
extern struct table *register_table(const char *path, void *entries);
extern void unregister_table(struct table *t);

static struct table *header;
static int entries[4];

void table_exit(void)
{
	unregister_table(header);
}

int __init table_init(void)
{
	header = register_table("net/leak", entries);
	if (!header)
		return -12;
	return 0;
}
