"""Sections holding only weak functions and no section symbol (issue 15), proven by linking.

clang's integrated assembler emits no section symbol for a section nothing refers to, so
in `weakonly.o` the only symbol of `.text.calibrate_delay_is_known` is the weak function:
recordmcount fails ("Cannot find symbol for section"). recordpatch adds a local section
symbol. The proof is a static link (GNU ld and lld) of the recorded object with one whose
strong definitions override two of the weak functions: every `__mcount_loc` entry of the
linked image, read with pyelftools, must be the address of a `jal _mcount` (decoded by
hand and by objdump), each call exactly once. An entry relocated against the weak symbol
would land in the strong function instead. Nothing here asks recordpatch what it did.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (FIXTURES, cross, expected_sites, materialize, need, recorded_sites,
                      run_ours, run_reference, symbol_section)

TARGETS = ["mips", "mipsel", "mips64", "mips64el", "mipsr6"]
FLAVOURS = ["clang-kernel", "clang-fsections"]
LINKERS = ["ld", "lld"]
TEXT = "0x80100000"


def _lld() -> str:
    exe = shutil.which("ld.lld")
    need("ld.lld (Debian package lld)", exe is not None)
    return exe


def _link(target: str, linker: str, objs: list[Path], out: Path, entry: str = "_start") -> Path:
    exe = cross(target, "ld") if linker == "ld" else _lld()
    res = subprocess.run([exe, "-e", entry, f"-Ttext={TEXT}", "-o", str(out), *map(str, objs)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return out


def _linked_table(path: Path):
    """(entry addresses, {address: instruction word}, _mcount's address) of a linked image,
    with pyelftools: the table's words, and each word the entries point at."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        e = ELFFile(f)
        word = 8 if e.elfclass == 64 else 4
        order = "little" if e.little_endian else "big"
        mc = e.get_section_by_name("__mcount_loc")
        assert mc is not None, "no __mcount_loc in the linked image"
        data = mc.data()
        entries = [int.from_bytes(data[i:i + word], order) for i in range(0, len(data), word)]
        mcount = [s["st_value"] for s in e.get_section_by_name(".symtab").get_symbol_by_name("_mcount")]
        assert len(mcount) == 1
        insn = {}
        texts = [s for s in e.iter_sections() if s["sh_flags"] & 4 and s["sh_type"] == "SHT_PROGBITS"]
        for a in entries:
            sec = [s for s in texts if s["sh_addr"] <= a < s["sh_addr"] + s["sh_size"]]
            assert len(sec) == 1, f"entry {a:#x} is in no executable section"
            off = a - sec[0]["sh_addr"]
            insn[a] = int.from_bytes(sec[0].data()[off:off + 4], order)
        return entries, insn, mcount[0]


def _jal_target(pc: int, w: int) -> int:
    """J-type (MIPS32/64 PRM, "JAL"): the 26-bit index shifted left 2, in the 256 MB region
    of the delay slot's address."""
    return ((pc + 4) & ~0x0FFFFFFF) | ((w & 0x03FFFFFF) << 2)


def _objdump_mcount_calls(target: str, path: Path) -> list[int]:
    res = subprocess.run([cross(target, "objdump"), "-d", str(path)], capture_output=True,
                         text=True, check=True)
    return [int(m.group(1), 16) for m in
            re.finditer(r"^\s*([0-9a-f]+):\s+[0-9a-f]+\s+jal\s+[0-9a-f]+ <_mcount>", res.stdout, re.M)]


def _assert_entries_on_calls(target: str, image: Path, n_sites: int, objdump: bool = True):
    entries, insn, mcount = _linked_table(image)
    assert len(entries) == n_sites == len(set(entries)), (len(entries), n_sites)
    for a in entries:
        w = insn[a]
        assert w >> 26 == 3 and _jal_target(a, w) == mcount, f"{a:#x}: {w:#010x} is not jal _mcount"
    if objdump:
        assert sorted(entries) == sorted(_objdump_mcount_calls(target, image))


def _record(src: Path, tmp: Path) -> Path:
    f = materialize(src, tmp)
    r = run_ours("record", f)
    assert r.returncode == 0, r.stderr
    return f


def _sites(p: Path) -> int:
    return len(expected_sites(p) or ())


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("target", TARGETS)
def test_reference_fails_we_record_against_non_weak_symbols(target, flavour, tmp_path):
    """The issue's reproducer shape on each target: recordmcount refuses it, recordpatch
    records every call, each entry against a symbol that is not weak; --reference-quirks
    keeps the reference's refusal (and the file)."""
    from elftools.elf.elffile import ELFFile

    src = FIXTURES / target / flavour / "weakonly.o"
    (tmp_path / "ref").mkdir()
    ref = materialize(src, tmp_path / "ref")
    rr = run_reference(ref)
    assert rr.returncode != 0 and "Cannot find symbol for section" in rr.stderr, rr
    ours = _record(src, tmp_path)
    assert recorded_sites(ours) == expected_sites(src)
    with open(ours, "rb") as f:
        e = ELFFile(f)
        rel = e.get_section_by_name(".rel__mcount_loc") or e.get_section_by_name(".rela__mcount_loc")
        symtab = e.get_section(rel["sh_link"])
        binds = {symtab.get_symbol(r["r_info_sym"])["st_info"]["bind"] for r in rel.iter_relocations()}
        assert "STB_WEAK" not in binds, binds
        # the locals-first rule still holds
        first = symtab["sh_info"]
        assert all(s["st_info"]["bind"] == "STB_LOCAL" for s in list(symtab.iter_symbols())[:first])
        assert all(s["st_info"]["bind"] != "STB_LOCAL" for s in list(symtab.iter_symbols())[first:])
    for tool in (cross(target, "readelf"), shutil.which("llvm-readelf")):
        need("llvm-readelf (Debian package llvm)", tool is not None)
        res = subprocess.run([tool, "-aW", str(ours)], capture_output=True, text=True)
        assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    q = _copy(src, tmp_path / "q.o")
    rq = run_ours("record", "--reference-quirks", q)
    assert rq.returncode == 1 and q.read_bytes() == src.read_bytes(), rq.stderr


@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("target", TARGETS)
def test_link_with_overriding_strong_definitions(target, flavour, linker, tmp_path):
    """weakonly.o (recorded) + weakover.o (recorded; strong calibrate_delay_is_known and
    weak_setup) + GCC's mcount_def.o, linked: the overridden weak code stays in the image,
    and its entries are on its own `jal _mcount`, not on the strong function's."""
    d = FIXTURES / target / flavour
    weak, over = _record(d / "weakonly.o", tmp_path), _record(d / "weakover.o", tmp_path)
    mdef = FIXTURES / target / "kernel" / "mcount_def.o"
    image = _link(target, linker, [over, weak, mdef], tmp_path / "a.out")
    n = _sites(d / "weakonly.o") + _sites(d / "weakover.o")
    _assert_entries_on_calls(target, image, n)
    # The control: the same object with weak_setup's entry relocated against the weak
    # symbol itself (patched by hand) puts it into the strong weak_setup: the check fails.
    bad = _retarget_to_weak(weak, tmp_path / "bad.o", ".init.text", "weak_setup")
    image = _link(target, linker, [over, bad, mdef], tmp_path / "b.out")
    with pytest.raises(AssertionError):
        _assert_entries_on_calls(target, image, n)


def _retarget_to_weak(src: Path, dst: Path, section: str, weak: str) -> Path:
    """A copy of recorded ``src`` whose table entries for ``section`` are relocated
    against the symbol ``weak`` (value 0 in these objects, so the addend stays): r_sym
    rewritten in place, located with pyelftools (Elf32 r_info = sym << 8 | type; n64
    r_sym is the word at byte 8 of the entry)."""
    from elftools.elf.elffile import ELFFile

    data = bytearray(src.read_bytes())
    with open(src, "rb") as f:
        e = ELFFile(f)
        rel = e.get_section_by_name(".rel__mcount_loc") or e.get_section_by_name(".rela__mcount_loc")
        symtab = e.get_section(rel["sh_link"])
        (wsym,) = [i for i, s in enumerate(symtab.iter_symbols()) if s.name == weak]
        assert symtab.get_symbol(wsym)["st_value"] == 0
        order = "little" if e.little_endian else "big"
        hit = 0
        for k, r in enumerate(rel.iter_relocations()):
            sym = symtab.get_symbol(r["r_info_sym"])
            if e.get_section(symbol_section(e, symtab, r["r_info_sym"], sym)).name != section:
                continue
            at = rel["sh_offset"] + k * rel["sh_entsize"]
            if e.elfclass == 32:
                data[at + 4:at + 8] = ((wsym << 8) | r["r_info_type"]).to_bytes(4, order)
            else:
                data[at + 8:at + 12] = wsym.to_bytes(4, order)
            hit += 1
        assert hit
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("target", TARGETS)
def test_comdat_group_signature_follows(target, linker, tmp_path):
    """A weak function alone in a COMDAT group: the group's signature (sh_info, a global-area
    symbol index) must still name the function after the symbols move, and both linkers
    must accept the group and put the entry on its call."""
    from elftools.elf.elffile import ELFFile

    src = FIXTURES / target / "clang-kernel" / "comdat_weak.o"
    rr = run_reference(_copy(src, tmp_path / "r.o"))
    assert rr.returncode != 0 and "Cannot find symbol for section" in rr.stderr
    ours = _record(src, tmp_path)
    assert recorded_sites(ours) == expected_sites(src)
    with open(ours, "rb") as f:
        e = ELFFile(f)
        groups = [s for s in e.iter_sections() if s["sh_type"] == "SHT_GROUP"]
        assert len(groups) == 1
        symtab = e.get_section(groups[0]["sh_link"])
        assert symtab.get_symbol(groups[0]["sh_info"]).name == "grp_fn"
    res = subprocess.run([cross(target, "readelf"), "-gW", str(ours)], capture_output=True, text=True)
    assert "[grp_fn]" in res.stdout and not res.stderr, res
    image = _link(target, linker, [ours, FIXTURES / target / "kernel" / "mcount_def.o"],
                  tmp_path / "a.out", entry="grp_user")
    _assert_entries_on_calls(target, image, _sites(src))


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


MANYSEC = sorted(FIXTURES.glob("*/clang-manysec/manysec.o.xz"))


@pytest.mark.slow
@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("src", MANYSEC, ids=lambda p: p.parts[-3])
def test_extended_section_indexes(src, linker, tmp_path):
    """clang's 65,616-section object: 4,100 weak-only sections without a section symbol,
    21 past SHN_LORESERVE. The added symbols there use SHN_XINDEX and .symtab_shndx; linked
    with strong ms_w5 and ms_w32797 (manysec_over.c), all 32,800 calls keep their entry."""
    from elftools.elf.elffile import ELFFile

    target = src.parts[-3]
    (tmp_path / "ref").mkdir()
    ref = materialize(src, tmp_path / "ref")
    rr = run_reference(ref)
    # o32 LE: "Cannot find symbol"; ELF64 BE: the reference sees no sections (exit 0, nothing)
    assert (rr.returncode != 0 and "Cannot find symbol for section" in rr.stderr) or \
        recorded_sites(ref) is None, rr
    ours = _record(src, tmp_path)
    want = expected_sites(ref)
    assert recorded_sites(ours) == want
    with open(ours, "rb") as f:
        e = ELFFile(f)
        symtab = e.get_section_by_name(".symtab")
        high = 0
        for i, s in enumerate(symtab.iter_symbols()):
            if s["st_info"]["type"] == "STT_SECTION" and s["st_shndx"] in ("SHN_XINDEX", 0xFFFF):
                sec = symbol_section(e, symtab, i, s)
                assert sec >= 0xFF00
                high += e.get_section(sec).name.startswith(".text.ms_w")   # the added ones
        assert high == 21
    over = _record(src.parent / "manysec_over.o", tmp_path)
    image = _link(target, linker, [over, ours, FIXTURES / target / "kernel" / "mcount_def.o"],
                  tmp_path / "a.out")
    _assert_entries_on_calls(target, image, len(want) + _sites(src.parent / "manysec_over.o"),
                             objdump=False)


def _symbol_references(path: Path):
    """Every reference to .symtab outside __mcount_loc's relocations, by name, with
    pyelftools and llvm-readelf: per relocation section its entries (offset, types,
    symbol name, symbol's section name, addend); group signatures; .llvm_addrsig."""
    from elftools.elf.elffile import ELFFile

    out = {}
    with open(path, "rb") as f:
        e = ELFFile(f)
        symtab = e.get_section_by_name(".symtab")

        def who(i):
            s = symtab.get_symbol(i)
            sec = symbol_section(e, symtab, i, s)
            return s.name, s["st_info"]["bind"], e.get_section(sec).name if isinstance(sec, int) \
                and sec else sec
        for s in e.iter_sections():
            if s["sh_type"] in ("SHT_REL", "SHT_RELA") and "__mcount_loc" not in s.name:
                out[s.name] = [(r["r_offset"], r["r_info_type"], who(r["r_info_sym"]),
                                r["r_addend"] if r.is_RELA() else None)
                               for r in s.iter_relocations()]
            elif s["sh_type"] == "SHT_GROUP":
                out[s.name] = who(s["sh_info"])
    res = subprocess.run([shutil.which("llvm-readelf") or "llvm-readelf", "--addrsig", str(path)],
                         capture_output=True, text=True, check=True)
    out["addrsig"] = sorted(re.findall(r"^\s*\d+: (\S+)$", res.stdout, re.M))
    return out


@pytest.mark.parametrize("name", ["clang-fsections/weakonly.o", "clang-kernel/weak.o",
                                  "clang-fsections/fsections.o", "clang-kernel/comdat_weak.o"])
@pytest.mark.parametrize("target", TARGETS)
def test_every_symbol_reference_survives(target, name, tmp_path):
    """Adding symbols moves the global ones: every relocation, group signature and
    address-significance entry must still name the same symbol afterwards."""
    need("llvm-readelf (Debian package llvm)", shutil.which("llvm-readelf") is not None)
    src = FIXTURES / target / name
    before = _symbol_references(src)
    after = _symbol_references(_record(src, tmp_path))
    assert after == before


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("target", TARGETS)
def test_added_section_symbols_are_noted_with_w(target, flavour, tmp_path):
    """`record -w` names each section that got a section symbol; the sections are found
    with pyelftools: executable, no STT_SECTION symbol, every function symbol in it weak.
    Without -w the object records silently (recording more than the reference is no loss)."""
    from elftools.elf.elffile import ELFFile

    src = FIXTURES / target / flavour / "weakonly.o"
    with open(src, "rb") as f:
        e = ELFFile(f)
        syms = list(e.get_section_by_name(".symtab").iter_symbols())
        with_sym = {s["st_shndx"] for s in syms if s["st_info"]["type"] == "STT_SECTION"}
        funcs: dict = {}
        for s in syms:
            if s["st_info"]["type"] == "STT_FUNC" and isinstance(s["st_shndx"], int):
                funcs.setdefault(s["st_shndx"], []).append(s["st_info"]["bind"])
        weak_only = sorted(e.get_section(i).name for i, binds in funcs.items()
                           if i not in with_sym and set(binds) == {"STB_WEAK"}
                           and e.get_section(i)["sh_flags"] & 0x4)
    assert weak_only, "the fixture has no weak-only section"
    quiet = run_ours("record", materialize(src, tmp_path))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    (tmp_path / "w").mkdir()
    r = run_ours("record", "-w", materialize(src, tmp_path / "w"))
    assert r.returncode == 0, r.stderr
    noted = sorted(re.findall(r"note: recordpatch: (\S+): only weak symbols here: added a "
                              r"local section symbol", r.stderr))
    assert noted == weak_only, r.stderr
