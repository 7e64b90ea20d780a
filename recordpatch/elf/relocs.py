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
import sys
from array import array
from itertools import accumulate, chain, compress, repeat
from operator import add, and_, floordiv, itemgetter, lshift, mod, or_, rshift

from ..errors import RecordpatchError
from ..tuples import named


_HOST = "<" if sys.byteorder == "little" else ">"


def _occurrences(parts: list, width: int) -> list[int]:
    """Where each match of a ``width``-byte pattern starts, from ``bytes.split``'s pieces:
    match j starts at len(parts[0]) + ... + len(parts[j]) + j * width."""
    return list(accumulate(map(add, map(len, parts[:-1]), chain((0,), repeat(width)))))


class Reloc(named("Reloc", "offset sym type addend type2 type3 ssym", defaults=(None, 0, 0, 0,))):
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

    def offsets_types(self, data, indexes) -> tuple[list[int], list[int]]:
        """(r_offsets, r_types) of the given entries, as two lists (for n64, the
        first of the three types: the one a call relocation uses). Only those entries
        are read: gathered from views of the table, byte-swapped afterwards if needed."""
        if not indexes:
            return [], []
        get = itemgetter(*indexes)
        view = memoryview(data)

        def gather(column, code):
            got = get(column)
            a = array(code, got if len(indexes) > 1 else (got,))
            if self.endian != _HOST:
                a.byteswap()
            return a.tolist()

        # words[k::stride] is field k of every entry: a strided view read by C, in place of
        # a struct.unpack per entry (a vmlinux.o has ~440k)
        if not self.is64:
            words = view.cast("I")
            stride = self.entsize // 4
            return (gather(words[0::stride], "I"),
                    list(map(and_, gather(words[1::stride], "I"), repeat(0xFF))))
        dwords = view.cast("Q")
        stride = self.entsize // 8
        offsets = gather(dwords[0::stride], "Q")
        if self.mips64:   # r_type is the entry's 16th byte in either byte order
            got = get(view[15::self.entsize])
            return offsets, list(got) if len(indexes) > 1 else [got]
        return offsets, list(map(and_, gather(dwords[1::stride], "Q"), repeat(0xFFFFFFFF)))

    def offsets_types_against(self, data, syms) -> tuple[list[int], list[int]]:
        """(r_offsets, r_types) of the entries whose r_sym is in ``syms``, in table order.

        One symbol (the recording case) in an Elf32 table goes through
        :meth:`_split_hits`; anything else (n64: r_sym is a whole word, which
        :meth:`find_sym` searches as directly), or a table where that shortcut cannot
        be exact, through :meth:`find_sym` and :meth:`offsets_types`.
        """
        if len(syms) == 1 and not self.is64:
            got = self._split_hits(data, syms[0])
            if got is not None:
                return got
        hits: list[int] = []
        for sym in syms:
            hits.extend(self.find_sym(data, sym))
        if len(syms) > 1:
            hits.sort()
        return self.offsets_types(data, hits)

    def _split_hits(self, data, sym: int):
        """Elf32: the table's bytes split on the encoded r_sym. The piece before each hit
        ends with that entry's r_offset (and, little-endian, its r_type); big-endian,
        the piece after starts with its r_type. All C-level passes, no per-entry Python.

        Exact only if every occurrence sits on an r_sym field (pieces of the right
        lengths modulo the entry size); otherwise :meth:`_hits_among_strays` decides.
        """
        if sym < 0 or sym >= 1 << (8 * self.sym_width):
            return [], []
        order = "little" if self.endian == "<" else "big"
        pat = sym.to_bytes(self.sym_width, order)
        ent, field, width = self.entsize, self.sym_field, len(pat)
        raw = bytes(data)
        parts = raw.split(pat)
        if len(parts) == 1:
            return [], []
        if len(parts[0]) % ent != field or \
                not set(map(mod, map(len, parts[1:-1]), repeat(ent))) <= {ent - width}:
            return self._hits_among_strays(raw, parts, ent, field, width)
        head = parts[:-1]                    # each ends with bytes [0, field) of its entry
        # the r_offset bytes cut from each piece by one itemgetter(slice) mapped in C, in
        # place of decoding each matching entry
        offs = array("I")
        offs.frombytes(b"".join(map(itemgetter(slice(-field, 4 - field or None)), head)))
        if self.endian != _HOST:
            offs.byteswap()
        # r_type: byte 4 little-endian (before r_sym), byte 7 big-endian (after it)
        if self.endian == "<":
            types = list(map(itemgetter(4 - field), head))
        else:
            types = list(map(itemgetter(7 - field - width), parts[1:]))
        return offs.tolist(), types

    def _hits_among_strays(self, raw: bytes, parts: list, ent: int, field: int, width: int):
        """Some occurrences of the pattern lie off the r_sym field (an r_offset equal to
        the symbol index modulo 2**24 is enough). split() skips an occurrence that overlaps
        one found before it, so the on-field ones are all there unless a stray one touches
        an r_sym field: then None (the caller decodes every entry's r_sym instead)."""
        starts = _occurrences(parts, width)
        rems = list(map(mod, starts, repeat(ent)))
        for s in compress(starts, map(field.__ne__, rems)):
            k = s // ent
            for f0 in (k * ent + field, (k + 1) * ent + field):
                if s < f0 + width and s + width > f0:
                    return None
        on = list(map(floordiv, compress(starts, map(field.__eq__, rems)), repeat(ent)))
        return self.offsets_types(raw, on)

    def decode_at(self, data, pos: int) -> Reloc:
        return self._make(self._struct.unpack_from(data, pos))

    def find_sym(self, data, sym: int) -> list[int]:
        """Entry indexes whose r_sym is ``sym``, in table order.

        Large objects (a vmlinux.o has ~440k relocations) make any per-entry Python
        loop the dominant cost. The 32-bit words holding r_sym are cut from a view of
        the table (C), their bytes split on the encoded index, in file byte order (C),
        and the hits' positions summed from the pieces' lengths (C); only when a hit
        straddles two words (never seen in a real object, but possible) does a
        per-entry comparison decide.
        """
        if sym < 0 or sym >= 1 << (8 * self.sym_width):
            return []
        order = "little" if self.endian == "<" else "big"
        pat = sym.to_bytes(self.sym_width, order)
        # Elf32 r_info: (type, sym) little-endian, (sym, type) big-endian; n64 r_sym and
        # Elf64 r_info's high half are whole words
        word, where = divmod(self.sym_field, 4)
        col = memoryview(data).cast("I")[word::self.entsize // 4].tobytes()
        parts = col.split(pat)
        if len(parts) == 1:
            return []
        starts = _occurrences(parts, len(pat))
        if set(map(and_, starts, repeat(3))) == {where}:
            return list(map(rshift, starts, repeat(2)))
        return self._sym_by_entry(col, pat, where)

    @staticmethod
    def _sym_by_entry(col: bytes, pat: bytes, where: int) -> list[int]:
        """The slow, always exact form of :meth:`find_sym`: each entry's r_sym compared."""
        w = len(pat)
        return [k for k in range(len(col) // 4) if col[4 * k + where:4 * k + where + w] == pat]

    def shift_syms(self, data, first: int, by: int) -> bytes | None:
        """The table with every r_sym >= ``first`` raised by ``by`` (symbols inserted into
        .symtab at ``first``), or None when no entry refers that high. Only the r_sym
        field changes: the 32-bit word holding it (Elf32 r_info, whose low byte is
        r_type; n64 r_sym; Elf64 r_info's high half) is rewritten, nothing else."""
        words = array("I", bytes(data))
        if self.endian != _HOST:
            words.byteswap()
        stride = self.entsize // 4
        col = words[self.sym_field // 4::stride]
        shift = 8 if not self.is64 else 0          # Elf32: sym = r_info >> 8
        low = first << shift
        if not col or max(col) < low:
            return None
        step = by << shift
        new = [w + step if w >= low else w for w in col]
        if max(new) > 0xFFFFFFFF:
            raise RecordpatchError(f"symbol index {max(new) >> shift} does not fit in r_sym")
        words[self.sym_field // 4::stride] = array("I", new)
        if self.endian != _HOST:
            words.byteswap()
        return words.tobytes()

    # -- encoding ---------------------------------------------------------
    def encode_many(self, offsets, syms, rtype: int, addends=None) -> bytes:
        """Entries for parallel sequences, packed in one call (a vmlinux.o has ~24k)."""
        n = len(offsets)
        if not self.is64 and not self.rela and n:
            # Elf32 REL, the o32 kernel's table: two words per entry, interleaved by
            # slice assignment instead of a 2n-argument struct.pack
            info = array("I", map(or_, map(lshift, syms, repeat(8)), repeat(rtype & 0xFF)))
            out = array("I", bytes(8 * n))
            out[0::2] = array("I", offsets)
            out[1::2] = info
            if self.endian != _HOST:
                out.byteswap()
            return out.tobytes()
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
        return struct.pack(self.endian + self.fmt[1:] * n, *chain.from_iterable(zip(*cols)))

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
