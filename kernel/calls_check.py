#!/usr/bin/env python3
"""kernel-e2e: check a linked kernel's ftrace table against GNU binutils, not recordpatch.

    calls_check.py CROSS_PREFIX VMLINUX [CORPUS_DIR OBJLIST]

1. Every `jal _mcount` in vmlinux, as GNU objdump decodes it, against the table between
   __start_mcount_loc and __stop_mcount_loc (kernel/mcount_table.py): an entry that is not
   such a call would make ftrace patch other code; a call with no entry is a lost call.
2. With a corpus (the objects as compiled, before recording, and the list of those Kbuild
   recorded): the sections that hold only weak functions and no section symbol, the shape
   recordmcount rejects ("Cannot find symbol for section"), read with GNU readelf. For each
   such weak function that survives in vmlinux (`nm`: W), the table must have an entry inside
   it; one that a strong definition replaced is counted (its copy is dead code; any entry there
   still has to be a `jal _mcount`, which check 1 covers).

Prints a summary; writes nothing. Exit 1 if an entry is not a call or a kept weak function has
no entry. Standard library and binutils only.
"""
from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mcount_table import table  # noqa: E402

JAL = re.compile(r"^\s*([0-9a-f]+):\s+jal\s+([0-9a-f]+)\b")


def mcount_calls(cross: str, vmlinux: str, mcount: int) -> set[int]:
    """Addresses of the `jal` instructions whose target is _mcount's address (objdump may
    name the target by another symbol there: ftrace_caller shares it on MIPS)."""
    p = subprocess.Popen([cross + "objdump", "-d", "--no-show-raw-insn", vmlinux],
                         stdout=subprocess.PIPE, text=True, bufsize=1 << 20)
    calls = set()
    for line in p.stdout:
        if "\tjal\t" in line:
            m = JAL.match(line)
            if m and int(m.group(2), 16) == mcount:
                calls.add(int(m.group(1), 16))
    if p.wait() != 0:
        raise SystemExit(f"{cross}objdump failed on {vmlinux}")
    return calls


def symbols(cross: str, vmlinux: str) -> dict[str, list[tuple[str, int, int]]]:
    """name -> [(nm type, address, size)]."""
    out = subprocess.run([cross + "nm", "-S", vmlinux], capture_output=True, text=True,
                         check=True).stdout
    syms: dict[str, list] = {}
    for line in out.splitlines():
        f = line.split()   # ADDR [SIZE] TYPE NAME: assembler labels have no size
        if len(f) == 4:
            syms.setdefault(f[3], []).append((f[2], int(f[0], 16), int(f[1], 16)))
        elif len(f) == 3 and f[1] not in "Uuvw":
            syms.setdefault(f[2], []).append((f[1], int(f[0], 16), 0))
    return syms


def weak_only_sections(cross: str, path: str) -> list[tuple[str, list[str]]]:
    """[(section name, [weak function names])] of the sections with a call to _mcount, only
    weak symbols and no section symbol, read with `readelf -SW -sW -rW`."""
    out = subprocess.run([cross + "readelf", "-SW", "-sW", "-rW", path], capture_output=True,
                         text=True, check=True).stdout
    # sections with a relocation against _mcount (a -pg call): .rel<name> / .rela<name>
    called = set()
    for block in out.split("\nRelocation section '")[1:]:
        if re.search(r"\s_mcount\b", block.split("\n\n")[0]):
            called.add(re.sub(r"^\.rela?", "", block.split("'", 1)[0]))
    names = {}
    for m in re.finditer(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+PROGBITS\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S*X\S*)",
                         out, re.M):
        names[int(m.group(1))] = m.group(2)
    weak: dict[int, list[str]] = {}
    other: set[int] = set()
    for m in re.finditer(r"^\s*\d+:\s+[0-9a-f]+\s+\d+\s+(\w+)\s+(\w+)\s+\w+\s+(\d+)\s*(\S*)",
                         out, re.M):
        typ, bind, ndx, name = m.group(1), m.group(2), int(m.group(3)), m.group(4)
        if bind == "WEAK" and typ == "FUNC":
            weak.setdefault(ndx, []).append(name)
        else:
            other.add(ndx)
    return [(names[i], fs) for i, fs in sorted(weak.items())
            if i in names and i not in other and names[i] in called]


def main(argv) -> int:
    if len(argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    cross, vmlinux = argv[0], argv[1]
    t = table(vmlinux)
    entries = t["_addrs"]
    # nm prints a 32-bit kernel's addresses sign-extended to 64 bits
    mask = (1 << (64 if t["_elf"].is64 else 32)) - 1
    syms = {n: [(ty, a & mask, z) for ty, a, z in v] for n, v in symbols(cross, vmlinux).items()}
    calls = mcount_calls(cross, vmlinux, syms["_mcount"][0][1])
    eset = set(entries)
    not_calls = sorted(eset - calls)
    lost = sorted(calls - eset)
    bad = 0
    print(f"{vmlinux}: {len(entries)} table entries ({len(eset)} distinct), "
          f"{len(calls)} `jal _mcount` (GNU objdump, nm); entries that are calls: {len(eset & calls)}")
    named = dict(zip(entries, t["_named"]))
    if not_calls:
        bad = 1
        print(f"  entries that are NOT a jal _mcount: {len(not_calls)}: "
              + ", ".join(f"{a:#x} ({named[a]})" for a in not_calls[:10]))
    code = sorted((a, n) for n, v in syms.items() for ty, a, _ in v if ty in "TtWw")
    addrs = [a for a, _ in code]

    def where(a):
        i = bisect.bisect_right(addrs, a) - 1
        return f"{code[i][1]}+{a - code[i][0]:#x}" if i >= 0 else "?"

    print(f"  calls with no entry: {len(lost)}" + (": " + ", ".join(
        f"{a:#x} ({where(a)})" for a in lost[:10]) if lost else ""))
    if len(argv) == 4:
        corpus, objlist = argv[2], argv[3]
        objs = [ln.split()[-1] for ln in open(objlist) if ln.strip()]
        nsec = kept = overridden = missing = 0
        files = set()
        for o in objs:
            for sec, funcs in weak_only_sections(cross, os.path.join(corpus, o)):
                nsec += 1
                files.add(o)
                for f in funcs:
                    defs = syms.get(f, [])
                    weak = [d for d in defs if d[0] in "Ww"]
                    if weak and len(defs) == 1:
                        kept += 1
                        _, a, size = weak[0]
                        if not any(a <= e < a + size for e in eset):
                            missing += 1
                            print(f"  kept weak {f} ({o} {sec}) at {a:#x}: NO table entry")
                    else:
                        overridden += 1
        print(f"  weak-only sections (no section symbol, readelf): {nsec} in {len(files)} "
              f"objects; weak functions kept in vmlinux: {kept}, each with a table entry: "
              f"{kept - missing}; replaced by a strong definition: {overridden}")
        bad |= missing > 0
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
