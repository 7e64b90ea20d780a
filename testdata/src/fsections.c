/* SPDX-License-Identifier: MIT */
/*
 * fsections.c - meant for -ffunction-sections (the "fsections" flavour),
 * where every function gets its own .text.<name> section: static, global,
 * weak, cold and notrace functions each end up alone in a section, and a
 * .rel(a).text.<name> section exists for each traced one.
 */
#include "kdefs.h"

extern void *memcpy(void *d, const void *s, unsigned long n);
extern void printk(const char *fmt, ...);
extern int copy_from_user(void *d, const void *s, unsigned long n);

struct packet {
	unsigned int len;
	unsigned int proto;
	unsigned char data[60];
};

int fs_stats[8];

static noinline int proto_index(unsigned int proto)
{
	switch (proto) {
	case 0x0800: return 0;
	case 0x0806: return 1;
	case 0x86dd: return 2;
	case 0x8100: return 3;
	default: return 7;
	}
}

static noinline unsigned int csum_fold_local(const unsigned char *d, unsigned int len)
{
	unsigned int s = 0, i;

	for (i = 0; i + 1 < len; i += 2)
		s += (d[i] << 8) | d[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

int fs_receive(const struct packet *p)
{
	fs_stats[proto_index(p->proto)]++;
	return csum_fold_local(p->data, p->len > 60 ? 60 : p->len) == 0;
}

int fs_copy_in(struct packet *p, const void *ubuf, unsigned long n)
{
	if (n > sizeof(p->data))
		return -22;
	if (copy_from_user(p->data, ubuf, n))
		return -14;
	p->len = n;
	return 0;
}

int __weak fs_filter(const struct packet *p)
{
	return p->proto != 0x8100;
}

void __cold noinline fs_drop(const struct packet *p)
{
	printk("fs: drop proto %x len %u\n", p->proto, p->len);
}

notrace void fs_clone(struct packet *d, const struct packet *s)
{
	memcpy(d, s, sizeof(*d));
}

int fs_forward(struct packet *p)
{
	if (!fs_filter(p)) {
		fs_drop(p);
		return 0;
	}
	return fs_receive(p);
}
