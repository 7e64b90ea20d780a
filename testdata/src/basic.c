/* SPDX-License-Identifier: MIT */
/*
 * basic.c - ordinary kernel-style code in .text: global and static
 * (local) functions, loops, a switch, calls to extern functions.
 * Every function here is traced (-pg), so each gets one _mcount call.
 */
#include "kdefs.h"

struct list_head {
	struct list_head *next, *prev;
};

struct work_item {
	struct list_head node;
	int state;
	unsigned long data;
	void (*func)(struct work_item *);
};

extern void printk(const char *fmt, ...);
extern void *kmalloc(unsigned long size, unsigned int flags);
extern void kfree(const void *p);
extern void spin_lock(int *lock);
extern void spin_unlock(int *lock);

static int queue_lock;
static struct list_head pending = { &pending, &pending };
unsigned long basic_counter;

static noinline void list_add_tail(struct list_head *n, struct list_head *head)
{
	struct list_head *prev = head->prev;

	n->next = head;
	n->prev = prev;
	prev->next = n;
	head->prev = n;
}

static noinline void list_del(struct list_head *e)
{
	e->next->prev = e->prev;
	e->prev->next = e->next;
	e->next = e;
	e->prev = e;
}

static noinline const char *state_name(int state)
{
	switch (state) {
	case 0: return "idle";
	case 1: return "pending";
	case 2: return "running";
	case 3: return "done";
	case 4: return "cancelled";
	case 5: return "failed";
	default: return "unknown";
	}
}

int queue_work_item(struct work_item *w)
{
	spin_lock(&queue_lock);
	if (w->state == 1) {
		spin_unlock(&queue_lock);
		return 0;
	}
	w->state = 1;
	list_add_tail(&w->node, &pending);
	basic_counter++;
	spin_unlock(&queue_lock);
	return 1;
}

int run_pending(void)
{
	int n = 0;

	spin_lock(&queue_lock);
	while (pending.next != &pending) {
		struct work_item *w = (struct work_item *)pending.next;

		list_del(&w->node);
		w->state = 2;
		spin_unlock(&queue_lock);
		w->func(w);
		spin_lock(&queue_lock);
		w->state = 3;
		n++;
	}
	spin_unlock(&queue_lock);
	return n;
}

unsigned long checksum(const unsigned char *buf, unsigned long len)
{
	unsigned long sum = 0;
	unsigned long i;

	for (i = 0; i < len; i++)
		sum = (sum << 1) ^ buf[i] ^ (sum >> 31);
	return sum;
}

void dump_item(const struct work_item *w)
{
	printk("item %p state %s data %lx\n", w, state_name(w->state), w->data);
}

struct work_item *alloc_item(void (*func)(struct work_item *))
{
	struct work_item *w = kmalloc(sizeof(*w), 0xcc0);

	if (!w)
		return 0;
	w->node.next = &w->node;
	w->node.prev = &w->node;
	w->state = 0;
	w->data = 0;
	w->func = func;
	return w;
}

void free_item(struct work_item *w)
{
	if (w->state == 1)
		list_del(&w->node);
	kfree(w);
}
