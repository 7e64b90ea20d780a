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
is replaced by pairing each %lo with its own %hi. A call to _mcount the kernel
cannot patch (:func:`recordpatch.arch.mips.refused_call`: 64-bit long calls without
-msym32, microMIPS, other long-call forms) is refused: the plan carries an error and
nothing is written, where the reference records a word ftrace would then corrupt.
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import compress, repeat
from operator import and_, itemgetter, not_, or_, rshift, sub

from ..arch import mips
from ..diag import ERROR, NOTE, WARNING, Finding
from ..elf import consts as C
from ..elf.reader import ElfFile
from ..elf.writer import NewRef, NewSection
from ..errors import RecordpatchError, UnsupportedError
from ..tuples import named
from .tables import MCOUNT as TABLE

_HOST = "<" if sys.byteorder == "little" else ">"
MCOUNT = "_mcount"
MCOUNTED_NAMES = frozenset({
    ".init.text", ".ref.text", ".sched.text", ".spinlock.text", ".irqentry.text",
    ".softirqentry.text", ".kprobes.text", ".cpuidle.text",
})


def is_mcounted_name(name: str) -> bool:
    """Sections whose calls ftrace traces (recordmcount.c is_mcounted_section_name)."""
    return name.startswith(".text") or name in MCOUNTED_NAMES


class Site(named("Site", "section section_name offset kind")):
    __slots__ = ()
    # section: index of the text section
    # offset: offset of the recorded word in that section
    # kind: mips.KIND_JAL / mips.KIND_LONG


class Refused(named("Refused", "section section_name offset end reason")):
    """A call to _mcount in a shape Linux's MIPS ftrace cannot patch (never recorded):
    from the relocated word at ``offset`` to its jalr/jal at ``end``."""
    __slots__ = ()


class Entry(named("Entry", "site sym addend")):
    __slots__ = ()
    # sym: symbol the table entry is relocated against


class SiteGroup(named("SiteGroup", "section section_name offsets kinds")):
    """The sites of one text section, in relocation-table order, as parallel lists: a
    vmlinux.o has ~24k sites, and per-site objects are only built on request."""
    __slots__ = ()


class RecordPlan:
    """What `record` would do: the table's entries (built from per-section groups on
    first use), the new sections, diagnostics.

    ``groups``: (SiteGroup, base symbol index, base symbol value) per section;
    ``ignored``: calls in sections ftrace does not trace; ``already``: a table exists.
    """

    __slots__ = ("abi", "rela", "groups", "ignored", "diagnostics", "already", "new_sections",
                 "_entries", "refused", "elf")

    def __init__(self, abi, rela, groups, ignored, diagnostics, already, new_sections,
                 refused=()):
        self.abi, self.rela, self.groups, self.ignored = abi, rela, groups, ignored
        self.diagnostics, self.already, self.new_sections = diagnostics, already, new_sections
        self._entries = None
        self.refused = list(refused)   # Refused calls: the plan must not be written
        self.elf = None   # the image new_sections go onto when it is not the input's

    @property
    def count(self) -> int:
        return sum(len(g.offsets) for g, _, _ in self.groups)

    @property
    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = [Entry(Site(g.section, g.section_name, off, kind), sym, off - value)
                             for g, sym, value in self.groups
                             for off, kind in zip(g.offsets, g.kinds)]
        return self._entries


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
    """A `__mcount_loc` section exists (a relocation section aimed at one implies it)."""
    return elf.section_by_name(TABLE) is not None


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
    for i, t in elf.relocation_targets(C.SHT_PROGBITS, C.SHF_EXECINSTR):
        yield elf.section(i), elf.section(t)


def _kernel_calls(text, offs: list[int], types: list[int], endian: str) -> list[bool] | None:
    """Per hit (``offs`` is not empty), whether it is a kernel `-pg` call: R_MIPS_26 on a
    `jal`, with `move at,ra` one or two instructions before (-mmcount-ra-address puts
    one in between). A hit misaligned or too close to an edge is not one here;
    :func:`_scan_section` classifies it (and reports one outside the section). None
    when no hit can be checked this way.

    Made on whole lists with C-level iterators (a vmlinux.o's .text has ~23k sites)."""
    last = len(text) - 4
    # map(and_, offs, repeat(3)) is `[o & 3 for o in offs]` run by C: operator functions
    # over repeat() replace per-site Python lambdas and loops throughout this function
    if min(offs) < 8 or max(offs) > last or any(map(and_, offs, repeat(3))):
        usable = [8 <= o <= last and not o & 3 for o in offs]
        if not any(usable):
            return None
        got = iter(_kernel_calls(text, list(compress(offs, usable)),
                                 list(compress(types, usable)), endian))
        return [u and next(got) for u in usable]
    # One index list (the word 8 bytes before each site) applied to three views of the
    # text shifted by 0, 4 and 8 bytes: the two instructions before the site, and the site.
    get = itemgetter(*map(rshift, map(sub, offs, repeat(8)), repeat(2)))
    n = len(text)

    def words(shift: int):
        got = get(text[shift:shift + ((n - shift) & ~3)].cast("I"))
        a = array("I", got if len(offs) > 1 else (got,))
        if endian != _HOST:
            a.byteswap()
        return a

    is_move = mips.MOVE_AT_RA_WORDS.__contains__
    k = len(offs)
    ops = list(map(rshift, words(8), repeat(26)))
    if types.count(mips.R_MIPS_26) == k and ops.count(mips.OP_JAL) == k:
        call = repeat(True)   # the common case, decided with two C-level passes
    else:
        call = map(and_, map(mips.R_MIPS_26.__eq__, types), map(mips.OP_JAL.__eq__, ops))
    # -mmcount-ra-address (the kernel's default where GCC has it) puts one instruction
    # between the `move` and the `jal`
    moved = list(map(is_move, words(4)))
    if moved.count(True) != k:
        moved = map(or_, moved, map(is_move, words(0)))
    return list(map(and_, call, moved))


def _scan_section(elf, rs, tgt, offs, types, counted, warn_ignored, diags, ignored, refused,
                  fast=None):
    """Sites of one section the per-site way: (offsets, kinds) when ``counted``, else
    appends to ``ignored``; calls the kernel cannot patch go to ``refused``. ``fast``:
    per hit, already known to be a kernel call (:func:`_kernel_calls`); those are taken
    as they are, the others (all of them without ``fast``) classified here."""
    KIND_JAL = mips.KIND_JAL
    view = elf.section_view(tgt)
    word = mips.words(view, elf.endian)
    half = mips.halfwords(view, elf.endian)
    lo16 = set(compress(offs, map(mips.R_MIPS_LO16.__eq__, types)))
    refs = set(offs)
    spans: dict[int, int] = {}   # last word -> first word of each refused call
    paired: set[int] = set()
    size, name, index = tgt.size, tgt.name, tgt.index
    found: list[tuple[int, int, str]] = []   # (hit number, offset, kind) of the sites
    todo = range(len(offs)) if fast is None else compress(range(len(offs)), map(not_, fast))
    for k in todo:
        off, typ = offs[k], types[k]
        if off + 4 > size:
            raise RecordpatchError(
                f"relocation in {rs.name} at offset {off:#x} points outside "
                f"{name} (size {size:#x})")
        if typ == mips.R_MIPS_LO16 and off in paired:
            continue
        v = mips.classify(word, off, typ, lo16)
        if not v.site:
            r = mips.refused_call(word, half, off, typ, refs)
            if r is not None:
                if r.pair not in spans:
                    spans[r.pair] = off
                    if counted:
                        refused.append(Refused(index, name, off, r.pair, r.reason))
                    diags.append(Finding(NOTE, "unpatchable", "call to _mcount the kernel "
                                         f"cannot patch, not recorded: {r.reason}", name, off))
            elif not any(a <= off <= b for b, a in spans.items()):
                # the reference skips a reference 4 bytes after the one before it (its %lo
                # filter, recordmcount.h MIPS_is_fake_mcount): the %lo of an address load
                theirs = counted and not (k and off - offs[k - 1] == 4)
                kind = (NOT_A_CALL if theirs else
                        "not-a-call-reference-skips" if counted else "not-a-call-untraced")
                diags.append(Finding(NOTE, kind,
                                     f"{NOT_A_CALL_TEXT if theirs else 'not a call'}, "
                                     f"not recorded: {v.reason}", name, off))
            continue
        if v.pair >= 0:
            paired.add(v.pair)
        if v.reason:
            diags.append(Finding(WARNING, "odd-site", v.reason, name, off))
        if counted:
            found.append((k, off, v.kind))
        else:
            ignored.append(Site(index, name, off, v.kind))
            if warn_ignored:
                diags.append(Finding(WARNING, "untraced-section", f"section {name} has "
                                     "mcount callers that ftrace ignores", name, off))
    if fast is None:
        return [f[1] for f in found], [f[2] for f in found]
    if not found:   # the hits left over were not calls (address loads, in a vmlinux.o)
        calls = list(compress(offs, fast))
        return calls, [KIND_JAL] * len(calls)
    # sites of both kinds: merged back into relocation-table order
    found += [(k, offs[k], KIND_JAL) for k in compress(range(len(offs)), fast)]
    found.sort()
    return [f[1] for f in found], [f[2] for f in found]


def _scan(elf: ElfFile, warn_ignored: bool = False):
    """(site groups, ignored sites, rela flavour, diagnostics, refused calls) of an object."""
    diags: list[Finding] = []
    groups: list[SiteGroup] = []
    ignored: list[Site] = []
    refused: list[Refused] = []
    rela = None
    symtab = elf.symtab
    if symtab is None:
        return groups, ignored, rela, diags, refused
    msyms = symtab.indexes_named(MCOUNT)
    for rs, tgt in _code_relocation_sections(elf):
        counted = is_mcounted_name(tgt.name)
        if counted:
            rela = rs.type == C.SHT_RELA
        if not msyms or rs.link != symtab.section.index:
            continue
        offs, types = elf.reloc_offsets_types_against(rs, msyms)
        if not offs:
            continue
        fast = _kernel_calls(elf.section_view(tgt), offs, types, elf.endian) if counted else None
        if fast and all(fast):
            groups.append(SiteGroup(tgt.index, tgt.name, offs, [mips.KIND_JAL] * len(offs)))
            continue
        offs, kinds = _scan_section(elf, rs, tgt, offs, types, counted, warn_ignored, diags,
                                    ignored, refused, fast)
        if offs:
            groups.append(SiteGroup(tgt.index, tgt.name, offs, kinds))
    return groups, ignored, rela, diags, refused


def find_sites(elf: ElfFile, warn_ignored: bool = False):
    """(sites, ignored sites, rela flavour, diagnostics, refused calls) of an object."""
    groups, ignored, rela, diags, refused = _scan(elf, warn_ignored)
    sites = [Site(g.section, g.section_name, off, kind)
             for g in groups for off, kind in zip(g.offsets, g.kinds)]
    return sites, ignored, rela, diags, refused


#: The kind of the -w note for a reference to _mcount in a traced section that is not a
#: call: the reference records every such relocation (in a vmlinux.o, ftrace's own
#: address loads).
NOT_A_CALL = "not-a-call"
NOT_A_CALL_TEXT = "not a call (recordmcount would record it)"


def not_a_call_summary(diags) -> Finding | None:
    """The default warning for what recordpatch leaves out and the reference records."""
    n = sum(1 for d in diags if d.kind == NOT_A_CALL)
    if not n:
        return None
    many = n != 1
    return Finding(WARNING, "not-calls", f"{n} reference{'s' * many} to _mcount in traced sections "
                      f"{'are not calls' if many else 'is not a call'} and not recorded; "
                      f"recordmcount (Linux 6.1, 6.12) records {'them' if many else 'it'} as "
                      f"{'call sites' if many else 'a call site'} (ftrace would then patch that "
                      f"code); -w lists {'them' if many else 'it'}")


def refusal(refused: list[Refused]) -> str:
    """The one-line error for an object with calls the kernel cannot patch."""
    first = refused[0]
    n = len(refused)
    return (f"{n} call{'s' * (n != 1)} to _mcount that Linux's MIPS ftrace cannot patch "
            f"(first at {first.section_name}+{first.offset:#x}: {first.reason}); not recorded, "
            "file left unchanged: recorded, the kernel would write a wrong program over "
            "them; unrecorded, they would call _mcount untraceably")


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
        for off in elf.reloc_offsets_types_against(rs, msyms)[0]:
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
        return RecordPlan(abi, False, [], [], [Finding(
            WARNING, "already", f"{TABLE} already exists; file left unchanged")], True, [])
    groups, ignored, rela, diags, refused = _scan(elf, warn_ignored)
    loads = not_a_call_summary(diags)
    if loads is not None:
        diags.append(loads)
    if refused:
        diags.append(Finding(ERROR, "unpatchable", refusal(refused)))
        return RecordPlan(abi, bool(rela), [], ignored, diags, False, [], refused)
    if groups and (quirks or warn_ignored):
        drops = set(reference_drops(elf))
        kept = []
        for g in groups:
            hit = [off for off in g.offsets if (g.section, off) in drops]
            for off in hit:
                diags.append(Finding(NOTE, "reference-drop", "left out, as recordmcount "
                                     "leaves it out (--reference-quirks)" if quirks else
                                     "recordmcount would leave this call out (its +4 filter "
                                     "carries over from the previous section)",
                                     g.section_name, off))
            if quirks and hit:
                pairs = [(o, k) for o, k in zip(g.offsets, g.kinds) if (g.section, o) not in drops]
                g = g._replace(offsets=[o for o, _ in pairs], kinds=[k for _, k in pairs])
            if g.offsets:
                kept.append(g)
        groups = kept
    if not groups:
        return RecordPlan(abi, bool(rela), [], ignored, diags, False, [])
    bases = _base_symbols(elf, {g.section for g in groups})
    missing = [g for g in groups if g.section not in bases]
    if missing and not quirks:
        return _plan_with_section_symbols(elf, missing, warn_ignored)
    planned = []
    for g in groups:
        base = bases.get(g.section)
        if base is None:
            raise RecordpatchError(
                f"cannot find a non-weak symbol for section {g.section} ({g.section_name}) "
                "to express its call sites against (recordmcount's failure, kept by "
                "--reference-quirks)")
        planned.append((g, base[0], base[1]))
    syms: list[int] = []
    addends: list[int] = []
    for g, sym, value in planned:
        syms += [sym] * len(g.offsets)
        addends += map(sub, g.offsets, repeat(value))
    return RecordPlan(abi, rela, planned, ignored, diags, False,
                      table_sections(elf, abi, rela, syms, addends))


def _plan_with_section_symbols(elf: ElfFile, missing: list[SiteGroup],
                               warn_ignored: bool) -> RecordPlan:
    """The plan for ``elf`` with a local section symbol added to each section in
    ``missing`` (sites, but only weak symbols): entries against a weak symbol would
    follow a strong definition elsewhere into another function. recordmcount gives up
    on such an object ("Cannot find symbol for section"); Kbuild then deletes it.
    The plan's ``elf`` is the grown image, the one to append the table to."""
    from ..elf.writer import add_section_symbols
    grown = ElfFile(b"".join(add_section_symbols(elf, [g.section for g in missing])))
    p = plan(grown, warn_ignored)
    p.elf = grown
    p.diagnostics.extend(Finding(NOTE, "section-symbol", "only weak symbols here: added a "
                                 "local section symbol to relocate its entries against "
                                 "(recordmcount fails on this object)", g.section_name)
                         for g in missing)
    return p


def build_table(elf: ElfFile, abi: mips.Abi, rela: bool, entries: list[Entry]) -> list[NewSection]:
    """`__mcount_loc` and its relocation section for ``entries``, in table order."""
    return table_sections(elf, abi, rela, [e.sym for e in entries], [e.addend for e in entries])


def table_sections(elf: ElfFile, abi: mips.Abi, rela: bool, syms: list[int],
                   addends: list[int]) -> list[NewSection]:
    """`__mcount_loc` and its relocation section, in recordmcount.c's exact form: entry
    k is a word-sized absolute relocation against ``syms[k]`` with ``addends[k]``."""
    word = abi.word
    bits = 8 * word
    lay = elf.reloc_layout(rela)
    n = len(syms)
    offsets = range(0, n * word, word)
    # offset - st_value wraps modulo 2**bits, as the linker computes S + A: the table word
    # (REL) is unsigned, r_addend (RELA) signed, so a st_value above the offset still fits.
    # Every addend is normally in range already: only then is the per-entry fix-up needed.
    if addends and (min(addends) < 0 or max(addends) >= 1 << (bits - 1)):
        mask, half = (1 << bits) - 1, 1 << (bits - 1)
        addends = [a & mask if not rela else ((a + half) & mask) - half for a in addends]
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


__all__ = ["plan", "find_sites", "is_mcounted_name", "Site", "SiteGroup", "Entry", "RecordPlan",
           "build_table", "table_sections", "ERROR"]
