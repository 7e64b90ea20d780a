"""Structured mutations of ELF objects, for the fuzzer.

The layout is parsed here with ``struct`` alone (never with recordpatch's reader: a
mutator must not share the code it attacks), tolerantly: whatever cannot be located
is simply not offered as a target. Every mutator takes ``(data, layout, rng)`` and
returns ``(description, new_bytes)``; the description is exact enough to reproduce
the case by hand (field, index, old -> new value).
"""

from __future__ import annotations

import random
import struct

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL = 0, 1, 2, 3, 4, 8, 9
SHT_DYNSYM, SHT_SYMTAB_SHNDX = 11, 18
SHN_XINDEX = 0xFFFF

# field -> (offset, struct code) for each class
EHDR = {
    32: {"e_type": (16, "H"), "e_machine": (18, "H"), "e_version": (20, "I"), "e_entry": (24, "I"),
         "e_phoff": (28, "I"), "e_shoff": (32, "I"), "e_flags": (36, "I"), "e_ehsize": (40, "H"),
         "e_phentsize": (42, "H"), "e_phnum": (44, "H"), "e_shentsize": (46, "H"),
         "e_shnum": (48, "H"), "e_shstrndx": (50, "H")},
    64: {"e_type": (16, "H"), "e_machine": (18, "H"), "e_version": (20, "I"), "e_entry": (24, "Q"),
         "e_phoff": (32, "Q"), "e_shoff": (40, "Q"), "e_flags": (48, "I"), "e_ehsize": (52, "H"),
         "e_phentsize": (54, "H"), "e_phnum": (56, "H"), "e_shentsize": (58, "H"),
         "e_shnum": (60, "H"), "e_shstrndx": (62, "H")},
}
SHDR_NAMES = ("sh_name", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link",
              "sh_info", "sh_addralign", "sh_entsize")
SHDR = {32: dict(zip(SHDR_NAMES, [(4 * i, "I") for i in range(10)])),
        64: dict(zip(SHDR_NAMES, [(0, "I"), (4, "I"), (8, "Q"), (16, "Q"), (24, "Q"), (32, "Q"),
                                  (40, "I"), (44, "I"), (48, "Q"), (56, "Q")]))}
SYM = {32: {"st_name": (0, "I"), "st_value": (4, "I"), "st_size": (8, "I"), "st_info": (12, "B"),
            "st_other": (13, "B"), "st_shndx": (14, "H")},
       64: {"st_name": (0, "I"), "st_info": (4, "B"), "st_other": (5, "B"), "st_shndx": (6, "H"),
            "st_value": (8, "Q"), "st_size": (16, "Q")}}
SHDR_SIZE = {32: 40, 64: 64}
SYM_SIZE = {32: 16, 64: 24}
EHDR_SIZE = {32: 52, 64: 64}


class Sec:
    __slots__ = ("index", "hdr_pos", "name", "type", "flags", "offset", "size", "link", "info",
                 "entsize", "label")

    def __init__(self, index, hdr_pos, f):
        self.index, self.hdr_pos = index, hdr_pos
        (self.name, self.type, self.flags, _, self.offset, self.size, self.link, self.info, _,
         self.entsize) = f
        self.label = ""


class Layout:
    """Where things are in an ELF image, as far as the bytes allow."""

    def __init__(self, data: bytes):
        self.ok = len(data) >= 64 and data[:4] == b"\x7fELF" and data[4] in (1, 2) and data[5] in (1, 2)
        self.sections: list[Sec] = []
        if not self.ok:
            return
        self.bits = 32 if data[4] == 1 else 64
        self.e = "<" if data[5] == 1 else ">"
        g = self.get_ehdr
        self.shoff, self.e_shnum, self.e_shstrndx = g(data, "e_shoff"), g(data, "e_shnum"), g(data, "e_shstrndx")
        self.shsize = SHDR_SIZE[self.bits]
        if not self.shoff or self.shoff + self.shsize > len(data):
            return
        first = self._shdr(data, self.shoff)
        shnum = self.e_shnum or first[5]
        shstrndx = first[6] if self.e_shstrndx == SHN_XINDEX else self.e_shstrndx
        shnum = min(shnum, (len(data) - self.shoff) // self.shsize)
        self.shnum, self.shstrndx = shnum, shstrndx
        for i in range(shnum):
            pos = self.shoff + i * self.shsize
            self.sections.append(Sec(i, pos, self._shdr(data, pos)))
        if shstrndx < shnum:
            st = self.sections[shstrndx]
            blob = data[st.offset:st.offset + st.size]
            for s in self.sections:
                end = blob.find(b"\0", s.name)
                s.label = blob[s.name:end].decode("latin-1") if 0 <= s.name < len(blob) and end >= 0 else ""

    def _shdr(self, data, pos):
        fmt = self.e + ("IIIIIIIIII" if self.bits == 32 else "IIQQQQIIQQ")
        return struct.unpack_from(fmt, data, pos)

    def get_ehdr(self, data, field):
        off, code = EHDR[self.bits][field]
        return struct.unpack_from(self.e + code, data, off)[0]

    def of_type(self, *types):
        return [s for s in self.sections if s.type in types]

    def in_file(self, s: Sec, n: int) -> bool:
        return s.type != SHT_NOBITS and s.offset + s.size <= n

    def named(self, label):
        return [s for s in self.sections if s.label == label]


# ------------------------------------------------------------------ byte helpers
def put(buf: bytearray, pos: int, e: str, code: str, value: int) -> int:
    """Store ``value`` (masked to the field width) at ``pos``; return the old value."""
    size = struct.calcsize(code)
    if pos < 0 or pos + size > len(buf):
        return -1
    old = struct.unpack_from(e + code, buf, pos)[0]
    struct.pack_into(e + code, buf, pos, value & ((1 << (8 * size)) - 1))
    return old


def interesting(rng: random.Random, width: int, n: int, current: int, others=()) -> int:
    """A value for a field of ``width`` bytes in a file of ``n`` bytes: boundaries first."""
    top = (1 << (8 * width)) - 1
    pool = [0, 1, 2, 3, 4, 7, 8, n, n - 1, n + 1, n // 2, top, top >> 1, (top >> 1) + 1, 0xFF00,
            0xFFFF, 0xFFF1, 0xFF01, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
            current + 1, current - 1, current + 4, current - 4, current * 2, current + n,
            rng.randrange(0, max(1, n)), rng.randrange(0, top + 1)]
    pool.extend(others)
    return rng.choice(pool) & top


# ------------------------------------------------------------------ mutators
def m_bitflip(data, lay, rng):
    buf = bytearray(data)
    k = rng.choice((1, 1, 2, 3, 8))
    hot = []
    if lay.ok:
        hot.append((0, EHDR_SIZE[lay.bits]))
        if lay.sections:
            hot.append((lay.shoff, lay.shoff + lay.shsize * len(lay.sections)))
        for s in lay.of_type(SHT_REL, SHT_RELA, SHT_SYMTAB):
            if lay.in_file(s, len(data)) and s.size:
                hot.append((s.offset, s.offset + s.size))
    where = []
    for _ in range(k):
        if hot and rng.random() < 0.7:
            a, b = rng.choice(hot)
            pos = rng.randrange(a, max(a + 1, min(b, len(buf))))
        else:
            pos = rng.randrange(len(buf))
        if pos >= len(buf):
            continue
        bit = rng.randrange(8)
        buf[pos] ^= 1 << bit
        where.append(f"{pos:#x}.{bit}")
    return f"bitflip {','.join(where)}", bytes(buf)


def m_bytes(data, lay, rng):
    buf = bytearray(data)
    pos = rng.randrange(len(buf))
    n = rng.choice((1, 2, 4, 8, 16))
    val = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x01))
    buf[pos:pos + n] = bytes([val]) * len(buf[pos:pos + n])
    return f"set {n} bytes at {pos:#x} to {val:#04x}", bytes(buf)


def m_truncate_random(data, lay, rng):
    n = rng.randrange(len(data))
    return f"truncate to {n}", data[:n]


def m_truncate_struct(data, lay, rng):
    cuts = [0, 1, 4, 16, 17, 51, 52, 63, 64]
    if lay.ok:
        if lay.sections:
            cuts += [lay.shoff, lay.shoff + 1, lay.shoff + lay.shsize, lay.shoff + lay.shsize - 1,
                     lay.shoff + lay.shsize * len(lay.sections) - 1]
            for s in rng.sample(lay.sections, min(6, len(lay.sections))):
                cuts += [s.offset, s.offset + s.size - 1, s.offset + s.size // 2, s.hdr_pos + 20]
    cuts = [c for c in cuts if 0 <= c < len(data)]
    n = rng.choice(cuts) if cuts else 0
    return f"truncate at structure boundary {n}", data[:n]


def m_extend(data, lay, rng):
    extra = rng.choice((b"\0", b"\0" * 7, b"\xff" * 64, bytes(rng.randrange(256) for _ in range(33))))
    return f"append {len(extra)} bytes", data + extra


def m_ehdr(data, lay, rng):
    if not lay.ok:
        return m_bitflip(data, lay, rng)
    buf = bytearray(data)
    field = rng.choice(("e_shnum", "e_shnum", "e_shstrndx", "e_shstrndx", "e_shoff", "e_shoff",
                        "e_shentsize", "e_type", "e_machine", "e_flags", "e_version", "e_ehsize",
                        "e_phoff", "e_phnum"))
    off, code = EHDR[lay.bits][field]
    cur = lay.get_ehdr(data, field)
    extra = {"e_shnum": [0, len(lay.sections) + 1, len(lay.sections) - 1, 0xFF00, 0xFFFF],
             "e_shstrndx": [0, len(lay.sections), 0xFF00, 0xFFFF, 0xFFFE] +
                           [s.index for s in lay.sections[:8]],
             "e_shentsize": [0, 1, 39, 41, 40, 64, 63, 65],
             "e_type": [0, 2, 3, 4, 0xFF00], "e_machine": [0, 3, 62, 8, 10],
             "e_flags": [0x20, 0x2000, 0x3000, 0x4000, 0x90000000, 0xA0000000, 0x02000000,
                         cur | 0x20, cur ^ 0x1000],
             "e_shoff": [s.offset for s in lay.sections[:8]] + [len(data) - lay.shsize]}.get(field, [])
    val = interesting(rng, struct.calcsize(code), len(data), cur, extra)
    put(buf, off, lay.e, code, val)
    return f"{field} {cur:#x} -> {val:#x}", bytes(buf)


def m_ident(data, lay, rng):
    buf = bytearray(data)
    pos = rng.choice((4, 5, 6, 7))
    val = rng.choice((0, 1, 2, 3, 0xFF))
    old = buf[pos] if pos < len(buf) else -1
    if pos < len(buf):
        buf[pos] = val
    return f"e_ident[{pos}] {old} -> {val}", bytes(buf)


def m_shdr(data, lay, rng):
    if not lay.sections:
        return m_ehdr(data, lay, rng)
    buf = bytearray(data)
    s = rng.choice(lay.sections)
    field = rng.choice(SHDR_NAMES[:1] + SHDR_NAMES[1:] * 2)
    off, code = SHDR[lay.bits][field]
    cur = struct.unpack_from(lay.e + code, data, s.hdr_pos + off)[0]
    n = len(data)
    extra = {
        "sh_offset": [n, n - 1, n - s.size, n - s.size + 1] + [t.offset for t in lay.sections[:8]],
        "sh_size": [n, n - s.offset, n - s.offset + 1, s.size + 1, s.size - 1, s.size + 4,
                    s.size * 1000],
        "sh_link": [len(lay.sections), len(lay.sections) - 1, s.index, 0, 0xFFFF] +
                   [t.index for t in lay.sections[:10]],
        "sh_info": [len(lay.sections), len(lay.sections) - 1, s.index, 0, 0xFFFF] +
                   [t.index for t in lay.sections[:10]],
        "sh_entsize": [0, 1, 3, 4, 8, 12, 16, 24, 40, 64],
        "sh_type": [SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL,
                    SHT_DYNSYM, SHT_SYMTAB_SHNDX, 0x70000000],
        "sh_flags": [0, 2, 4, 6, 7, 0x80, 0x200],
    }.get(field, [])
    val = interesting(rng, struct.calcsize(code), n, cur, extra)
    put(buf, s.hdr_pos + off, lay.e, code, val)
    what = f"section {s.index} ({s.label}) {field} {cur:#x} -> {val:#x}"
    if rng.random() < 0.25:   # and a second field of the same header (type + size, ...)
        f2 = rng.choice(("sh_size", "sh_offset", "sh_type", "sh_entsize"))
        o2, c2 = SHDR[lay.bits][f2]
        cur2 = struct.unpack_from(lay.e + c2, buf, s.hdr_pos + o2)[0]
        v2 = interesting(rng, struct.calcsize(c2), n, cur2, [0, n, n - s.offset, s.size + 8])
        put(buf, s.hdr_pos + o2, lay.e, c2, v2)
        what += f", {f2} {cur2:#x} -> {v2:#x}"
    return what, bytes(buf)


def m_type_swap(data, lay, rng):
    """Give two sections each other's sh_type (a .rel section becomes .symtab, ...)."""
    if len(lay.sections) < 3:
        return m_shdr(data, lay, rng)
    buf = bytearray(data)
    a, b = rng.sample(lay.sections[1:], 2)
    off, code = SHDR[lay.bits]["sh_type"]
    put(buf, a.hdr_pos + off, lay.e, code, b.type)
    put(buf, b.hdr_pos + off, lay.e, code, a.type)
    return f"swap sh_type of sections {a.index} ({a.label}) and {b.index} ({b.label})", bytes(buf)


def m_overlap(data, lay, rng):
    """Make sections overlap each other or the section header table."""
    cands = [s for s in lay.sections[1:] if s.type != SHT_NOBITS]
    if len(cands) < 2:
        return m_shdr(data, lay, rng)
    buf = bytearray(data)
    a, b = rng.sample(cands, 2)
    choice = rng.randrange(4)
    off_o, code_o = SHDR[lay.bits]["sh_offset"]
    off_s, code_s = SHDR[lay.bits]["sh_size"]
    if choice == 0:       # a starts where b starts
        put(buf, a.hdr_pos + off_o, lay.e, code_o, b.offset)
        what = f"section {a.index} ({a.label}) moved onto {b.index} ({b.label})"
    elif choice == 1:     # a grows over whatever follows it
        new = min(len(data) - a.offset, a.size + max(4, b.size))
        put(buf, a.hdr_pos + off_s, lay.e, code_s, new)
        what = f"section {a.index} ({a.label}) size {a.size:#x} -> {new:#x}"
    elif choice == 2:     # a's contents are the section header table
        put(buf, a.hdr_pos + off_o, lay.e, code_o, lay.shoff)
        what = f"section {a.index} ({a.label}) offset -> section header table"
    else:                 # the section header table over a's contents (copied there)
        tab = data[lay.shoff:lay.shoff + lay.shsize * len(lay.sections)]
        if a.offset + len(tab) > len(buf):
            return m_shdr(data, lay, rng)
        buf[a.offset:a.offset + len(tab)] = tab
        eoff, ecode = EHDR[lay.bits]["e_shoff"]
        put(buf, eoff, lay.e, ecode, a.offset)
        what = f"section header table moved over section {a.index} ({a.label})"
    return what, bytes(buf)


def m_extnum(data, lay, rng):
    """Extended section numbering (gABI): e_shnum = 0 / e_shstrndx = SHN_XINDEX, with lies."""
    if not lay.sections:
        return m_ehdr(data, lay, rng)
    buf = bytearray(data)
    e = lay.e
    n = len(lay.sections)
    h0 = lay.sections[0].hdr_pos
    so, sc = SHDR[lay.bits]["sh_size"]
    lo, lc = SHDR[lay.bits]["sh_link"]
    put(buf, EHDR[lay.bits]["e_shnum"][0], e, "H", 0)
    put(buf, EHDR[lay.bits]["e_shstrndx"][0], e, "H", SHN_XINDEX)
    size = rng.choice((n, n, n, 0, n + 1, n - 1, 1, 0xFF00, 1 << 24, (1 << 32) - 1, (1 << 40)))
    link = rng.choice((lay.shstrndx, lay.shstrndx, lay.shstrndx, 0, n, n + 100, 0xFFFFFFFF))
    put(buf, h0 + so, e, sc, size)
    put(buf, h0 + lo, e, lc, link)
    return f"extended numbering: shdr0.sh_size={size:#x} sh_link={link:#x} (real {n}, {lay.shstrndx})", bytes(buf)


def _syms(lay, n):
    st = [s for s in lay.of_type(SHT_SYMTAB) if lay.in_file(s, n)]
    return st[0] if st else None


def interesting_symbols(data, lay, st) -> list[int]:
    """Section symbols, functions, and `_mcount`: the symbols recording depends on."""
    esz = SYM_SIZE[lay.bits]
    ioff, icode = SYM[lay.bits]["st_info"]
    noff, ncode = SYM[lay.bits]["st_name"]
    strsec = lay.sections[st.link] if st.link < len(lay.sections) else None
    strs = data[strsec.offset:strsec.offset + strsec.size] if strsec else b""
    out = []
    for i in range(1, min(st.size // esz, 4096)):
        pos = st.offset + i * esz
        info = data[pos + ioff]
        if info & 0xF in (2, 3):      # STT_FUNC, STT_SECTION
            out.append(i)
            continue
        name = struct.unpack_from(lay.e + ncode, data, pos + noff)[0]
        if strs[name:name + 8] == b"_mcount\0":
            out.append(i)
    return out


def m_symbol(data, lay, rng):
    st = _syms(lay, len(data))
    if st is None or st.size < 2 * SYM_SIZE[lay.bits]:
        return m_shdr(data, lay, rng)
    buf = bytearray(data)
    count = st.size // SYM_SIZE[lay.bits]
    hot = interesting_symbols(data, lay, st)
    i = rng.choice(hot) if hot and rng.random() < 0.6 else rng.randrange(1, count)
    field = rng.choice(("st_name", "st_shndx", "st_shndx", "st_value", "st_value", "st_info",
                        "st_size", "st_other"))
    off, code = SYM[lay.bits][field]
    pos = st.offset + i * SYM_SIZE[lay.bits] + off
    cur = struct.unpack_from(lay.e + code, data, pos)[0]
    strsz = lay.sections[st.link].size if st.link < len(lay.sections) else 0
    extra = {"st_name": [strsz, strsz - 1, strsz + 1, 0xFFFFFFFF],
             "st_shndx": [len(lay.sections), len(lay.sections) - 1, 0xFF00, 0xFFF1, 0xFFF2,
                          SHN_XINDEX, SHN_XINDEX, 0xFFFE],
             "st_info": [0x20 | (cur & 0xF), 0x10 | (cur & 0xF), 0x03, 0x12, 0x22, 0xFF]}.get(field, [])
    val = interesting(rng, struct.calcsize(code), len(data), cur, extra)
    put(buf, pos, lay.e, code, val)
    return f"symbol {i} {field} {cur:#x} -> {val:#x}", bytes(buf)


def _reloc_fields(lay, rela):
    """(entsize, {field: (offset, code)}) for this class's REL/RELA entries."""
    if lay.bits == 32:
        f = {"r_offset": (0, "I"), "r_info": (4, "I")}
        if rela:
            f["r_addend"] = (8, "i")
        return (12 if rela else 8), f
    f = {"r_offset": (0, "Q"), "r_sym": (8, "I"), "r_type": (15, "B"), "r_type2": (14, "B"),
         "r_ssym": (12, "B")}
    if rela:
        f["r_addend"] = (16, "q")
    return (24 if rela else 16), f


def m_reloc(data, lay, rng):
    rels = [s for s in lay.of_type(SHT_REL, SHT_RELA) if lay.in_file(s, len(data)) and s.size]
    if not rels:
        return m_shdr(data, lay, rng)
    buf = bytearray(data)
    s = rng.choice(rels)
    ent, fields = _reloc_fields(lay, s.type == SHT_RELA)
    count = s.size // ent
    if not count:
        return m_shdr(data, lay, rng)
    k = rng.randrange(count)
    base = s.offset + k * ent
    tgt = lay.sections[s.info] if s.info < len(lay.sections) else None
    st = _syms(lay, len(data))
    nsyms = st.size // SYM_SIZE[lay.bits] if st else 0
    kind = rng.choice(("r_offset", "r_offset", "r_sym", "r_sym", "r_type"))
    if kind == "r_offset":
        off, code = fields["r_offset"]
        cur = struct.unpack_from(lay.e + code, data, base + off)[0]
        tsz = tgt.size if tgt else 0
        val = interesting(rng, struct.calcsize(code), len(data), cur,
                          [tsz, tsz - 1, tsz - 2, tsz - 4, tsz + 4, tsz + 0x1000, cur + 1, cur + 2,
                           cur | 3, 0, 4])
        put(buf, base + off, lay.e, code, val)
    elif kind == "r_sym":
        hot = interesting_symbols(data, lay, st) if st else []
        val = rng.choice((nsyms, nsyms - 1, nsyms + 1, 0, 1, 0xFFFFFF, rng.randrange(max(1, nsyms)),
                          rng.choice(hot) if hot else 0, rng.choice(hot) if hot else 0))
        if lay.bits == 32:
            off, code = fields["r_info"]
            cur = struct.unpack_from(lay.e + code, data, base + off)[0]
            put(buf, base + off, lay.e, code, (val << 8) | (cur & 0xFF))
            cur >>= 8
        else:
            off, code = fields["r_sym"]
            cur = put(buf, base + off, lay.e, code, val)
    else:
        val = rng.choice((0, 2, 4, 5, 6, 18, 29, 61, 255))
        if lay.bits == 32:
            off, code = fields["r_info"]
            cur = struct.unpack_from(lay.e + code, data, base + off)[0]
            put(buf, base + off, lay.e, code, (cur & ~0xFF) | val)
            cur &= 0xFF
        else:
            off, code = fields[rng.choice(("r_type", "r_type", "r_type2"))]
            cur = put(buf, base + off, lay.e, code, val)
    return f"{s.label or s.index} entry {k} {kind} {cur:#x} -> {val:#x}", bytes(buf)


def m_xindex(data, lay, rng):
    """SHN_XINDEX symbols without a usable SHT_SYMTAB_SHNDX table."""
    buf = bytearray(data)
    shx = lay.of_type(SHT_SYMTAB_SHNDX)
    if shx and rng.random() < 0.7:
        s = shx[0]
        how = rng.randrange(3)
        if how == 0:
            off, code = SHDR[lay.bits]["sh_type"]
            put(buf, s.hdr_pos + off, lay.e, code, SHT_PROGBITS)
            return f"SHT_SYMTAB_SHNDX section {s.index} retyped PROGBITS", bytes(buf)
        if how == 1:
            off, code = SHDR[lay.bits]["sh_link"]
            put(buf, s.hdr_pos + off, lay.e, code, rng.choice((0, s.index, len(lay.sections))))
            return f"SHT_SYMTAB_SHNDX section {s.index} sh_link broken", bytes(buf)
        off, code = SHDR[lay.bits]["sh_size"]
        new = rng.choice((0, 4, s.size // 2, s.size - 4))
        put(buf, s.hdr_pos + off, lay.e, code, new)
        return f"SHT_SYMTAB_SHNDX section {s.index} sh_size {s.size:#x} -> {new:#x}", bytes(buf)
    st = _syms(lay, len(data))
    if st is None or st.size < 2 * SYM_SIZE[lay.bits]:
        return m_shdr(data, lay, rng)
    count = st.size // SYM_SIZE[lay.bits]
    picks = rng.sample(range(1, count), min(count - 1, rng.choice((1, 3))))
    off, code = SYM[lay.bits]["st_shndx"]
    for i in picks:
        put(buf, st.offset + i * SYM_SIZE[lay.bits] + off, lay.e, code, SHN_XINDEX)
    return f"symbols {picks} st_shndx -> SHN_XINDEX", bytes(buf)


def m_huge_count(data, lay, rng):
    """Counts that would allocate a lot if believed: table sizes, e_shnum, shdr0.sh_size."""
    cands = lay.of_type(SHT_SYMTAB, SHT_REL, SHT_RELA, SHT_STRTAB, SHT_SYMTAB_SHNDX)
    if not cands:
        return m_ehdr(data, lay, rng)
    buf = bytearray(data)
    s = rng.choice(cands)
    off, code = SHDR[lay.bits]["sh_size"]
    top = (1 << (8 * struct.calcsize(code))) - 1
    val = rng.choice((top, top // 24 * 24, 1 << 31, (1 << 30) + 8, len(data) * 64,
                      len(data) - s.offset - (len(data) - s.offset) % 8))
    put(buf, s.hdr_pos + off, lay.e, code, val)
    return f"section {s.index} ({s.label}) sh_size {s.size:#x} -> {val:#x}", bytes(buf)


def m_splice(data, lay, rng):
    """Copy one section header (or a chunk of bytes) over another."""
    buf = bytearray(data)
    if len(lay.sections) >= 2 and rng.random() < 0.6:
        a, b = rng.sample(lay.sections, 2)
        buf[b.hdr_pos:b.hdr_pos + lay.shsize] = data[a.hdr_pos:a.hdr_pos + lay.shsize]
        return f"section header {a.index} ({a.label}) copied over {b.index} ({b.label})", bytes(buf)
    n = rng.choice((4, 8, 16, 64, 256))
    src, dst = rng.randrange(len(data)), rng.randrange(len(data))
    chunk = data[src:src + n]
    buf[dst:dst + len(chunk)] = chunk
    return f"copy {len(chunk)} bytes {src:#x} -> {dst:#x}", bytes(buf)


def m_mcount_dup(data, lay, rng):
    """On a recorded object: duplicate, hide or misdirect __mcount_loc / its relocations."""
    tab = lay.named("__mcount_loc")
    rel = lay.named(".rel__mcount_loc") + lay.named(".rela__mcount_loc")
    if not tab or not rel:
        return m_shdr(data, lay, rng)
    buf = bytearray(data)
    no, nc = SHDR[lay.bits]["sh_name"]
    io_, ic = SHDR[lay.bits]["sh_info"]
    how = rng.randrange(5)
    others = [s for s in lay.sections[1:] if s not in tab and s not in rel]
    o = rng.choice(others) if others else tab[0]
    if how == 0:      # a second section called __mcount_loc
        put(buf, o.hdr_pos + no, lay.e, nc, tab[0].name)
        return f"section {o.index} ({o.label}) renamed __mcount_loc", bytes(buf)
    if how == 1:      # a second .rel(a)__mcount_loc
        put(buf, o.hdr_pos + no, lay.e, nc, rel[0].name)
        return f"section {o.index} ({o.label}) renamed {rel[0].label}", bytes(buf)
    if how == 2:      # table renamed away, relocation still aimed at it
        put(buf, tab[0].hdr_pos + no, lay.e, nc, 0)
        return "__mcount_loc renamed to ''", bytes(buf)
    if how == 3:      # both renamed away: looks unrecorded, but carries the old table
        put(buf, tab[0].hdr_pos + no, lay.e, nc, o.name)
        put(buf, rel[0].hdr_pos + no, lay.e, nc, o.name)
        return f"__mcount_loc and {rel[0].label} renamed {o.label}", bytes(buf)
    val = rng.choice((0, len(lay.sections), o.index, rel[0].index))
    put(buf, rel[0].hdr_pos + io_, lay.e, ic, val)
    return f"{rel[0].label} sh_info -> {val}", bytes(buf)


def m_ext_valid(data, lay, rng):
    """A *valid* switch to extended numbering (e_shnum = 0, e_shstrndx = SHN_XINDEX)."""
    if not lay.sections or lay.e_shnum == 0:
        return m_extnum(data, lay, rng)
    buf = bytearray(data)
    h0 = lay.sections[0].hdr_pos
    put(buf, EHDR[lay.bits]["e_shnum"][0], lay.e, "H", 0)
    so, sc = SHDR[lay.bits]["sh_size"]
    put(buf, h0 + so, lay.e, sc, len(lay.sections))
    if rng.random() < 0.5:
        put(buf, EHDR[lay.bits]["e_shstrndx"][0], lay.e, "H", SHN_XINDEX)
        lo, lc = SHDR[lay.bits]["sh_link"]
        put(buf, h0 + lo, lay.e, lc, lay.shstrndx)
        return "valid extended numbering (e_shnum=0, e_shstrndx=SHN_XINDEX)", bytes(buf)
    return "valid extended numbering (e_shnum=0)", bytes(buf)


#: (mutator, weight). Weights favour the structured mutators.
MUTATORS = [
    (m_bitflip, 12), (m_bytes, 4), (m_truncate_random, 5), (m_truncate_struct, 5), (m_extend, 1),
    (m_ehdr, 8), (m_ident, 2), (m_shdr, 16), (m_type_swap, 3), (m_overlap, 4), (m_extnum, 5),
    (m_symbol, 8), (m_reloc, 12), (m_xindex, 4), (m_huge_count, 4), (m_splice, 3),
    (m_ext_valid, 3),
]
#: Mutators for recorded objects (duplicate / misdirected tables), added to the above.
RECORDED_MUTATORS = [(m_mcount_dup, 20)]


def mutate(data: bytes, rng: random.Random, recorded: bool = False) -> tuple[list[str], bytes]:
    """1-3 stacked mutations of ``data``."""
    pool = MUTATORS + (RECORDED_MUTATORS if recorded else [])
    funcs, weights = zip(*pool)
    k = rng.choices((1, 2, 3), (70, 20, 10))[0]
    steps = []
    for _ in range(k):
        if not data:
            break
        f = rng.choices(funcs, weights)[0]
        what, data = f(data, Layout(data), rng)
        steps.append(f"{f.__name__[2:]}: {what}")
    return steps, data
