"""Relocation entry layouts and r_info codecs.

gABI ("Relocation"): Elf32 r_info = sym << 8 | type; Elf64 r_info = sym << 32 | type.
MIPS64 (n64) is different: the "64-bit ELF Object File Specification" (MIPS
Technologies, 1996, section 2.9) splits r_info into r_sym (a 32-bit word in the
file's byte order) followed by four bytes r_ssym, r_type3, r_type2, r_type, in
that order whatever the endianness. Decoding n64 r_info as a plain 64-bit word
(as LIEF does) gives nonsense on little-endian files.
"""

from __future__ import annotations

import struct
from collections import namedtuple


class Reloc(namedtuple("Reloc", "offset sym type addend type2 type3 ssym", defaults=(None, 0, 0, 0,))):
    """One decoded relocation. ``addend`` is None for REL (implicit in the data)."""
    __slots__ = ()



class RelocLayout:
    """Byte layout of one relocation-section flavour (class, REL/RELA, n64 or not)."""

    __slots__ = ("is64", "rela", "mips64", "endian", "entsize", "fmt", "_struct",
                 "sym_field", "sym_width")

    def __init__(self, is64: bool, rela: bool, mips64: bool, endian: str):
        self.is64, self.rela, self.mips64, self.endian = is64, rela, mips64, endian
        if not is64:
            fmt = "IIi" if rela else "II"
            # r_info is a 32-bit word; sym is its upper 24 bits.
            self.sym_field, self.sym_width = (5, 3) if endian == "<" else (4, 3)
        elif mips64:
            fmt = "QIBBBBq" if rela else "QIBBBB"
            self.sym_field, self.sym_width = 8, 4
        else:
            fmt = "QQq" if rela else "QQ"
            self.sym_field, self.sym_width = (12, 4) if endian == "<" else (8, 4)
        self.fmt = endian + fmt
        self._struct = struct.Struct(self.fmt)
        self.entsize = self._struct.size

    # -- decoding ---------------------------------------------------------
    def _make(self, t: tuple) -> Reloc:
        if not self.is64:
            off, info = t[0], t[1]
            return Reloc(off, info >> 8, info & 0xFF, t[2] if self.rela else None)
        if self.mips64:
            off, sym, ssym, t3, t2, ty = t[:6]
            return Reloc(off, sym, ty, t[6] if self.rela else None, t2, t3, ssym)
        off, info = t[0], t[1]
        return Reloc(off, info >> 32, info & 0xFFFFFFFF, t[2] if self.rela else None)

    def decode_all(self, data) -> list[Reloc]:
        """Every entry of a relocation section's bytes (length a multiple of entsize)."""
        make = self._make
        return [make(t) for t in self._struct.iter_unpack(data)]

    def offsets_types(self, data, indexes) -> list[tuple[int, int]]:
        """(r_offset, r_type) of the given entries, without building Reloc tuples
        (for n64, the first of the three types: the one a call relocation uses)."""
        u, ent = self._struct.unpack_from, self.entsize
        rows = [u(data, k * ent) for k in indexes]
        if not self.is64:
            return [(t[0], t[1] & 0xFF) for t in rows]
        if self.mips64:
            return [(t[0], t[5]) for t in rows]
        return [(t[0], t[1] & 0xFFFFFFFF) for t in rows]

    def decode_at(self, data, pos: int) -> Reloc:
        return self._make(self._struct.unpack_from(data, pos))

    def find_sym(self, data, sym: int) -> list[int]:
        """Entry indexes whose r_sym is ``sym``, found by a bytes-level scan.

        Large objects (a vmlinux.o has ~440k relocations) make a per-entry Python
        loop the dominant cost; searching the encoded symbol index costs one C
        scan plus one step per hit. Hits not on the r_sym field are discarded.
        """
        order = "little" if self.endian == "<" else "big"
        if sym >= 1 << (8 * self.sym_width):
            return []
        pat = sym.to_bytes(self.sym_width, order)
        field, ent = self.sym_field, self.entsize
        out = []
        find = data.find
        pos = find(pat, field)
        while pos >= 0:
            rel = pos - field
            if rel % ent == 0:
                out.append(rel // ent)
                pos = find(pat, pos + ent)
            else:
                pos = find(pat, pos + 1)
        return out

    # -- encoding ---------------------------------------------------------
    def encode_many(self, offsets, syms, rtype: int, addends=None) -> bytes:
        """Entries for parallel sequences, packed in one call (a vmlinux.o has ~24k)."""
        n = len(offsets)
        if addends is None:
            addends = [0] * n
        if not self.is64:
            infos = [(sym << 8) | (rtype & 0xFF) for sym in syms]
            cols = (offsets, infos, addends) if self.rela else (offsets, infos)
        elif self.mips64:
            z = [0] * n
            r = [rtype] * n
            cols = (offsets, syms, z, z, z, r) + ((addends,) if self.rela else ())
        else:
            infos = [(sym << 32) | rtype for sym in syms]
            cols = (offsets, infos, addends) if self.rela else (offsets, infos)
        flat = [v for row in zip(*cols) for v in row]
        return struct.pack(self.endian + self.fmt[1:] * n, *flat)

    def encode(self, offset: int, sym: int, rtype: int, addend: int = 0) -> bytes:
        """One entry; n64 entries carry ``rtype`` as r_type with r_type2/3 = R_MIPS_NONE."""
        if not self.is64:
            info = (sym << 8) | (rtype & 0xFF)
            args = (offset, info, addend) if self.rela else (offset, info)
        elif self.mips64:
            args = (offset, sym, 0, 0, 0, rtype) + ((addend,) if self.rela else ())
        else:
            info = (sym << 32) | rtype
            args = (offset, info, addend) if self.rela else (offset, info)
        return self._struct.pack(*args)
