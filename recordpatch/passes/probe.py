"""`recordpatch probe-cc CC [FLAGS...]`: can this compiler build MIPS patchable entries?

Kconfig's `cc-option` compiles /dev/null, which has no function, so it cannot see the MIPS
defects of -fpatchable-function-entry. This probe compiles and assembles real functions
with the given compiler and flags and inspects the objects with the same checks `record`
applies (passes/patchable.py):

* PR93242 (fixed in GCC 10): the assembler rejects the pad (`%(nop%)` printed raw);
* PR99217: the whole pad before the function label (callers never run it);
* SHF_LINK_ORDER: with -ffunction-sections every `__patchable_function_entries` section is
  linked to the first function's section;
* microMIPS: pads emitted in the ISA mode of the function before.

The report says which defects make the option unusable for the design (pads executed at
function entry); exit 0 only if none does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ..diag import ERROR, WARNING, Finding
from ..errors import RecordpatchError
from ..results import FileReport, Report

SOURCE = """\
extern int probe_ext(int x);
int probe_first(int x) { return probe_ext(x) + 1; }
int probe_second(int x) { return probe_first(x) * 3; }
"""
ISA_SOURCE = """\
__attribute__((noinline)) int probe_mips(int x) { return x + 1; }
__attribute__((noinline, micromips)) int probe_micro(int x) { return x * 3; }
__attribute__((noinline)) int probe_after(int x) { return probe_micro(x) + probe_mips(x); }
"""
_PFE = re.compile(r"^-fpatchable-function-entry=(\d+)(?:,(\d+))?$")


def _compile(cc: str, flags: list[str], src: str, out: str, tmp: str, name: str):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(src)
    try:
        return subprocess.run([cc, *flags, "-c", path, "-o", out], capture_output=True,
                              text=True, timeout=120)
    except FileNotFoundError:
        raise RecordpatchError(f"cannot run {cc}: not found") from None
    except OSError as exc:
        raise RecordpatchError(f"cannot run {cc}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise RecordpatchError(f"{cc} did not finish in 120 s") from None


def _first_error(stderr: str) -> str:
    for line in stderr.splitlines():
        if "rror" in line:
            return line.strip()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[0] if lines else "(no message)"


def _inspect(obj: str, n: int, m: int):
    from ..elf.reader import ElfFile
    from . import patchable
    with open(obj, "rb") as f:
        elf = ElfFile(f.read())
    if not patchable.has_table(elf):
        return elf, None
    return elf, patchable.plan(elf, n, m)


def probe(cc: str, flags: list[str]) -> dict:
    """The probe's report (JSON-ready)."""
    flags = list(flags)
    n = m = None
    for fl in flags:
        mt = _PFE.match(fl)
        if mt:
            n, m = int(mt.group(1)), int(mt.group(2) or 0)
    added = []
    if n is None:
        n, m = 3, 0
        added = ["-fpatchable-function-entry=3"]
    fsec_wanted = "-ffunction-sections" in flags
    mm_wanted = "-mmicromips" in flags
    rep = {"cc": cc, "flags": flags, "added_flags": added, "nops": n, "before": m,
           "compiler": "", "defects": [], "checks": []}

    def defect(ident, fatal, msg):
        rep["defects"].append({"id": ident, "fatal": fatal, "message": msg})

    with tempfile.TemporaryDirectory(prefix="rp-probe-") as tmp:
        a = os.path.join(tmp, "probe.o")
        r = _compile(cc, flags + added, SOURCE, a, tmp, "probe.c")
        rep["checks"].append({"id": "compile", "ok": r.returncode == 0})
        if r.returncode != 0:
            err = _first_error(r.stderr)
            if "junk at end of line" in r.stderr and "%" in r.stderr:
                defect("PR93242", True, "the assembler rejects the pad: the compiler prints "
                       f"MIPS's nop template raw (GCC PR93242, fixed in GCC 10): {err}")
            else:
                defect("compile", True, f"compiling a function failed: {err}")
            rep["usable"] = False
            return rep
        elf, pp = _inspect(a, n, m)
        from . import patchable
        rep["compiler"] = patchable.compiler_of(elf)
        if pp is None or not pp.pads:
            if n:
                defect("no-entries", True, f"no {patchable.TABLE} in the object: the option has "
                       "no effect with these flags")
        else:
            _defects_from(pp, defect, fatal_isa=True)
            rep["checks"].append({"id": "pads", "ok": all(p.ok for p in pp.pads),
                                  "entries": len(pp.pads)})
        # a -ffunction-sections pair: SHF_LINK_ORDER of each table section
        b = os.path.join(tmp, "probe-fs.o")
        fs_flags = flags + added + ([] if fsec_wanted else ["-ffunction-sections"])
        r = _compile(cc, fs_flags, SOURCE, b, tmp, "probe_fs.c")
        rep["checks"].append({"id": "ffunction-sections", "ok": r.returncode == 0})
        if r.returncode == 0 and n:
            _, pp2 = _inspect(b, n, m)
            if pp2 is not None:
                bad = [p for p in pp2.pads if _link_order_wrong(pp2, p, b)]
                if bad:
                    defect("link-order", fsec_wanted,
                           f"with -ffunction-sections the {patchable.TABLE} entry of "
                           f"{bad[0].func.name} is linked (SHF_LINK_ORDER) to another function's "
                           "section: --gc-sections keeps or drops it with the wrong function")
        elif r.returncode != 0:
            defect("ffunction-sections", fsec_wanted,
                   f"compiling with -ffunction-sections failed: {_first_error(r.stderr)}")
        # microMIPS and MIPS functions in one file (only where the target has microMIPS)
        c = os.path.join(tmp, "probe-isa.o")
        r = _compile(cc, flags + added + ["-Werror=attributes"], ISA_SOURCE, c, tmp, "probe_isa.c")
        rep["checks"].append({"id": "micromips", "ok": r.returncode == 0,
                              "applicable": r.returncode == 0})
        if r.returncode == 0 and n:
            _, pp3 = _inspect(c, n, m)
            if pp3 is not None:
                isa = [p for p in pp3.pads if p.micro != _is_micro(p)]
                if isa:
                    defect("micromips-isa", mm_wanted,
                           f"the pad of {isa[0].func.name} is emitted in the ISA mode of the "
                           "function before it (before its `.set (no)micromips`)")
    rep["usable"] = not any(d["fatal"] for d in rep["defects"])
    return rep


def _is_micro(p) -> bool:
    from ..arch import mips
    return mips.is_micromips_sym(p.func.other)


def _link_order_wrong(pp, p, path) -> bool:
    from ..elf import consts as C
    from ..elf.reader import ElfFile
    with open(path, "rb") as f:
        elf = ElfFile(f.read())
    t = elf.sections[p.table]
    return bool(t.flags & C.SHF_LINK_ORDER) and t.link != p.section


def _defects_from(pp, defect, fatal_isa: bool) -> None:
    pr = [p for p in pp.pads if p.pr99217]
    if pr:
        defect("PR99217", True, f"all {pp.nops} nops of the pad stand before the function label "
               f"({len(pr)} of {len(pp.pads)} functions, e.g. {pr[0].func.name}): callers never "
               "run them (GCC PR99217; `recordpatch record --repair` fixes objects)")
    other = [p for p in pp.pads if not p.ok and not p.pr99217]
    if other:
        msgs = [d.message for d in pp.diagnostics if d.where == other[0].func.name]
        defect("pads", True, "; ".join(msgs) or f"invalid pad for {other[0].func.name}")


def probe_cc(cc: str, flags: list[str]) -> Report:
    """`recordpatch probe-cc`: the probe as a Report (one "file": the compiler)."""
    try:
        if shutil.which(cc) is None and not os.path.exists(cc):
            raise RecordpatchError("compiler not found")
        rep = probe(cc, flags)
    except RecordpatchError as exc:
        return Report("probe-cc", [FileReport(cc, "error", [Finding(
            ERROR, "error", f"probe-cc: {exc}")], {"error": str(exc)})], {"usable": False})
    found = [Finding(ERROR if d["fatal"] else WARNING, d["id"],
                     f"probe-cc: [{d['id']}] {d['message']}") for d in rep["defects"]]
    status = "usable" if rep["usable"] else "unusable"
    return Report("probe-cc", [FileReport(cc, status, found, rep)], {"usable": rep["usable"]})
