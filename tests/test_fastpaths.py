"""The recording path's column-wise shortcuts agree with the plain per-entry code.

A whole vmlinux.o has ~440k relocations and ~24k sites, so `record` finds them by
splitting byte strings and checks them with C-level passes instead of Python loops
(docs/benchmarks.md, P1). Each shortcut falls back to the plain code when it cannot
be exact; these tests hold both to the same answers, on every real fixture and on
synthetic tables built to defeat the shortcuts.
"""

from __future__ import annotations

import random
import struct

import pytest

from conftest import fixture_id, pg_objects
from recordpatch.arch import mips
from recordpatch.elf import consts as C
from recordpatch.elf.reader import ElfFile
from recordpatch.elf.relocs import RelocLayout
from recordpatch.passes import record

OBJECTS = pg_objects()

#: (is64, rela, mips64, endian) of every layout MIPS objects use
LAYOUTS = [(False, False, False, "<"), (False, False, False, ">"), (False, True, False, "<"),
           (False, True, False, ">"), (True, False, True, "<"), (True, True, True, ">"),
           (True, True, True, "<")]


def _decoded(lay: RelocLayout, data: bytes, sym: int):
    rows = [r for r in lay.decode_all(data) if r.sym == sym]
    return [r.offset for r in rows], [r.type for r in rows]


@pytest.mark.parametrize("path", OBJECTS, ids=fixture_id)
def test_relocation_shortcuts_match_decoding(path):
    """For every relocation section and every symbol it uses: same entries, same
    offsets and types as a full decode."""
    elf = ElfFile(path.read_bytes())
    for i in elf.indexes_of_type(C.SHT_REL, C.SHT_RELA):
        sec = elf.section(i)
        lay, data = elf._reloc_section(sec)
        data = bytes(data)
        for sym in {r.sym for r in lay.decode_all(data)}:
            want = _decoded(lay, data, sym)
            assert lay.offsets_types_against(data, [sym]) == want
            assert lay.offsets_types(data, lay.find_sym(data, sym)) == want


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda t: f"{'64' if t[0] else '32'}"
                         f"{'rela' if t[1] else 'rel'}{t[3]}")
def test_split_shortcut_survives_patterns_outside_r_sym(layout, monkeypatch):
    """Tables whose r_offset and r_type bytes spell the searched r_sym (so a byte
    search also hits outside the field): the answer must still be exact, whether the
    stray hits are filtered out or the whole table is decoded."""
    calls = {"strays": [], "by_entry": 0}
    real_strays, real_by_entry = RelocLayout._hits_among_strays, RelocLayout._sym_by_entry

    def spy_strays(self, *a):
        got = real_strays(self, *a)
        calls["strays"].append(got is not None)
        return got

    def spy_by_entry(*a):
        calls["by_entry"] += 1
        return real_by_entry(*a)

    monkeypatch.setattr(RelocLayout, "_hits_among_strays", spy_strays)
    monkeypatch.setattr(RelocLayout, "_sym_by_entry", staticmethod(spy_by_entry))
    lay = RelocLayout(*layout)
    rng = random.Random(7)
    order = "little" if lay.endian == "<" else "big"
    paths = set()
    for sym, crafted in [(s, c) for s in (0x040404, 0x000004, 0x010203, 0x0C0C0C, 0x2DEE01, 5)
                         for c in (False, True)]:
        pat = sym.to_bytes(lay.sym_width, order)
        entries = []
        for _ in range(300):
            r = rng.random()
            s = sym if r < 0.3 else rng.choice([sym + 1, 0x7F0000 | sym & 0xFF, 0xA0B0C])
            if crafted and r > 0.8:   # an r_offset whose bytes contain the pattern
                off = int.from_bytes((pat + bytes(8))[:8 if lay.is64 else 4], order)
                off = (off << 8 * rng.randrange(2)) & ((1 << (64 if lay.is64 else 32)) - 1)
            else:     # 4-aligned, as in code sections, and below 16 MB
                off = rng.randrange(1 << 22) * 4
            rtype = rng.choice([4, 5, 6, 2, sym & 0xFF] if crafted else [4, 5, 6])
            if crafted and lay.mips64 and 0.75 < r <= 0.8:
                # n64 searches the r_sym words only: two neighbours whose r_sym words
                # spell the pattern across their boundary
                w = pat[2:] + b"\x5a\x5a", b"\x5b\x5b" + pat[:2]
                entries.append(lay.encode(off, int.from_bytes(w[1], order), rtype))
                entries.append(lay.encode(off + 4, int.from_bytes(w[0], order), rtype))
                continue
            entries.append(lay.encode(off, s, rtype, rng.randrange(-9, 9)))
        data = b"".join(entries)
        want = _decoded(lay, data, sym)
        assert lay.offsets_types_against(data, [sym]) == want
        n, m = len(calls["strays"]), calls["by_entry"]
        if lay.is64:   # n64: find_sym's word search is the shortcut
            split = lay.offsets_types(data, lay.find_sym(data, sym))
            assert split == want
            decoded = calls["by_entry"] > m
        else:
            split = lay._split_hits(data, sym)
            assert split in (None, want)
            decoded = split is None
        paths.add("decoded" if decoded else "clean" if len(calls["strays"]) == n else "filtered")
        assert lay.offsets_types(data, lay.find_sym(data, sym)) == want
        # several symbols at once: the merged table order
        other = sym + 1
        both = sorted([(k, r.offset, r.type) for k, r in enumerate(lay.decode_all(data))
                       if r.sym in (sym, other)])
        assert lay.offsets_types_against(data, [sym, other]) == (
            [o for _, o, _ in both], [t for _, _, t in both])
    assert "clean" in paths and paths - {"clean"}, "the shortcut and a fallback must both run"


@pytest.mark.parametrize("layout", LAYOUTS[:2], ids=["32rel<", "32rel>"])
def test_stray_pattern_filtered_or_decoded(layout):
    """The two ways a stray occurrence is handled: an r_offset equal to the symbol index
    (stray inside r_offset, away from r_sym: filtered), and an r_type byte continuing
    into r_sym (the stray overlaps the field: every entry decoded). Exact both ways."""
    lay = RelocLayout(*layout)
    sym = 0x012344
    p0, p1, p2 = sym.to_bytes(3, "little" if lay.endian == "<" else "big")
    if lay.endian == "<":   # entry bytes: r_offset(4) r_type r_sym(3, LE)
        overlap = lay.encode(0x14, p1 | p2 << 8 | 0x55 << 16, p0)        # stray at byte 4
    else:                   # entry bytes: r_offset(4) r_sym(3, BE) r_type
        overlap = lay.encode(0x14, 0x55 << 16 | p0 << 8 | p1, p2)        # stray at byte 5
    cases = {
        "filtered": [lay.encode(0x10, sym, 4), lay.encode(sym, 7, 4), lay.encode(0x20, sym, 5)],
        "decoded": [lay.encode(0x10, sym, 4), overlap, lay.encode(0x18, sym, 4)],
    }
    for how, entries in cases.items():
        data = b"".join(entries)
        want = _decoded(lay, data, sym)
        assert len(want[0]) == 2
        assert lay.offsets_types_against(data, [sym]) == want
        parts = data.split(bytes((p0, p1, p2)))
        got = lay._hits_among_strays(data, parts, lay.entsize, lay.sym_field, 3)
        assert got == (want if how == "filtered" else None), how


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda t: f"{'64' if t[0] else '32'}"
                         f"{'rela' if t[1] else 'rel'}{t[3]}")
def test_encode_many_matches_encode(layout):
    lay = RelocLayout(*layout)
    rng = random.Random(3)
    n = 257
    offs = [rng.randrange(1 << 20) for _ in range(n)]
    syms = [rng.randrange(1 << 23) for _ in range(n)]
    adds = [rng.randrange(-1 << 30, 1 << 30) for _ in range(n)] if lay.rela else None
    got = lay.encode_many(offs, syms, 2, adds)
    assert got == b"".join(lay.encode(o, s, 2, adds[k] if adds else 0)
                           for k, (o, s) in enumerate(zip(offs, syms)))


@pytest.mark.parametrize("path", OBJECTS, ids=fixture_id)
def test_site_scan_shortcut_matches_per_site_loop(path):
    """The C-level check of kernel call sites (_kernel_calls) against the per-site loop
    it replaces, section by section."""
    elf = ElfFile(path.read_bytes())
    symtab = elf.symtab
    if symtab is None:
        return
    msyms = symtab.indexes_named(record.MCOUNT)
    for rs, tgt in record._code_relocation_sections(elf):
        offs, types = elf.reloc_offsets_types_against(rs, msyms)
        if not offs or rs.link != symtab.section.index:
            continue
        counted = record.is_mcounted_name(tgt.name)
        plain = record._scan_section(elf, rs, tgt, offs, types, counted, False, [], [], [])
        fast = record._kernel_calls(elf.section_view(tgt), offs, types, elf.endian)
        if fast is None or not counted:
            continue
        assert record._scan_section(elf, rs, tgt, offs, types, counted, False, [], [], [],
                                    fast) == plain


@pytest.mark.parametrize("endian", ["<", ">"])
def test_kernel_call_check_on_crafted_text(endian):
    """Every way a hit can fail the kernel-call test, one at a time, in one section."""
    w = struct.Struct(endian + "I")
    move = next(iter(mips.MOVE_AT_RA_WORDS))
    jal = mips.OP_JAL << 26
    nop = 0
    words = [nop, nop,
             move, jal,                 # 8..15: call, move right before (site at 12)
             move, nop, jal,            # 16..27: -mmcount-ra-address form (site at 24)
             nop, nop, jal,             # 28..39: no move (34: not a call)
             move, 0x3C030000,          # 40..47: lui, not a jal (site would be 44)
             move, jal, nop]            # 48..59: call at 52, reloc typed HI16 below
    text = b"".join(w.pack(x) for x in words)
    offs = [12, 24, 36, 44, 52]
    types = [mips.R_MIPS_26, mips.R_MIPS_26, mips.R_MIPS_26, mips.R_MIPS_26, mips.R_MIPS_HI16]
    assert record._kernel_calls(memoryview(text), offs, types, endian) == [
        True, True, False, False, False]
    assert record._kernel_calls(memoryview(text), [4], [mips.R_MIPS_26], endian) is None
    assert record._kernel_calls(memoryview(text), [14], [mips.R_MIPS_26], endian) is None
    # unusable hits beside usable ones: not calls here, left to the per-site classifier
    assert record._kernel_calls(memoryview(text), [4, 12, 14, 52, 56],
                                [mips.R_MIPS_26] * 5, endian) == [False, True, False, True, False]


@pytest.mark.parametrize("path", OBJECTS, ids=fixture_id)
def test_lazy_sections_match_eager(path):
    """Sections built one at a time, looked up by name through the name table's
    bytes, equal the full list."""
    data = path.read_bytes()
    lazy, full = ElfFile(data), ElfFile(data).sections
    for s in full:
        assert lazy.section(s.index) == s
        first = next(t for t in full if t.name == s.name)
        assert lazy.section_by_name(s.name) == first
    assert lazy.section_by_name("no such section") is None
    assert lazy.sections == full
