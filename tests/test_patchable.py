"""-fpatchable-function-entry objects (issue 3, section 1): validation, defects of Debian's
GCC 12 (PR99217, SHF_LINK_ORDER, microMIPS), `--table mcount_loc`, `--repair` and its
link proof, and `probe-cc`. Fixtures: testdata/fixtures/<target>/pfe*/ (testdata/README.md)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, cross, expected_sites, recorded_sites, run_ours

TARGETS = ["mips", "mipsel", "mips64", "mips64el", "mipsr6"]
PFE = {"pfe3": (3, 0, False), "pfe4": (4, 0, False), "pfe3-1": (3, 1, False),
       "pfe3-fs": (3, 0, True), "pfe4-fs": (4, 0, True), "pfe3-1-fs": (3, 1, True)}
PADDED = ["pfe_helper", "pfe_global", "pfe_sum", "pfe_call", "pfe_addr", "pfe_weak"]
CC12 = "[GCC: (Debian 12.2.0-14) 12.2.0]"


def fx(target, flavour, name="patchable.o") -> Path:
    p = FIXTURES / target / flavour / name
    if not p.exists():
        pytest.fail(f"missing fixture {p}")
    return p


def copy(src: Path, tmp: Path, name=None) -> Path:
    dst = tmp / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


def warnings(stderr: str, path: Path) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        assert ln.startswith(f"{path}: "), ln
    assert "Traceback" not in stderr
    return lines


def pad_at(path: Path, func: str, nops_before: int, unit: int = 4) -> str:
    """Where the pad of ``func`` starts, as ``section+0xOFF``, read with pyelftools: the
    symbol's section and value (ISA bit cleared), ``nops_before`` nops of ``unit`` bytes
    before it."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        e = ELFFile(f)
        sym = next(s for s in e.get_section_by_name(".symtab").iter_symbols() if s.name == func)
        sec = e.get_section(sym["st_shndx"]).name
        return f"{sec}+{(sym['st_value'] & ~1) - nops_before * unit:#x}"


def plan_of(path: Path, nops=None, before=0):
    from recordpatch.elf.reader import ElfFile
    from recordpatch.passes import patchable
    return patchable.plan(ElfFile(path.read_bytes()), nops, before)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("flavour", sorted(PFE))
@pytest.mark.parametrize("target", TARGETS)
def test_gcc12_objects_validated(target, flavour, tmp_path):
    """What Debian GCC 12 emits: N nops, all before the label (PR99217), for every function
    but the notrace one; with -ffunction-sections one table section linked to the first
    function's section. `record` reports it all, writes nothing, exits 0."""
    n, m, fsec = PFE[flavour]
    src = fx(target, flavour)
    obj = copy(src, tmp_path)
    r = run_ours("record", obj)
    assert r.returncode == 0, r.stderr
    assert obj.read_bytes() == src.read_bytes()
    lines = warnings(r.stderr, obj)
    pp = plan_of(obj)
    assert pp.nops == n
    assert sorted(p.func.name for p in pp.pads) == sorted(PADDED)
    assert all(p.nops == n and p.before == n and p.pr99217 for p in pp.pads)
    pr = [ln for ln in lines if "GCC PR99217" in ln]
    assert len(pr) == len(PADDED) and all(CC12 in ln for ln in pr)
    for f in PADDED:
        at = pad_at(obj, f, n)
        assert any(f"warning: recordpatch: {at}: all {n} nops of {f}'s pad in " in ln for ln in pr)
    lo = [ln for ln in lines if "SHF_LINK_ORDER" in ln]
    if fsec:
        # every entry but the first function's is linked to .text.pfe_helper
        assert len(lo) == len(PADDED) - 1 and all(".text.pfe_helper" in ln and CC12 in ln
                                                   for ln in lo)
    else:
        assert lo == []
    assert not any("no __patchable_function_entries entry" in ln for ln in lines)
    # --nops N,M for the =N,M builds: still PR99217 (GCC ignores M on MIPS)
    if m:
        r = run_ours("record", "--json", "--nops", f"{n},{m}", obj)
        info = json.loads(r.stdout)["files"][0]
        assert info["status"] == "checked" and info["patchable"]["pr99217"] == len(PADDED)


def test_wrong_nop_count_reported(tmp_path):
    obj = copy(fx("mipsel", "pfe3"), tmp_path)
    r = run_ours("record", "--nops", "4", obj)
    assert r.returncode == 0
    assert f"{pad_at(obj, 'pfe_sum', 3)}: pad of pfe_sum in .text has 3 nops, expected 4" in r.stderr


def test_micromips_pads_in_wrong_isa(tmp_path):
    """Per-function micromips attribute: each pad is emitted in the previous function's ISA."""
    for target in ("mips", "mipsel"):
        obj = copy(fx(target, "pfe-mm", "pfe_isa.o"), tmp_path, f"{target}.o")
        r = run_ours("record", obj)
        assert r.returncode == 0
        isa = [ln for ln in r.stderr.splitlines() if "mode: emitted before" in ln]
        assert len(isa) == 2, r.stderr
        # each located at its pad: 3 MIPS nops before the microMIPS function, 3 nop16
        # before the MIPS one
        mm, after = pad_at(obj, "isa_micro", 3, 4), pad_at(obj, "isa_after_micro", 3, 2)
        assert any(f"{mm}: pad of microMIPS function isa_micro in .text is in MIPS mode"
                   in ln and CC12 in ln for ln in isa)
        assert any(f"{after}: pad of MIPS function isa_after_micro in .text is in "
                   "microMIPS" in ln for ln in isa)
        # a whole -mmicromips file is consistent: nop16 pads, no ISA finding
        obj2 = copy(fx(target, "pfe-mmall"), tmp_path, f"{target}-mm.o")
        r = run_ours("record", obj2)
        assert r.returncode == 0 and "mode: emitted before" not in r.stderr
        pp = plan_of(obj2)
        assert all(p.micro and p.before == 3 and p.func.value - p.offset == 6 for p in pp.pads)


def test_mixed_pg_and_patchable(tmp_path):
    """A -pg object with one patchable function: the _mcount calls are recorded as always,
    the pad is validated; --repair --table mcount_loc adds the pad to the same table."""
    for target in TARGETS:
        src = fx(target, "pfe-pg", "pfe_mixed.o")
        obj = copy(src, tmp_path, f"{target}.o")
        r = run_ours("record", obj)
        assert r.returncode == 0, r.stderr
        assert recorded_sites(obj) == expected_sites(src)
        assert f"{pad_at(obj, 'mix_padded', 3)}: all 3 nops of mix_padded" in r.stderr
        obj2 = copy(src, tmp_path, f"{target}-t.o")
        r = run_ours("record", "--repair", "--table", "mcount_loc", obj2)
        assert r.returncode == 0, r.stderr
        got = recorded_sites(obj2)
        pad = [p for p in plan_of(obj2).pads]
        assert len(pad) == 1 and pad[0].before == 0
        assert got == sorted(expected_sites(src) + [(pad[0].section, ".text", pad[0].offset)])


def test_table_refused_without_repair(tmp_path):
    src = fx("mips", "pfe3")
    obj = copy(src, tmp_path)
    r = run_ours("record", "--table", "mcount_loc", obj)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(err) == 1 and err[0].startswith(f"{obj}: error: recordpatch: 6 of 6 ")
    assert "add --repair" in err[0]
    assert obj.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("target", TARGETS)
def test_repair_then_table(target, tmp_path):
    obj = copy(fx(target, "pfe3-fs"), tmp_path)
    r = run_ours("record", "--repair", "--table", "mcount_loc", obj)
    assert r.returncode == 0, r.stderr
    assert "PR99217" not in r.stderr
    pp = plan_of(obj)
    assert all(p.before == 0 and p.nops >= 3 and not p.pr99217 for p in pp.pads)
    got = recorded_sites(obj)
    assert got == sorted((p.section, p.section_name, p.offset) for p in pp.pads)
    # a second run: already recorded, nothing to repair, untouched
    before = obj.read_bytes()
    r = run_ours("record", "--repair", "--table", "mcount_loc", obj)
    assert r.returncode == 0 and obj.read_bytes() == before
    # ld accepts it
    res = subprocess.run([cross(target, "ld"), "-r", "-o", str(tmp_path / "r.o"), str(obj)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- injected faults
def _rel_table(obj: Path):
    """(file offset of __patchable_function_entries data, of its .rel section) for an o32
    REL object, via pyelftools."""
    from elftools.elf.elffile import ELFFile
    with open(obj, "rb") as f:
        e = ELFFile(f)
        t = e.get_section_by_name("__patchable_function_entries")
        rel = e.get_section_by_name(".rel__patchable_function_entries")
        sec_syms = {}
        st = e.get_section(rel["sh_link"])
        for i, s in enumerate(st.iter_symbols()):
            if s["st_info"]["type"] == "STT_SECTION":
                sec_syms[e.get_section(s["st_shndx"]).name] = i
        return t["sh_offset"], rel["sh_offset"], sec_syms, None


def test_injected_faults(tmp_path):
    src = fx("mipsel", "pfe3")  # REL, little-endian, all pads in .text
    pp = plan_of(src)
    toff, roff, sec_syms, _ = _rel_table(src)
    words = [p.offset for p in pp.pads]

    def patched(name, fn):
        obj = copy(src, tmp_path, name)
        b = bytearray(obj.read_bytes())
        fn(b)
        obj.write_bytes(bytes(b))
        r = run_ours("record", obj)
        assert r.returncode == 0 and "Traceback" not in r.stderr
        return r.stderr

    # an entry moved by one instruction
    err = patched("moved.o", lambda b: struct.pack_into("<I", b, toff + 4, words[1] + 4))
    assert "pad of pfe_global in .text has 2 nops, expected 3" in err
    # a duplicate (entry 2 = entry 1): pfe_sum then has a pad but no entry
    err = patched("dup.o", lambda b: struct.pack_into("<I", b, toff + 8, words[1]))
    assert "duplicate entry for pfe_global in .text (also entry 1)" in err
    assert "pfe_sum in .text has a 3-nop pad but no __patchable_function_entries entry" in err
    # an entry into data: relocation 0 re-aimed at the .rodata section symbol
    def to_data(b):
        info = struct.unpack_from("<I", b, roff + 4)[0]
        struct.pack_into("<I", b, roff + 4, (sec_syms[".rodata"] << 8) | (info & 0xFF))
    err = patched("data.o", to_data)
    assert "entry points into .rodata+0x0, which is not an executable section" in err
    assert "pfe_helper in .text has a 3-nop pad but no" in err
    # a truncated table: the last entry's relocation gone (r_info = R_MIPS_NONE, sym 0)
    err = patched("trunc.o", lambda b: struct.pack_into("<I", b, roff + 5 * 8 + 4, 0))
    assert "relocation R_MIPS_NONE is not an absolute pointer" in err
    assert "pfe_weak in .text has a 3-nop pad but no" in err


# ---------------------------------------------------------------- repair: the link proof
CALL = re.compile(r"^\s*([0-9a-f]+):\s+[0-9a-f]+\s+(jal|balc|bal|j|bc)\s+([0-9a-f]+) <([^>+]+)")


def _link(target, obj: Path, out: Path) -> str:
    start = fx(target, "pfe-start", "pfe_start.o")
    res = subprocess.run([cross(target, "ld"), "-Ttext-segment=0x400000", "-e", "_start",
                          "-o", str(out), str(start), str(obj)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    dis = subprocess.run([cross(target, "objdump"), "-d", str(out)], capture_output=True,
                         text=True, check=True).stdout
    return dis


def _program_facts(prog: Path):
    """pad starts (from __patchable_function_entries), the nops there, .rodata pointers."""
    from elftools.elf.elffile import ELFFile
    with open(prog, "rb") as f:
        e = ELFFile(f)
        word = 8 if e.elfclass == 64 else 4
        fmt = ("<" if e.little_endian else ">") + ("Q" if word == 8 else "I")
        t = e.get_section_by_name("__patchable_function_entries").data()
        pads = {struct.unpack_from(fmt, t, k)[0] for k in range(0, len(t), word)}
        ro = e.get_section_by_name(".rodata")
        ptrs = [struct.unpack_from(fmt, ro.data(), k)[0] for k in range(0, 2 * word, word)]
        text = e.get_section_by_name(".text")
        base, data = text["sh_addr"], text.data()
        return pads, ptrs, (base, data, fmt[0])


def _addr_loads(dis: str, func: str) -> list[int]:
    """lui+addiu/daddiu pairs in ``func``'s disassembly, as the addresses they build."""
    body = dis.split(f"<{func}>:\n", 1)[1].split("\n\n", 1)[0]
    his = {}
    out = []
    for ln in body.splitlines():
        m = re.search(r"\tlui\t(\w+),0x([0-9a-f]+)", ln)
        if m:
            his[m.group(1)] = int(m.group(2), 16) << 16
        m = re.search(r"\t(?:d?addiu)\t(\w+),(\w+),(-?\d+)", ln)
        if m and m.group(2) in his:
            out.append((his[m.group(2)] + int(m.group(3))) & 0xFFFFFFFF)
    return out


@pytest.mark.parametrize("target,flavour", [("mipsel", "pfe3"), ("mips", "pfe3-fs"),
                                            ("mips64", "pfe4-fs"), ("mips64el", "pfe3-1"),
                                            ("mipsr6", "pfe3-fs"), ("mipsr6", "pfe4")])
def test_repaired_object_calls_land_on_pads(target, flavour, tmp_path):
    """Link the object (before and after --repair) with a caller into a static program;
    in the disassembly every call into it, every function pointer (.rodata) and every
    address load (%hi/%lo in pfe_addr) lands on a pad start after repair, and lands N nops
    later (past the pad) before."""
    n = PFE[flavour][0]
    src = fx(target, flavour)
    bad = copy(src, tmp_path, "unrepaired.o")
    good = copy(src, tmp_path, "repaired.o")
    r = run_ours("record", "--repair", good)
    assert r.returncode == 0 and "PR99217" not in r.stderr, r.stderr
    assert re.search(r"pfe_helper: entry moved from \.text[.a-z_]*\+0x[0-9a-f]+ to the pad", r.stderr) \
        or "entry moved" in run_ours("record", "-w", "--repair", copy(src, tmp_path, "x.o")).stderr
    for obj, repaired in ((bad, False), (good, True)):
        prog = tmp_path / (obj.stem + ".elf")
        dis = _link(target, obj, prog)
        pads, ptrs, (base, data, end) = _program_facts(prog)
        calls = [(int(a, 16), int(t, 16), f) for a, _, t, f in
                 (m.groups() for m in map(CALL.match, dis.splitlines()) if m)
                 if f in PADDED]
        called = {f for _, _, f in calls}
        assert {"pfe_sum", "pfe_call", "pfe_addr", "pfe_weak"} <= called, dis
        targets = [t for _, t, _ in calls] + ptrs + _addr_loads(dis, "pfe_addr")
        assert len(targets) >= 7
        for t in targets:
            if repaired:
                assert t in pads, f"{t:#x} is not a pad start ({sorted(map(hex, pads))})"
                off = t - base
                assert data[off:off + 4 * n] == bytes(4 * n), f"no {n} nops at {t:#x}"
            else:
                assert t not in pads and t - 4 * n in pads
        # pfe_untraced has no pad and is called where it always was
        assert re.search(r"jal\s+[0-9a-f]+ <pfe_untraced>", dis)


def test_repair_is_refused_cleanly_for_wrong_isa(tmp_path):
    src = fx("mipsel", "pfe-mm", "pfe_isa.o")
    obj = copy(src, tmp_path)
    r = run_ours("record", "--repair", obj)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "cannot repair isa_micro: its pad is in the wrong ISA mode" in err[0]
    assert obj.read_bytes() == src.read_bytes()


# ---------------------------------------------------------------- probe-cc
FLAGS = ["-O2", "-G", "0", "-mno-abicalls", "-fno-pic"]


def _pad_before_label(cc: str, tmp: Path):
    """Compile one padded function with ``cc`` and read the result with pyelftools: (the
    object's .comment, whether the table entry + 3 nops == the symbol, i.e. PR99217)."""
    from elftools.elf.elffile import ELFFile
    src, obj = tmp / "one.c", tmp / "one.o"
    src.write_text("int g;\nvoid one(void) { g++; }\n")
    subprocess.run([cc, *FLAGS, "-fpatchable-function-entry=3", "-c", str(src), "-o", str(obj)],
                   check=True)
    with open(obj, "rb") as f:
        e = ELFFile(f)
        comment = next(c for c in e.get_section_by_name(".comment").data().decode().split("\0")
                       if c)
        sym = e.get_section_by_name(".symtab").get_symbol_by_name("one")[0]
        rel = next(s for s in e.iter_sections()
                   if s.name in (".rel__patchable_function_entries",
                                 ".rela__patchable_function_entries"))
        (r,) = list(rel.iter_relocations())
        addend = (r["r_addend"] if r.is_RELA() else int.from_bytes(
            e.get_section_by_name("__patchable_function_entries").data()[:4],
            "little" if e.little_endian else "big"))
    return comment, addend + 12 == sym["st_value"]


def test_probe_cc_installed_gcc(tmp_path):
    """probe-cc on the installed cross GCC: its verdict on PR99217 and the compiler it names
    must match what that compiler does to one function (read with pyelftools), whatever
    its version."""
    cc = cross("mipsel", "gcc")
    comment, pr99217 = _pad_before_label(cc, tmp_path)
    r = run_ours("probe-cc", "--json", cc, *FLAGS, "-fpatchable-function-entry=3")
    assert r.returncode == (1 if pr99217 else 0), r.stderr
    rep = json.loads(r.stdout)["files"][0]
    ids = {d["id"]: d for d in rep["defects"]}
    assert ("PR99217" in ids) == pr99217 and rep["usable"] == (not pr99217)
    if pr99217:
        assert ids["PR99217"]["fatal"]
        assert not ids["link-order"]["fatal"]           # no -ffunction-sections asked for
    assert rep["compiler"] == comment
    if not pr99217:
        return
    r = run_ours("probe-cc", cc, *FLAGS, "-ffunction-sections", "-fpatchable-function-entry=4")
    assert r.returncode == 1
    assert "[PR99217]" in r.stderr and "error: recordpatch: probe-cc: [link-order]" in r.stderr
    assert "NOT usable" in r.stdout


def test_probe_cc_pr93242_and_usable(tmp_path):
    """A compiler whose assembler rejects the pad (GCC < 10: PR93242), and one whose objects
    are right (a wrapper that repairs what GCC 12 emits): only the latter is usable."""
    old = tmp_path / "old-gcc"
    old.write_text("#!/bin/sh\necho \"/tmp/x.s: Assembler messages:\" >&2\n"
                   "echo \"/tmp/x.s:12: Error: junk at end of line, first unrecognized "
                   "character is \\`%'\" >&2\nexit 1\n")
    old.chmod(0o755)
    r = run_ours("probe-cc", "--json", old, *FLAGS)
    rep = json.loads(r.stdout)["files"][0]
    assert r.returncode == 1 and rep["defects"][0]["id"] == "PR93242" and not rep["usable"]
    cc = cross("mipsel", "gcc")
    fixed = tmp_path / "fixed-gcc"
    fixed.write_text(f"#!/bin/sh\n{cc} \"$@\" || exit $?\n"
                     "while [ $# -gt 0 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n"
                     f"{ROOT_PY} -m recordpatch record --repair \"$out\" 2>/dev/null || true\n")
    fixed.chmod(0o755)
    r = run_ours("probe-cc", fixed, *FLAGS, "-fpatchable-function-entry=3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usable for MIPS" in r.stdout
    r = run_ours("probe-cc", tmp_path / "nope-gcc")
    assert r.returncode == 1 and r.stderr.strip().endswith("compiler not found")


import sys  # noqa: E402

ROOT_PY = sys.executable
