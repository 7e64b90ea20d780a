"""`recordpatch check`: is the ftrace trampoline aligned as the patchable-entry design needs?

The MIPS DYNAMIC_FTRACE_WITH_REGS design initialises each pad with `lui at,%hi(SYM)` and
then jumps with `jalr at,at`: no `%lo`, so SYM's low 16 bits must be zero, i.e. SYM must be
64 KiB aligned. In a linked image (ET_EXEC) that is SYM's address. In a relocatable
(vmlinux.o, .o) it is only guaranteed if SYM's section asks for at least that alignment
and SYM's offset in it is a multiple of it. Read-only: never opens a file for writing.
"""

from __future__ import annotations

import json
import sys

from ..diag import ERROR, WARNING, Finding, emit
from ..elf import consts as C
from ..errors import EXIT_FAIL, EXIT_OK, RecordpatchError

DEFAULT_TRAMPOLINE = "ftrace_regs_caller"
DEFAULT_ALIGN = 65536


def _fix(align: int) -> str:
    log2 = align.bit_length() - 1
    return (f"put `.align {log2}` (.balign {align}) right before the symbol and give its "
            f"section an alignment of at least {align} bytes (a `.balign {align}` in it, or "
            "ALIGN() in the linker script) so that the link keeps it")


def check_elf(elf, names: list[str], align: int) -> tuple[list[dict], list[Finding]]:
    """Per symbol: a result dict and diagnostics (ERROR for each failed requirement)."""
    if elf.machine != C.EM_MIPS:
        raise RecordpatchError(f"wrong machine: e_machine {elf.machine}, expected EM_MIPS (8)")
    if elf.symtab is None:
        raise RecordpatchError("no symbol table (stripped?): cannot find the trampoline")
    linked = elf.type in (C.ET_EXEC, C.ET_DYN)
    defs: dict[str, list] = {n: [] for n in names}
    for s in elf.symtab:
        if s.name in defs and s.section:
            defs[s.name].append(s)
    results, diags = [], []
    for name in names:
        syms = defs[name]
        if not syms:
            diags.append(Finding(ERROR, "undefined", "symbol not defined in this file",
                                 function=name))
            results.append({"symbol": name, "found": False, "ok": False})
            continue
        sym = syms[0]
        value = sym.value & ~1  # microMIPS symbols carry the ISA bit
        sec = elf.section(sym.section, f"{name}'s section")  # st_shndx may be out of range
        res = {"symbol": name, "found": True, "section": sec.name, "required": align}
        problems = []
        if linked:
            res["address"] = value
            if value % align:
                problems.append(f"at {value:#x}, not {align}-byte aligned ({value % align:#x} past "
                                f"the boundary): {_fix(align)}")
            if value & 0xFFFF:
                hi = ((value + 0x8000) >> 16) & 0xFFFF
                problems.append(f"lui at,%hi({name}) alone gives {hi << 16:#x}, not {value:#x}: "
                                f"the low 16 bits ({value & 0xFFFF:#06x}) are not zero")
        else:
            res["offset"] = value
            res["section_align"] = sec.addralign
            if sec.addralign < align:
                problems.append(f"in section {sec.name} aligned to {sec.addralign} byte"
                                f"{'s' * (sec.addralign != 1)}, less than the required {align}: the "
                                f"linker may place it at any {max(sec.addralign, 1)}-byte boundary; "
                                f"{_fix(align)}")
            if value % align:
                problems.append(f"at {sec.name}+{value:#x}, not a multiple of {align}: "
                                f"{_fix(align)}")
            guaranteed = min(sec.addralign or 1, value & -value if value else 1 << 62)
            if guaranteed < 65536 and align >= 65536:
                pass  # the %hi reach follows from the failures above
            elif guaranteed < 65536:
                problems.append(f"lui at,%hi({name}) alone reaches it only if it is 64 KiB "
                                f"aligned; here only {guaranteed}-byte alignment is guaranteed")
        for p in problems:
            diags.append(Finding(ERROR, "misaligned", p, function=name))
        res["ok"] = not problems
        results.append(res)
    return results, diags


def run_check(ns) -> int:
    from ..elf.reader import ElfFile
    from .pipeline import read_input

    names = ns.trampoline or [DEFAULT_TRAMPOLINE]
    failed = False
    out = []
    for path in ns.files:
        try:
            data, _ = read_input(path)
            elf = ElfFile(data)
            results, diags = check_elf(elf, names, ns.align)
        except RecordpatchError as exc:
            results, diags = [], [Finding(ERROR, "error", str(exc))]
        emit(path, diags, min_level=WARNING)
        failed |= any(d.level == ERROR for d in diags)
        if ns.json:
            out.append({"path": path, "symbols": results,
                        "diagnostics": [d.as_dict() for d in diags]})
        else:
            for r in results:
                if r.get("ok"):
                    where = (f"{r['address']:#x}" if "address" in r
                             else f"{r['section']}+{r['offset']:#x} (section aligned to "
                             f"{r['section_align']})")
                    print(f"{path}: {r['symbol']}: {where}: {r['required']}-byte aligned, ok")
    if ns.json:
        json.dump({"files": out}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_FAIL if failed else EXIT_OK
