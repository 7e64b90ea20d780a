// SPDX-License-Identifier: GPL-2.0
/*
 * /init of the kernel-e2e trace boot (kernel/pfe-e2e.sh, step "trace").
 *
 * Runs as PID 1 from an initramfs and drives ftrace through tracefs, the way a
 * user would with a shell, so that the boot log shows real trace lines for one
 * built-in function and one module function whose pads recordpatch repaired:
 *
 *   dev_get_stats       net/core/dev.c, built in
 *   dummy_get_stats64   drivers/net/dummy.c, loaded here from /dummy.ko
 *
 * Reading /proc/net/dev calls dev_get_stats() for every device, which calls
 * the dummy0 device's ndo_get_stats64.  Both tracers are exercised: "function"
 * (the pad calls ftrace_regs_caller, which calls the ops) and "function_graph"
 * (the return address is hooked through the saved ra).
 *
 * Statically linked against the cross glibc, so one program serves every
 * target, including big-endian MIPS64 for which Debian has no user space.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TRACING "/tracing"
#define FILTER "dev_get_stats dummy_get_stats64"

static int failures;

static void say(const char *what, int ok)
{
	printf("trace-init: %s: %s%s%s\n", what, ok ? "ok" : "FAILED",
	       ok ? "" : ": ", ok ? "" : strerror(errno));
	if (!ok)
		failures++;
}

static int put(const char *file, const char *text)
{
	size_t left = strlen(text);
	char path[128];
	ssize_t n = 0;
	int fd;

	snprintf(path, sizeof(path), TRACING "/%s", file);
	fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return 0;
	/* set_ftrace_filter takes one word per write(), as a shell's echo loops */
	while (left && (n = write(fd, text, left)) > 0) {
		text += n;
		left -= n;
	}
	close(fd);
	return left == 0;
}

/* Copy a file to the console between two marker lines the harness greps. */
static void dump(const char *path, const char *tag)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	printf("trace-init: ---- begin %s ----\n", tag);
	fflush(stdout);
	if (fd >= 0) {
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(1, buf, n) != n)
				break;
		close(fd);
	}
	printf("trace-init: ---- end %s ----\n", tag);
	fflush(stdout);
}

static void read_net_dev(void)
{
	char buf[4096];
	int i, fd;

	for (i = 0; i < 3; i++) {
		fd = open("/proc/net/dev", O_RDONLY);
		if (fd < 0)
			continue;
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
}

static void run_tracer(const char *tracer)
{
	char tag[64];

	say("current_tracer=nop", put("current_tracer", "nop"));
	say("trace cleared", put("trace", ""));
	snprintf(tag, sizeof(tag), "current_tracer=%s", tracer);
	say(tag, put("current_tracer", tracer));
	snprintf(tag, sizeof(tag), "enabled_functions %s", tracer);
	dump(TRACING "/enabled_functions", tag);
	say("tracing_on=1", put("tracing_on", "1"));
	read_net_dev();
	say("tracing_on=0", put("tracing_on", "0"));
	snprintf(tag, sizeof(tag), "trace %s", tracer);
	dump(TRACING "/trace", tag);
}

int main(void)
{
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("trace-init: start\n");
	mkdir("/proc", 0755);
	mkdir(TRACING, 0755);
	say("mount proc", mount("proc", "/proc", "proc", 0, NULL) == 0);
	say("mount tracefs", mount("tracefs", TRACING, "tracefs", 0, NULL) == 0);

	fd = open("/dummy.ko", O_RDONLY | O_CLOEXEC);
	say("finit_module dummy.ko",
	    fd >= 0 && syscall(SYS_finit_module, fd, "", 0) == 0);
	if (fd >= 0)
		close(fd);

	dump("/proc/net/dev", "/proc/net/dev");
	say("set_ftrace_filter=" FILTER, put("set_ftrace_filter", FILTER));
	dump(TRACING "/set_ftrace_filter", "set_ftrace_filter");
	run_tracer("function");
	run_tracer("function_graph");
	say("current_tracer=nop", put("current_tracer", "nop"));

	printf("trace-init: done, %d failure(s)\n", failures);
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
