"""kernel/calls_check.py, the kernel-e2e check of a linked table against GNU objdump, on the
miniature kernels of testdata/fixtures/stripped/ (GNU ld's link of reference-recorded objects,
testdata/Makefile). The table is located with pyelftools, not with the script's own reader;
a table word moved off its call must be reported both ways."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, cross

SCRIPT = ROOT / "kernel" / "calls_check.py"


def check(target: str, image) -> subprocess.CompletedProcess:
    prefix = cross(target, "objdump")[:-len("objdump")]
    return subprocess.run([sys.executable, str(SCRIPT), prefix, str(image)],
                          capture_output=True, text=True)


def table_slot(image):
    """(file offset, word size, byte order, words) of the table, from pyelftools."""
    from elftools.elf.elffile import ELFFile
    with open(image, "rb") as f:
        e = ELFFile(f)
        syms = {s.name: s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols()}
        start, stop = syms["__start_mcount_loc"], syms["__stop_mcount_loc"]
        sec = next(s for s in e.iter_sections()
                   if s["sh_addr"] <= start < s["sh_addr"] + s["sh_size"] and s["sh_type"] == "SHT_PROGBITS")
        word = 8 if e.elfclass == 64 else 4
        order = "little" if e.little_endian else "big"
        off = sec["sh_offset"] + start - sec["sh_addr"]
        return off, word, order, (stop - start) // word


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_calls_check_agrees_with_the_table(target):
    image = FIXTURES / "stripped" / target / "vmlinux"
    _, _, _, n = table_slot(image)
    r = check(target, image)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f": {n} table entries ({n} distinct), {n} `jal _mcount`" in r.stdout
    assert "calls with no entry: 0" in r.stdout


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_calls_check_catches_an_entry_off_its_call(target, tmp_path):
    """The first entry moved 4 bytes on (the delay slot after the jal): one entry that is
    not a call and one call with no entry, exit 1."""
    image = tmp_path / "vmlinux"
    shutil.copyfile(FIXTURES / "stripped" / target / "vmlinux", image)
    off, word, order, n = table_slot(image)
    data = bytearray(image.read_bytes())
    first = int.from_bytes(data[off:off + word], order)
    data[off:off + word] = ((first + 4) % (1 << (8 * word))).to_bytes(word, order)
    image.write_bytes(bytes(data))
    r = check(target, image)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "entries that are NOT a jal _mcount: 1:" in r.stdout
    assert f"calls with no entry: 1: {first:#x} (" in r.stdout
