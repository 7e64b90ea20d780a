"""Run a pass over one file: read, plan, write (or not). Returns a result, never raises
for a problem with the file itself: those become an error result for the CLI to print."""

from __future__ import annotations

import os
import stat
from collections import namedtuple

from ..diag import ERROR, Diagnostic
from ..errors import RecordpatchError


class FileResult(namedtuple("FileResult", "path status diagnostics info")):
    __slots__ = ()
    # status: "recorded", "no-sites", "already", "dry-run", "error"
    # info: JSON-ready description of what was (or would be) done

    @property
    def failed(self) -> bool:
        return self.status == "error"


def read_input(path: str) -> tuple[bytes, os.stat_result]:
    """The whole file, refusing anything but a regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise RecordpatchError(f"cannot open: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise RecordpatchError(f"{kind}; refusing to read it")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RecordpatchError(f"cannot read: {exc.strerror}") from None
    return data, st


def error_result(path: str, exc: Exception) -> FileResult:
    return FileResult(path, "error", [Diagnostic(ERROR, str(exc))], {"path": path, "status": "error",
                                                                    "error": str(exc)})


def record_one(path: str, dry_run: bool = False, warn_ignored: bool = False, quirks: bool = False,
               describe: bool = False) -> FileResult:
    """`record` on one file. ``describe`` adds per-site detail to ``info``."""
    from ..elf.reader import ElfFile
    from ..elf.writer import append_sections, check_writable, write_atomic
    from . import record

    try:
        data, st = read_input(path)
        elf = ElfFile(data)
        p = record.plan(elf, warn_ignored, quirks)
        if p.already:
            status = "already"
        elif not p.entries:
            status = "no-sites"
        elif dry_run:
            status = "dry-run"
        else:
            status = "recorded"
        info = {"path": path, "status": status, "abi": p.abi.name,
                "endian": "little" if elf.endian == "<" else "big",
                "reloc": "RELA" if p.rela else "REL", "sites": len(p.entries),
                "ignored": len(p.ignored)}
        if describe:
            info["entries"] = site_details(elf, p)
        if status == "recorded":
            check_writable(path)
            write_atomic(path, append_sections(elf, p.new_sections), st.st_mode, expect=st)
        return FileResult(path, status, p.diagnostics, info)
    except RecordpatchError as exc:
        return error_result(path, exc)
    except MemoryError:
        return error_result(path, RecordpatchError("out of memory reading this file"))


def site_details(elf, p) -> list[dict]:
    """Per entry: section, offset, kind, enclosing function, base symbol and addend."""
    from bisect import bisect_right

    from ..elf import consts as C
    syms = elf.symtab
    funcs: dict[int, list[tuple[int, int]]] = {}
    wanted = {e.site.section for e in p.entries}
    if syms is not None:
        for i, value, info, shndx in syms.iter_raw():
            if shndx in wanted and info & 0xF == C.STT_FUNC:
                funcs.setdefault(shndx, []).append((value, i))
    starts: dict[int, list[int]] = {}
    for sec, lst in funcs.items():
        lst.sort()
        starts[sec] = [v for v, _ in lst]
    out = []
    for e in p.entries:
        fn = ""
        k = bisect_right(starts.get(e.site.section, ()), e.site.offset) - 1
        if k >= 0:
            value, i = funcs[e.site.section][k]
            fn = f"{syms[i].name}+{e.site.offset - value:#x}"
        base = syms[e.sym]
        out.append({"section": e.site.section_name, "offset": e.site.offset,
                    "kind": e.site.kind, "function": fn,
                    "symbol": base.name or elf.sections[base.section].name,
                    "addend": e.addend})
    return out
