/* SPDX-License-Identifier: MIT */
/* sys.h - two Linux system calls for the freestanding qemu-user test program. */
#ifndef QEMU_SYS_H
#define QEMU_SYS_H
#ifdef __mips64
#define SYS_write 5001
#define SYS_exit 5058
#else
#define SYS_write 4004
#define SYS_exit 4001
#endif

static inline long sys3(long n, long a, long b, long c)
{
	register long v0 __asm__("$2") = n;
	register long a0 __asm__("$4") = a;
	register long a1 __asm__("$5") = b;
	register long a2 __asm__("$6") = c;
	register long a3 __asm__("$7");
	__asm__ volatile("syscall"
			 : "+r"(v0), "=r"(a3)
			 : "r"(a0), "r"(a1), "r"(a2)
			 : "$1", "$3", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
			   "$24", "$25", "hi", "lo", "memory");
	return v0;
}
#endif
