"""Where the ftrace tables' entries point: the one resolver that record, patchable, patch
and audit use.

* A relocatable's table word means nothing alone: each must carry exactly one absolute
  relocation (R_MIPS_32 / R_MIPS_64, no n64 second or third type) against a defined
  symbol; the entry is that symbol's section at st_value + addend (REL: the addend is the
  word itself; RELA: r_addend), modulo the word size. gABI "Relocation"; the MIPS ABI
  supplements for the types.
* A linked image's table words are addresses: the sections themselves, or, in a vmlinux
  whose tables the linker script merged (include/asm-generic/vmlinux.lds.h), the words
  between __start_mcount_loc and __stop_mcount_loc.
"""

from __future__ import annotations

import struct

from ..arch import mips
from ..elf import consts as C
from ..tuples import named

MCOUNT = "__mcount_loc"
PFE = "__patchable_function_entries"
TABLES = (MCOUNT, PFE)


class Ref(named("Ref", "table slot section offset rela problem")):
    """One word of a relocatable's table. table: its Section; slot: its index (-1: about
    the table as a whole); section/offset: where it resolves (offset keeps the microMIPS
    ISA bit); rela: the table's relocations are RELA; problem: why it does not resolve
    ('' when it does)."""
    __slots__ = ()


def relocatable_entries(elf, name: str) -> list[Ref]:
    """Every word of every section called ``name`` of a relocatable, resolved."""
    symtab = elf.symtab
    word = elf.word
    mask = (1 << (8 * word)) - 1
    secs = elf.sections
    fmt = elf.endian + ("I" if word == 4 else "Q")
    out = []
    for t in secs:
        if t.name != name:
            continue
        rsec = next((s for s in secs if s.type in (C.SHT_REL, C.SHT_RELA) and s.info == t.index),
                    None)
        rela = rsec is not None and rsec.type == C.SHT_RELA
        data = elf.section_data(t)
        if len(data) != t.size:  # SHT_NOBITS: a size but no bytes to read the words from
            out.append(Ref(t, -1, 0, 0, rela, f"{name} has no contents in the file (SHT_NOBITS)"))
            continue
        if t.size % word:
            out.append(Ref(t, -1, 0, 0, rela, f"{name} size {t.size} is not a multiple of {word}"))
        relocs: dict[int, list] = {}
        if rsec is not None:
            for r in elf.relocations(rsec):
                relocs.setdefault(r.offset, []).append(r)
        for slot in range(t.size // word):
            rs = relocs.get(slot * word, [])
            if len(rs) != 1 or symtab is None:
                out.append(Ref(t, slot, 0, 0, rela, "entry has no relocation" if not rs else
                               f"entry has {len(rs)} relocations"))
                continue
            r = rs[0]
            if r.type not in (mips.R_MIPS_32, mips.R_MIPS_64) or r.type2 or r.type3:
                out.append(Ref(t, slot, 0, 0, rela, f"entry's relocation "
                               f"{mips.reloc_name(r.type)} is not an absolute pointer"))
                continue
            sym = symtab[r.sym]
            if not sym.section:
                out.append(Ref(t, slot, 0, 0, rela, "entry points at undefined symbol "
                               f"{sym.name or r.sym}"))
                continue
            addend = r.addend if r.addend is not None else struct.unpack_from(fmt, data,
                                                                               slot * word)[0]
            out.append(Ref(t, slot, sym.section, (sym.value + addend) & mask, rela, ""))
    return out


def linked_tables(elf, symbols=None) -> list[tuple[str, int, bytes]]:
    """(table name, address of the first word, bytes) of each table of a linked image: the
    sections themselves, or the kernel linker script's __start_mcount_loc..__stop_mcount_loc
    (which holds both tables' entries in a real vmlinux) from ``symbols`` (the symbol
    table or a System.map; None: sections only)."""
    out = []
    for s in elf.sections:
        if s.name in TABLES and s.type != C.SHT_NOBITS:
            out.append((s.name, s.addr, elf.section_data(s)))
    if out or symbols is None:
        return out
    syms = {}
    for s in symbols:
        if s.name in ("__start_mcount_loc", "__stop_mcount_loc") and s.section:
            syms[s.name] = s.value
    if len(syms) == 2 and syms["__stop_mcount_loc"] >= syms["__start_mcount_loc"]:
        a, b = syms["__start_mcount_loc"], syms["__stop_mcount_loc"]
        for s in elf.sections:
            if s.type != C.SHT_NOBITS and s.flags & C.SHF_ALLOC and s.addr <= a and b <= s.addr + s.size:
                out.append((MCOUNT, a, elf.section_data(s)[a - s.addr:b - s.addr]))
                break
    return out


def words(elf, data: bytes) -> tuple:
    """A linked table's words (addresses), in the image's byte order and word size."""
    n = len(data) // elf.word
    return struct.unpack_from(f"{elf.endian}{n}{'I' if elf.word == 4 else 'Q'}", data)
