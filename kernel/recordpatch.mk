# Build a Linux kernel (6.1 or 6.12 Kbuild, MIPS) with recordpatch instead of scripts/recordmcount.
# Copy or call as is:
#
#   make -f kernel/recordpatch.mk KDIR=/path/to/linux ARCH=mips CROSS_COMPILE=mipsel-linux-gnu- dropin
#   make -f kernel/recordpatch.mk KDIR=/path/to/linux ARCH=mips CROSS_COMPILE=mips64-linux-gnuabi64- hook
#
# dropin: recordpatch replaces $(KDIR)/scripts/recordmcount; Kbuild runs it once per -pg object.
# hook:   applies kernel/recordpatch-vmlinux-hook-<VERSION.PATCHLEVEL>.patch (once; the version is
#         read from $(KDIR)/Makefile, KERNEL_VERSION=6.12 overrides) and builds with RECORDPATCH set:
#         no object is recorded, `recordpatch vmlinux.o` records the whole kernel once (vmlinux is
#         linked from vmlinux.o) and `recordpatch <module>.ko` each module once it is linked
#         (KBUILD_TARGETS="vmlinux modules"): no per-object recorder runs at all.
# Switching a tree between the two modes needs `make clean` (objects keep what they were built with).
# KBUILD_TARGETS defaults to vmlinux; add modules etc. as needed.

RECORDPATCH_HOME ?= $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
PYTHON           ?= $(if $(wildcard $(RECORDPATCH_HOME)/.venv/bin/python),$(RECORDPATCH_HOME)/.venv/bin/python,python3)
RECORDPATCH      ?= env PYTHONPATH=$(RECORDPATCH_HOME) $(PYTHON) -m recordpatch
KBUILD_TARGETS   ?= vmlinux
JOBS             ?= $(shell nproc)
KDIR             ?= $(error set KDIR to the kernel tree)
KMAKE             = $(MAKE) -C $(KDIR) -j$(JOBS) ARCH=$(ARCH) CROSS_COMPILE=$(CROSS_COMPILE)
# "6.12" from the tree's top Makefile (VERSION = 6, PATCHLEVEL = 12)
ifndef KERNEL_VERSION
KERNEL_VERSION   := $(shell sed -n 's/^VERSION = //p; s/^PATCHLEVEL = //p' $(KDIR)/Makefile 2>/dev/null | paste -sd.)
endif
HOOK_PATCH        = $(RECORDPATCH_HOME)/kernel/recordpatch-vmlinux-hook-$(KERNEL_VERSION).patch

.PHONY: dropin hook
dropin:
	$(KMAKE) scripts
	@# a fresh file (newer than recordmcount.c, so Kbuild does not rebuild it over ours)
	printf '#!/bin/sh\nexec %s "$$@"\n' '$(RECORDPATCH_HOME)/scripts/recordmcount' > $(KDIR)/scripts/recordmcount
	chmod +x $(KDIR)/scripts/recordmcount
	$(KMAKE) $(KBUILD_TARGETS)

hook:
	@test -f $(HOOK_PATCH) || { echo "recordpatch.mk: no hook patch for Linux $(KERNEL_VERSION)" \
		"(have: $(notdir $(wildcard $(RECORDPATCH_HOME)/kernel/recordpatch-vmlinux-hook-*.patch)))" >&2; exit 1; }
	patch -d $(KDIR) -p1 -R --dry-run -s -f < $(HOOK_PATCH) \
		>/dev/null 2>&1 || patch -d $(KDIR) -p1 < $(HOOK_PATCH)
	$(KMAKE) $(KBUILD_TARGETS) RECORDPATCH='$(RECORDPATCH)'
