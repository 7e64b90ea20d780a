"""What the patchable-entry kernel build (kernel/pfe/, docs/kernel-pfe.md) asks of recordpatch,
on testdata/src/pfe_kernel.c built like a Linux 6.1 object with -fpatchable-function-entry=3:
one SHF_LINK_ORDER finding per code section (not one per pad: a kernel object lists dozens of
.init.text pads in the table linked to .text), `record --repair` as the per-object build hook,
`audit` of the repaired object, and `patch --state init` writing the words the kernel's
ftrace_init_nop() would write. Expected values come from pyelftools and hand-derived encodings."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conftest import FIXTURES, cross, run_ours
from test_patchable import _addr_loads

TARGETS = ["mips", "mipsel", "mips64", "mips64el", "mipsr6"]
TRACED = ["pk_helper", "pk_text", "pk_setup", "pk_early", "pk_late", "pk_schedule",
          "pk_schedule_timeout", "pk_ready", "pk_wait_a", "pk_wait_b"]
TRAMP = 0x80810000  # a 64 KiB-aligned ftrace_regs_caller


def fixture(target: str, tmp: Path) -> Path:
    src = FIXTURES / target / "pfe3" / "pfe_kernel.o"
    if not src.exists():
        pytest.fail(f"missing fixture {src}")
    dst = tmp / "pfe_kernel.o"
    shutil.copyfile(src, dst)
    return dst


def table_targets(path: Path) -> tuple[str, dict[str, int]]:
    """(name of the section the table is linked to, pads per code section) from pyelftools."""
    with open(path, "rb") as f:
        e = ELFFile(f)
        table = e.get_section_by_name("__patchable_function_entries")
        linked = e.get_section(table["sh_link"]).name
        symtab = e.get_section_by_name(".symtab")
        counts: dict[str, int] = {}
        for s in e.iter_sections():
            if s.name in (".rel__patchable_function_entries", ".rela__patchable_function_entries"):
                for r in s.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    name = e.get_section(sym["st_shndx"]).name
                    counts[name] = counts.get(name, 0) + 1
        return linked, counts


def functions(path: Path) -> dict[str, tuple[int, int, str]]:
    with open(path, "rb") as f:
        e = ELFFile(f)
        return {s.name: (s["st_value"], s["st_size"], e.get_section(s["st_shndx"]).name)
                for s in e.get_section_by_name(".symtab").iter_symbols()
                if s["st_info"]["type"] == "STT_FUNC"}


def words_at(path: Path, section: str, offset: int, n: int) -> list[int]:
    with open(path, "rb") as f:
        e = ELFFile(f)
        data = e.get_section_by_name(section).data()
        fmt = ("<" if e.little_endian else ">") + "I" * n
        return list(struct.unpack_from(fmt, data, offset))


@pytest.mark.parametrize("target", TARGETS)
def test_link_order_one_finding_per_code_section(target, tmp_path):
    obj = fixture(target, tmp_path)
    before = obj.read_bytes()
    linked, counts = table_targets(obj)
    assert linked == ".text" and counts == {".text": 5, ".init.text": 3, ".sched.text": 2}
    r = run_ours("record", obj)
    assert r.returncode == 0, r.stderr
    assert obj.read_bytes() == before
    lo = [ln for ln in r.stderr.splitlines() if "SHF_LINK_ORDER" in ln]
    assert len(lo) == len(counts) - 1
    for sec, n in counts.items():
        if sec == linked:
            continue
        ln = next(ln for ln in lo if f"for code in {sec} " in ln)
        assert f"{n} entries" in ln and f"linked (SHF_LINK_ORDER) to {linked}" in ln


@pytest.mark.parametrize("target", TARGETS)
def test_repair_as_the_kernel_hook_runs_it(target, tmp_path):
    obj = fixture(target, tmp_path)
    old = functions(obj)
    r = run_ours("record", "--repair", obj)
    assert r.returncode == 0, r.stderr
    new = functions(obj)
    for f in TRACED:
        value, size, sec = old[f]
        # GCC put the 3 nops before the label; the label moves onto them
        assert words_at(obj, sec, value - 12, 3) == [0, 0, 0]
        assert new[f] == (value - 12, size + 12, sec)
    assert new["pk_untraced"] == old["pk_untraced"]
    r = run_ours("audit", "--json", obj)
    js = json.loads(r.stdout)
    ids = {d["id"] for f in js["files"] for d in f["defects"]}
    assert ids == {"SHF_LINK_ORDER"}, r.stderr
    assert not re.search(r"PR99217|not at a function", r.stderr)
    # a second repair finds nothing to move and changes nothing
    again = obj.read_bytes()
    r = run_ours("record", "--repair", obj)
    assert r.returncode == 0 and obj.read_bytes() == again


@pytest.mark.parametrize("target", TARGETS)
def test_init_state_is_what_ftrace_init_nop_writes(target, tmp_path):
    obj = fixture(target, tmp_path)
    assert run_ours("record", "--repair", obj).returncode == 0
    out = tmp_path / "init.o"
    # a 64-bit kernel's ftrace_regs_caller sits in CKSEG0: the sign-extended address
    tramp = TRAMP | 0xFFFFFFFF00000000 if target.startswith("mips64") else TRAMP
    r = run_ours("patch", obj, "-o", out, "--state", "init", "--trampoline", hex(tramp))
    assert r.returncode == 0, r.stderr
    # kernel/pfe/0001: lui $1,%hi(ftrace_regs_caller); nop; addiu t0,$0,0 with the ABI's t0
    flag = 12 if target.startswith("mips64") else 8
    want = [0x3C010000 | TRAMP >> 16, 0x00000000, 0x24000000 | flag << 16]
    for f in TRACED:
        value, _, sec = functions(obj)[f]
        assert words_at(out, sec, value, 3) == want, f
    value, _, sec = functions(obj)["pk_untraced"]
    assert words_at(out, sec, value, 1) == words_at(obj, sec, value, 1)


@pytest.mark.parametrize("target", TARGETS)
def test_repaired_address_loads_reach_the_pad(target, tmp_path):
    """pk_wait_a/pk_wait_b pass &pk_ready in a delay slot: on pre-R6 o32 a %lo of it has
    no %hi before it in the table (readelf shows it; checked here with pyelftools). After
    --repair, GNU ld builds every lui/addiu pair of those functions to pk_ready's pad,
    where 3 nops stand."""
    obj = fixture(target, tmp_path)
    with open(obj, "rb") as f:
        e = ELFFile(f)
        rel = e.get_section_by_name(".rel.text")
        if target in ("mips", "mipsel"):  # o32 with delay slots: the orphan %lo is there
            # (R6 has compact branches and no delay slot to fill; n64 uses RELA)
            seen_hi, orphan = set(), False
            for r in rel.iter_relocations():
                t = r["r_info_type"]
                if t == 5:
                    seen_hi.add(r["r_info_sym"])
                elif t == 6 and r["r_info_sym"] not in seen_hi:
                    orphan = True
            assert orphan
    assert run_ours("record", "--repair", obj).returncode == 0
    prog = tmp_path / "prog.elf"
    res = subprocess.run([cross(target, "ld"), "-Ttext-segment=0x400000", "-e", "pk_text",
                          "--defsym", "pfe_ext=0x400000", "--defsym", "pk_wait=0x400000",
                          "-o", str(prog), str(obj)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    dis = subprocess.run([cross(target, "objdump"), "-d", str(prog)], capture_output=True,
                         text=True, check=True).stdout
    with open(prog, "rb") as f:
        e = ELFFile(f)
        ready = next(s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols()
                     if s.name == "pk_ready")
        text = e.get_section_by_name(".text")
        off = ready - text["sh_addr"]
        assert text.data()[off:off + 12] == bytes(12)
    loads = _addr_loads(dis, "pk_wait_a") + _addr_loads(dis, "pk_wait_b")
    assert len(loads) == 3 and all(a == ready & 0xFFFFFFFF for a in loads), (hex(ready), loads)


LDS = """ENTRY(pk_text)
SECTIONS
{
	. = KERNEL_BASE;
	.text : { *(.text) *(.sched.text) }
	.init.text : { *(.init.text) }
	.init.data : ALIGN(8) {
		__start_mcount_loc = .;
		KEEP(*(__mcount_loc))
		KEEP(*(__patchable_function_entries))
		__stop_mcount_loc = .;
	}
	.data : { *(.data .data.* .rodata .rodata.* .sdata .sbss .bss .bss.*) }
	/DISCARD/ : { *(.MIPS.abiflags) *(.reginfo) *(.pdr) *(.comment) *(.gnu.attributes) }
}
"""


@pytest.mark.parametrize("target,base", [("mipsel", 0x80100000), ("mips64", 0xFFFFFFFF80100000)])
def test_patch_linked_kernel_finds_pads_between_start_and_stop(target, base, tmp_path):
    """A vmlinux keeps __patchable_function_entries inside .init.data between
    __start_mcount_loc and __stop_mcount_loc (include/asm-generic/vmlinux.lds.h MCOUNT_REC)
    with no section of that name: `patch --state init` must still find every pad."""
    obj = fixture(target, tmp_path)
    assert run_ours("record", "--repair", obj).returncode == 0
    lds = tmp_path / "k.lds"
    lds.write_text(LDS)
    kernel = tmp_path / "vmlinux"
    res = subprocess.run([cross(target, "ld"), "--no-warn-rwx-segments", "-T", str(lds),
                          "--defsym", f"KERNEL_BASE={base:#x}", "--defsym", f"pfe_ext={base:#x}",
                          "--defsym", f"pk_wait={base:#x}", "-o", str(kernel), str(obj)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    with open(kernel, "rb") as f:
        e = ELFFile(f)
        assert e.get_section_by_name("__patchable_function_entries") is None
        syms = {s.name: s["st_value"] for s in e.get_section_by_name(".symtab").iter_symbols()}
        assert syms["__stop_mcount_loc"] - syms["__start_mcount_loc"] == \
            len(TRACED) * (8 if target == "mips64" else 4)
    tramp = (base & ~0xFFFFFFFF) | TRAMP
    out = tmp_path / "vmlinux.init"
    r = run_ours("patch", kernel, "-o", out, "--state", "init", "--trampoline", hex(tramp))
    assert r.returncode == 0, r.stderr
    assert f"{len(TRACED)} sites to init" in r.stdout + r.stderr
    flag = 12 if target == "mips64" else 8
    want = [0x3C010000 | TRAMP >> 16, 0x00000000, 0x24000000 | flag << 16]
    with open(out, "rb") as f:
        e = ELFFile(f)
        end = "<" if e.little_endian else ">"
        for name in TRACED:
            addr = syms[name]
            sec = next(s for s in e.iter_sections()
                       if s["sh_addr"] <= addr < s["sh_addr"] + s["sh_size"] and s["sh_flags"] & 4)
            got = struct.unpack_from(end + "3I", sec.data(), addr - sec["sh_addr"])
            assert list(got) == want, name


def test_finished_module_link_order_is_no_finding(tmp_path):
    """In a finished module (.gnu.linkonce.this_module present: scripts/Makefile.modfinal's
    link was its last) a table linked to .text that lists .init.text pads can no longer
    lose an entry to --gc-sections: audit lists GCC's defect but reports no finding. The
    same object before that link still gets the finding."""
    obj = fixture("mipsel", tmp_path)
    assert run_ours("record", "--repair", obj).returncode == 0
    mod = tmp_path / "this_module.o"
    res = subprocess.run([cross("mipsel", "as"), "-o", str(mod), "-"], input=
                         '\t.section .gnu.linkonce.this_module,"aw"\n\t.space 64\n',
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ko = tmp_path / "pfe_kernel.ko"
    res = subprocess.run([cross("mipsel", "ld"), "-r", "-o", str(ko), str(obj), str(mod)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    linked, counts = table_targets(ko)
    assert linked == ".text" and counts[".init.text"] == 3   # the defect survives ld -r
    for path, findings in ((obj, True), (ko, False)):
        r = run_ours("audit", "--json", path)
        js = json.loads(r.stdout)["files"][0]
        assert {d["id"] for d in js["defects"]} == {"SHF_LINK_ORDER"}
        assert bool(js["findings"]) == findings and r.returncode == (1 if findings else 0)


@pytest.mark.parametrize("target", TARGETS)
def test_pad_size_when_bodies_start_with_a_nop(target, tmp_path):
    """testdata/src/pfe_loopstart.c: on n64 half of its functions open with a nop (the shape
    of Linux 6.1 drivers/pci/host-bridge.o), so half of the nop runs are 4 long. The pad is
    still 3 nops: every function moves by 12 bytes and the repaired object audits clean."""
    src = FIXTURES / target / "pfe3" / "pfe_loopstart.o"
    obj = tmp_path / src.name
    shutil.copyfile(src, obj)
    old = functions(obj)
    if target.startswith("mips64"):
        opens_with_nop = [f for f, (v, _, sec) in old.items() if words_at(obj, sec, v, 1) == [0]]
        assert sorted(opens_with_nop) == ["pl_first", "pl_root"]
    r = run_ours("record", "--repair", obj)
    assert r.returncode == 0 and "expected 4" not in r.stderr, r.stderr
    new = functions(obj)
    assert set(new) == {"pl_root", "pl_first", "pl_value", "pl_set"}
    for f, (value, size, sec) in old.items():
        assert new[f] == (value - 12, size + 12, sec), f
    r = run_ours("audit", obj)
    assert r.returncode == 0, r.stderr
