"""`recordpatch audit` (issue 3, section 3): clean trees, injected faults, linked images with
patched states, patchable-entry defects, JSON, read-only, -j. Real fixtures only: the
objects are recorded with recordpatch itself, faults are single-field edits of the result."""

from __future__ import annotations

import hashlib
import json
import os
import re
import lzma
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, IN_CI, ROOT, cross, need, need_module, run_ours

from recordpatch.elf.reader import ElfFile

GCC = "GCC: (Debian 12.2.0-14) 12.2.0"


def hashes(d: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def audit(*args):
    r = run_ours("audit", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def audit_json(*args):
    r = audit("--json", *args)
    return r, json.loads(r.stdout)


def recorded_tree(tmp: Path, target: str, flavour: str = "module") -> Path:
    """Copies of a flavour's objects and module.ko, recorded, plus module.ko.xz (and .zst)."""
    d = tmp / f"{target}-{flavour}"
    d.mkdir()
    for p in sorted((FIXTURES / target / flavour).iterdir()):
        if p.suffix in (".o", ".ko"):
            shutil.copyfile(p, d / p.name)
    r = run_ours("record", *sorted(d.iterdir()))
    assert r.returncode == 0, r.stderr
    ko = d / "module.ko"
    if ko.exists():
        sub = d / "lib" / "modules" / "6.1.0" / "kernel"
        sub.mkdir(parents=True)
        (sub / "module.ko.xz").write_bytes(lzma.compress(ko.read_bytes(), check=lzma.CHECK_CRC32))
        if shutil.which("zstd") or IN_CI:  # CI installs it: a missing zstd fails there
            subprocess.run(["zstd", "-q", "-o", str(sub / "module.ko.zst"), str(ko)], check=True)
    return d


def table_slot(path: Path, name: str = "__mcount_loc"):
    """(elf, table section, its relocation section)."""
    elf = ElfFile(path.read_bytes())
    t = elf.section_by_name(name)
    rel = next(s for s in elf.sections if s.type in (9, 4) and s.info == t.index)
    return elf, t, rel


def edit(path: Path, off: int, fmt: str, fn):
    buf = bytearray(path.read_bytes())
    elf = ElfFile(bytes(buf))
    (v,) = struct.unpack_from(elf.endian + fmt, buf, off)
    struct.pack_into(elf.endian + fmt, buf, off, fn(v))
    path.write_bytes(bytes(buf))


def move_entry(path: Path, slot: int, delta: int):
    """Move table entry ``slot`` by ``delta`` bytes: the table word (REL) or r_addend (RELA)."""
    elf, t, rel = table_slot(path)
    if rel.type == 4:  # SHT_RELA: r_addend is the last field
        k = next(i for i, r in enumerate(elf.relocations(rel)) if r.offset == slot * elf.word)
        edit(path, rel.offset + k * rel.entsize + rel.entsize - elf.word,
             "i" if elf.word == 4 else "q", lambda v: v + delta)
    else:
        edit(path, t.offset + slot * elf.word, "I" if elf.word == 4 else "Q", lambda v: v + delta)


def copy_entry(path: Path, src: int, dst: int):
    """Make entry ``dst`` a copy of entry ``src`` (word and relocation)."""
    elf, t, rel = table_slot(path)
    buf = bytearray(path.read_bytes())
    w = elf.word
    buf[t.offset + dst * w:t.offset + (dst + 1) * w] = buf[t.offset + src * w:t.offset + (src + 1) * w]
    e = rel.entsize
    rs = elf.relocations(rel)
    ks = {r.offset: i for i, r in enumerate(rs)}
    a, b = rel.offset + ks[src * w] * e, rel.offset + ks[dst * w] * e
    buf[b + w:b + e] = buf[a + w:a + e]  # r_info (and r_addend), keep r_offset
    path.write_bytes(bytes(buf))


def shrink(path: Path):
    """Drop the last entry: sh_size of the table and of its relocations shrink by one."""
    elf, t, rel = table_slot(path)
    so = 20 if elf.bits == 32 else 32
    fmt = "I" if elf.bits == 32 else "Q"
    shent = 40 if elf.bits == 32 else 64
    edit(path, elf.shoff + t.index * shent + so, fmt, lambda v: v - elf.word)
    edit(path, elf.shoff + rel.index * shent + so, fmt, lambda v: v - rel.entsize)


def point_into_data(path: Path, slot: int):
    """Relocate entry ``slot`` against a symbol of a non-executable section, addend 0."""
    elf, t, rel = table_slot(path)
    sym = next(s for s in elf.symtab if s.section and s.value == 0
               and elf.sections[s.section].flags & 0x4 == 0
               and elf.sections[s.section].flags & 0x2 and elf.sections[s.section].type == 1
               and elf.sections[s.section].size >= elf.word)
    k = next(i for i, r in enumerate(elf.relocations(rel)) if r.offset == slot * elf.word)
    at = rel.offset + k * rel.entsize
    if elf.bits == 32:
        edit(path, at + 4, "I", lambda v: (sym.index << 8) | (v & 0xFF))
        edit(path, t.offset + slot * 4, "I", lambda v: 0)
    else:  # n64 r_info: r_sym (32 bits), r_ssym, r_type3, r_type2, r_type
        edit(path, at + 8, "I", lambda v: sym.index)
        edit(path, at + 16, "q", lambda v: 0)
    return elf.sections[sym.section].name


# ---------------------------------------------------------------- (a) clean tree, (f) read-only
@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_recorded_tree_is_clean(target, tmp_path):
    d = recorded_tree(tmp_path, target)
    before = hashes(d)
    r, js = audit_json(d)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    files = {Path(f["path"]).name: f for f in js["files"]}
    assert "module.ko.xz" in files and files["module.ko.xz"]["entries"] == files["module.ko"]["entries"] > 0
    if shutil.which("zstd") or IN_CI:
        assert files["module.ko.zst"]["entries"] == files["module.ko"]["entries"]
    assert files["basic.o"]["states"] == {"long-call lui": files["basic.o"]["entries"]}
    assert files["nosites.o"]["entries"] == 0 and files["nosites.o"]["status"] == "clean"
    assert all(f["status"] == "clean" for f in js["files"])
    # plain output: one line per file and a summary
    r = audit(d)
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.splitlines()[-1].startswith(f"audited {len(files)} files: {len(files)} clean")
    assert hashes(d) == before


def test_zstd_both_ways(tmp_path, monkeypatch):
    """A .ko.zst (made by the zstd program) reads back as the module, byte for byte, through
    the `zstandard` module and, without it, through the `zstd` program; with neither,
    one error naming both."""
    from recordpatch.errors import RecordpatchError
    from recordpatch.passes.pipeline import decompress
    zstd = shutil.which("zstd")
    need("zstd (Debian package zstd)", zstd is not None)
    need_module("zstandard")
    ko = FIXTURES / "mips64el" / "module" / "module.ko"
    zst = tmp_path / "module.ko.zst"
    subprocess.run([zstd, "-q", "-19", "-o", str(zst), str(ko)], check=True)
    data = zst.read_bytes()
    assert decompress(str(zst), data) == ko.read_bytes()          # the module
    monkeypatch.setitem(sys.modules, "zstandard", None)            # import fails: the program
    assert decompress(str(zst), data) == ko.read_bytes()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))              # neither
    with pytest.raises(RecordpatchError, match="install the Python module `zstandard` or the "
                                               "`zstd` program"):
        decompress(str(zst), data)


# ---------------------------------------------------------------- (b) injected faults
@pytest.mark.parametrize("target", ["mipsel", "mips64el"])  # REL and RELA
def test_injected_faults(target, tmp_path):
    d = recorded_tree(tmp_path, target)
    src = d / "basic.o"
    cases = {}
    for name in ("moved", "dup", "data", "short"):
        cases[name] = d / f"{name}.o"
        shutil.copyfile(src, cases[name])
    move_entry(cases["moved"], 1, 4)
    copy_entry(cases["dup"], 0, 2)
    data_sec = point_into_data(cases["data"], 3)
    shrink(cases["short"])
    before = hashes(d)
    r, js = audit_json(*cases.values())
    assert r.returncode == 1
    assert hashes(d) == before
    by = {Path(f["path"]).stem: f for f in js["files"]}
    kinds = {k: [x["kind"] for x in f["findings"]] for k, f in by.items()}
    assert "bad-target" in kinds["moved"] and "missing" in kinds["moved"]
    moved = next(x for x in by["moved"]["findings"] if x["kind"] == "bad-target")
    assert "addiu v1,v1,0" in moved["message"] or "daddiu v1,v1,0" in moved["message"]
    assert moved["where"].startswith(".text+0x")
    assert "duplicate" in kinds["dup"] and "missing" in kinds["dup"]
    assert "not-executable" in kinds["data"]
    nx = next(x for x in by["data"]["findings"] if x["kind"] == "not-executable")
    assert data_sec in nx["message"]
    assert kinds["short"] == ["missing"]
    short = by["short"]["findings"][0]
    assert "call to _mcount in " in short["message"] and "has no __mcount_loc entry" in short["message"]
    # objtool-style lines on stderr, one per finding
    lines = r.stderr.splitlines()
    assert len(lines) == sum(len(f["findings"]) for f in js["files"])
    assert all(": warning: recordpatch: " in ln for ln in lines)
    assert any(ln.startswith(f"{cases['moved']}: warning: recordpatch: .text+0x") for ln in lines)


def test_unrecorded_and_errors(tmp_path):
    obj = tmp_path / "basic.o"
    shutil.copyfile(FIXTURES / "mips" / "kernel" / "basic.o", obj)
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an object")
    r, js = audit_json(obj, junk, tmp_path / "missing.ko")
    assert r.returncode == 1
    st = {Path(f["path"]).name: f["status"] for f in js["files"]}
    assert st == {"basic.o": "findings", "junk.o": "error", "missing.ko": "error"}
    assert js["files"][0]["findings"][0]["kind"] == "not-recorded"
    assert f"{junk}: error: recordpatch: not an ELF file" in r.stderr.splitlines()
    # in a directory walk a non-ELF ".o" is skipped, not an error
    r, js = audit_json(tmp_path)
    assert {Path(f["path"]).name: f["status"] for f in js["files"]}["junk.o"] == "skipped"
    assert run_ours("audit").returncode == 2
    assert run_ours("audit", "-j", "0", obj).returncode == 2


# ---------------------------------------------------------------- (c) linked image, patched state
def link(target: str, objs: list[Path], out: Path, extra=(), ld_args=()) -> Path:
    nm, ld = cross(target, "nm"), cross(target, "ld")
    und = set()
    for o in objs:
        r = subprocess.run([nm, "-u", str(o)], capture_output=True, text=True, check=True)
        und |= {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    defined = set()
    for o in list(objs) + [Path(x) for x in extra]:
        r = subprocess.run([nm, "--defined-only", str(o)], capture_output=True, text=True, check=True)
        defined |= {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    defs = [f"--defsym={s}=0x80100000" for s in sorted(und - defined)]
    subprocess.run([ld, "-e", "0", "-Ttext=0x80100000", *defs, *ld_args, "-o", str(out), *map(str, objs),
                    *extra], check=True, capture_output=True)
    return out


def put_word(path: Path, addr: int, w: int):
    elf = ElfFile(path.read_bytes())
    s = next(s for s in elf.sections if s.flags & 2 and s.addr <= addr < s.addr + s.size and s.type == 1)
    buf = bytearray(path.read_bytes())
    struct.pack_into(elf.endian + "I", buf, s.offset + addr - s.addr, w)
    path.write_bytes(bytes(buf))


def table_words(path: Path, name="__mcount_loc"):
    elf = ElfFile(path.read_bytes())
    t = elf.section_by_name(name)
    n = t.size // elf.word
    return list(struct.unpack_from(f"{elf.endian}{n}{'I' if elf.word == 4 else 'Q'}",
                                   elf.section_data(t)))


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_linked_image_and_patched_states(target, tmp_path):
    objs = []
    for n in ("basic.o", "sections.o"):
        objs.append(tmp_path / n)
        shutil.copyfile(FIXTURES / target / "kernel" / n, objs[-1])
    assert run_ours("record", *objs).returncode == 0
    exe = link(target, objs, tmp_path / "vmlinux", [str(FIXTURES / target / "kernel" / "mcount_def.o")])
    r, js = audit_json(exe)
    assert r.returncode == 0, r.stderr
    f = js["files"][0]
    assert f["elf_type"] == "ET_EXEC" and f["entries"] == 18
    assert f["states"] == {"jal _mcount": 18} and ".sched.text" in f["sections"]
    addrs = table_words(exe)
    put_word(exe, addrs[0], 0)                       # ftrace_make_nop in the core kernel
    r, js = audit_json(exe)
    assert r.returncode == 0, r.stderr
    assert js["files"][0]["states"] == {"jal _mcount": 17, "nop (disabled)": 1}
    put_word(exe, addrs[1], 0x27BDFFF8)              # addiu sp,sp,-8: not a state
    before = hashes(tmp_path)
    r, js = audit_json(exe)
    assert r.returncode == 1
    (bad,) = js["files"][0]["findings"]
    assert bad["kind"] == "bad-target" and "`addiu sp,sp,-8`" in bad["message"]
    assert f"{addrs[1]:#x}" in bad["message"] and bad["where"].startswith(".text+0x")
    assert hashes(tmp_path) == before


@pytest.mark.parametrize("target", ["mipsel"])
def test_linked_patchable_pad_states(target, tmp_path):
    obj = tmp_path / "patchable.o"
    shutil.copyfile(FIXTURES / target / "pfe3" / "patchable.o", obj)
    exe = link(target, [obj], tmp_path / "pfe.elf")
    r, js = audit_json(exe)
    f = js["files"][0]
    assert f["states"] == {"3-nop pad": 6}
    assert [d["id"] for d in f["defects"]] == ["PR99217"] and f["defects"][0]["compiler"] == GCC
    assert r.returncode == 1
    a = table_words(exe, "__patchable_function_entries")
    lui_at, jalr_at, li_t0 = 0x3C018011, 0x00200809, 0x24080001
    for k, w in enumerate((lui_at, jalr_at, li_t0)):
        put_word(exe, a[0] + 4 * k, w)
    for k, w in enumerate((lui_at, 0, 0x24080000)):
        put_word(exe, a[1] + 4 * k, w)
    r, js = audit_json(exe)
    assert js["files"][0]["states"] == {"3-nop pad": 4, "pad call": 1, "pad init": 1}
    assert {x["kind"] for x in js["files"][0]["findings"]} == {"defect"}


# ---------------------------------------------------------------- (d) patchable fixtures
def test_patchable_fixtures_defects():
    paths = [FIXTURES / t / d / "patchable.o" for t in ("mips", "mips64el", "mipsr6")
             for d in ("pfe3", "pfe3-fs")]
    r, js = audit_json(*paths)
    assert r.returncode == 1
    for f in js["files"]:
        assert f["compiler"] == GCC
        ids = {d["id"]: d for d in f["defects"]}
        assert "PR99217" in ids and ids["PR99217"]["compiler"] == GCC
        assert len(ids["PR99217"]["functions"]) == 6
        assert f["states"] == {"3-nop pad": 6}
        if "pfe3-fs" in f["path"]:
            assert "SHF_LINK_ORDER" in ids
        else:
            assert "SHF_LINK_ORDER" not in ids
    assert "GCC PR99217" in r.stderr and GCC in r.stderr


# ---------------------------------------------------------------- (e) JSON, (g) -j
def test_json_schema_and_jobs(tmp_path):
    d = recorded_tree(tmp_path, "mips")
    shutil.copytree(FIXTURES / "mips" / "pfe3", d / "pfe3")
    r1, j1 = audit_json("-j", "1", d)
    r2, j2 = audit_json("-j", "2", d)
    assert r1.returncode == r2.returncode == 1
    assert j1 == j2
    assert j1["schema"] == "recordpatch/audit/1" and set(j1["summary"]) >= {"files", "clean", "findings", "errors",
                                                        "entries"}
    keys = {"path", "status", "elf_type", "abi", "endian", "compiler", "entries", "tables",
            "sections", "states", "defects", "trampoline", "findings"}
    for f in j1["files"]:
        assert keys <= set(f), f
        assert f["status"] in ("clean", "findings")
        assert sum(f["tables"].values()) == f["entries"]
        for x in f["findings"]:
            assert set(x) == {"kind", "level", "where", "message", "section", "offset",
                              "function", "func_offset"}
    assert j1["summary"]["files"] == len(j1["files"])


def test_trampoline_alignment(tmp_path):
    f = tmp_path / "tramp.o"
    shutil.copyfile(FIXTURES / "mipsel" / "check" / "tramp_smallalign.o", f)
    r, js = audit_json(f)
    assert r.returncode == 1
    assert js["files"][0]["findings"][0]["kind"] == "trampoline"
    g = tmp_path / "ok.o"
    g.write_bytes(lzma.decompress((FIXTURES / "mipsel" / "check" / "tramp_aligned-64k.o.xz").read_bytes()))
    r, js = audit_json(g)
    assert r.returncode == 0 and js["files"][0]["trampoline"][0]["ok"]


def test_record_path_does_not_import_audit():
    code = ("import sys, recordpatch.cli as c\n"
            "c.main(['/nonexistent.o'])\n"
            "print('recordpatch.passes.audit' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_module_site_states():
    """The module (long-call) states on a real module's words: the lui, ftrace_make_nop's
    `b 1f` (+ the nop 32-bit kernels write after it), and an address load that is no call."""
    from recordpatch.passes.audit import _linked_state
    elf = ElfFile((FIXTURES / "mipsel" / "module" / "basic.o").read_bytes())
    text = bytearray(elf.section_data(elf.section_by_name(".text")))

    def state(off):
        def word(o):
            return struct.unpack_from("<I", text, o)[0] if 0 <= o <= len(text) - 4 else None
        return _linked_state(word, off, 0x80000000 + off, 32, None, set(), 8, False)

    assert state(0) == "long-call lui"
    struct.pack_into("<II", text, 0, 0x10000004, 0)           # b 1f; nop
    assert state(0) == "b 1f (disabled)"
    struct.pack_into("<IIII", text, 0, 0x3C030000, 0x24630000, 0x03E00825, 0x8C830000)
    assert state(0) == ""                                     # lui/addiu v1 without jalr v1


def _run_on_pty(args: list[str], columns: int = 160, **env_extra) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as a person at a terminal would."""
    import pty
    import select
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns), TERM="xterm", **env_extra)
    env.pop("NO_COLOR", None) if "NO_COLOR" not in env_extra else None
    p = subprocess.Popen([sys.executable, "-m", "recordpatch", *args], stdout=slave,
                         stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
    os.close(slave)
    chunks = []
    while True:
        r, _, _ = select.select([master], [], [], 120)
        if not r:
            p.kill()
            break
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    return p.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_tree_audit_progress_bar_on_terminal_plain_in_ci(tmp_path):
    """A tree of a few hundred objects (the committed fixtures, twice): a progress bar and
    the rich table on a terminal; no bar and one plain line per file otherwise."""
    need_module("rich")
    objs = [p for p in FIXTURES.rglob("*") if p.suffix in (".o", ".ko") and p.is_file()
            and p.name != "manysec.o"]
    for copy in ("a", "b"):
        for p in objs:
            dst = tmp_path / copy / p.relative_to(FIXTURES)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
    tree = str(tmp_path)
    n = 2 * len(objs)
    assert n >= 300
    code, out = _run_on_pty(["audit", tree])
    assert code in (0, 1)
    assert re.search(rf"\r\[#+\.*\] \d+/{n}", out) or f"/{n}" in out, out[-2000:]
    assert f"{n}/{n}" in out
    assert "recordpatch audit" in out and "┃" in out  # rich's table
    assert "audited " in out and "Traceback" not in out
    r = subprocess.run([sys.executable, "-m", "recordpatch", "audit", tree], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == code
    assert "\r[" not in r.stderr and "┃" not in r.stdout
    assert len([x for x in r.stdout.splitlines() if x.startswith(tree)]) >= n


def _pfe_entries(path: Path):
    """(section name, offset) of each __patchable_function_entries entry and the functions
    whose symbol stands right after a whole pad there (PR99217), read with pyelftools."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        e = ELFFile(f)
        table = e.get_section_by_name("__patchable_function_entries")
        rel = next(s for s in e.iter_sections() if s["sh_type"] in ("SHT_REL", "SHT_RELA")
                   and s["sh_info"] == e.get_section_index("__patchable_function_entries"))
        symtab = e.get_section(rel["sh_link"])
        word = 8 if e.elfclass == 64 else 4
        order = "little" if e.little_endian else "big"
        out = []
        for r in rel.iter_relocations():
            sym = symtab.get_symbol(r["r_info_sym"])
            add = r["r_addend"] if r.is_RELA() else int.from_bytes(
                table.data()[r["r_offset"]:r["r_offset"] + word], order)
            out.append((e.get_section(sym["st_shndx"]).name, (sym["st_value"] + add) & ~1))
        funcs = {(e.get_section(s["st_shndx"]).name, s["st_value"] & ~1): s.name
                 for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"
                 and isinstance(s["st_shndx"], int)}
    return out, funcs


@pytest.mark.parametrize("fx,nops,micro", [
    ("mipsel/pfe3/patchable.o", 3, False), ("mips64/pfe4-fs/patchable.o", 4, False),
    ("mips/pfe3-fs/patchable.o", 3, False), ("mipsel/pfe-mmall/patchable.o", 3, True)])
def test_patchable_counts_and_pr99217_against_pyelftools(fx, nops, micro):
    """audit's counts of a -fpatchable-function-entry object (N from the compiler flags)
    and its PR99217 findings, against the table and symbols as pyelftools reads them."""
    path = FIXTURES / fx
    entries, funcs = _pfe_entries(path)
    pad = nops * (2 if micro else 4)
    late = {funcs[(n, o + pad)]: f"{n}+{o:#x}" for n, o in entries if (n, o + pad) in funcs}
    assert late, "GCC 12's pads all stand before the label (testdata/README.md)"
    r, js = audit_json(path)
    (f,) = js["files"]
    assert f["tables"] == {"__patchable_function_entries": len(entries)}
    assert f["sections"] == {n: sum(1 for m, _ in entries if m == n) for n, _ in entries}
    assert f["states"] == {f"{nops}-nop pad{' (microMIPS)' if micro else ''}": len(entries)}
    (d,) = [d for d in f["defects"] if d["id"] == "PR99217"]
    assert sorted(d["functions"]) == sorted(late)
    pr = [x for x in f["findings"] if "PR99217" in x["message"]]
    assert sorted((x["where"], x["kind"]) for x in pr) == sorted((w, "defect") for w in late.values())
    assert all(f"{name}'s pad" in x["message"] for x in pr for name in late
               if late[name] == x["where"])


def test_finding_kind_is_data_not_message_text():
    """testdata/src/pfe_setmode.c: set_mode (MIPS32 code, its name holding "mode") asks for
    a 2-nop pad in an object of 3-nop pads. Audit once classified findings by searching
    their text, and "pad of set_mode ... has 2 nops" became the microMIPS-pad-ISA defect.
    Oracles: objdump (the nops before set_mode; the pad size of the others) and readelf
    (set_mode carries no STO_MICROMIPS)."""
    obj = FIXTURES / "mipsel" / "pfe3" / "pfe_setmode.o"
    dis = subprocess.run([cross("mipsel", "objdump"), "-d", "-z", str(obj)], capture_output=True,
                         text=True, check=True).stdout
    words = [(int(a, 16), w) for a, w in re.findall(r"^\s+([0-9a-f]+):\s+([0-9a-f]{8})\s", dis, re.M)]
    start = {n: int(a, 16) for a, n in re.findall(r"^([0-9a-f]+) <(\w+)>:", dis, re.M)}

    def nops_before(addr):
        n = 0
        while (addr - 4 * (n + 1), "00000000") in words:
            n += 1
        return n
    assert nops_before(start["set_mode"]) == 2 and nops_before(start["get_mode"]) == 3
    syms = subprocess.run([cross("mipsel", "readelf"), "-sW", str(obj)], capture_output=True,
                          text=True, check=True).stdout
    line = next(ln for ln in syms.splitlines() if ln.endswith(" set_mode"))
    assert "MICROMIPS" not in line
    r, js = audit_json(obj)
    f = js["files"][0]
    assert "microMIPS-pad-ISA" not in [d["id"] for d in f["defects"]]
    mine = [x for x in f["findings"] if x["function"] == "set_mode"]
    assert any("has 2 nops, expected 3" in x["message"] for x in mine)
    assert {x["kind"] for x in mine} == {"bad-target"}
    assert {d["id"] for d in f["defects"]} == {"PR99217"}
    assert set(f["defects"][0]["functions"]) == set(start) - {"set_mode"}
