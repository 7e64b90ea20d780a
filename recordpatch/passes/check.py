"""`recordpatch check`: is the ftrace trampoline aligned as the patchable-entry design needs?

The MIPS DYNAMIC_FTRACE_WITH_REGS design initialises each pad with `lui at,%hi(SYM)` and
then jumps with `jalr at,at`: no `%lo`, so SYM's low 16 bits must be zero, i.e. SYM must be
64 KiB aligned. In a linked image (ET_EXEC) that is SYM's address. In a relocatable
(vmlinux.o, .o) it is only guaranteed if SYM's section asks for at least that alignment
and SYM's offset in it is a multiple of it. Read-only: never opens a file for writing.
"""

from __future__ import annotations

from ..diag import ERROR, Finding
from ..elf import consts as C
from ..errors import RecordpatchError
from ..results import FileReport, Report

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


def check_files(files: list[str], names: list[str] | None = None,
                align: int = DEFAULT_ALIGN) -> Report:
    """`recordpatch check`: each file's trampoline symbols ``names``."""
    from ..elf.reader import ElfFile
    from .pipeline import error_result, read_image

    names = names or [DEFAULT_TRAMPOLINE]
    out = []
    for path in files:
        try:
            elf = ElfFile(read_image(path))
            results, diags = check_elf(elf, names, align)
        except RecordpatchError as exc:
            out.append(error_result(path, exc))
            continue
        bad = any(d.level == ERROR for d in diags)
        out.append(FileReport(path, "findings" if bad else "ok", diags, {"symbols": results}))
    return Report("check", out, {"files": len(out), "ok": sum(not f.failed for f in out)})
