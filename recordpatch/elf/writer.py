"""Append-only ELF writer and atomic file replacement.

New sections are added without moving or rewriting a single existing section:
the output is the input, then a grown copy of the section-name table, then a new
section header table (the old entries, then the new ones), then the new
sections' contents. Only the ELF header (e_shoff, e_shnum) and header-table
entries change. This is the layout recordmcount.c produces, so for the same
table the output is byte-for-byte the reference tool's.

The superseded header table stays in the file as dead bytes (nothing may move).
We rewrite its entries to equal their live copies (the name-table entry, and
entry 0 when the count overflows), as recordmcount does, so that the two tools'
outputs stay identical even there.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from ..errors import RecordpatchError
from ..tuples import named
from . import consts as C
from .reader import E_SHNUM, E_SHOFF, EHDR_SIZE, SHDR_FMT, SYM_FMT, ElfFile


class NewRef(named("NewRef", "k")):
    """Refers to the k-th section being added, for sh_link/sh_info of another."""
    __slots__ = ()



class NewSection(named("NewSection", "name type flags data addralign entsize link info", defaults=(0, 0, 0,))):
    """A section to append; link/info may be a NewRef to another new section.
    (A tuples.named record: typing, dataclasses and namedtuple cost start-up time on every
    Kbuild call.)"""
    __slots__ = ()



class Replacement(named("Replacement", "data info", defaults=(None,))):
    """New contents for an existing section (None: keep them), written as a copy at the
    end of the file, and a new sh_info (None: keep it)."""
    __slots__ = ()


def _shared_names(base: int, names: list[str]) -> tuple[bytes, list[int]]:
    """Bytes to append to a string table, and each name's offset.

    A name that is the tail of another new name is not stored twice
    (``__mcount_loc`` lives inside ``.rel__mcount_loc``), as the reference does.
    """
    stored: list[str] = []
    for n in names:
        if any(o != n and o.endswith(n) for o in names) or n in stored:
            continue
        stored.append(n)
    offsets_of: dict[str, int] = {}
    pos = base
    for n in stored:
        offsets_of[n] = pos
        pos += len(n.encode()) + 1
    offs = []
    for n in names:
        if n in offsets_of:
            offs.append(offsets_of[n])
        else:
            host = next(o for o in stored if o.endswith(n))
            offs.append(offsets_of[host] + len(host.encode()) - len(n.encode()))
    return b"".join(n.encode() + b"\0" for n in stored), offs


def append_sections(elf: ElfFile, new: list[NewSection],
                    replace: dict[int, Replacement] | None = None) -> list[bytes | memoryview]:
    """The output image, as chunks to write in order, with ``new`` appended (unchanged
    stretches of the input are memoryviews of it; ``b"".join`` makes one image).

    ``replace``: section index -> :class:`Replacement`. A grown or rewritten section is
    not edited in place (its neighbours would have to move): its new contents go after
    the new sections and its header entry is pointed at them; the old bytes stay, dead.
    Without ``new`` the section-name table is not copied (no name to add)."""
    if not elf.shnum:
        raise RecordpatchError("cannot add sections: the file has no section header table")
    if not elf.shstrndx:
        raise RecordpatchError("cannot add sections: the file has no section name table")
    data = elf.data
    e = elf.endian
    bits = elf.bits
    align = elf.word
    shdr = struct.Struct(e + SHDR_FMT[bits])
    old_n = elf.shnum
    new_n = old_n + len(new)
    shstr = elf.section(elf.shstrndx)

    names_blob, name_offs = _shared_names(shstr.size, [s.name for s in new])
    strtab = elf.section_data(shstr) + names_blob if new else b""
    str_off = len(data)
    t = str_off + len(strtab)
    pad_hdr = (-t) % align
    new_shoff = t + pad_hdr
    body_off = new_shoff + new_n * shdr.size

    # Header-table entries: the old ones byte for byte (copied, not re-packed: a vmlinux.o
    # has ~15k), with the two live edits patched in.
    old_table = bytearray(data[elf.shoff:elf.shoff + old_n * shdr.size])
    if new:
        h = list(shdr.unpack_from(old_table, elf.shstrndx * shdr.size))
        h[4], h[5] = str_off, len(strtab)
        shdr.pack_into(old_table, elf.shstrndx * shdr.size, *h)
    overflow = new_n >= C.SHN_LORESERVE
    if overflow or elf.e_shnum == 0:
        h0 = list(shdr.unpack_from(old_table, 0))
        h0[5] = new_n if overflow else 0
        shdr.pack_into(old_table, 0, *h0)

    def resolve(v):
        return old_n + v.k if isinstance(v, NewRef) else v

    body: list[bytes] = []
    pos = body_off
    new_entries = []
    for s, noff in zip(new, name_offs):
        pad = (-pos) % max(1, s.addralign)
        if pad:
            body.append(b"\0" * pad)
            pos += pad
        new_entries.append((noff, s.type, s.flags, 0, pos, len(s.data),
                            resolve(s.link), resolve(s.info), s.addralign, s.entsize))
        body.append(s.data)
        pos += len(s.data)

    for i, r in sorted((replace or {}).items()):
        h = list(shdr.unpack_from(old_table, i * shdr.size))
        if r.data is not None:
            pad = (-pos) % max(1, h[8])
            if pad:
                body.append(b"\0" * pad)
                pos += pad
            h[4], h[5] = pos, len(r.data)
            body.append(r.data)
            pos += len(r.data)
        if r.info is not None:
            h[7] = r.info
        shdr.pack_into(old_table, i * shdr.size, *h)

    table = bytes(old_table) + b"".join(shdr.pack(*x) for x in new_entries)

    # ELF header: e_shoff, e_shnum (0 when it overflows into shdr[0].sh_size).
    ehsize = EHDR_SIZE[bits]
    ehdr = bytearray(data[:ehsize])
    struct.pack_into(e + ("I" if bits == 32 else "Q"), ehdr, E_SHOFF[bits], new_shoff)
    struct.pack_into(e + "H", ehdr, E_SHNUM[bits], 0 if overflow else new_n)

    # The dead old table, rewritten to equal the live copy (see module doc). The
    # unchanged stretches are views: a vmlinux.o is ~19 MB, not worth copying twice.
    view = memoryview(data)
    if elf.shoff < ehsize:  # header table overlapping the ELF header: leave it alone
        return [bytes(ehdr), view[ehsize:], strtab, b"\0" * pad_hdr, table, *body]
    middle = view[ehsize:elf.shoff]
    tail = view[elf.shoff + len(old_table):]
    return [bytes(ehdr), middle, old_table, tail, strtab, b"\0" * pad_hdr, table, *body]


def check_writable(path: str) -> os.stat_result:
    """Refuse what we must not replace: non-regular files, unwritable files or directories."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise RecordpatchError(f"cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RecordpatchError("not a regular file")
    if not os.access(path, os.W_OK):
        raise RecordpatchError("file is not writable")
    d = os.path.dirname(os.path.abspath(path))
    if not os.access(d, os.W_OK | os.X_OK):
        raise RecordpatchError(f"directory {d} is not writable (needed for an atomic replace)")
    return st


def _create_temp(d: str, base: str) -> tuple[int, str]:
    """A new file ``.BASE.XXXXXXXX.rp`` in ``d``, created exclusively with mode 0600
    (what tempfile.mkstemp does, without its import cost on every Kbuild call)."""
    for _ in range(100):
        tmp = os.path.join(d, f".{base}.{os.urandom(4).hex()}.rp")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
        except OSError as exc:  # EACCES, EROFS, ENOSPC, EDQUOT...: the user's to fix
            raise RecordpatchError(f"cannot create a temporary file in {d}: {exc.strerror}") from None
    raise RecordpatchError(f"cannot create a temporary file in {d}")


def write_atomic(path: str, chunks: list[bytes], mode: int | None = None,
                 expect: os.stat_result | None = None) -> None:
    """Write ``chunks`` to a temporary file beside ``path`` and rename it over ``path``.

    A reader, or a process killed at any moment, sees either the old file or the complete
    new one (nothing is fsync'ed: after a power failure the filesystem's own ordering
    decides, as for the compiler's and the linker's outputs). If
    ``expect`` is given and ``path`` changed since it was read (size or mtime),
    nothing is replaced: another process got there first. The new file gets
    ``expect``'s owner and group when we may give them (root), as `sed -i` does.
    A killed process can leave its ``.BASE.XXXXXXXX.rp`` behind: never read by
    anyone, and harmless (``find -name '.*.rp' -delete`` clears them).
    Failures (disk full, file too large, sticky directory...) raise RecordpatchError.
    """
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = _create_temp(d, os.path.basename(path))
    step = "write"
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), stat.S_IMODE(mode))
            if expect is not None:
                now = os.stat(path)
                if (now.st_size, now.st_mtime_ns, now.st_ino) != (
                        expect.st_size, expect.st_mtime_ns, expect.st_ino):
                    raise RecordpatchError("file changed while it was being processed; not replaced")
            step = "replace"
            os.replace(tmp, path)
            step = "close"
            # The owner last, once in place: a temporary file given away could not be removed
            # from a sticky directory if the rename failed. Best effort, as sed -i does.
            if expect is not None and (expect.st_uid, expect.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), expect.st_uid, expect.st_gid)
                except OSError:  # not root: the file stays ours, as with cp or sed -i
                    pass
    except BaseException as exc:
        if step != "close":
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
            if step == "replace" and exc.errno == errno.EPERM and os.stat(d).st_mode & stat.S_ISVTX:
                why += " (sticky directory, and the file belongs to another user)"
            raise RecordpatchError(f"cannot {step} {os.path.basename(path)}: {why}") from None
        raise


def _uleb128_list(blob: bytes, what: str) -> list[int]:
    out, val, shift = [], 0, 0
    for b in blob:
        val |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(val)
            val, shift = 0, 0
    if shift:
        raise RecordpatchError(f"{what}: truncated ULEB128 value")
    return out


def _uleb128(values) -> bytes:
    out = bytearray()
    for v in values:
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                break
    return bytes(out)


def add_section_symbols(elf: ElfFile, sections: list[int]) -> list[bytes | memoryview]:
    """The image with a local STT_SECTION symbol added for each of ``sections``.

    Why: a section whose only symbols are weak (clang's integrated assembler drops section
    symbols nothing refers to; so does `objcopy --strip-unneeded`) has no symbol that stays with it
    when the weak definition loses to a strong one elsewhere. gABI "Symbol Table": local
    symbols precede the others and .symtab's sh_info is the first non-local index, so the
    new symbols go in at sh_info and every index from there on moves up: each r_sym of
    the relocation sections linked to .symtab, a section group's signature (sh_info), the
    SHT_SYMTAB_SHNDX entries (gABI "Extended Section Indexes": a new symbol whose section
    index is past SHN_LORESERVE gets the SHN_XINDEX escape and its index there) and LLVM's
    .llvm_addrsig indexes. A section of any other type linked to .symtab is refused: we
    cannot know what its contents index. Written with :func:`append_sections`: the
    grown and rewritten tables are new copies at the end, nothing moves.
    """
    st = elf.symtab
    if st is None:
        raise RecordpatchError("cannot add section symbols: no symbol table")
    sym_i = st.section.index
    first, count, ent = st.section.info, st.count, st.entsize
    if not 0 < first <= count:
        raise RecordpatchError(f"{st.section.name}: sh_info {first} is not the index of "
                               f"the first non-local symbol ({count} symbols)")
    k = len(sections)
    e = elf.endian
    xindex = [s >= C.SHN_LORESERVE for s in sections]
    pack = struct.Struct(e + SYM_FMT[elf.bits]).pack
    if elf.bits == 32:   # st_name, st_value, st_size, st_info, st_other, st_shndx
        syms = [pack(0, 0, 0, C.STT_SECTION, 0, C.SHN_XINDEX if x else s)
                for s, x in zip(sections, xindex)]
    else:                # st_name, st_info, st_other, st_shndx, st_value, st_size
        syms = [pack(0, C.STT_SECTION, 0, C.SHN_XINDEX if x else s, 0, 0)
                for s, x in zip(sections, xindex)]
    old = elf.section_data(st.section)
    replace = {sym_i: Replacement(old[:first * ent] + b"".join(syms) + old[first * ent:],
                                  first + k)}
    xwords = struct.pack(f"{e}{k}I", *(s if x else 0 for s, x in zip(sections, xindex)))
    shndx_sec = None
    for i in elf.indexes_of_type(C.SHT_SYMTAB_SHNDX):
        if elf.section(i).link == sym_i:
            shndx_sec = elf.section(i)
    if shndx_sec is not None:
        tab = elf.section_data(shndx_sec)
        replace[shndx_sec.index] = Replacement(tab[:4 * first] + xwords + tab[4 * first:])
    elif any(xindex):
        # cannot happen in a well-formed file: the weak symbol defined in that section
        # needs the same escape, hence the table
        raise RecordpatchError("cannot add section symbols: a section index needs SHN_XINDEX "
                               "and there is no SHT_SYMTAB_SHNDX")

    for sec in elf.sections:
        if sec.link != sym_i or sec.index == sym_i or sec is shndx_sec:
            continue
        if sec.type in (C.SHT_REL, C.SHT_RELA):
            lay = elf.reloc_layout(sec.type == C.SHT_RELA)
            got = lay.shift_syms(elf._reloc_section(sec)[1], first, k)
            if got is not None:
                replace[sec.index] = Replacement(got)
        elif sec.type == C.SHT_GROUP:
            if sec.info >= first:
                replace[sec.index] = Replacement(None, sec.info + k)
        elif sec.type == C.SHT_LLVM_ADDRSIG:
            idx = _uleb128_list(elf.section_data(sec), sec.name)
            if any(i >= first for i in idx):
                replace[sec.index] = Replacement(_uleb128(i + k if i >= first else i
                                                          for i in idx))
        elif sec.type != C.SHT_SYMTAB_SHNDX:
            raise RecordpatchError(
                f"cannot add section symbols: section {sec.index} ({sec.name}, type "
                f"{sec.type:#x}) is linked to {st.section.name} and its contents are unknown")
    return append_sections(elf, [], replace)
