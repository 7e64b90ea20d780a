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
    """Skip (developer machine) or fail (CI) when an external tool is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing (.ci/run must install it)")
    pytest.skip(f"{what} not installed")


def reference_tool() -> Path:
    need(f"reference recordmcount at {REFERENCE}", REFERENCE.is_file() and os.access(REFERENCE, os.X_OK))
    return REFERENCE


def cross(target: str, tool: str) -> str:
    exe = shutil.which(PREFIX[target] + tool)
    need(f"{PREFIX[target]}{tool}", exe is not None)
    return exe


def target_of(path: Path) -> str:
    return path.relative_to(FIXTURES).parts[0]


def pg_objects() -> list[Path]:
    """Every committed relocatable fixture (.o and .ko), excluding compressed ones."""
    out = sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".o", ".ko") and p.is_file())
    return out


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


def run_ours(*args, check=False, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recordpatch", *map(str, args)],
                          capture_output=True, text=True, check=check, cwd=cwd or ROOT)


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
            shndx = sym["st_shndx"]
            assert isinstance(shndx, int), f"entry against {sym.name} in {shndx}"
            if r.is_RELA():
                addend = r["r_addend"]
            else:
                addend = int.from_bytes(data[r["r_offset"]:r["r_offset"] + word], order)
            sec = e.get_section(shndx)
            out.append((shndx, sec.name, (sym["st_value"] + addend) & mask))
        return sorted(out)


def strip_index(sites):
    return sorted((name, off) for _, name, off in sites)
