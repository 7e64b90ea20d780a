"""Where audit says a finding is ("in func+0x12"): the function and offset of every
instruction, against GNU objdump's own nearest-symbol annotation (`--prefix-addresses`),
section indexes from pyelftools. Fixtures: MIPS32 and n64 objects, many sections, and an
object mixing MIPS32 and microMIPS functions (halfword offsets)."""

import re
import subprocess

import pytest

from conftest import FIXTURES, cross, need_module, target_of
from recordpatch.elf.reader import ElfFile
from recordpatch.passes import audit

OBJECTS = ["mipsel/kernel/basic.o", "mipsel/kernel/fsections.o", "mips64/kernel/sections.o",
           "mipsel/pfe-mm/pfe_isa.o", "mips64el/kernel/weak.o"]
LINE = re.compile(r"^([0-9a-f]+) <([^>+-]+)(?:([+-])0x([0-9a-f]+))?> ")


def objdump_lines(path, target, *flags):
    """(section name, line) for each line of `objdump -d -z --prefix-addresses` in a section."""
    out = subprocess.run([cross(target, "objdump"), "-d", "-z", "--prefix-addresses", *flags,
                          str(path)], capture_output=True, text=True, check=True).stdout
    sec = None
    for line in out.splitlines():
        if line.startswith("Disassembly of section "):
            sec = line[len("Disassembly of section "):].rstrip(":")
        elif sec:
            yield sec, line


def objdump_labels(path, target=None):
    """{(section name, offset): (symbol, signed offset)} for every instruction objdump lists."""
    got = {}
    for sec, line in objdump_lines(path, target or target_of(path)):
        m = LINE.match(line)
        if m:
            off = int(m[4], 16) if m[4] else 0
            got[(sec, int(m[1], 16))] = (m[2], -off if m[3] == "-" else off)
    return got


@pytest.mark.parametrize("rel", OBJECTS)
def test_function_and_offset_as_objdump_names_them(rel):
    elffile = need_module("elftools.elf.elffile")
    path = FIXTURES / rel
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        index = {s.name: i for i, s in enumerate(e.iter_sections())}
        funcs = {s.name for s in e.get_section_by_name(".symtab").iter_symbols()
                 if s["st_info"]["type"] == "STT_FUNC"}
    ours = audit._func_index(ElfFile(path.read_bytes()))
    labels = objdump_labels(path)
    checked = before = 0
    for (sec, off), (name, delta) in labels.items():
        if name not in funcs:
            continue                    # objdump chose a non-function symbol (a section's)
        got = audit._func_at(ours, index[sec], off)
        if delta < 0:                   # before the section's first function
            assert got is None, (sec, off, got)
            before += 1
            continue
        assert got == (name, delta), (sec, off)
        assert audit._in(got) == f" in {name}" + (f"+{delta:#x}" if delta else "")
        checked += 1
    assert checked > 20, checked
    # a section without functions, and an index no section has, name nothing
    assert audit._func_at(ours, 0, 0) is None and audit._func_at(ours, 10 ** 6, 0) is None
    assert audit._in(None) == ""



@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_linked_image_offsets_as_objdump_names_them(target):
    """A linked kernel's addresses: the offset into the nearest function or label, as in
    "entry 0x80001234 (func+0x1c)" findings."""
    elffile = need_module("elftools.elf.elffile")
    path = FIXTURES / "stripped" / target / "vmlinux"
    with open(path, "rb") as f:
        e = elffile.ELFFile(f)
        addr_of = {}
        for s in e.get_section_by_name(".symtab").iter_symbols():
            if s["st_info"]["type"] in ("STT_FUNC", "STT_NOTYPE") and s["st_shndx"] != "SHN_UNDEF":
                addr_of.setdefault(s.name, set()).add(s["st_value"] & ~1)
    names = audit._linked_symbols(ElfFile(path.read_bytes()).symtab)[0]
    near = audit._Names(names)
    checked = 0
    for (_, addr), (name, delta) in objdump_labels(path, target).items():
        if name not in addr_of or delta < 0:
            continue
        got = near.near(addr)
        assert got is not None and got[1] == delta and addr - delta in addr_of[name], \
            (hex(addr), name, delta, got)
        checked += 1
    assert checked > 50, checked
    assert near.near(min(names) - 4) is None
