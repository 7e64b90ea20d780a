"""Read-only ELF model over an in-memory image.

One class, :class:`ElfFile`, owns the parsing of headers, section headers,
symbols and relocations for ELF32/ELF64, either byte order, ET_REL and ET_EXEC.
Every offset and count taken from the file is checked against the file size
before it is used, so a malformed file raises :class:`ElfError` (one message)
instead of an IndexError or a huge allocation.

The file is read into ``bytes`` rather than mmap'ed: a file truncated by another
process while we look at it must not be able to kill us with SIGBUS.
"""

from __future__ import annotations

import struct
from operator import itemgetter

from ..errors import ElfError
from ..tuples import named
from . import consts as C
from .relocs import Reloc, RelocLayout


class Section(named("Section", "index name name_offset type flags addr offset size link info addralign entsize")):
    """A section header (gABI figure 4-8: sh_name ... sh_entsize, in file order) after
    its index and resolved name."""
    __slots__ = ()



class Symbol(named("Symbol", "index name value size info other shndx raw_shndx")):
    """A symbol-table entry; ``shndx`` already resolved through SHT_SYMTAB_SHNDX."""
    __slots__ = ()


    @property
    def section(self) -> int:
        """The defining section's index, or 0 if undefined, absolute or common."""
        if self.raw_shndx == C.SHN_XINDEX or self.raw_shndx < C.SHN_LORESERVE:
            return self.shndx
        return 0

    @property
    def bind(self) -> int:
        return self.info >> 4

    @property
    def type(self) -> int:
        return self.info & 0xF


# (ehdr fields after e_ident, shdr, sym) formats without the byte-order prefix: what this
# reader unpacks and writer.py packs.
EHDR_FMT = {32: "HHIIIIIHHHHHH", 64: "HHIQQQIHHHHHH"}
SHDR_FMT = {32: "IIIIIIIIII", 64: "IIQQQQIIQQ"}
SYM_FMT = {32: "IIIBBH", 64: "IBBHQQ"}   # Elf32: name value size info other shndx;
#                                            Elf64: name info other shndx value size
#: File offsets of e_shoff and e_shnum in the ELF header (16 + EHDR_FMT's fields before them).
E_SHOFF = {32: 32, 64: 40}
E_SHNUM = {32: 48, 64: 60}
EHDR_SIZE = {32: 52, 64: 64}
SHDR_SIZE = {32: 40, 64: 64}
SYM_SIZE = {32: 16, 64: 24}

#: Upper bound on the section count we accept; the gABI allows 2**32-1, real
#: objects stay far below, and every header costs 40-64 bytes of file anyway.
MAX_SECTIONS = 1 << 24


def _name_offsets(strtab: bytes, name: str) -> list[int]:
    """Every offset in a string table at which ``name`` is read: each occurrence of the
    name followed by NUL (binutils may store a name as the tail of a longer one)."""
    want = name.encode() + b"\0"
    out = []
    pos = strtab.find(want)
    while pos >= 0:
        out.append(pos)
        pos = strtab.find(want, pos + 1)
    return out


def _cstr(blob: bytes, off: int, what: str) -> str:
    if off >= len(blob):
        raise ElfError(f"{what}: name offset {off:#x} outside string table")
    end = blob.find(b"\0", off)
    if end < 0:
        raise ElfError(f"{what}: unterminated name in string table")
    return blob[off:end].decode("utf-8", "replace")


class ElfFile:
    """An ELF image held in memory. Attributes mirror the ELF header fields."""

    def __init__(self, data: bytes):
        self.data = data
        if len(data) < 16 or data[:4] != C.ELFMAG:
            raise ElfError("not an ELF file")
        ei_class, ei_data, ei_version = data[4], data[5], data[6]
        if ei_class not in (C.ELFCLASS32, C.ELFCLASS64):
            raise ElfError(f"unknown ELF class {ei_class}")
        if ei_data not in (C.ELFDATA2LSB, C.ELFDATA2MSB):
            raise ElfError(f"unknown ELF data encoding {ei_data}")
        if ei_version != C.EV_CURRENT:
            raise ElfError(f"unknown ELF version {ei_version}")
        self.bits = 32 if ei_class == C.ELFCLASS32 else 64
        self.endian = "<" if ei_data == C.ELFDATA2LSB else ">"
        self.word = self.bits // 8
        ehsize = EHDR_SIZE[self.bits]
        if len(data) < ehsize:
            raise ElfError(f"truncated: {len(data)} bytes, ELF header needs {ehsize}")
        (self.type, self.machine, self.version, self.entry, self.phoff, self.shoff,
         self.flags, self.ehsize, self.phentsize, self.phnum, self.shentsize,
         e_shnum, e_shstrndx) = struct.unpack_from(self.endian + EHDR_FMT[self.bits], data, 16)
        self._shdr_struct = struct.Struct(self.endian + SHDR_FMT[self.bits])
        self._sym_struct = struct.Struct(self.endian + SYM_FMT[self.bits])
        self.e_shnum, self.e_shstrndx = e_shnum, e_shstrndx
        self.shnum = 0
        self.shstrndx = 0
        self._raw: list[tuple] = []      # section headers as unpacked tuples
        self._shstr = b""                # the section-name table's bytes
        self._sections: list[Section] | None = None
        self._symtab = None
        self._layouts: dict[bool, RelocLayout] = {}
        self._parse_sections(e_shnum, e_shstrndx)

    # ------------------------------------------------------------------ headers
    def _parse_sections(self, e_shnum: int, e_shstrndx: int) -> None:
        """Unpack and validate the section header table. :class:`Section` objects are
        built on first use (:attr:`sections`, :meth:`section`): a vmlinux.o has ~15k
        headers and recording looks at a few dozen of them."""
        data, shoff = self.data, self.shoff
        if shoff == 0:
            if e_shnum:
                raise ElfError(f"e_shnum is {e_shnum} but e_shoff is 0")
            return
        shsize = SHDR_SIZE[self.bits]
        if self.shentsize != shsize:
            raise ElfError(f"e_shentsize is {self.shentsize}, expected {shsize}")
        if shoff + shsize > len(data):
            raise ElfError(f"truncated: section header table at {shoff:#x} is beyond "
                           f"end of file ({len(data):#x} bytes)")
        unpack = self._shdr_struct.unpack_from
        hdr0 = unpack(data, shoff)
        # Extended numbering (gABI "Sections"): real count in shdr[0].sh_size,
        # real string-table index in shdr[0].sh_link.
        shnum = e_shnum if e_shnum else hdr0[5]
        if shnum == 0:
            return
        if shnum > MAX_SECTIONS or shoff + shnum * shsize > len(data):
            raise ElfError(f"truncated: {shnum} section headers at {shoff:#x} "
                           f"do not fit in {len(data):#x} bytes")
        shstrndx = hdr0[6] if e_shstrndx == C.SHN_XINDEX else e_shstrndx
        if shstrndx >= shnum:
            raise ElfError(f"section name table index {shstrndx} out of range "
                           f"({shnum} sections)")
        raw = list(self._shdr_struct.iter_unpack(memoryview(data)[shoff:shoff + shnum * shsize]))
        size = len(data)
        ehsize, tab_end = EHDR_SIZE[self.bits], shoff + shnum * shsize
        self._check_contents(raw, ehsize, shoff, tab_end, size)
        sh = raw[shstrndx]
        if shstrndx and sh[1] != C.SHT_STRTAB:
            # binutils refuses this too; a NULL-typed name table would escape the check above
            raise ElfError(f"section name table (section {shstrndx}) has type {sh[1]}, "
                           "not SHT_STRTAB")
        strtab = data[sh[4]:sh[4] + sh[5]] if sh[1] != C.SHT_NOBITS else b""
        self.shnum, self.shstrndx = shnum, shstrndx
        self._raw, self._shstr = raw, strtab
        # Every name must be readable now, not when (or if) its section is first looked
        # at. With a NUL-terminated table an in-range offset always is; otherwise check
        # each name the slow way, which raises on the first bad one.
        top = max(map(itemgetter(0), raw))
        if strtab[-1:] != b"\0" or top >= len(strtab):
            if top or strtab:
                self._build_sections()

    @staticmethod
    def _check_contents(raw, ehsize: int, shoff: int, tab_end: int, size: int) -> None:
        """Every section's contents lie in the file, clear of the ELF header and of the
        section header table (a plain loop: faster here than any map/compress chain)."""
        for i, h in enumerate(raw):
            # (name, type, flags, addr, offset, size, ...): contents must lie in file,
            # clear of the headers a writer rewrites (the ELF header, the header table).
            # One test in the common case: end > size implies end > shoff.
            end = h[4] + h[5]
            if ((end > shoff and (end > size or h[4] < tab_end)) or h[4] < ehsize) \
                    and h[1] != C.SHT_NOBITS and h[1] != C.SHT_NULL:
                if end > size:
                    raise ElfError(f"section {i}: contents [{h[4]:#x}, {end:#x}) "
                                   f"extend beyond end of file ({size:#x} bytes)")
                if end > h[4]:
                    raise ElfError(f"section {i}: contents [{h[4]:#x}, {end:#x}) overlap the "
                                   + ("ELF header" if h[4] < ehsize else
                                      f"section header table [{shoff:#x}, {tab_end:#x})"))

    def _name(self, i: int, n: int) -> str:
        return _cstr(self._shstr, n, f"section {i}") if n or self._shstr else ""

    def _build_sections(self) -> list[Section]:
        names = self._name_map(self._shstr)
        secs = []
        append = secs.append
        new = tuple.__new__
        for i, h in enumerate(self._raw):
            name = names.get(h[0])
            if name is None:
                name = self._name(i, h[0])
            append(new(Section, (i, name) + h))
        self._sections = secs
        return secs

    @property
    def sections(self) -> list[Section]:
        """Every section header, index order (built on first use)."""
        secs = self._sections
        return secs if secs is not None else self._build_sections()

    @staticmethod
    def _name_map(strtab: bytes) -> dict[int, str]:
        """Offset -> name for every string that starts right after a NUL."""
        out = {}
        off = 0
        for piece in strtab.split(b"\0"):
            out[off] = piece.decode("utf-8", "replace")
            off += len(piece) + 1
        return out

    # ------------------------------------------------------------------ access
    @property
    def is64(self) -> bool:
        return self.bits == 64

    @property
    def is_mips64(self) -> bool:
        """n64 r_info layout applies: EM_MIPS with ELFCLASS64."""
        return self.machine == C.EM_MIPS and self.bits == 64

    def section_data(self, sec: Section) -> bytes:
        if sec.type == C.SHT_NOBITS:
            return b""
        return self.data[sec.offset:sec.offset + sec.size]

    def section_view(self, sec: Section) -> memoryview:
        """The section's bytes without a copy (a vmlinux.o's .text is ~8 MB)."""
        if sec.type == C.SHT_NOBITS:
            return memoryview(b"")
        return memoryview(self.data)[sec.offset:sec.offset + sec.size]

    def section_by_name(self, name: str) -> Section | None:
        """The first section called ``name``, found in the name table's bytes: the
        names of the other sections are never decoded."""
        offs = set(_name_offsets(self._shstr, name))
        if not offs:
            return None
        for i, h in enumerate(self._raw):
            if h[0] in offs:
                return self.section(i)
        return None

    def section(self, index: int, what: str = "section") -> Section:
        if not 0 <= index < self.shnum:
            raise ElfError(f"{what} index {index} out of range ({self.shnum} sections)")
        if self._sections is not None:
            return self._sections[index]
        h = self._raw[index]
        return tuple.__new__(Section, (index, self._name(index, h[0])) + h)

    def relocation_targets(self, target_type: int, target_flags: int) -> list[tuple[int, int]]:
        """(relocation section, section it applies to) index pairs, in header order, for
        targets of type ``target_type`` with all of ``target_flags``. Decided on the
        unpacked headers: a vmlinux.o has ~7k relocation sections, most for data."""
        raw = self._raw
        n = len(raw)
        out = []
        for i in self.indexes_of_type(C.SHT_REL, C.SHT_RELA):
            t = raw[i][7]
            if 0 < t < n and raw[t][1] == target_type and raw[t][2] & target_flags == target_flags:
                out.append((i, t))
        return out

    def indexes_of_type(self, *types: int) -> list[int]:
        """Indexes of the sections whose sh_type is one of ``types``, in order."""
        return [i for i, h in enumerate(self._raw) if h[1] in types]

    # ------------------------------------------------------------------ relocations
    def reloc_layout(self, rela: bool) -> RelocLayout:
        lay = self._layouts.get(rela)
        if lay is None:
            lay = self._layouts[rela] = RelocLayout(self.is64, rela, self.is_mips64, self.endian)
        return lay

    def _reloc_section(self, sec: Section) -> tuple[RelocLayout, bytes]:
        if sec.type not in (C.SHT_REL, C.SHT_RELA):
            raise ElfError(f"section {sec.index} ({sec.name}) is not a relocation section")
        lay = self.reloc_layout(sec.type == C.SHT_RELA)
        if sec.entsize != lay.entsize:
            raise ElfError(f"section {sec.name}: sh_entsize {sec.entsize}, expected {lay.entsize}")
        if sec.size % lay.entsize:
            raise ElfError(f"section {sec.name}: size {sec.size} is not a multiple of "
                           f"entry size {lay.entsize}")
        return lay, self.section_view(sec)

    def relocations(self, sec: Section) -> list[Reloc]:
        lay, data = self._reloc_section(sec)
        return lay.decode_all(data)

    def _entries_against(self, sec: Section, syms):
        """(layout, section bytes, sorted entry indexes whose symbol is in ``syms``)."""
        lay, data = self._reloc_section(sec)
        hits: list[int] = []
        for s in syms:
            hits.extend(lay.find_sym(data, s))
        if len(syms) > 1:
            hits.sort()
        return lay, data, hits

    def relocations_against(self, sec: Section, syms) -> list[tuple[int, Reloc]]:
        """(entry index, reloc) for entries whose symbol is in ``syms``, in table order."""
        lay, data, hits = self._entries_against(sec, syms)
        ent = lay.entsize
        return [(k, lay.decode_at(data, k * ent)) for k in hits]

    def reloc_offsets_types_against(self, sec: Section, syms) -> tuple[list[int], list[int]]:
        """(r_offsets, r_types) of the entries whose symbol is in ``syms``, in table
        order, as two lists: the cheap form of :meth:`relocations_against` for the
        recording loop."""
        lay, data = self._reloc_section(sec)
        return lay.offsets_types_against(data, syms)

    # ------------------------------------------------------------------ symbols
    @property
    def symtab(self) -> "SymbolTable | None":
        if self._symtab is None:
            for i in self.indexes_of_type(C.SHT_SYMTAB)[:1]:
                self._symtab = SymbolTable(self, self.section(i))
        return self._symtab


class SymbolTable:
    """The SHT_SYMTAB section with its string table and SHT_SYMTAB_SHNDX (if any)."""

    def __init__(self, elf: ElfFile, sec: Section):
        self.elf, self.section = elf, sec
        esize = SYM_SIZE[elf.bits]
        if sec.entsize != esize:
            raise ElfError(f"{sec.name}: sh_entsize {sec.entsize}, expected {esize}")
        self.data = elf.section_view(sec)
        self.count = len(self.data) // esize
        self.entsize = esize
        strsec = elf.section(sec.link, f"{sec.name} string table")
        self.strtab = elf.section_data(strsec)
        self.shndx_table = None
        for i in elf.indexes_of_type(C.SHT_SYMTAB_SHNDX):
            s = elf.section(i)
            if s.link == sec.index:
                tab = elf.section_data(s)
                if len(tab) < 4 * self.count:
                    raise ElfError(f"{s.name}: {len(tab) // 4} entries for {self.count} symbols")
                self.shndx_table = tab
                break
        self._unpack = elf._sym_struct.unpack_from
        self._shndx_fmt = struct.Struct(elf.endian + "I").unpack_from

    def _fields(self, i: int) -> tuple[int, int, int, int, int, int]:
        """(name, value, size, info, other, shndx) of entry i in class order."""
        t = self._unpack(self.data, i * self.entsize)
        if self.elf.bits == 32:
            return t
        name, info, other, shndx, value, size = t
        return name, value, size, info, other, shndx

    def resolve_shndx(self, i: int, shndx: int) -> int:
        if shndx == C.SHN_XINDEX:
            if self.shndx_table is None:
                raise ElfError(f"symbol {i} uses SHN_XINDEX but there is no SHT_SYMTAB_SHNDX")
            return self._shndx_fmt(self.shndx_table, 4 * i)[0]
        return shndx

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> Symbol:
        if not 0 <= i < self.count:
            raise ElfError(f"symbol index {i} out of range ({self.count} symbols)")
        name, value, size, info, other, shndx = self._fields(i)
        return Symbol(i, self.name_at(name), value, size, info, other,
                      self.resolve_shndx(i, shndx), shndx)

    def name_at(self, off: int) -> str:
        if off == 0:
            return ""
        return _cstr(self.strtab, off, "symbol")

    def __iter__(self):
        for i in range(self.count):
            yield self[i]

    def iter_raw(self):
        """(index, value, info, section) for every symbol: the cheap walk.

        ``section`` is the index of the section that defines the symbol, through
        SHT_SYMTAB_SHNDX when st_shndx is SHN_XINDEX, and 0 for undefined symbols
        and the other reserved indices (SHN_ABS, SHN_COMMON, ...; gABI "Section
        Header": 0xff00-0xffff are not section indices). Without that filter an
        ABS symbol would pose as section 0xfff1 in a file with > 65,520 sections.
        """
        is32 = self.elf.bits == 32
        it = self.elf._sym_struct.iter_unpack(self.data[:self.count * self.entsize])
        lo, xindex = C.SHN_LORESERVE, C.SHN_XINDEX
        for i, t in enumerate(it):
            if is32:
                _, value, _, info, _, shndx = t
            else:
                _, info, _, shndx, value, _ = t
            if shndx >= lo:
                shndx = self.resolve_shndx(i, shndx) if shndx == xindex else 0
            yield i, value, info, shndx

    def indexes_named(self, name: str) -> list[int]:
        """Indexes of the symbols called ``name``, found by scanning bytes, not entries.

        The string may be stored as the tail of a longer one (binutils merges
        suffixes), so every occurrence followed by NUL is a candidate st_name.
        """
        offs = _name_offsets(self.strtab, name)
        # st_name is the first word of an entry in either class: gather that column and
        # search it for each candidate offset (C-level scans; a vmlinux.o has ~94k symbols)
        col = memoryview(self.data)[:self.count * self.entsize].cast("I")[::self.entsize // 4]
        names = col.tobytes()
        order = "little" if self.elf.endian == "<" else "big"
        out = []
        for off in offs:
            pat = off.to_bytes(4, order)
            p = names.find(pat)
            while p >= 0:
                if not p & 3:
                    out.append(p >> 2)
                p = names.find(pat, p + 1)
        out.sort()
        return out
