"""recordpatch against Debian's real recordmcount (linux-kbuild-6.1) on every fixture.

Per object: the recorded call sites (resolved with pyelftools: section + offset)
must equal the reference's; the output must be byte-identical too (same layout),
and `ld -r` must accept it. Whole objects (`ld -r` of several, like vmlinux.o)
are compared with the reference on the whole file, and where it records
_mcount address loads (not calls, as GNU objdump shows), with the reference
run on the -pg parts before linking.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import (FIXTURES, ONLY_TARGETS, TRACED_NAMES, built_with_pg, cross, expected_sites,
                      fixture_id, is_traced_name, manifest_commands, materialize, mcount_relocs,
                      objdump_mcount_refs, pg_objects, recorded_sites, reference_model, run_ours,
                      run_reference, strip_index, target_of)

WHOLE = {"vmlinux.o", "module.ko"}
# clang's -mlong-calls -pg sequence is not GCC's (testdata/README.md, "clang"): kept apart
CLANG_LONG = [p for p in pg_objects() if p.parent.name == "clang-module"]
OBJECTS = [p for p in pg_objects() if p.name not in WHOLE and p not in CLANG_LONG]
LINKED = [p for p in pg_objects() if p.name in WHOLE]
MANYSEC = sorted(FIXTURES.rglob("manysec*.o.xz"))


def record_both(src: Path, tmp: Path):
    (tmp / "ref").mkdir()
    (tmp / "ours").mkdir()
    ref, ours = materialize(src, tmp / "ref"), materialize(src, tmp / "ours")
    rr = run_reference(ref)
    ro = run_ours("record", ours)
    return ref, rr, ours, ro


def _without_header_padding(path: Path) -> bytes:
    """The file with the 0-3 alignment bytes before the section header table zeroed: the
    reference leaves them uninitialised (README, "Padding bytes"; the o32 clang-kernel/weak.o
    fixtures get non-zero ones here). The range, from pyelftools: the end of the section-name table,
    which both tools write last, to e_shoff."""
    from elftools.elf.elffile import ELFFile

    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        e = ELFFile(f)
        shstr = e.get_section(e["e_shstrndx"] if e["e_shstrndx"] != "SHN_XINDEX"
                              else e.get_section(0)["sh_link"])
        end, shoff = shstr["sh_offset"] + shstr["sh_size"], e["e_shoff"]
    if 0 <= shoff - end < 4:
        data[end:shoff] = bytes(shoff - end)
    return bytes(data)


def _ld_accepts(target: str, path: Path, tmp: Path):
    res = subprocess.run([cross(target, "ld"), "-r", "-o", str(tmp / "ldcheck.o"), str(path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _readelf_sane(target: str, path: Path):
    res = subprocess.run([cross(target, "readelf"), "-SrW", str(path)], capture_output=True,
                         text=True)
    assert res.returncode == 0 and not res.stderr, res.stderr
    return res.stdout


@pytest.mark.parametrize("src", OBJECTS, ids=fixture_id)
def test_same_sites_as_reference(src: Path, tmp_path):
    ref, rr, ours, ro = record_both(src, tmp_path)
    if rr.returncode != 0:
        # The reference refuses a section whose symbols are all weak and that has no section
        # symbol (weakstrip.o; clang drops such symbols). We record it, against an added
        # section symbol: every call, the file still accepted by ld -r and readelf (the
        # link proof is tests/test_weakonly.py). Anything else it refuses, so must we.
        assert "Cannot find symbol for section" in rr.stderr, rr.stderr
        assert ro.returncode == 0, ro.stderr
        assert recorded_sites(ours) == expected_sites(src)
        t = target_of(src)
        _ld_accepts(t, ours, tmp_path)
        _readelf_sane(t, ours)
        return
    assert ro.returncode == 0, ro.stderr
    theirs, got = recorded_sites(ref), recorded_sites(ours)
    # Our model of the reference must explain exactly what it recorded ...
    assert theirs == reference_model(src)
    # ... and we record every call and nothing else: the _mcount references GNU objdump
    # decodes as calls (jal; lui v1 ... jalr v1) in the sections ftrace traces.
    decoded = objdump_mcount_refs(target_of(src), src)
    want = [s for s in expected_sites(src) or () if decoded.get(s[1:])] or None
    assert got == want
    assert len(want or ()) == sum(1 for (n, _), call in decoded.items()
                                  if call and is_traced_name(n))
    # the default warning about references that are not calls: exactly when objdump shows one,
    # counting the entries the reference makes at them (not calls, as objdump decodes them)
    loads_seen = any(not call and is_traced_name(n) for (n, _), call in decoded.items())
    m = re.search(r"(\d+) references? to _mcount in traced sections", ro.stderr)
    assert bool(m) == loads_seen, ro.stderr
    if m:
        at_loads = [s for s in theirs or () if not decoded.get(s[1:])]   # %lo halves too
        assert int(m.group(1)) == len(at_loads), (ro.stderr, at_loads)
    if got != theirs:
        # The only differences allowed are the two modelled reference defects: calls its
        # leaking +4 filter drops, and entries at address loads (not calls, as decoded).
        dropped = set(want or ()) - set(theirs or ())
        loads = set(theirs or ()) - set(want or ())
        assert all(o >= 4 for _, _, o in dropped), dropped
        assert not any(decoded.get(s[1:]) for s in loads), loads
        return
    assert _without_header_padding(ours) == _without_header_padding(ref), \
        "same table but not byte-identical output"
    if got is not None:
        t = target_of(src)
        _ld_accepts(t, ours, tmp_path)
        out = _readelf_sane(t, ours)
        assert re.search(r"\] __mcount_loc\s+PROGBITS", out)
        assert re.search(r"Relocation section '\.rela?__mcount_loc'", out)


@pytest.mark.parametrize("src", OBJECTS, ids=fixture_id)
def test_idempotent(src: Path, tmp_path):
    f = materialize(src, tmp_path)
    first = run_ours("record", f)
    assert first.returncode == 0, first.stderr
    once = f.read_bytes()
    r = run_ours("record", f)
    assert r.returncode == 0
    assert f.read_bytes() == once
    if recorded_sites(f) is not None:
        assert "already exists" in r.stderr


def _parts_of(whole: Path) -> list[tuple[Path, bool]]:
    """The objects a linked fixture was made from, in link order (the inputs of its `ld -r`
    line in the MANIFEST), each with whether it was compiled with -pg."""
    commands = manifest_commands()
    rel = str(whole.relative_to(FIXTURES))
    if rel not in commands:
        pytest.fail(f"{rel} not in MANIFEST")
    argv = commands[rel]
    assert argv[0].endswith("ld") and "-r" in argv, f"{rel}: not an ld -r line: {argv}"
    out = argv.index("-o")
    ins = [FIXTURES.parent / a for i, a in enumerate(argv[1:], 1)
           if i != out + 1 and not a.startswith("-")]
    return [(p, built_with_pg(p)) for p in ins]


def _reference_on_parts(whole: Path, tmp: Path) -> set:
    """What a Kbuild build with the reference gives: recordmcount on each -pg part (Kbuild
    runs it on no other object), then the MANIFEST's `ld -r`; the linked table read with
    pyelftools, as (section, offset) pairs of the whole object."""
    (tmp / "parts").mkdir()
    copies = []
    for part, pg in _parts_of(whole):
        c = tmp / "parts" / part.name
        c.write_bytes(part.read_bytes())
        if pg:
            r = run_reference(c)
            assert r.returncode == 0, r.stderr
        copies.append(c)
    linked = tmp / "parts" / "linked.o"
    res = subprocess.run([cross(target_of(whole), "ld"), "-r", "-o", str(linked), *map(str, copies)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return set(strip_index(recorded_sites(linked) or []))


def _functions_of(path: Path) -> set:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        return {s.name for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] != "SHN_UNDEF"}


def _function_at(target: str, path: Path, section: str, offset: int) -> str:
    """The function GNU objdump shows the instruction at section+offset in."""
    out = subprocess.run([cross(target, "objdump"), "-d", "-j", section, str(path)],
                         capture_output=True, text=True, check=True).stdout
    name = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            name = m.group(1)
        elif re.match(rf"^\s*{offset:x}:", line):
            return name
    raise AssertionError(f"no instruction at {section}+{offset:#x}")


@pytest.mark.parametrize("whole", LINKED, ids=fixture_id)
def test_whole_object_against_reference(whole: Path, tmp_path):
    """A linked object (ld -r of several, like vmlinux.o or a .ko) against the reference run
    on the whole file. Where its table holds only calls (GNU objdump decodes each entry),
    our output must be the same file, byte for byte. Where it also holds entries at
    _mcount address loads (its known defect: mcount_user.o is built without -pg), we must
    record exactly its calls plus what the reference records on the -pg parts one by one
    (Kbuild's way) once they are linked, and the loads must all lie in non-pg parts."""
    t = target_of(whole)
    ref, rr, ours, ro = record_both(whole, tmp_path)
    assert rr.returncode == 0 and ro.returncode == 0, (rr.stderr, ro.stderr)
    theirs = set(strip_index(recorded_sites(ref) or []))
    got = set(strip_index(recorded_sites(ours) or []))
    calls = objdump_mcount_refs(t, whole)
    loads = {s for s in theirs if not calls.get(s)}
    per_part = _reference_on_parts(whole, tmp_path)
    assert per_part and all(calls.get(s) for s in per_part), per_part
    if not loads:
        assert got == theirs == per_part
        assert ours.read_bytes() == ref.read_bytes()
        return
    non_pg = set().union(*(_functions_of(p) for p, pg in _parts_of(whole) if not pg))
    assert {_function_at(t, whole, n, o) for n, o in loads} <= non_pg, loads
    assert got == (theirs - loads) | per_part
    # every call in a traced section, as binutils sees them, is recorded
    assert got == {s for s, call in calls.items() if call and is_traced_name(s[0])}


def _elf64_be_extended(path: Path) -> bool:
    d = path.read_bytes()[:0x40]
    return d[4] == 2 and d[5] == 2 and d[0x3C:0x3E] == b"\0\0"


@pytest.mark.slow
@pytest.mark.parametrize("src", MANYSEC, ids=fixture_id)
def test_manysec_same_as_reference(src: Path, tmp_path):
    ref, rr, ours, ro = record_both(src, tmp_path)
    assert ro.returncode == 0, ro.stderr
    got = recorded_sites(ours)
    if rr.returncode != 0:   # clang-manysec: weak-only sections (tests/test_weakonly.py)
        assert "Cannot find symbol for section" in rr.stderr, rr.stderr
        assert got is not None and got == expected_sites(ref)
        return
    got = recorded_sites(ours)
    assert got is not None and got == expected_sites(ref)
    _ld_accepts(target_of(src), ours, tmp_path)
    if _elf64_be_extended(ref):
        # recordmcount reads the ELF64 sh_size of section 0 (the real section count) through
        # its 32-bit byte-swapper, which on a little-endian host yields 0 for a big-endian
        # file: it sees no sections, records nothing and exits 0. We record every call.
        assert recorded_sites(ref) is None
        (tmp_path / "orig").mkdir()
        assert ref.read_bytes() == materialize(src, tmp_path / "orig").read_bytes()
        return
    assert recorded_sites(ref) == reference_model(ref) == got
    assert ours.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("src", [p for p in OBJECTS if built_with_pg(p)], ids=fixture_id)
def test_reference_quirks_is_byte_identical(src: Path, tmp_path):
    """--reference-quirks drops exactly what the reference drops: the same file, byte for
    byte, including the objects where the default mode records more (fsections/*)."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "ours").mkdir()
    ref, ours = materialize(src, tmp_path / "ref"), materialize(src, tmp_path / "ours")
    rr = run_reference(ref)
    ro = run_ours("record", "--reference-quirks", ours)
    assert ro.returncode == rr.returncode, (ro.stderr, rr.stderr)
    assert _without_header_padding(ours) == _without_header_padding(ref)


def test_reference_quirks_from_environment_and_notes(tmp_path):
    """The Kbuild path (no flags) takes the mode from the environment; -w names the call."""
    import os
    src = FIXTURES / "mipsel" / "fsections" / "fsections.o"
    a, b = tmp_path / "a.o", tmp_path / "b.o"
    a.write_bytes(src.read_bytes())
    b.write_bytes(src.read_bytes())
    env = dict(os.environ, RECORDPATCH_REFERENCE_QUIRKS="1")
    r = subprocess.run([str(FIXTURES.parent.parent / "scripts" / "recordmcount"), str(a)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run_ours("record", "-w", b)
    assert "recordmcount would leave this call out" in r.stderr and ".text.fs_copy_in+0x14" in r.stderr
    ref = tmp_path / "ref.o"
    ref.write_bytes(src.read_bytes())
    run_reference(ref)
    assert a.read_bytes() == ref.read_bytes() != b.read_bytes()
    assert len(recorded_sites(b)) == len(recorded_sites(a)) + 1


TSECTIONS = sorted(p for p in OBJECTS if p.name == "tsections.o")


@pytest.mark.parametrize("src", TSECTIONS, ids=fixture_id)
def test_every_traced_section_name(src: Path, tmp_path):
    """testdata/src/tsections.c: a -pg function in every section name the reference records
    and in executable sections it leaves out, on every target and flavour. The reference's
    table names each traced section once (its +4 filter cannot fire: every call sits at the
    same offset of its section); ours is the same file, and audit finds both clean."""
    assert len(TSECTIONS) == 7 * (len(ONLY_TARGETS) or 5)  # 5 GCC, 2 clang flavours per target
    ref, rr, ours, ro = record_both(src, tmp_path)
    assert rr.returncode == 0 and ro.returncode == 0, (rr.stderr, ro.stderr)
    names = sorted(n for _, n, _ in recorded_sites(ref))
    assert names == sorted((".text", ".text.hot", ".textual") + TRACED_NAMES)
    called = {n for (n, _), call in objdump_mcount_refs(target_of(src), src).items() if call}
    assert called - set(names) == {".noinstr.text", ".entry.text", ".init.text.late",
                                   ".sched.textx", ".data.code", ".exit.text.traced"}
    assert ours.read_bytes() == ref.read_bytes()
    for f in (ref, ours):
        a = run_ours("audit", f)
        assert a.returncode == 0, a.stdout + a.stderr


LEAK_MODULES = sorted(p for p in OBJECTS if p.name == "leak.o" and p.parent.name.startswith("module"))


@pytest.mark.parametrize("src", LEAK_MODULES, ids=fixture_id)
def test_long_call_lost_across_sections(src: Path, tmp_path):
    """testdata/src/leak.c, module flavours: the shape of Linux 6.1's
    net/appletalk/sysctl_net_atalk.o, where the reference's +4 filter (memory kept from
    .text) drops the long-call site of the __init function. We record it and say so;
    with quirks the file is the reference's; audit of the reference's output finds it."""
    assert len(LEAK_MODULES) >= 2 * (len(ONLY_TARGETS) or 4)  # module and module-ra flavours
    ref, rr, ours, ro = record_both(src, tmp_path)
    assert rr.returncode == 0 and ro.returncode == 0, (rr.stderr, ro.stderr)
    got, theirs = recorded_sites(ours), recorded_sites(ref)
    assert [(n, o) for _, n, o in got] == [(".text", 0), (".init.text", 8)]
    assert [(n, o) for _, n, o in theirs] == [(".text", 0)]
    (tmp_path / "w").mkdir()
    r = run_ours("record", "-w", "--dry-run", materialize(src, tmp_path / "w"))
    assert ".init.text+0x8: recordmcount would leave this call out" in r.stderr
    a = run_ours("audit", ref)
    assert a.returncode == 1 and "table_init+0x8 has no __mcount_loc entry" in a.stdout + a.stderr


@pytest.mark.parametrize("src", [p for p in CLANG_LONG if p.name != "nosites.o"], ids=fixture_id)
def test_clang_long_calls_refused_loudly(src: Path, tmp_path):
    """clang's -mlong-calls -pg sequence (lui at / addiu t9,at / jalr t9, no move at,ra) is
    no shape Linux's MIPS ftrace can patch (README, where we differ 5): the reference
    records it, recordpatch refuses the object with one error line and leaves it as it was."""
    ref, rr, ours, ro = record_both(src, tmp_path)
    assert mcount_relocs(src), "fixture without _mcount references"
    assert ro.returncode == 1 and "Traceback" not in ro.stderr
    errors = [ln for ln in ro.stderr.splitlines() if ": error: recordpatch: " in ln]
    assert len(errors) == 1 and "that Linux's MIPS ftrace cannot patch" in errors[0]
    assert ours.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("target", ["mips", "mipsel", "mipsr6"])
def test_not_calls_said_by_default(target, tmp_path):
    """kernel/mcount_near.o: near misses of the long-call sequence (testdata/src/
    mcount_near.S). The reference records an entry at each; GNU objdump finds no call among
    them; recordpatch records none and says so without -w, counting exactly the entries the
    reference made, and -w names each one."""
    src = FIXTURES / target / "kernel" / "mcount_near.o"
    ref, rr, ours, ro = record_both(src, tmp_path)
    assert rr.returncode == 0 and ro.returncode == 0, (rr.stderr, ro.stderr)
    theirs = recorded_sites(ref)
    calls = objdump_mcount_refs(target, src)
    assert theirs and not any(calls.values())
    n = len(theirs)
    assert recorded_sites(ours) is None and ours.read_bytes() == src.read_bytes()
    assert ro.stderr == (f"{ours}: warning: recordpatch: {n} references to _mcount in traced "
                         "sections are not calls and not recorded; recordmcount (Linux 6.1, "
                         "6.12) records them as call sites (ftrace would then patch that code);"
                         " -w lists them\n")
    rw = run_ours("record", "-w", ours)
    listed = [ln for ln in rw.stderr.splitlines() if "not a call (recordmcount would record it)"
              in ln]
    assert len(listed) == n, rw.stderr
