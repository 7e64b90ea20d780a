/* SPDX-License-Identifier: MIT */
/* The few register names mcount_def.S needs (cf. <asm/regdef.h>). */
#ifndef REGDEF_LITE_H
#define REGDEF_LITE_H
#define AT	$1
#define v0	$2
#define v1	$3
#define t0	$12
#define sp	$29
#define ra	$31
#endif
