"""The record pass: find the `-pg` call sites of a relocatable and build `__mcount_loc`.

What is recorded, against which symbol, and in which relocation flavour follows
Linux's scripts/recordmcount.c (6.1) so the kernel's linker script and ftrace see
the same table:

* candidate sections are SHT_PROGBITS + SHF_EXECINSTR targets of a REL/RELA
  section whose name starts with ``.text`` or is one of :data:`MCOUNTED_NAMES`;
* each entry is an R_MIPS_32 (o32) / R_MIPS_64 (n64) relocation against the
  first LOCAL or GLOBAL (never WEAK) symbol defined in the site's section, with
  addend = site offset - symbol value, stored in the table word (REL) or in
  r_addend (RELA), the flavour being that of the text relocations;
* the recorded word is the `jal _mcount` (kernel) or the `lui v1` (module).

Where we differ on purpose: a site must be a real call sequence
(:func:`recordpatch.arch.mips.classify`), so address loads of _mcount (ftrace's
own code inside a whole vmlinux.o) are not recorded; and the reference's
"previous offset + 4" filter, whose state leaks from one section to the next,
is replaced by pairing each %lo with its own %hi.
"""

from __future__ import annotations

import struct
from collections import namedtuple

from ..arch import mips
from ..diag import ERROR, NOTE, WARNING, Diagnostic
from ..elf import consts as C
from ..elf.reader import ElfFile
from ..elf.writer import NewRef, NewSection
from ..errors import RecordpatchError, UnsupportedError

MCOUNT = "_mcount"
TABLE = "__mcount_loc"
MCOUNTED_NAMES = frozenset({
    ".init.text", ".ref.text", ".sched.text", ".spinlock.text", ".irqentry.text",
    ".softirqentry.text", ".kprobes.text", ".cpuidle.text",
})


def is_mcounted_name(name: str) -> bool:
    """Sections whose calls ftrace traces (recordmcount.c is_mcounted_section_name)."""
    return name.startswith(".text") or name in MCOUNTED_NAMES


class Site(namedtuple("Site", "section section_name offset kind")):
    __slots__ = ()
    # section: index of the text section
    # offset: offset of the recorded word in that section
    # kind: mips.KIND_JAL / mips.KIND_LONG


class Entry(namedtuple("Entry", "site sym addend")):
    __slots__ = ()
    # sym: symbol the table entry is relocated against


class RecordPlan(namedtuple("RecordPlan", "abi rela entries ignored diagnostics already new_sections")):
    __slots__ = ()
    # ignored: calls in sections ftrace does not trace


def check_mips_rel(elf: ElfFile) -> mips.Abi:
    """The ABI of a relocatable MIPS object, or why we refuse it."""
    if elf.machine != C.EM_MIPS:
        raise UnsupportedError(f"wrong machine: e_machine {elf.machine}, expected EM_MIPS (8)")
    if elf.type != C.ET_REL:
        raise UnsupportedError(
            f"{C.ET_NAMES.get(elf.type, elf.type)} file: recording needs a relocatable object "
            "(.o, vmlinux.o, .ko)")
    return mips.abi_of(elf.bits, elf.flags)


def already_recorded(elf: ElfFile) -> bool:
    """A `__mcount_loc` section, or a relocation section aimed at one, exists."""
    n = len(elf.sections)
    for s in elf.sections:
        if s.name == TABLE:
            return True
        if s.type in (C.SHT_REL, C.SHT_RELA) and 0 < s.info < n \
                and elf.sections[s.info].name == TABLE:
            return True
    return False


def _base_symbols(elf: ElfFile, wanted: set[int]) -> dict[int, tuple[int, int]]:
    """section index -> (symbol index, value) of its first LOCAL/GLOBAL symbol.

    Weak symbols are avoided because a strong definition elsewhere would move
    them, and the table would point into another function.
    """
    found: dict[int, tuple[int, int]] = {}
    remaining = set(wanted)
    for i, value, info, shndx in elf.symtab.iter_raw():
        if shndx in remaining and (info >> 4) in (C.STB_LOCAL, C.STB_GLOBAL):
            found[shndx] = (i, value)
            remaining.discard(shndx)
            if not remaining:
                break
    return found


def _code_relocation_sections(elf: ElfFile):
    """(relocation section, the SHT_PROGBITS + SHF_EXECINSTR section it applies to), in
    section-header order: the walk recordmcount makes, shared by both passes below."""
    secs = elf.sections
    n = len(secs)
    for rs in secs:
        if rs.type != C.SHT_REL and rs.type != C.SHT_RELA:
            continue
        if not 0 < rs.info < n:
            continue
        tgt = secs[rs.info]
        if tgt.type == C.SHT_PROGBITS and tgt.flags & C.SHF_EXECINSTR:
            yield rs, tgt


def find_sites(elf: ElfFile, warn_ignored: bool = False):
    """(sites, ignored sites, rela flavour, symtab index, diagnostics) of an object."""
    diags: list[Diagnostic] = []
    symtab = elf.symtab
    sites: list[Site] = []
    ignored: list[Site] = []
    rela = None
    if symtab is None:
        return sites, ignored, rela, diags
    msyms = symtab.indexes_named(MCOUNT)
    unpack = struct.Struct(elf.endian + "I").unpack_from
    move_at_ra, R26, KIND_JAL, OP_JAL = (mips.MOVE_AT_RA_WORDS, mips.R_MIPS_26, mips.KIND_JAL,
                                         mips.OP_JAL)
    for rs, tgt in _code_relocation_sections(elf):
        counted = is_mcounted_name(tgt.name)
        if counted:
            rela = rs.type == C.SHT_RELA
        if not msyms or rs.link != symtab.section.index:
            continue
        hits = elf.reloc_offsets_types_against(rs, msyms)
        if not hits:
            continue
        text = elf.section_data(tgt)
        word = mips.words(text, elf.endian)
        lo16 = {off for off, typ in hits if typ == mips.R_MIPS_LO16}
        paired: set[int] = set()
        size, name, index = tgt.size, tgt.name, tgt.index
        out = sites if counted else None
        last = size - 4
        for off, typ in hits:
            # The common case, a kernel `move at,ra; jal _mcount`, without building a Verdict
            # (-mmcount-ra-address puts one instruction between the two); anything else
            # takes the full check below.
            if (typ == R26 and out is not None and 8 <= off <= last and not off & 3
                    and unpack(text, off)[0] >> 26 == OP_JAL
                    and (unpack(text, off - 4)[0] in move_at_ra
                         or unpack(text, off - 8)[0] in move_at_ra)):
                out.append(Site(index, name, off, KIND_JAL))
                continue
            if off + 4 > size:
                raise RecordpatchError(
                    f"relocation in {rs.name} at offset {off:#x} points outside "
                    f"{name} (size {size:#x})")
            if typ == mips.R_MIPS_LO16 and off in paired:
                continue
            v = mips.classify(word, off, typ, lo16)
            where = f"{name}+{off:#x}"
            if not v.site:
                diags.append(Diagnostic(NOTE, f"not a call, not recorded: {v.reason}", where))
                continue
            if v.pair >= 0:
                paired.add(v.pair)
            if v.reason:
                diags.append(Diagnostic(WARNING, v.reason, where))
            site = Site(index, name, off, v.kind)
            if counted:
                sites.append(site)
            else:
                ignored.append(site)
                if warn_ignored:
                    diags.append(Diagnostic(WARNING, f"section {name} has mcount callers "
                                            "that ftrace ignores", where))
    return sites, ignored, rela, diags


def reference_drops(elf: ElfFile) -> list[tuple[int, int]]:
    """(section, offset) of the calls recordmcount (Linux 6.1) leaves out of its table.

    Its MIPS filter skips a relocation against _mcount lying 4 bytes after the previous
    one (meant for the %lo after a long-call %hi), but the previous offset is a static
    that no section boundary resets: the first call of a section is dropped when the
    last one of the section before sat exactly 4 bytes lower. Modelled here, in the
    reference's walk order, to warn about it or (with quirks) to reproduce it.
    """
    symtab = elf.symtab
    if symtab is None:
        return []
    msyms = symtab.indexes_named(MCOUNT)
    if not msyms:
        return []
    out, prev = [], None
    for rs, tgt in _code_relocation_sections(elf):
        if rs.link != symtab.section.index or not is_mcounted_name(tgt.name):
            continue
        for off, _ in elf.reloc_offsets_types_against(rs, msyms):
            if prev is not None and off - prev == 4:
                out.append((tgt.index, off))
            prev = off
    return out


def plan(elf: ElfFile, warn_ignored: bool = False, quirks: bool = False) -> RecordPlan:
    """Everything `record` would do to ``elf``; the file itself is not touched.

    ``quirks``: leave out the calls recordmcount drops (:func:`reference_drops`), so that
    the table is the reference's byte for byte; otherwise they are recorded and, with
    ``warn_ignored`` (-w), noted.
    """
    abi = check_mips_rel(elf)
    if already_recorded(elf):
        return RecordPlan(abi, False, [], [], [Diagnostic(
            WARNING, f"{TABLE} already exists; file left unchanged")], True, [])
    sites, ignored, rela, diags = find_sites(elf, warn_ignored)
    if sites and (quirks or warn_ignored):
        drops = set(reference_drops(elf))
        hit = [s for s in sites if (s.section, s.offset) in drops]
        for s in hit:
            where = f"{s.section_name}+{s.offset:#x}"
            diags.append(Diagnostic(NOTE, "left out, as recordmcount leaves it out "
                                    "(--reference-quirks)" if quirks else
                                    "recordmcount would leave this call out (its +4 filter "
                                    "carries over from the previous section)", where))
        if quirks and hit:
            sites = [s for s in sites if (s.section, s.offset) not in drops]
    if not sites:
        return RecordPlan(abi, bool(rela), [], ignored, diags, False, [])
    bases = _base_symbols(elf, {s.section for s in sites})
    entries = []
    for s in sites:
        base = bases.get(s.section)
        if base is None:
            raise RecordpatchError(
                f"cannot find a non-weak symbol for section {s.section} ({s.section_name}) "
                "to express its call sites against")
        entries.append(Entry(s, base[0], s.offset - base[1]))
    return RecordPlan(abi, rela, entries, ignored, diags, False,
                      build_table(elf, abi, rela, entries))


def build_table(elf: ElfFile, abi: mips.Abi, rela: bool, entries: list[Entry]) -> list[NewSection]:
    """`__mcount_loc` and its relocation section, in recordmcount.c's exact form."""
    word = abi.word
    mask = (1 << (8 * word)) - 1
    lay = elf.reloc_layout(rela)
    n = len(entries)
    offsets = list(range(0, n * word, word))
    syms = [e.sym for e in entries]
    # offset - st_value wraps modulo 2**bits, as the linker computes S + A: the table word
    # (REL) is unsigned, r_addend (RELA) signed, so a st_value above the offset still fits.
    half = 1 << (8 * word - 1)
    addends = [e.addend & mask if not rela else ((e.addend + half) & mask) - half for e in entries]
    wchar = "I" if word == 4 else "Q"
    if rela:   # the addend lives in r_addend; the table words stay 0
        table = bytes(n * word)
        rels = lay.encode_many(offsets, syms, abi.abs_reloc, addends)
    else:      # REL: the addend is the table word itself
        table = struct.pack(f"{elf.endian}{n}{wchar}", *addends)
        rels = lay.encode_many(offsets, syms, abi.abs_reloc)
    return [
        NewSection(TABLE, C.SHT_PROGBITS, C.SHF_ALLOC, table, word, word),
        NewSection((".rela" if rela else ".rel") + TABLE, C.SHT_RELA if rela else C.SHT_REL, 0,
                   rels, word, lay.entsize, elf.symtab.section.index, NewRef(0)),
    ]


__all__ = ["plan", "find_sites", "is_mcounted_name", "Site", "Entry", "RecordPlan", "ERROR"]
