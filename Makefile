# recordpatch — top-level targets. `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
RP     := $(VENV)/bin/recordpatch
DEMO   := build/demo

.PHONY: all venv demo test test-fast fixtures bench clean

all: test

# Byte-compile the package every time (cheap): with PYTHONDONTWRITEBYTECODE set, as on some build
# machines, each Kbuild call would otherwise recompile recordpatch from source (~35 ms).
venv: $(VENV)/.installed
	@$(PY) -m compileall -q recordpatch
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

# Record one bundled kernel object and one module object, and show what was recorded.
demo: venv
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@cp testdata/fixtures/mipsel/kernel/basic.o $(DEMO)/kernel-basic.o
	@cp testdata/fixtures/mips64/module/basic.o $(DEMO)/module-basic.o
	@echo "== what would be recorded (--dry-run)"
	$(RP) record --dry-run $(DEMO)/kernel-basic.o $(DEMO)/module-basic.o
	@echo "== record in place"
	$(RP) record $(DEMO)/kernel-basic.o $(DEMO)/module-basic.o
	@echo "== the tables now in the objects"
	@for f in $(DEMO)/*.o; do \
	  if command -v mips-linux-gnu-readelf >/dev/null; then \
	    mips-linux-gnu-readelf -rW $$f | sed -n '/__mcount_loc/,/^$$/p'; \
	  else $(PY) -c "import sys; from elftools.elf.elffile import ELFFile; \
	    e = ELFFile(open(sys.argv[1], 'rb')); s = e.get_section_by_name('__mcount_loc'); \
	    print(sys.argv[1], '__mcount_loc', s['sh_size'], 'bytes')" $$f; fi; done
	@echo "== a second run leaves them alone"
	$(RP) record $(DEMO)/kernel-basic.o

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

# Rebuild the committed fixtures with the Debian cross compilers.
fixtures:
	$(MAKE) -C testdata fixtures

# With a kernel build from `make kernel-e2e` present, B2 uses its objects and B3 its vmlinux.o.
KBUILD_WORK ?= /work/kbuild
BENCH_ARGS ?= $(if $(wildcard $(KBUILD_WORK)/corpus-mipsel),--corpus $(KBUILD_WORK)/corpus-mipsel --batch 0) \
  $(if $(wildcard $(KBUILD_WORK)/vmlinux-*-notable.o),$(foreach v,$(wildcard $(KBUILD_WORK)/vmlinux-*-notable.o),--large $(v)) \
  $(foreach f,$(wildcard testdata/fixtures/mipsel/manysec/manysec.o.xz testdata/fixtures/mips64el/manysec/manysec.o.xz),--large $(f)))
bench: venv
	$(PY) scripts/bench.py $(BENCH_ARGS) --out docs/benchmarks-latest.md

clean:
	rm -rf build $(VENV) .pytest_cache mutants

# Real-kernel end-to-end check (issue 5), not part of `make test`: builds Debian's linux-source-6.1
# (malta_defconfig + ftrace) with the reference recordmcount, with recordpatch per object and with
# the `recordpatch vmlinux.o` hook; compares the ftrace tables and boots each in QEMU.
# ~25 min on 2 cores the first time (one full build), a few minutes after. See docs/kernel-e2e.md.
# On a fresh Debian machine it first installs what the variant needs (apt-get; kernel/e2e-setup.sh)
# and says how long it will take; then `make venv`, then the run.
#   make kernel-e2e [KERNEL_E2E_ARCH=mips64] [KERNEL_VERSION=6.12] [KERNEL_E2E_WORK=/work/kbuild] [STEPS=modules]
#                   [KERNEL_E2E_TOOLCHAIN=llvm] [KERNEL_E2E_DCE=1]
# KERNEL_VERSION=6.12 builds Debian's linux-source-6.12 instead (own trees and results in WORK).
KERNEL_E2E_ARCH ?= mipsel
KERNEL_E2E_WORK ?= /work/kbuild
KERNEL_VERSION ?= 6.1
# KERNEL_E2E_TOOLCHAIN=llvm: clang/lld (`make LLVM=1`) with dead-code elimination, which the
# reference cannot build (issue 15); KERNEL_E2E_DCE=1: GCC with the same dead-code elimination
KERNEL_E2E_TOOLCHAIN ?= gcc
KERNEL_E2E_DCE ?= 0
KERNEL_E2E_ENV = E2E_ARCH=$(KERNEL_E2E_ARCH) WORK=$(KERNEL_E2E_WORK) KERNEL_VERSION=$(KERNEL_VERSION) \
  E2E_TOOLCHAIN=$(KERNEL_E2E_TOOLCHAIN) E2E_DCE=$(KERNEL_E2E_DCE)
.PHONY: kernel-e2e
# KERNEL_E2E_ARCH=mipsel-pfe|mips64-pfe: the -fpatchable-function-entry kernels (kernel/pfe/,
# docs/kernel-pfe.md): built with our MIPS patch series, repaired and checked by recordpatch,
# audited, pre-patched and booted, with the unrepaired and misaligned controls.
KERNEL_E2E_PFE = $(filter %-pfe,$(KERNEL_E2E_ARCH))
kernel-e2e:
	$(if $(KERNEL_E2E_PFE),,$(KERNEL_E2E_ENV) E2E_SETUP_ONLY=1 bash kernel/e2e.sh)
	$(MAKE) venv
	$(KERNEL_E2E_ENV) E2E_SETUP=0 RECORDPATCH=$(abspath $(RP)) \
	  bash kernel/$(if $(KERNEL_E2E_PFE),pfe-e2e.sh,e2e.sh)

# Whole-build cost (issue 14): a tree of its own built from clean (`make vmlinux modules`) with
# the reference recordmcount, recordpatch's drop-in and the hook, COST_RUNS rounds interleaved,
# wall and CPU seconds; then each per-object recorder alone on the objects `make kernel-e2e`
# (with STEPS=modules) kept for the same target. kernel/build-cost.sh; docs/benchmarks.md.
# ~17 min per build on 2 cores (6.12 mipsel): ~1 h 45 min for COST_RUNS=2.
COST_RUNS ?= 2
# COST_ACCT=1: the kernel's process accounting per build (package acct): CPU by command name
COST_ACCT ?= 0
.PHONY: kernel-cost
kernel-cost:
	$(KERNEL_E2E_ENV) E2E_SETUP_ONLY=1 bash kernel/e2e.sh
	$(MAKE) venv
	$(KERNEL_E2E_ENV) RUNS=$(COST_RUNS) ACCT=$(COST_ACCT) RECORDPATCH=$(abspath $(RP)) \
	  bash kernel/build-cost.sh

# Patch the bundled qemu-user test program (testdata/qemu/) and show function fb before and
# after, disassembled, and what the program prints in each state (issue 4).
DEMO_PATCH := build/demo-patch
DEMO_OBJDUMP := $(firstword $(shell command -v mipsel-linux-gnu-objdump 2>/dev/null) false)
.PHONY: demo-patch
demo-patch: venv
	@rm -rf $(DEMO_PATCH) && mkdir -p $(DEMO_PATCH)
	@xz -dc testdata/qemu/fixtures/mipsel/prog3.xz > $(DEMO_PATCH)/prog3 && chmod +x $(DEMO_PATCH)/prog3
	@xz -dc testdata/qemu/fixtures/mipsel/prog4.xz > $(DEMO_PATCH)/prog4 && chmod +x $(DEMO_PATCH)/prog4
	$(RP) patch -v $(DEMO_PATCH)/prog3 -o $(DEMO_PATCH)/prog3-call --state call
	$(RP) patch -v $(DEMO_PATCH)/prog4 -o $(DEMO_PATCH)/prog4-redirect --state redirect --target fb_prime --only fb
	@for f in prog3 prog3-call prog4-redirect; do \
	  echo "== $$f: fb"; \
	  $(DEMO_OBJDUMP) -d -z --no-show-raw-insn --disassemble=fb $(DEMO_PATCH)/$$f | sed -n '/<fb>:/,$$p'; \
	  if command -v qemu-mipsel >/dev/null; then echo "   runs: $$(qemu-mipsel $(DEMO_PATCH)/$$f)"; fi; \
	done

# Mutation testing (issue 12), not part of `make test`: mutmut (PyPI) over the MIPS rules, the
# record pass and audit, with the fast tests of [tool.mutmut] in pyproject.toml and the CLI run
# in-process so that mutmut sees it. Results stay in mutants/ (`mutmut results`, `mutmut show
# NAME`); score and survivors: docs/testing.md. MUTATE_JOBS=2 suits a 2-core machine.
# MUTATE_NAMES narrows the run to mutant names (mutmut's globs), e.g. one file:
#   make mutate MUTATE_NAMES='recordpatch.arch.mips.*'
MUTATE_JOBS ?= 2
MUTATE_TARGETS ?= mipsel,mips64,mipsr6
MUTATE_NAMES ?=
.PHONY: mutate
mutate: venv
	$(PY) -m pip install -q 'mutmut>=3.8,<4'
	RECORDPATCH_TESTS_IN_PROCESS=1 RECORDPATCH_TESTS_TARGETS=$(MUTATE_TARGETS) nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE_NAMES)
	$(VENV)/bin/mutmut results

# Fuzz every command on mutated fixtures of all five targets (tests/fuzz/, issue 6): at least
# FUZZ_CASES inputs, stopping after FUZZ_SECONDS; figures into docs/reliability.md. Exit 1 on
# any traceback, hang, memory blow-up or changed input. `make test` runs a 300-case version.
FUZZ_CASES ?= 10000
FUZZ_SECONDS ?= 1200
FUZZ_SEED ?= 1
FUZZ_MANYSEC ?= 24
.PHONY: fuzz
fuzz: venv
	PYTHONPATH=tests $(PY) -m fuzz --cases $(FUZZ_CASES) --seconds $(FUZZ_SECONDS) \
	  --seed $(FUZZ_SEED) --manysec $(FUZZ_MANYSEC) --report docs/reliability.md
