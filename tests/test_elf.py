"""The ELF layer against pyelftools (an independent reader) on every real fixture,
and the append-only writer: old bytes keep their meaning, binutils accepts the result."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import (FIXTURES, cross, fixture_id, materialize, pg_objects, symbol_section,
                      target_of)
from recordpatch.arch import mips
from recordpatch.elf import consts as C
from recordpatch.elf.reader import ElfFile
from recordpatch.elf.writer import NewRef, NewSection, append_sections, write_atomic

OBJECTS = pg_objects()
MANYSEC = sorted(FIXTURES.rglob("manysec*.o.xz"))

_SHN = {"SHN_UNDEF": 0, "SHN_ABS": C.SHN_ABS, "SHN_COMMON": C.SHN_COMMON}


def shndx_of(v):
    return _SHN[v] if isinstance(v, str) else v


def compare_with_pyelftools(data: bytes, deep: bool = True):
    ours = ElfFile(data)
    ref = ELFFile(io.BytesIO(data))
    assert len(ours.sections) == ref.num_sections()
    for s, r in zip(ours.sections, ref.iter_sections()):
        assert (s.name, s.type, s.offset, s.size, s.link, s.info, s.flags) == (
            r.name, C.__dict__.get(r["sh_type"], s.type), r["sh_offset"], r["sh_size"],
            r["sh_link"], r["sh_info"], r["sh_flags"]), s.name
    if not deep:
        return ours, ref
    st = ours.symtab
    rst = ref.get_section_by_name(".symtab")
    assert len(st) == rst.num_symbols()
    for ours_sym, r in zip(st, rst.iter_symbols()):
        assert (ours_sym.name, ours_sym.value, ours_sym.size, ours_sym.shndx) == (
            r.name, r["st_value"], r["st_size"], shndx_of(r["st_shndx"]))
    for s in ours.sections:
        if s.type not in (C.SHT_REL, C.SHT_RELA):
            continue
        rsec = ref.get_section(s.index)
        mine = ours.relocations(s)
        theirs = list(rsec.iter_relocations())
        assert len(mine) == len(theirs)
        for m, t in zip(mine, theirs):
            assert (m.offset, m.sym, m.type) == (t["r_offset"], t["r_info_sym"], t["r_info_type"])
            if ours.is_mips64:
                assert (m.type2, m.type3, m.ssym) == (t["r_info_type2"], t["r_info_type3"],
                                                      t["r_info_ssym"])
            if t.is_RELA():
                assert m.addend == t["r_addend"]
        # the bytes-level scan finds exactly what a full decode finds
        for sym in {m.sym for m in mine}:
            fast = [k for k, _ in ours.relocations_against(s, [sym])]
            assert fast == [k for k, m in enumerate(mine) if m.sym == sym]
    return ours, ref


@pytest.mark.parametrize("path", OBJECTS, ids=fixture_id)
def test_reader_matches_pyelftools(path: Path):
    compare_with_pyelftools(path.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("path", MANYSEC, ids=fixture_id)
def test_extended_section_numbering(path: Path, tmp_path):
    data = materialize(path, tmp_path).read_bytes()
    ours, ref = compare_with_pyelftools(data, deep=False)
    assert ours.e_shnum == 0 and len(ours.sections) > C.SHN_LORESERVE
    # symbols in sections past SHN_LORESERVE go through SHT_SYMTAB_SHNDX
    st = ours.symtab
    assert st.shndx_table is not None
    high = [s for s in st if s.raw_shndx == C.SHN_XINDEX]
    assert high and all(s.shndx >= C.SHN_LORESERVE for s in high)
    rst = ref.get_section_by_name(".symtab")
    for s in high[:200]:
        assert symbol_section(ref, rst, s.index, rst.get_symbol(s.index)) == s.shndx
    # Regression: the ABS file symbol must not pose as section 0xfff1 (SHN_ABS), which
    # exists in such a file; recording once chose it as a base symbol for that section.
    absyms = [s for s in st if s.raw_shndx == C.SHN_ABS]
    assert absyms and all(s.section == 0 for s in absyms)
    walked = {i: sec for i, _, _, sec in st.iter_raw()}
    assert all(walked[s.index] == 0 for s in absyms)
    assert all(walked[s.index] == s.shndx == s.section for s in high)
    assert len(ours.sections) > C.SHN_ABS


def _probe_sections(elf: ElfFile):
    payload = bytes(range(256)) * 3
    lay = elf.reloc_layout(elf.is64)
    sym = len(elf.symtab) - 1
    rel = lay.encode(8, sym, mips.R_MIPS_64 if elf.is64 else mips.R_MIPS_32, 5 if lay.rela else 0)
    return [NewSection(".recordpatch.test", C.SHT_PROGBITS, 0, payload, 8),
            NewSection((".rela" if lay.rela else ".rel") + ".recordpatch.test",
                       C.SHT_RELA if lay.rela else C.SHT_REL, 0, rel, elf.word, lay.entsize,
                       elf.symtab.section.index, NewRef(0))]


@pytest.mark.parametrize("path", OBJECTS, ids=fixture_id)
def test_writer_appends_without_disturbing(path: Path, tmp_path):
    data = path.read_bytes()
    elf = ElfFile(data)
    out = tmp_path / path.name
    write_atomic(str(out), append_sections(elf, _probe_sections(elf)))
    new = out.read_bytes()
    after = ElfFile(new)
    assert len(after.sections) == len(elf.sections) + 2
    for a, b in zip(elf.sections, after.sections):
        assert (a.name, a.type, a.flags, a.link, a.info) == (b.name, b.type, b.flags,
                                                             b.link, b.info)
        if a.index != elf.shstrndx:
            assert a.offset == b.offset and a.size == b.size  # nothing moved
            assert elf.section_data(a) == after.section_data(b)
        else:  # a grown copy at the end: the old names keep their offsets
            assert b.size > a.size
            assert after.section_data(b)[:a.size] == elf.section_data(a)
    t = after.sections[-2]
    assert t.name == ".recordpatch.test" and after.section_data(t)[:4] == b"\0\1\2\3"
    assert after.sections[-1].info == t.index
    # every original byte outside the ELF header and old header table is unchanged
    lo, hi = elf.shoff, elf.shoff + len(elf.sections) * (40 if elf.bits == 32 else 64)
    assert new[elf.ehsize:lo] == data[elf.ehsize:lo] and new[hi:len(data)] == data[hi:]
    compare_with_pyelftools(new)
    ld = cross(target_of(path), "ld")
    res = subprocess.run([ld, "-r", "-o", str(tmp_path / "linked.o"), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
