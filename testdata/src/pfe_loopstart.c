/* SPDX-License-Identifier: MIT */
/*
 * pfe_loopstart.c - functions that open with a loop: on n64 GCC 12 starts their bodies
 * with a nop (as in Linux 6.1 drivers/pci/host-bridge.o), so the nop run from a pad is one
 * longer than the pad. Half of the functions here are like that: the pad size N must not
 * be read as the most common run.
 */
struct node { struct node *parent; long v; };

struct node *pl_root(struct node *n)
{
	while (n->parent)
		n = n->parent;
	return n;
}

struct node *pl_first(struct node *n)
{
	while (n->parent && n->v)
		n = n->parent;
	return n;
}

long pl_value(struct node *n)
{
	return n->v * 3;
}

void pl_set(struct node *n, long v)
{
	n->v = v;
}
