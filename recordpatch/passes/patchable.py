"""`-fpatchable-function-entry=N[,M]` objects: validate the compiler's own table.

With that option (the MIPS DYNAMIC_FTRACE_WITH_REGS design, instead of `-pg`) GCC emits
N nops per function and a pointer to them in `__patchable_function_entries`. Nothing
checks them; this pass does, entry by entry:

* the pointer resolves (a relocation, a defined symbol, inside an executable section);
* exactly N nops stand there (N from ``nops`` or the most common pad in the object), in
  the ISA mode of the function (microMIPS pads carry the ISA bit in the pointer);
* the pad sits M nops before the function symbol (M = 0 unless asked for);
* no entry is duplicated, no function with a pad lacks one;

and names the compiler defects it finds (PR99217: the whole pad before the label;
SHF_LINK_ORDER to the wrong section with -ffunction-sections; pads in the wrong ISA mode),
with the compiler from `.comment`.

:func:`repair` moves the function symbols of PR99217 pads (and every reference to the old
entry) to the pad start, so callers run the pad. Pure: returns new bytes, writes nothing.
"""

from __future__ import annotations

import struct
from collections import Counter

from ..arch import mips
from ..diag import WARNING, Finding
from ..elf import consts as C
from ..elf.reader import ElfFile
from ..errors import RecordpatchError
from ..tuples import named
from .tables import PFE as TABLE
from .tables import relocatable_entries


class Pad(named("Pad", "table slot section section_name offset micro func nops before "
                     "before_bytes ok pr99217")):
    """One validated entry.

    table/slot: the entry's section index and index in it; section/offset: where the pad
    starts (ISA bit cleared); micro: the pointer's ISA bit (microMIPS pad); func: the
    function Symbol or None; nops: nops found from the pad start; before: nops between
    the pad start and the function symbol (before_bytes in bytes); ok: no finding;
    pr99217: the whole pad stands before the label."""
    __slots__ = ()


class PatchPlan(named("PatchPlan", "pads nops before compiler diagnostics rela")):
    __slots__ = ()


def pr99217_text(nops: int, fname: str, section: str = "") -> str:
    """The PR99217 diagnosis, worded once for record, audit and patch."""
    return (f"all {nops} nops of {fname}'s pad{' in ' + section if section else ''} stand "
            "before its entry point, so callers never run them (GCC PR99217; "
            "`recordpatch record --repair` moves the entry)")


def has_table(elf: ElfFile) -> bool:
    return any(s.name == TABLE for s in elf.sections)


def compiler_of(elf: ElfFile) -> str:
    """The first producer string of `.comment` ("GCC: (Debian 12.2.0-14) 12.2.0"), or ''."""
    s = elf.section_by_name(".comment")
    if s is None:
        return ""
    for piece in elf.section_data(s).split(b"\0"):
        if piece.strip():
            return piece.decode("utf-8", "replace").strip()
    return ""


def _functions(elf: ElfFile) -> dict[int, list]:
    """section index -> FUNC symbols defined there, sorted by value."""
    out: dict[int, list] = {}
    if elf.symtab is None:
        return out
    for sym in elf.symtab:
        if sym.type == C.STT_FUNC and sym.section:
            out.setdefault(sym.section, []).append(sym)
    for lst in out.values():
        lst.sort(key=lambda s: (s.value, s.bind != C.STB_GLOBAL, s.index))
    return out


def plan(elf: ElfFile, nops: int | None = None, before: int = 0) -> PatchPlan:
    """Validate every entry. ``nops``: the pad size N (None: the object's most common pad);
    ``before``: M, the nops that may legally precede the function symbol."""
    compiler = compiler_of(elf)
    cc = f" [{compiler}]" if compiler else ""
    diags: list[Finding] = []
    funcs = _functions(elf)
    secs = elf.sections
    raws = relocatable_entries(elf, TABLE)
    rela = any(x.rela for x in raws)
    # First pass: locate pad, function, nop run.
    found = []
    for t, slot, sec, target, _, problem in raws:
        at = slot * elf.word if slot >= 0 else None
        if problem:
            diags.append(Finding(WARNING, "unresolved", problem, TABLE, at))
            continue
        tsec = secs[sec] if 0 < sec < len(secs) else None
        micro = bool(target & 1)
        off = target & ~1
        if tsec is None or off >= tsec.size or tsec.type == C.SHT_NOBITS:
            name = tsec.name if tsec else str(sec)
            diags.append(Finding(WARNING, "bad-target", "entry points outside its section "
                                 f"({name}+{off:#x})", TABLE, at))
            continue
        if not tsec.flags & C.SHF_EXECINSTR:
            diags.append(Finding(WARNING, "not-executable", f"entry points into {tsec.name}+"
                                 f"{off:#x}, which is not an executable section", TABLE, at))
            continue
        text = elf.section_data(tsec)
        run = mips.nop_run(text, off, elf.endian, micro)
        cands = [f for f in funcs.get(sec, ()) if off <= f.value <= off + run[-1]]
        func = cands[0] if cands else None
        if func is None:
            # the pad is not in front of (or at) any function symbol
            after = [f for f in funcs.get(sec, ()) if f.value <= off < f.value + max(f.size, 1)]
            inside = f" (inside {after[-1].name}+{off - after[-1].value:#x})" if after else ""
            diags.append(Finding(WARNING, "bad-target", f"entry points at {tsec.name}+"
                                 f"{off:#x}{inside}, not at a function's pad", TABLE, at))
            continue
        nb = sum(1 for p in run[:-1] if p < func.value - off)
        found.append((t, slot, tsec, off, micro, func, run, nb))
    if nops is None:
        # N from the pads themselves. A function body may start with a nop, making a run
        # longer than its pad (Linux 6.1 n64 drivers/pci/host-bridge.o: 3 of 6 runs are 4
        # long), so a PR99217 object is read by its pads whose run ends at the label; only
        # then (run == nops before the label > 0) is the run exactly the pad.
        # Otherwise (pads at their labels) runs are never shorter than the pad, only longer:
        # the shortest run that a quarter of the pads share (one damaged pad does not set N).
        exact = Counter(len(x[6]) - 1 for x in found if len(x[6]) - 1 == x[7] > 0)
        counts = exact or Counter(len(x[6]) - 1 for x in found)
        common = [r for r, c in counts.items() if 4 * c >= sum(counts.values())]
        nops = min(common) if common else counts.most_common(1)[0][0] if counts else 0
    pads: list[Pad] = []
    seen_at: dict[tuple[int, int], int] = {}
    seen_fn: dict[tuple[int, int], int] = {}
    misplaced: dict[tuple[int, int, int], list[tuple[str, int]]] = {}
    for t, slot, tsec, off, micro, func, run, nb in found:
        problems = []
        fname = func.name or f"{tsec.name}+{func.value:#x}"
        fmicro = mips.is_micromips_sym(func.other)
        nrun = len(run) - 1
        pr = False
        if micro != fmicro:
            isa = "microMIPS" if fmicro else "MIPS"
            padisa = "microMIPS (nop16, pointer with the ISA bit)" if micro else "MIPS"
            problems.append(("pad-isa", f"pad of {isa} function {fname} in {tsec.name} is in {padisa} mode: "
                            "emitted before the function's `.set (no)micromips`"
                            + (f"; it leaves {fname} at {tsec.name}+{func.value:#x}, not 4-byte "
                               "aligned as MIPS code must be" if not fmicro and func.value & 3
                               else "") + cc))
        if nrun < nops:
            problems.append(("pad-size", f"pad of {fname} in {tsec.name} has {nrun} "
                             f"nop{'s' * (nrun != 1)}, expected {nops}"))
        if nb != before:
            if nops > before and nb >= nops:
                pr = True
                problems.append(("pr99217", pr99217_text(nops, fname, tsec.name) + cc))
            else:
                problems.append(("pad-offset", f"pad of {fname} in {tsec.name} starts {nb} "
                                 f"nop{'s' * (nb != 1)} before the function, expected {before}"))
        if t.flags & C.SHF_LINK_ORDER and t.link != tsec.index:
            # One finding per (table, linked section, code section), not one per entry: a
            # kernel object has dozens of .init.text pads in the table linked to .text.
            misplaced.setdefault((t.index, t.link, tsec.index), []).append((fname, off))
        k = seen_at.get((tsec.index, off))
        if k is not None:
            problems.append(("duplicate", f"duplicate entry for {fname} in {tsec.name} "
                             f"(also entry {k})"))
        elif seen_fn.get((tsec.index, func.value)) is not None:
            problems.append(("duplicate", f"second entry for {fname} in {tsec.name} "
                             f"(also entry {seen_fn[(tsec.index, func.value)]})"))
        seen_at.setdefault((tsec.index, off), slot)
        seen_fn.setdefault((tsec.index, func.value), slot)
        for kind, msg in problems:   # located at the pad, about its function
            diags.append(Finding(WARNING, kind, msg, tsec.name, off, fname))
        pads.append(Pad(t.index, slot, tsec.index, tsec.name, off, micro, func, nrun, nb,
                        func.value - off, not problems, pr))
    for (_, link, sec), found_here in misplaced.items():
        other = secs[link].name if 0 <= link < len(secs) else str(link)
        names = [n for n, _ in found_here]
        one = len(names) == 1
        what = (f"the entry for {names[0]} (in {secs[sec].name}) stands" if one else
                f"{len(names)} entries ({', '.join(names[:3])}{', ...' * (len(names) > 3)}) "
                f"for code in {secs[sec].name} stand")
        diags.append(Finding(WARNING, "link-order", f"{what} in a {TABLE} section linked "
                             f"(SHF_LINK_ORDER) to {other}: --gc-sections keeps or drops "
                             f"{'it' if one else 'them'} with {other}, not with "
                             f"{secs[sec].name}{cc}", secs[sec].name,
                             found_here[0][1] if one else None, names[0] if one else ""))
    diags.extend(_missing(elf, funcs, pads, nops, before, cc))
    return PatchPlan(pads, nops, before, compiler, diags, rela)


def _missing(elf: ElfFile, funcs, pads, nops: int, before: int, cc: str) -> list[Finding]:
    """Functions in sections that have pads, with a pad-shaped nop run but no entry."""
    if not pads or nops <= 0:
        return []
    out = []
    covered = {(p.section, p.func.value) for p in pads}
    # where this object's pads stand relative to the label (usually all the same)
    lead = Counter(p.before for p in pads).most_common(1)[0][0]
    for sec in {p.section for p in pads}:
        s = elf.sections[sec]
        text = elf.section_data(s)
        lst = funcs.get(sec, [])
        for i, f in enumerate(lst):
            if (sec, f.value) in covered or f.bind == C.STB_WEAK and any(
                    g.value == f.value and (sec, g.value) in covered for g in lst):
                continue
            micro = mips.is_micromips_sym(f.other)
            unit = 2 if micro else 4
            start = f.value - lead * unit
            prev_end = max((g.value + g.size for g in lst[:i] if g.value < f.value), default=0)
            if start < prev_end:
                continue
            run = mips.nop_run(text, start, elf.endian, micro)
            if len(run) - 1 >= nops:
                out.append(Finding(WARNING, "missing", f"{f.name} in {s.name} has a {nops}-nop "
                                   f"pad but no {TABLE} entry{cc}", s.name, f.value & ~1,
                                   f.name))
    return out


# ---------------------------------------------------------------- repair (PR99217)
def repair(elf: ElfFile, pp: PatchPlan) -> tuple[bytes, list[Finding], int]:
    """Make each PR99217 pad its function's entry: the function symbols (value and size)
    move to the pad start, and every reference to the old entry (relocations against the
    section symbol or the function whose target is the old start: REL fields or RELA
    addends) moves with them. Returns (new image, diagnostics, functions repaired)."""
    from ..diag import NOTE
    moves: dict[tuple[int, int], int] = {}   # (section, old entry) -> pad start
    diags = []
    for p in pp.pads:
        if not p.pr99217:
            continue
        if p.micro != mips.is_micromips_sym(p.func.other):
            raise RecordpatchError(f"cannot repair {p.func.name}: its pad is in the wrong ISA mode")
        moves[(p.section, p.func.value)] = p.offset
    if not moves:
        return elf.data, diags, 0
    buf = bytearray(elf.data)
    symtab = elf.symtab
    e = elf.endian
    # 1. symbols
    moved_syms: dict[int, int] = {}
    for sym in symtab:
        key = (sym.section, sym.value)
        if sym.type == C.STT_FUNC and key in moves:
            new = moves[key]
            moved_syms[sym.index] = new
            base = symtab.section.offset + sym.index * symtab.entsize
            if elf.bits == 32:
                struct.pack_into(e + "II", buf, base + 4, new, sym.size + sym.value - new)
            else:
                struct.pack_into(e + "QQ", buf, base + 8, new, sym.size + sym.value - new)
            diags.append(Finding(NOTE, "repaired", f"entry moved from "
                                 f"{elf.sections[sym.section].name}+{sym.value:#x} to the pad "
                                 f"at +{new:#x}", function=sym.name))
    # 2. relocations
    for rs in elf.sections:
        if rs.type not in (C.SHT_REL, C.SHT_RELA) or rs.link != symtab.section.index:
            continue
        if not 0 < rs.info < len(elf.sections):
            continue
        _repair_relocs(elf, buf, rs, moves, moved_syms)
    return bytes(buf), diags, len(moves)


def _repair_relocs(elf, buf, rs, moves, moved_syms) -> None:
    symtab = elf.symtab
    tgt = elf.sections[rs.info]
    lay = elf.reloc_layout(rs.type == C.SHT_RELA)
    relocs = elf.relocations(rs)
    e = elf.endian
    moved_secs = {s for s, _ in moves}
    sym_cache: dict[int, object] = {}

    def symbol(i):
        s = sym_cache.get(i)
        if s is None:
            s = sym_cache[i] = symtab[i]
        return s

    def relevant(sym) -> bool:
        return sym.section in moved_secs and (sym.type == C.STT_SECTION or sym.index in moved_syms)

    def remap(sym, ref: int) -> int:
        isa = ref & 1
        return moves.get((sym.section, ref & ~1), ref & ~1) | isa if isa else \
            moves.get((sym.section, ref), ref)

    def new_value(sym) -> int:
        return moved_syms.get(sym.index, sym.value)

    def where(r):
        return f"{rs.name} at {tgt.name}+{r.offset:#x}"

    def word_at(off):
        if off + 4 > tgt.size:
            raise RecordpatchError(f"cannot repair: relocation {where_off(off)} outside its section")
        return struct.unpack_from(e + "I", buf, tgt.offset + off)[0]

    def where_off(off):
        return f"{rs.name}+{off:#x}"

    def put_word(off, w):
        struct.pack_into(e + "I", buf, tgt.offset + off, w & 0xFFFFFFFF)

    if lay.rela:
        add_at = 8 if not elf.is64 else 16
        fmt = e + ("i" if not elf.is64 else "q")
        for k, r in enumerate(relocs):
            sym = symbol(r.sym)
            if not relevant(sym):
                continue
            bias = 4 if r.type in mips.PC_RELATIVE else 0
            ref = sym.value + r.addend + bias
            new_add = remap(sym, ref) - new_value(sym) - bias
            if new_add != r.addend:
                struct.pack_into(fmt, buf, rs.offset + k * lay.entsize + add_at, new_add)
        return
    # REL: addends live in the relocated words; %hi/%lo pairs share one (done below).
    for r in relocs:
        sym = symbol(r.sym)
        if r.type in (mips.R_MIPS_HI16, mips.R_MIPS_LO16):
            continue
        if not relevant(sym):
            continue
        if r.type == mips.R_MIPS_NONE:
            continue
        w = word_at(r.offset)
        a = mips.rel_addend(r.type, w)
        if a is None:
            raise RecordpatchError(f"cannot repair: {mips.reloc_name(r.type)} relocation "
                                   f"({where(r)}) against {sym.name or 'a section'} has an "
                                   "addend recordpatch does not decode")
        bias = 4 if r.type in mips.PC_RELATIVE else 0
        ref = (sym.value + a + bias) & 0xFFFFFFFF
        new_a = remap(sym, ref) - new_value(sym) - bias
        if new_a != a:
            put_word(r.offset, mips.rel_with_addend(r.type, w, new_a))
    _repair_hi_lo(relocs, symbol, relevant, remap, new_value, word_at, put_word, tgt.size,
                  where)


def _repair_hi_lo(relocs, symbol, relevant, remap, new_value, word_at, put_word, size,
                  where) -> None:
    """REL %hi/%lo halves, paired the way GNU ld pairs them (bfd/elfxx-mips.c,
    mips_elf_next_relocation): a R_MIPS_HI16's addend is its own 16 bits << 16 plus the
    sign-extended field of the next R_MIPS_LO16 against the same symbol in table order; a
    R_MIPS_LO16 only ever contributes the low 16 bits of its target. gas moves each %hi
    before *a* %lo with the same symbol and addend, not necessarily its own instruction's,
    so a %lo may have no %hi before it (e.g. Linux 6.1 drivers/ata/libata-sff.o): its
    target is then the one a %hi of the same symbol names, or the only one its 16 bits
    allow inside the section."""
    pending: dict[int, list] = {}
    pairs = []                      # (hi reloc, its lo reloc)
    his_of: dict[int, list] = {}    # id(lo) -> the %hi's paired with it
    los = []
    for r in relocs:
        if r.type == mips.R_MIPS_HI16:
            pending.setdefault(r.sym, []).append(r)
        elif r.type == mips.R_MIPS_LO16:
            los.append(r)
            for h in pending.pop(r.sym, ()):
                pairs.append((h, r))
                his_of.setdefault(id(r), []).append(h)
    ahl = {}                        # id(hi) -> full addend
    known: dict[int, set] = {}      # symbol -> full addends its %hi's name
    for h, lo in pairs:
        if not relevant(symbol(h.sym)):
            continue
        a = ((mips.rel_addend(mips.R_MIPS_HI16, word_at(h.offset)) << 16)
             + mips.sext(word_at(lo.offset), 16))
        ahl[id(h)] = a
        known.setdefault(h.sym, set()).add(a)
    new_lo: dict[int, int] = {}     # id(lo) -> its new 16 bits
    for lo in los:
        sym = symbol(lo.sym)
        if not relevant(sym):
            continue
        lw = word_at(lo.offset)
        lv = mips.sext(lw, 16)
        hs = his_of.get(id(lo))
        if hs:
            cands = {ahl[id(h)] for h in hs}
        else:
            cands = {a for a in known.get(lo.sym, ()) if (a - lv) & 0xFFFF == 0}
            if not cands:   # a %lo with no %hi at all: every target its bits allow
                first = (sym.value + lv) & 0xFFFF
                cands = {t - sym.value for t in range(first, size + 1, 0x10000)}
        news = {(remap(sym, sym.value + a) - new_value(sym)) & 0xFFFF for a in cands}
        if not news:
            continue
        if len(news) > 1:
            raise RecordpatchError(f"cannot repair: the %lo ({where(lo)}) may refer to a "
                                   "moved entry or to another address, and no %hi tells which")
        nl = news.pop()
        new_lo[id(lo)] = nl
        if nl != lw & 0xFFFF:
            put_word(lo.offset, (lw & ~0xFFFF) | nl)
    for h, lo in pairs:
        if id(h) not in ahl:
            continue
        sym = symbol(h.sym)
        new = remap(sym, sym.value + ahl[id(h)]) - new_value(sym)
        nl = new_lo.get(id(lo), word_at(lo.offset) & 0xFFFF)
        if (new - nl) & 0xFFFF:
            raise RecordpatchError(f"cannot repair: a %hi ({where(h)}) and the %lo it pairs "
                                   "with move differently")
        nh = ((new - mips.sext(nl, 16)) >> 16) & 0xFFFF
        hw = word_at(h.offset)
        if hw & 0xFFFF != nh:
            put_word(h.offset, (hw & ~0xFFFF) | nh)


def describe(pp: PatchPlan) -> dict:
    """JSON-ready summary for `record --json`."""
    return {"entries": len(pp.pads), "nops": pp.nops, "compiler": pp.compiler,
            "pr99217": sum(p.pr99217 for p in pp.pads),
            "clean": sum(p.ok for p in pp.pads),
            "pads": [{"function": p.func.name, "section": p.section_name, "offset": p.offset,
                      "nops": p.nops, "before": p.before, "micromips": p.micro, "ok": p.ok,
                      "pr99217": p.pr99217} for p in pp.pads]}


def table_entries(elf: ElfFile, pp: PatchPlan):
    """(record.Entry list, rejected pads) for an `__mcount_loc` built from the pads: one
    entry per pad start that is a real pad (N nops, M before the function, right ISA)."""
    from . import record
    good, bad, seen = [], [], set()
    for p in pp.pads:
        usable = (p.nops >= pp.nops and p.before == pp.before
                  and p.micro == mips.is_micromips_sym(p.func.other))
        if not usable:
            bad.append(p)
        elif (p.section, p.offset) not in seen:
            seen.add((p.section, p.offset))
            good.append(p)
    bases = record._base_symbols(elf, {p.section for p in good}) if good else {}
    entries = []
    for p in good:
        base = bases.get(p.section)
        if base is None:
            raise RecordpatchError(f"cannot find a non-weak symbol for section {p.section} "
                                   f"({p.section_name}) to express its pads against")
        entries.append(record.Entry(record.Site(p.section, p.section_name, p.offset, "pad"),
                                    base[0], p.offset - base[1]))
    return entries, bad
