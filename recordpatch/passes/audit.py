"""`recordpatch audit`: check the ftrace tables of built objects, modules and kernels.

Read-only, always: every file is read through :func:`pipeline.read_input` (O_RDONLY) and
nothing is ever opened for writing. For every entry of `__mcount_loc` and
`__patchable_function_entries` the entry is resolved (relocatable: symbol + addend, REL
addend from the table word, RELA from r_addend; linked image: the address, mapped to a
section by sh_addr) and the instructions there are decoded:

* relocatable: the entry must be a real `-pg` call site (:func:`record.find_sites`: the
  `jal _mcount`, or the `lui v1` of a long call) or a nop pad (:func:`patchable.plan`,
  which also names the compiler defects);
* linked image: additionally the states the kernel writes: `nop` (ftrace_make_nop in the
  core kernel), `b 1f` (in modules), `jal ftrace_caller`, and the patchable-entry design's
  `lui at / nop|jalr at,at / li t0,0|1` and redirect forms.

Findings: entries pointing at anything else (with the instruction found), duplicates,
entries outside executable sections, call sites without an entry, a table missing where
calls exist, trampoline misalignment, known compiler defects. :func:`audit_file` returns
one file's results.FileReport; :func:`audit` the command's Report.
"""

from __future__ import annotations

import os
import struct
from collections import Counter

from ..arch import mips
from ..diag import WARNING, Finding
from ..elf import consts as C
from ..errors import RecordpatchError, UsageError
from ..results import FileReport, Report
from ..tuples import named
from .pipeline import read_image
from .tables import MCOUNT as MCOUNT_TABLE
from .tables import PFE as PFE_TABLE
from .tables import linked_tables, relocatable_entries, words

TRAMPOLINE = "ftrace_regs_caller"
CALLERS = ("ftrace_caller", "ftrace_regs_caller")

#: Names a directory walk picks up (explicitly named files are audited whatever their name):
#: objects and modules by suffix, kernel images by name: vmlinux, and what distributions and
#: build scripts call their copies (vmlinux-6.1.0, vmlinux.elf, vmlinux.o). A non-ELF file
#: among them (vmlinux.lds, vmlinux.a) is counted as skipped.
SUFFIXES = (".o", ".ko", ".ko.xz", ".ko.zst", ".ko.gz")
IMAGE_PREFIXES = ("vmlinux-", "vmlinux.")


class _Skip(Exception):
    """A file found by a directory walk that is not a MIPS ELF object (host tools' objects,
    LLVM bitcode): counted, not an error."""


# ---------------------------------------------------------------- input
def collect(paths: list[str]) -> tuple[list[tuple[str, bool]], list[str]]:
    """(file, found by a directory walk) for every PATH, directories walked recursively
    (symlinked directories are not followed: /lib/modules/*/build); missing PATHs."""
    out: list[tuple[str, bool]] = []
    missing = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in files:
                    if f.endswith(SUFFIXES) or f == "vmlinux" or f.startswith(IMAGE_PREFIXES):
                        full = os.path.join(root, f)
                        if os.path.isfile(full):
                            found.append(full)
            out.extend((f, True) for f in sorted(found))
        elif os.path.lexists(p):
            out.append((p, False))
        else:
            missing.append(p)
    return out, missing


# ---------------------------------------------------------------- per-file audit
class _Ctx:
    """Per-file state: the image, its ABI, findings and counters."""

    def __init__(self, elf):
        self.elf = elf
        self.findings: list[Finding] = []
        self.sections: Counter = Counter()
        self.states: Counter = Counter()
        self.tables: Counter = Counter()
        self.defects: dict[str, dict] = {}
        self.word = struct.Struct(elf.endian + "I").unpack_from

    def find(self, kind: str, at, message: str, fn=None) -> None:
        """A warning of ``kind`` at ``at`` ((section name, offset) or None), in function
        ``fn`` ((name, offset into it) or None)."""
        sec, off = at or ("", None)
        name, delta = fn or ("", None)
        self.findings.append(Finding(WARNING, kind, message, sec, off, name, delta))

    def defect(self, ident: str, compiler: str, function: str) -> None:
        d = self.defects.setdefault(ident, {"id": ident, "compiler": compiler, "functions": []})
        if function and function not in d["functions"]:
            d["functions"].append(function)


def _target(elf):
    from ..arch.encode import Target
    abi = mips.abi_of(elf.bits, elf.flags)
    return abi, Target(abi.name, elf.endian == ">", abi.r6)


def insn_text(w: int, pc: int, t, names: dict[int, str] | None = None) -> str:
    """`jal _mcount` / `addiu sp,sp,-8` / `.word 0x...` for a finding's message."""
    from ..arch.encode import decode
    ins = decode(w, pc, t)
    if ins is None:
        return f".word {w:#010x}"
    if ins.op in ("jal", "j", "b") and names and ins.args[0] in names:
        return f"{ins.op} {names[ins.args[0]]}"
    if ins.op == "jal" and pc == 0 and not names:
        return "jal (relocated)"
    return ins.pretty(t.abi)


def _func_index(elf) -> dict[int, list]:
    """section -> sorted [(value, name)] of its FUNC symbols (a symbol claiming a section
    the file does not have names nothing)."""
    out: dict[int, list] = {}
    if elf.symtab is None:
        return out
    n = elf.shnum
    for s in elf.symtab:
        if s.type == C.STT_FUNC and 0 < s.section < n:
            out.setdefault(s.section, []).append((s.value & ~1, s.name))
    for v in out.values():
        v.sort()
    return out


def _func_at(funcs, sec: int, off: int):
    """(name, offset into it) of the function at or before ``off``, or None."""
    from bisect import bisect_right
    lst = funcs.get(sec, ())
    k = bisect_right(lst, (off, "\U0010ffff")) - 1
    if k < 0:
        return None
    v, n = lst[k]
    return n, off - v


def _in(fn) -> str:
    """" in func+0x12" for a message, from (name, offset) or None."""
    if fn is None:
        return ""
    return f" in {fn[0]}+{fn[1]:#x}" if fn[1] else f" in {fn[0]}"


def audit_file(path: str, walked: bool = False, system_map: str | None = None) -> FileReport:
    """Audit one file; never raises for a problem with the file."""
    from ..elf.reader import ElfFile
    from .pipeline import error_result
    try:
        data = read_image(path)
        if walked and data[:4] != C.ELFMAG:
            raise _Skip("not an ELF file")
        elf = ElfFile(data)
        if elf.machine != C.EM_MIPS:
            if walked:
                raise _Skip(f"not MIPS (e_machine {elf.machine})")
            raise RecordpatchError(f"wrong machine: e_machine {elf.machine}, expected EM_MIPS (8)")
        if elf.type not in (C.ET_REL, C.ET_EXEC, C.ET_DYN):
            raise RecordpatchError(f"{C.ET_NAMES.get(elf.type, elf.type)} file: expected an "
                                   "object, a module or a kernel image")
        abi, t = _target(elf)
        ctx = _Ctx(elf)
        from .patchable import compiler_of
        compiler = compiler_of(elf)
        if elf.type == C.ET_REL:
            _audit_rel(ctx, t, compiler)
        else:
            _audit_linked(ctx, t, compiler, system_map)
        trampoline = _audit_trampoline(ctx)
    except _Skip as exc:
        return FileReport(path, "skipped", [], {"reason": str(exc)})
    except RecordpatchError as exc:
        return error_result(path, exc)
    except MemoryError:
        return error_result(path, RecordpatchError("out of memory reading this file"))
    except Exception as exc:  # a bug: still one line, never a traceback
        return error_result(path, RecordpatchError(f"internal error: {type(exc).__name__}: {exc}"))
    data = {"elf_type": C.ET_NAMES[elf.type], "abi": abi.name,
            "endian": "little" if elf.endian == "<" else "big", "compiler": compiler,
            "entries": sum(ctx.tables.values()), "tables": dict(ctx.tables),
            "sections": dict(ctx.sections), "states": dict(ctx.states),
            "defects": list(ctx.defects.values()), "trampoline": trampoline}
    return FileReport(path, "findings" if ctx.findings else "clean", ctx.findings, data)


def _audit_trampoline(ctx: _Ctx) -> list[dict]:
    """`recordpatch check` of the trampoline, when the file defines one."""
    elf = ctx.elf
    if elf.symtab is None or not elf.symtab.indexes_named(TRAMPOLINE):
        return []
    if not any(s.name == TRAMPOLINE and s.section for s in elf.symtab):
        return []
    from .check import DEFAULT_ALIGN, check_elf
    results, diags = check_elf(elf, [TRAMPOLINE], DEFAULT_ALIGN)
    for d in diags:
        ctx.findings.append(d._replace(level=WARNING, kind="trampoline"))
    return results


# ---------------------------------------------------------------- relocatable objects
def _audit_rel(ctx: _Ctx, t, compiler: str) -> None:
    from . import record
    elf = ctx.elf
    secs = elf.sections
    funcs = _func_index(elf)
    tables = [s for s in secs if s.name == MCOUNT_TABLE]
    sites, _ignored, _rela, _diags, refused = record.find_sites(elf)
    site_at = {(s.section, s.offset): s for s in sites}
    # A pad object's __mcount_loc (`record --table mcount_loc`) lists its pads: what the
    # kernel's __start_mcount_loc..__stop_mcount_loc holds when it is built with
    # -fpatchable-function-entry (vmlinux.lds.h keeps both tables in that range).
    pp = None
    pad_at: dict[tuple[int, int], object] = {}
    if any(s.name == PFE_TABLE for s in secs):
        from . import patchable
        pp = patchable.plan(elf)
        pad_at = {(p.section, p.offset): p for p in pp.pads}
    hit_refused: set = set()
    seen: dict[tuple[int, int], str] = {}
    for ref in relocatable_entries(elf, MCOUNT_TABLE):
        table = ref.table
        slot, sec, off, problem = ref.slot, ref.section, ref.offset, ref.problem
        wat = (table.name, slot * elf.word if slot >= 0 else None)
        where = f"{table.name}+{slot * elf.word:#x}" if slot >= 0 else table.name
        if slot >= 0:
            ctx.tables[MCOUNT_TABLE] += 1
        if problem:
            ctx.find("unresolved", wat, problem)
            continue
        tsec = secs[sec] if 0 < sec < len(secs) else None
        lat = (tsec.name if tsec else str(sec), off)
        loc = f"{lat[0]}+{off:#x}"
        if tsec is None or off + 4 > tsec.size or tsec.type == C.SHT_NOBITS:
            ctx.find("bad-target", wat, f"entry points outside its section ({loc})")
            continue
        ctx.sections[tsec.name] += 1
        if not tsec.flags & C.SHF_EXECINSTR:
            ctx.find("not-executable", lat, f"{MCOUNT_TABLE} entry ({where}) points into "
                     f"{tsec.name}, which is not an executable section")
            continue
        if (sec, off) in seen:
            ctx.find("duplicate", lat, f"duplicate {MCOUNT_TABLE} entry ({where}; also "
                     f"{seen[(sec, off)]})")
            continue
        seen[(sec, off)] = where
        site = site_at.get((sec, off))
        if site is not None:
            ctx.states["jal _mcount" if site.kind == mips.KIND_JAL else "long-call lui"] += 1
            continue
        pad = pad_at.get((sec, off))
        if pad is not None:
            ctx.states[f"{pad.nops}-nop pad{' (microMIPS)' if pad.micro else ''} "
                       f"({MCOUNT_TABLE})"] += 1
            continue
        bad = next((r for r in refused if r.section == sec and r.offset <= off <= r.end), None)
        if bad is not None:
            hit_refused.add(bad)
            fn = _func_at(funcs, sec, off)
            ctx.find("unpatchable", lat, f"{MCOUNT_TABLE} entry ({where}) points at a call "
                     f"the kernel cannot patch{_in(fn)}: {bad.reason}", fn)
            continue
        w = ctx.word(elf.section_data(tsec), off)[0] if not off & 3 else None
        fn = _func_at(funcs, sec, off)
        found = insn_text(w, 0, t) if w is not None else "a misaligned address"
        ctx.find("bad-target", lat, f"{MCOUNT_TABLE} entry ({where}) points at `{found}`"
                 f"{_in(fn)}, not at a call to _mcount", fn)
    missing = [s for s in sites if (s.section, s.offset) not in seen]
    unrecorded = [r for r in refused if r not in hit_refused]
    if (missing or unrecorded) and not tables:
        n = len(missing) + len(unrecorded)
        ctx.find("not-recorded", None, f"{n} call{'s' * (n != 1)} to _mcount but no "
                 f"{MCOUNT_TABLE} (not recorded)" + (f"; {len(unrecorded)} of them the kernel "
                 f"cannot patch ({unrecorded[0].reason})" if unrecorded else ""))
        missing = unrecorded = []
    for r in unrecorded:
        fn = _func_at(funcs, r.section, r.offset)
        ctx.find("missing", (r.section_name, r.offset), f"call to _mcount"
                 f"{_in(fn)} has no {MCOUNT_TABLE} entry, and the kernel "
                 f"cannot patch it: {r.reason}", fn)
    if missing:
        drops = set(record.reference_drops(elf))
        for s in missing:
            fn = _func_at(funcs, s.section, s.offset)
            hint = (" (recordmcount drops it, in Linux 6.1 and 6.12 alike: its +4 filter "
                    "carries over from the previous section)"
                    if (s.section, s.offset) in drops else "")
            ctx.find("missing", (s.section_name, s.offset),
                     f"call to _mcount{_in(fn)} has no {MCOUNT_TABLE} "
                     f"entry{hint}", fn)
    if pp is not None:
        _audit_rel_pfe(ctx, compiler, pp)


#: patchable.plan's finding kinds that are known compiler defects, and the defect's name.
DEFECTS = {"pr99217": "PR99217", "link-order": "SHF_LINK_ORDER", "pad-isa": "microMIPS-pad-ISA"}
#: patchable.plan's other kinds in audit's vocabulary (a pad of the wrong size or place is
#: an entry that points at something else than a pad).
AUDIT_KIND = {"pad-size": "bad-target", "pad-offset": "bad-target"}


def _audit_rel_pfe(ctx: _Ctx, compiler: str, pp) -> None:
    elf = ctx.elf
    ctx.tables[PFE_TABLE] += sum(s.size // elf.word for s in elf.sections if s.name == PFE_TABLE)
    for p in pp.pads:
        ctx.sections[p.section_name] += 1
        ctx.states[f"{p.nops}-nop pad{' (microMIPS)' if p.micro else ''}"] += 1
    # A finished module (.gnu.linkonce.this_module: scripts/Makefile.modfinal's link was its
    # last) is never linked again, so a table linked to the wrong section cannot lose an
    # entry there: the compiler defect is still listed, but it is not a finding.
    final = any(s.name == ".gnu.linkonce.this_module" for s in elf.sections)
    for d in pp.diagnostics:
        ident = DEFECTS.get(d.kind)
        if ident:
            ctx.defect(ident, compiler, d.function)
            if ident == "SHF_LINK_ORDER" and final:
                continue
        m = d.message   # every finding of patchable.plan says where it is
        if d.function and d.function not in m:
            m = f"{d.function}: {m}"
        at = (d.section, d.offset) if d.section else None
        ctx.find("defect" if ident else AUDIT_KIND.get(d.kind, d.kind), at, m,
                 (d.function, d.func_offset) if d.function else None)


# ---------------------------------------------------------------- linked images
class MapSymbol(named("MapSymbol", "name value type section")):
    """A System.map line in the shape of a symbol-table entry (section 1: defined)."""
    __slots__ = ()


def read_system_map(path: str, bits: int) -> list[MapSymbol]:
    """System.map (`nm -n vmlinux`: ADDRESS TYPE NAME per line): the symbols a stripped
    image lost. Text symbols (T/t/W) count as functions; absolute (A), undefined (U/w/v)
    ones are left out. binutils prints 32-bit MIPS addresses sign-extended to 64 bits."""
    from .pipeline import read_input
    data, _ = read_input(path)
    mask = (1 << bits) - 1
    out = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            value = int(parts[0], 16) & mask
            kind, name = parts[1], parts[2]
        except (ValueError, IndexError):
            raise RecordpatchError(f"{path}:{n}: not a System.map line (ADDRESS TYPE NAME): "
                                   f"{line[:60]!r}") from None
        if kind in "AaUwv":
            continue
        out.append(MapSymbol(name, value, C.STT_FUNC if kind in "TtWi" else C.STT_OBJECT, 1))
    if not out:
        raise RecordpatchError(f"{path}: no symbols in this System.map")
    return out


class _Image:
    """Address -> (section, bytes) for the allocated sections of a linked image."""

    def __init__(self, elf):
        from bisect import bisect_right
        self._bisect = bisect_right
        secs = sorted((s.addr, s.index) for s in elf.sections
                      if s.flags & C.SHF_ALLOC and s.size and s.type != C.SHT_NOBITS)
        self.starts = [a for a, _ in secs]
        self.secs = [elf.sections[i] for _, i in secs]
        self.elf = elf
        self.data: dict[int, bytes] = {}

    def find(self, addr: int):
        k = self._bisect(self.starts, addr) - 1
        for j in range(k, max(k - 8, -1), -1):  # overlaps (TLS, empty sections) are rare
            s = self.secs[j]
            if s.addr <= addr < s.addr + s.size:
                return s
        return None

    def text(self, s):
        d = self.data.get(s.index)
        if d is None:
            d = self.data[s.index] = self.elf.section_data(s)
        return d


def _linked_symbols(symbols):
    """(name by address of FUNC/NOTYPE text symbols, _mcount address or None, caller addrs)."""
    names: dict[int, str] = {}
    funcs: set[int] = set()
    mcount, callers = None, set()
    ranges: dict[str, int] = {}
    if symbols is None:
        return names, funcs, mcount, callers, []
    for s in symbols:
        if not s.section or not s.name:
            continue
        if s.name == "_mcount":
            mcount = s.value
        elif s.name in CALLERS:
            callers.add(s.value)
        elif s.name in ("__entry_text_start", "__entry_text_end", "__noinstr_text_start",
                        "__noinstr_text_end"):
            ranges[s.name] = s.value
        if s.type in (C.STT_FUNC, C.STT_NOTYPE):
            names.setdefault(s.value & ~1, s.name)
        if s.type == C.STT_FUNC:
            funcs.add(s.value & ~1)
    skip = []
    for a in ("entry", "noinstr"):
        lo, hi = ranges.get(f"__{a}_text_start"), ranges.get(f"__{a}_text_end")
        if lo is not None and hi is not None:
            skip.append((lo, hi))
    return names, funcs, mcount, callers, skip


def _audit_linked(ctx: _Ctx, t, compiler: str, system_map: str | None = None) -> None:
    from ..arch.encode import flag_reg_default
    from .record import is_mcounted_name
    elf = ctx.elf
    bits = elf.bits
    img = _Image(elf)
    symbols = elf.symtab
    if symbols is None and system_map:
        symbols = read_system_map(system_map, bits)
    names, funcs, mcount, callers, skip = _linked_symbols(symbols)
    tables = linked_tables(elf, symbols)
    if not tables and symbols is None:
        ctx.find("no-table", None, "cannot see the ftrace table: no __mcount_loc section and no "
                 "symbol table (a stripped image) for __start_mcount_loc/__stop_mcount_loc; "
                 "audit it with --system-map FILE or the unstripped vmlinux")
        return
    flag = flag_reg_default(t.abi)
    near = _Names(names)
    seen: dict[int, str] = {}
    for tname, base, data in tables:
        addrs = words(elf, data)
        ctx.tables[tname] += len(addrs)
        for slot, addr in enumerate(addrs):
            wat = (tname, slot * elf.word)
            where = f"{tname}+{slot * elf.word:#x}"
            if addr == 0:
                continue  # an entry the kernel's sorttable/linker zeroed (discarded section)
            micro = addr & 1
            a = addr & ~1
            s = img.find(a)
            if s is None or a + 4 > s.addr + s.size:
                ctx.find("bad-target", wat, f"entry {addr:#x} is not inside any section")
                continue
            off = a - s.addr
            lat = (s.name, off)
            ctx.sections[s.name] += 1
            if not s.flags & C.SHF_EXECINSTR:
                ctx.find("not-executable", lat, f"{tname} entry ({where}) points at {addr:#x} "
                         f"in {s.name}, which is not an executable section")
                continue
            if a in seen:
                ctx.find("duplicate", lat, f"duplicate entry {addr:#x} ({where}; also {seen[a]})")
                continue
            seen[a] = where
            text = img.text(s)
            if micro:
                run = mips.nop_run(text, off, elf.endian, True)
                if len(run) > 1:
                    ctx.states["nop pad (microMIPS)"] += 1
                    _pr99217_linked(ctx, lat, a, len(run) - 1, run[-1], funcs, names, compiler)
                else:
                    ctx.find("bad-target", lat, f"{tname} entry ({where}) points at {addr:#x}: "
                             "a microMIPS entry that is not a nop pad")
                continue
            if off & 3:
                ctx.find("bad-target", lat, f"entry {addr:#x} is not 4-byte aligned")
                continue

            def word(o, text=text):
                return ctx.word(text, o)[0] if 0 <= o and o + 4 <= len(text) else None

            state = _linked_state(word, off, a, bits, mcount, callers, flag, t.r6)
            nrun = 0
            if state == "nop pad":
                nrun = len(mips.nop_run(text, off, elf.endian, False)) - 1
                state = f"{nrun}-nop pad"
            elif state.startswith("pad "):
                nrun = 4 if state == "pad redirect" else 3
            if nrun:
                _pr99217_linked(ctx, lat, a, nrun, 4 * nrun, funcs, names, compiler)
            if state:
                ctx.states[state] += 1
                continue
            w = word(off)
            nm = {mcount: "_mcount"} if mcount is not None else {}
            nm.update((c, "ftrace_caller") for c in callers)
            if w is not None and mips.is_jal(w):
                tgt = mips.jal_target(w, a, bits)
                nm.setdefault(tgt, names.get(tgt, f"{tgt:#x}"))
            fn = near.near(a)
            ctx.find("bad-target", lat, f"{tname} entry ({where}) points at {addr:#x}: "
                     f"`{insn_text(w, a, t, nm)}`{_in(fn)}, neither a call "
                     "to _mcount, a pad, nor a state ftrace writes", fn)
    # calls with no entry (only knowable with the _mcount symbol)
    if mcount is None:
        return
    untabled = 0
    for s in img.secs:
        if not s.flags & C.SHF_EXECINSTR or not is_mcounted_name(s.name):
            continue
        text = img.text(s)
        n = len(text) // 4
        for i, w in enumerate(struct.unpack_from(f"{elf.endian}{n}I", text)):
            if w >> 26 != mips.OP_JAL:
                continue
            pc = s.addr + 4 * i
            if mips.jal_target(w, pc, bits) != mcount or pc in seen:
                continue
            if any(lo <= pc < hi for lo, hi in skip):
                continue
            if not tables:
                untabled += 1
                continue
            fn = near.near(pc)
            ctx.find("missing", (s.name, 4 * i), f"call to _mcount at {pc:#x}"
                     f"{_in(fn)} has no {MCOUNT_TABLE} entry", fn)
    if untabled:
        ctx.find("not-recorded", None, f"{untabled} call{'s' * (untabled != 1)} to _mcount but no "
                 f"{MCOUNT_TABLE} and no __start_mcount_loc/__stop_mcount_loc")


def _pr99217_linked(ctx: _Ctx, lat, a: int, nops: int, size: int, funcs, names,
                    compiler: str) -> None:
    """GCC PR99217 in a linked image: the pad of ``nops`` nops (``size`` bytes) at ``a`` is
    no function's entry, and a function symbol starts right after it."""
    if a in funcs or a + size not in funcs:
        return
    fname = names.get(a + size, "")
    ctx.defect("PR99217", compiler, fname)
    from .patchable import pr99217_text
    ctx.find("defect", lat, pr99217_text(nops, fname) + (f" [{compiler}]" if compiler else ""),
             (fname, None))


class _Names:
    """Nearest preceding symbol for a linked image's addresses."""

    def __init__(self, names: dict[int, str]):
        self.addrs = sorted(names)
        self.names = names

    def near(self, addr: int):
        """(name, offset into it) of the nearest symbol at or before ``addr``, or None."""
        from bisect import bisect_right
        k = bisect_right(self.addrs, addr) - 1
        if k < 0:
            return None
        best = self.addrs[k]
        return self.names[best], addr - best


def _linked_state(word, off: int, pc: int, bits: int, mcount, callers, flag: int, r6: bool) -> str:
    """What the word at ``off`` is, in the states a recorded site or pad may be in."""
    w = word(off)
    if w is None:
        return ""
    after_move = mips.move_at_ra_before(word, off)
    if mips.is_jal(w):
        tgt = mips.jal_target(w, pc, bits)
        if mcount is not None and tgt == mcount:
            return "jal _mcount"
        if tgt in callers:
            return "jal ftrace_caller"
        if mcount is None and after_move:
            return "jal _mcount"
        return ""
    if mips.is_lui(w, mips.REG_V1):
        # the whole long call, not an address load of _mcount (ftrace's own code)
        w1 = word(off + 4)
        if w1 is None or not mips.is_addiu_self(w1, mips.REG_V1):
            return ""
        return "long-call lui" if mips.long_call_jalr(word, off + 4)[0] else ""
    if mips.is_b_1f(w):
        # ftrace_make_nop in a module: the lui becomes `b 1f`; 32-bit kernels also nop the
        # addiu after it
        w1 = word(off + 4)
        if w1 is not None and (w1 == mips.NOP or mips.is_addiu_self(w1, mips.REG_V1)):
            return "b 1f (disabled)"
        return ""
    if w == mips.NOP:
        p1 = word(off - 4)
        if after_move and not (p1 is not None and (mips.is_jal(p1) or mips.is_jalr_ra(p1, mips.REG_V1))):
            return "nop (disabled)"
        run = 0
        while run < 16 and word(off + 4 * run) == mips.NOP:
            run += 1
        return "nop pad" if run >= 2 else ""
    st = mips.pad_state(w, word(off + 4), word(off + 8), flag, r6)
    return f"pad {st}" if st else ""


# ---------------------------------------------------------------- the command
def _task(arg):
    path, walked, system_map = arg
    return audit_file(path, walked, system_map)


def audit(paths: list[str], jobs: int = 1, progress=None,
          system_map: str | None = None) -> Report:
    """`recordpatch audit`: every file of ``paths`` (directories walked). ``progress``:
    called (done, total, path) after each file."""
    if jobs < 1:
        raise UsageError("-j needs a positive number")
    files, missing = collect(paths)
    tasks = [(f, w, system_map) for f, w in files]
    results: list[FileReport] = []
    if jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as ex:
            for r in ex.map(_task, tasks, chunksize=max(1, len(tasks) // (16 * jobs))):
                results.append(r)
                if progress:
                    progress(len(results), len(tasks), r.path)
    else:
        for a in tasks:
            results.append(_task(a))
            if progress:
                progress(len(results), len(tasks), a[0])
    from .pipeline import error_result
    results += [error_result(m, RecordpatchError("cannot open: No such file or directory"))
                for m in missing]
    return Report("audit", results, summary(results))


def summary(results: list[FileReport]) -> dict:
    c = Counter(r.status for r in results)
    return {"files": len(results), "clean": c["clean"], "findings": c["findings"],
            "errors": c["error"], "skipped": c["skipped"],
            "entries": sum((r.data or {}).get("entries", 0) for r in results),
            "finding_count": sum(len(r.findings) for r in results if r.status != "error")}
