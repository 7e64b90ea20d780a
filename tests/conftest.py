"""Shared test helpers: fixture discovery, external tools, and an independent table oracle.

External tools (Debian's recordmcount, the MIPS cross binutils) are optional on a
developer's machine, but with ``CI`` set a missing tool is a failure, never a
skip: the differential tests are the point of CI.
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "testdata" / "fixtures"
REFERENCE = Path(os.environ.get("RECORDMCOUNT_REF", "/usr/lib/linux-kbuild-6.1/scripts/recordmcount"))
IN_CI = bool(os.environ.get("CI"))

#: fixture directory name -> cross-tool prefix
PREFIX = {
    "mips": "mips-linux-gnu-",
    "mipsel": "mipsel-linux-gnu-",
    "mips64": "mips64-linux-gnuabi64-",
    "mips64el": "mips64el-linux-gnuabi64-",
    "mipsr6": "mipsisa32r6-linux-gnu-",
    "mipsr6el": "mipsisa32r6el-linux-gnu-",
}


def need(what: str, ok: bool):
    """Skip (developer machine) or fail (CI) when an external tool is missing; also at
    module level (a failure there is a collection error, which fails the run)."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing (.ci/run must install it)",
                    pytrace=False)
    pytest.skip(f"{what} not installed", allow_module_level=True)


def need_module(name: str):
    """importorskip that fails under CI: the test extras must provide ``name``."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        need(f"Python module {name} (pip install -e '.[test]')", False)


def reference_tool() -> Path:
    need(f"reference recordmcount at {REFERENCE}", REFERENCE.is_file() and os.access(REFERENCE, os.X_OK))
    return REFERENCE


def cross(target: str, tool: str) -> str:
    exe = shutil.which(PREFIX[target] + tool)
    need(f"{PREFIX[target]}{tool}", exe is not None)
    return exe


def gas(obj: Path, src: str, target: str = "mipsel", flags: str = "") -> Path:
    """Assemble ``src`` with the target's GNU as into ``obj``."""
    subprocess.run([cross(target, "as"), *flags.split(), "-o", str(obj), "-"], input=src,
                   text=True, check=True)
    return obj


def target_of(path: Path) -> str:
    return path.relative_to(FIXTURES).parts[0]


def pg_objects() -> list[Path]:
    """Every committed relocatable fixture (.o and .ko), excluding compressed ones."""
    # [clang-]manysec/manysec.o is the uncompressed build product of manysec.o.xz (not committed)
    out = sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".o", ".ko") and p.is_file()
                 and p.name != "manysec.o" and not is_non_pg_fixture(p))
    if ONLY_TARGETS:
        out = [p for p in out if target_of(p) in ONLY_TARGETS]
    return out


#: `make mutate` sets RECORDPATCH_TESTS_TARGETS=mipsel,mips64,mipsr6: every fixture source, but on
#: three targets (LE o32 REL, BE n64 RELA, BE R6) instead of five, since a surviving mutant runs
#: every test that reaches its function and the per-fixture tests dominate that time.
ONLY_TARGETS = tuple(t for t in os.environ.get("RECORDPATCH_TESTS_TARGETS", "").split(",") if t)


def is_non_pg_fixture(p: Path) -> bool:
    """Fixtures of issue 3 (patchable entries: pfe*; trampoline alignment: check/), which
    are not -pg objects, and of issue 12 (shapes/: call shapes some of which recordpatch
    refuses; stripped/: linked images), which tests/test_shapes.py compares with the
    reference instead: all stay out of the recordmcount differential tests."""
    return (p.parent.name.startswith("pfe") or p.parent.name == "check"
            or p.relative_to(FIXTURES).parts[0] in ("shapes", "stripped"))


def manifest_commands() -> dict:
    """fixtures/MANIFEST as {path relative to fixtures/: argv of the command that built it}
    (line format `path | command | sha256=...`, the command's paths relative to testdata/)."""
    out = {}
    for line in (FIXTURES / "MANIFEST").read_text().splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) == 3:
            out[fields[0]] = fields[1].split()
    return out


def built_with_pg(p: Path) -> bool:
    """The fixture's compiler command had -pg (Kbuild runs recordmcount on no other object)."""
    return "-pg" in manifest_commands()[str(p.relative_to(FIXTURES))]


def fixture_id(p: Path) -> str:
    return str(p.relative_to(FIXTURES))


def materialize(p: Path, tmp: Path) -> Path:
    """A private copy of a fixture (decompressing .xz) that a test may modify."""
    if p.suffix == ".xz":
        dst = tmp / p.name[:-3]
        dst.write_bytes(lzma.decompress(p.read_bytes()))
    else:
        dst = tmp / p.name
        shutil.copyfile(p, dst)
    return dst


def run_reference(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(reference_tool()), str(path)], capture_output=True, text=True)


#: `make mutate` sets this: the CLI then runs inside the test process, where the mutation
#: tool sees (and switches) the code it mutated; a subprocess would hide it.
IN_PROCESS = bool(os.environ.get("RECORDPATCH_TESTS_IN_PROCESS"))
#: Under `make mutate` the hand-built unit tests run first: pytest stops a mutant's run at the
#: first failure (-x), and mutmut hands pytest each mutant's tests in no useful order, so a
#: mutant a unit test kills would otherwise wait for the slow differential tests first.
MUTATE_ORDER = ("test_mips_rules.py", "test_refused_calls_asm.py", "test_audit_names.py",
                "test_audit_faults.py", "test_fastpaths.py", "test_shapes.py", "test_weakonly.py", "test_audit.py",
                "test_regress.py", "test_cli.py", "test_differential.py")


def pytest_collection_modifyitems(config, items):
    if IN_PROCESS:
        rank = {name: k for k, name in enumerate(MUTATE_ORDER)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order kept


def run_ours(*args, check=False, cwd=None) -> subprocess.CompletedProcess:
    argv = [*map(str, args)]
    if IN_PROCESS:
        return _run_in_process(argv, check, cwd or ROOT)
    return subprocess.run([sys.executable, "-m", "recordpatch", *argv],
                          capture_output=True, text=True, check=check, cwd=cwd or ROOT)


def _run_in_process(argv: list, check: bool, cwd) -> subprocess.CompletedProcess:
    import contextlib
    import io
    from recordpatch.cli import main
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(here)
    r = subprocess.CompletedProcess(argv, rc, out.getvalue(), err.getvalue())
    if check:
        r.check_returncode()
    return r


def recorded_sites(path: Path):
    """The __mcount_loc of ``path`` resolved with pyelftools to sorted (section, offset) pairs.

    Independent of recordpatch's own reader: each relocation's symbol gives a
    section and value, the addend comes from the table word (REL) or r_addend
    (RELA). Returns None when the file has no table.
    """
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        e = ELFFile(f)
        mc = e.get_section_by_name("__mcount_loc")
        if mc is None:
            return None
        rel = e.get_section_by_name(".rel__mcount_loc") or e.get_section_by_name(".rela__mcount_loc")
        assert rel is not None, "__mcount_loc without relocations"
        symtab = e.get_section(rel["sh_link"])
        word = 8 if e.elfclass == 64 else 4
        order = "little" if e.little_endian else "big"
        data = mc.data()
        mask = (1 << (8 * word)) - 1
        out = []
        for r in rel.iter_relocations():
            sym = symtab.get_symbol(r["r_info_sym"])
            shndx = symbol_section(e, symtab, r["r_info_sym"], sym)
            assert isinstance(shndx, int), f"entry against {sym.name} in {shndx}"
            if r.is_RELA():
                addend = r["r_addend"]
            else:
                addend = int.from_bytes(data[r["r_offset"]:r["r_offset"] + word], order)
            sec = e.get_section(shndx)
            out.append((shndx, sec.name, (sym["st_value"] + addend) & mask))
        return sorted(out)


def symbol_section(e, symtab, index: int, sym):
    """A symbol's section index with pyelftools, following SHN_XINDEX into the
    SHT_SYMTAB_SHNDX section linked to ``symtab`` (gABI "Extended Section Indexes")."""
    shndx = sym["st_shndx"]
    if shndx not in ("SHN_XINDEX", 0xFFFF):
        return shndx
    cache = e.__dict__.setdefault("_rp_shndx", {})
    if symtab.name not in cache:
        # the index tables sit near the end: search backwards (65k sections in manysec)
        for i in range(e.num_sections() - 1, 0, -1):
            s = e.get_section(i)
            if s["sh_type"] == "SHT_SYMTAB_SHNDX" and e.get_section(s["sh_link"]).name == symtab.name:
                cache[symtab.name] = s
                break
        else:
            raise AssertionError(f"symbol {index} uses SHN_XINDEX but there is no SHT_SYMTAB_SHNDX")
    return cache[symtab.name].get_section_index(index)


def strip_index(sites):
    return sorted((name, off) for _, name, off in sites)


R_MIPS_26, R_MIPS_HI16 = 4, 5

#: The section names Linux 6.1's recordmcount records (scripts/recordmcount.c
#: is_mcounted_section_name): the ".text" prefix and these exact names. Restated here, not
#: imported from recordpatch, so that a name missing from recordpatch's rules fails a test.
TRACED_NAMES = (".init.text", ".ref.text", ".sched.text", ".spinlock.text", ".irqentry.text",
                ".softirqentry.text", ".kprobes.text", ".cpuidle.text")


def is_traced_name(name: str) -> bool:
    return name.startswith(".text") or name in TRACED_NAMES


def mcount_relocs(path: Path):
    """Relocations against `_mcount` in ftrace's sections, in the order recordmcount walks them:
    (section index, section name, r_offset, r_type), read with pyelftools."""
    from elftools.elf.elffile import ELFFile

    out = []
    with open(path, "rb") as f:
        e = ELFFile(f)
        for rs in e.iter_sections():
            if rs["sh_type"] not in ("SHT_REL", "SHT_RELA"):
                continue
            tgt = e.get_section(rs["sh_info"])
            if (tgt["sh_type"] != "SHT_PROGBITS" or not tgt["sh_flags"] & 4
                    or not is_traced_name(tgt.name)):
                continue
            symtab = e.get_section(rs["sh_link"])
            msym = None
            for r in rs.iter_relocations():
                if msym is None and symtab.get_symbol(r["r_info_sym"]).name == "_mcount":
                    msym = r["r_info_sym"]
                if r["r_info_sym"] == msym:
                    out.append((rs["sh_info"], tgt.name, r["r_offset"], r["r_info_type"]))
    return out


def expected_sites(path: Path):
    """What a correct recorder records in a `-pg` object: each `jal _mcount` (R_MIPS_26) and
    each long-call `lui` (R_MIPS_HI16), never the %lo half. None if there are none."""
    sites = sorted((i, n, o) for i, n, o, t in mcount_relocs(path) if t in (R_MIPS_26, R_MIPS_HI16))
    return sites or None


def reference_model(path: Path, per_section: bool = False):
    """What Debian's recordmcount records, modelled independently: every relocation against
    `_mcount`, except one lying exactly 4 bytes after the previous one. That filter is meant
    for the %lo after a long-call %hi, but its memory (a static in MIPS_is_fake_mcount) is not
    reset between sections, so the first call of a section whose offset is the previous
    section's last call + 4 is dropped too: a real function that ftrace never sees.
    ``per_section``: the filter forgets at each section, as with kernel/patches/recordmcount-*.patch."""
    out, prev, sec = [], None, None
    for i, n, o, _ in mcount_relocs(path):
        if per_section and i != sec:
            prev, sec = None, i
        if prev is None or o - prev != 4:
            out.append((i, n, o))
        prev = o
    return sorted(out) or None


def objdump_mcount_refs(target: str, path: Path) -> dict:
    """Every relocation against `_mcount` in an executable section, read by GNU objdump
    (`-dr`), mapped (section name, offset) -> whether the instruction there is a `-pg`
    call: a `jal` with R_MIPS_26, or a long call's `lui v1` with R_MIPS_HI16 followed by
    a `jalr v1` within the next three instructions (MIPS64: R_MIPS_HIGHEST is a call too).
    The %lo halves of long calls are left out; any other reference (an address load)
    maps to False. Independent of recordpatch: binutils decodes the instructions."""
    import re
    out = subprocess.run([cross(target, "objdump"), "-dr", "-z", "--no-show-raw-insn", str(path)],
                         capture_output=True, text=True, check=True).stdout
    insn = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(\S*)")
    reloc = re.compile(r"^\s*([0-9a-f]+): (R_\w+)\s+(\S+)")
    section, code, refs = None, {}, []
    for line in out.splitlines():
        if line.startswith("Disassembly of section "):
            section = line[len("Disassembly of section "):].rstrip(":")
            code[section] = {}
            continue
        m = reloc.match(line)
        if m:
            if re.fullmatch(r"_mcount([+-]0x[0-9a-f]+)?", m.group(3)):
                refs.append((section, int(m.group(1), 16), m.group(2)))
            continue
        m = insn.match(line)
        if m and section is not None:
            code[section][int(m.group(1), 16)] = (m.group(2), m.group(3))
    found = {}
    for section, off, rtype in refs:
        op, args = code[section].get(off, ("?", ""))
        if rtype == "R_MIPS_LO16":
            continue
        if rtype == "R_MIPS_26":
            found[(section, off)] = op == "jal"
        elif rtype in ("R_MIPS_HI16", "R_MIPS_HIGHEST"):
            follow = [code[section].get(off + 4 * k, ("?", "")) for k in (1, 2, 3, 4)]
            found[(section, off)] = (op == "lui" and args.startswith("v1,")
                                     and any(o == "jalr" and a in ("v1", "ra,v1")
                                             for o, a in follow))
        else:
            found[(section, off)] = False
    return found
