"""Issue 12: no call to _mcount is lost silently, whatever shape the compiler gave it.

Fixtures: testdata/fixtures/shapes (every -pg call shape GCC 12 and clang 14 emit on MIPS
beyond the flavours of the differential tests) and testdata/fixtures/stripped (a miniature
vmlinux linked like Linux, stripped, and its System.map). Expected values come from the
reference recordmcount's own output (resolved with pyelftools), from binutils (readelf's
relocation names, objdump's disassembly, nm's System.map) and never from recordpatch.
`record`, `audit` and `patch` must give the same verdict on every shape.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, cross, recorded_sites, run_ours, run_reference
from test_audit_names import objdump_labels

SHAPES = FIXTURES / "shapes"
STRIPPED = FIXTURES / "stripped"

#: shapes Linux's MIPS ftrace can patch: recorded byte for byte like the reference
RECORDED = ["gcc-mips64-kernel-nosym32", "gcc-mips-mips16mix", "clang-mipsel-kernel",
            "clang-mips64el-kernel", "clang-mipsr6el-kernel"]
#: shapes it cannot: name -> (readelf name of the relocation that starts each call, what
#: the refusal must say)
REFUSED = {
    "gcc-mips64-long-nosym32": ("R_MIPS_HIGHEST", "64-bit long call"),
    "gcc-mips64el-long-nosym32-ra": ("R_MIPS_HIGHEST", "64-bit long call"),
    "gcc-mipsel-micromips": ("R_MICROMIPS_26_S1", "microMIPS `jal _mcount`"),
    "gcc-mipsel-micromips-one": ("R_MICROMIPS_26_S1", "microMIPS `jal _mcount`"),  # 1 call
    "gcc-mips-micromips-long": ("R_MICROMIPS_HI16", "microMIPS long call"),
    "clang-mipsel-long": ("R_MIPS_HI16", "not in GCC's lui v1/addiu v1/move at,ra/jalr v1 form"),
    "clang-mipsel-micromips": ("R_MICROMIPS_26_S1", "microMIPS `jal _mcount`"),
    "clang-mips64el-long": ("R_MIPS_HIGHEST", "64-bit long call"),
}


def readelf_mcount_relocs(path: Path) -> list[tuple[int, str]]:
    """(offset, type name) of the relocations against _mcount in .rel[a].text, by readelf."""
    out = subprocess.run([cross("mipsel", "readelf"), "-rW", str(path)], capture_output=True,
                         text=True, check=True).stdout
    sec, found = "", []
    for line in out.splitlines():
        m = re.match(r"Relocation section '([^']+)'", line)
        if m:
            sec = m.group(1)
            continue
        parts = line.split()
        if sec in (".rel.text", ".rela.text") and len(parts) >= 5 and parts[4] == "_mcount":
            found.append((int(parts[0], 16), parts[2]))
    return found


def call_starts(path: Path, rtype: str) -> list[int]:
    return sorted(off for off, t in readelf_mcount_relocs(path) if t == rtype)


def unpatchable_notes(path: Path) -> dict[int, str]:
    """{.text offset: reason} of the calls `record -w` says the kernel cannot patch."""
    r = run_ours("record", "-w", path)
    return {int(o, 16): why for o, why in re.findall(
        r"\.text\+(0x[0-9a-f]+): call to _mcount the kernel cannot patch, not recorded: (.*)",
        r.stderr)}


def reference_output(src: Path, tmp: Path) -> Path:
    ref = tmp / ("ref-" + src.name)
    shutil.copyfile(src, ref)
    r = run_reference(ref)
    assert r.returncode == 0, r.stderr
    return ref


def audit_json(*args):
    r = run_ours("audit", "--json", *args)
    assert "Traceback" not in r.stderr, r.stderr
    return r, json.loads(r.stdout)["files"][0]


def test_every_shape_fixture_is_classified():
    """A new shape fixture must be put in one of the tables above."""
    names = {p.stem for p in SHAPES.glob("*.o")}
    assert names == set(RECORDED) | set(REFUSED) | {"gcc-mips64-n32"}


@pytest.mark.parametrize("name", RECORDED)
def test_recordable_shape_agrees_with_reference(name, tmp_path):
    src = SHAPES / f"{name}.o"
    ref = reference_output(src, tmp_path)
    ours = tmp_path / src.name
    shutil.copyfile(src, ours)
    r = run_ours(ours)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert ours.read_bytes() == ref.read_bytes()
    entries = recorded_sites(ref)
    assert entries, "the reference recorded nothing"
    for path in (ours, ref):
        r, res = audit_json(path)
        assert r.returncode == 0 and res["status"] == "clean", r.stderr
        assert res["entries"] == len(entries)
    r = run_ours("patch", ours, "-o", tmp_path / "p.o", "--state", "nop")
    assert r.returncode == 1 and "relocation the linker" in r.stderr, r.stderr


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unpatchable_shape_refused_by_record_audit_and_patch(name, tmp_path):
    src = SHAPES / f"{name}.o"
    rtype, says = REFUSED[name]
    starts = call_starts(src, rtype)
    assert starts, f"no {rtype} against _mcount in {name}"
    # the reference records them (every call's first relocated word is an entry)
    ref = reference_output(src, tmp_path)
    ref_entries = recorded_sites(ref)
    assert ref_entries is not None and set(starts) <= {off for _, _, off in ref_entries}
    # record: one error line by default, exit 1, the file untouched
    ours = tmp_path / src.name
    shutil.copyfile(src, ours)
    r = run_ours(ours)
    lines = r.stderr.splitlines()
    assert r.returncode == 1 and len(lines) == 1 and ": error: recordpatch: " in lines[0], r.stderr
    assert f"{len(starts)} call{'s' * (len(starts) != 1)} to _mcount" in lines[0] and says in lines[0]
    # the message names the lowest call, as objdump shows it
    assert f"(first at .text+{min(starts):#x}: " in lines[0], lines[0]
    assert "not recorded, file left unchanged" in lines[0], lines[0]
    assert ours.read_bytes() == src.read_bytes()
    refusal = lines[0].split(": error: recordpatch: ", 1)[1]
    # -w names each call at its first word
    reasons = unpatchable_notes(ours)
    assert sorted(reasons) == starts
    # audit of the unrecorded object: the calls are there and have no table
    r, res = audit_json(ours)
    assert r.returncode == 1 and [f["kind"] for f in res["findings"]] == ["not-recorded"]
    assert f"{len(starts)} call" in res["findings"][0]["message"] and says in r.stderr
    # audit of the reference's table: every entry is at a call the kernel cannot patch
    r, res = audit_json(ref)
    kinds = [f["kind"] for f in res["findings"]]
    assert r.returncode == 1 and kinds == ["unpatchable"] * len(ref_entries), r.stderr
    # each at the reference's entry, in the function objdump names, with record's reason
    labels = objdump_labels(src, "mips64")           # binutils for n64 read every MIPS ELF
    word = 8 if "mips64" in name else 4
    offsets = [off for _, _, off in ref_entries]

    def reason(off):   # the call the entry is in: the last to start at or before it
        return reasons[max(a for a in reasons if a <= off)]
    for k, f in enumerate(res["findings"]):
        off = f["offset"]
        assert (f["where"], off in offsets) == (f".text+{off:#x}", True)
        fn, delta = labels[(".text", off & ~1)]
        assert (f["function"], f["func_offset"]) == (fn, delta)
        assert f["message"] == (f"__mcount_loc entry (__mcount_loc+{k * word:#x}) points at a "
                                "call the kernel cannot patch in " + fn
                                + (f"+{delta:#x}" if delta else "") + f": {reason(off)}")
    # patch: the same verdict as record
    r = run_ours("patch", ours, "-o", tmp_path / "p.o", "--state", "nop")
    assert r.returncode == 1 and r.stderr.strip().endswith(refusal), r.stderr
    assert not (tmp_path / "p.o").exists()


def test_audit_flags_an_unpatchable_call_without_entry(tmp_path):
    """The reference's table with its last relocation cut off (sh_size of .rel__mcount_loc
    one entry shorter): that call is reported as missing."""
    src = SHAPES / "gcc-mipsel-micromips.o"
    ref = reference_output(src, tmp_path)
    entries = recorded_sites(ref)
    from elftools.elf.elffile import ELFFile
    with open(ref, "rb") as f:
        e = ELFFile(f)
        k = next(i for i, s in enumerate(e.iter_sections()) if s.name == ".rel__mcount_loc")
        hdr = e["e_shoff"] + k * e["e_shentsize"]
        size = e.get_section(k)["sh_size"]
    data = bytearray(ref.read_bytes())
    struct.pack_into("<I", data, hdr + 20, size - 8)   # Elf32_Shdr.sh_size (little-endian file)
    ref.write_bytes(bytes(data))
    r, res = audit_json(ref)
    missing = [f for f in res["findings"] if f["kind"] == "missing"]
    off = entries[-1][2]
    assert len(missing) == 1 and missing[0]["where"] == f".text+{off:#x}"
    fn, d = objdump_labels(src, "mips64")[(".text", off)]
    plain = tmp_path / "plain.o"
    shutil.copyfile(src, plain)
    reason = unpatchable_notes(plain)[off]
    assert (missing[0]["function"], missing[0]["func_offset"]) == (fn, d)
    assert missing[0]["message"] == (f"call to _mcount in {fn}" + (f"+{d:#x}" if d else "")
                                     + " has no __mcount_loc entry, and the kernel cannot "
                                     f"patch it: {reason}")


def test_n32_refused_where_the_reference_records(tmp_path):
    """n32 is no kernel ABI: recorded by the reference as if o32, refused here by name."""
    src = SHAPES / "gcc-mips64-n32.o"
    assert recorded_sites(reference_output(src, tmp_path))
    ours = tmp_path / src.name
    shutil.copyfile(src, ours)
    r = run_ours(ours)
    assert r.returncode == 1 and "unsupported MIPS ABI n32" in r.stderr
    assert ours.read_bytes() == src.read_bytes()
    r, res = audit_json(ours)
    assert r.returncode == 1 and "n32" in res["error"]


@pytest.mark.parametrize("target", ["mips", "mipsel", "mips64el"])
def test_repaired_pad_table_audits_clean(target, tmp_path):
    """`record --repair --table mcount_loc` writes __mcount_loc from the pads; audit of a
    pad object judges that table by its pads (pyelftools: the same places in both)."""
    obj = tmp_path / "p.o"
    shutil.copyfile(FIXTURES / target / "pfe3" / "patchable.o", obj)
    r = run_ours("record", "--repair", "--table", "mcount_loc", obj)
    assert r.returncode == 0, r.stderr
    r, res = audit_json(obj)
    assert r.returncode == 0 and res["status"] == "clean", r.stderr
    from elftools.elf.elffile import ELFFile
    with open(obj, "rb") as f:
        e = ELFFile(f)
        word = 8 if e.elfclass == 64 else 4
        fmt = ("<" if e.little_endian else ">") + ("Q" if word == 8 else "I")
        t = e.get_section_by_name("__patchable_function_entries")
        rel = e.get_section_by_name((".rela" if e.elfclass == 64 else ".rel")
                                    + "__patchable_function_entries")
        symtab = e.get_section(rel["sh_link"])
        pads = []
        for r_ in rel.iter_relocations():
            sym = symtab.get_symbol(r_["r_info_sym"])
            add = r_["r_addend"] if r_.is_RELA() else struct.unpack_from(fmt, t.data(),
                                                                            r_["r_offset"])[0]
            pads.append(sym["st_value"] + add)
    assert sorted(off for _, _, off in recorded_sites(obj)) == sorted(pads)


# ---------------------------------------------------------------- stripped kernels
def _map(target):
    syms = {}
    for line in (STRIPPED / target / "System.map").read_text().splitlines():
        a, _, n = line.split()
        syms[n] = int(a, 16) & ((1 << (64 if target == "mips64" else 32)) - 1)
    return syms


def _mcount_calls(target) -> list[int]:
    """Addresses of `jal <_mcount>` in the unstripped image, by objdump."""
    dis = subprocess.run([cross(target, "objdump"), "-d", str(STRIPPED / target / "vmlinux")],
                         capture_output=True, text=True, check=True).stdout
    return [int(m, 16) for m in re.findall(r"^\s*([0-9a-f]+):\s+\S+\s+jal\s+\S+ <_mcount>", dis, re.M)]


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_stripped_image_is_never_clean(target):
    img = STRIPPED / target / "vmlinux-stripped"
    r, res = audit_json(img)
    assert r.returncode == 1 and res["status"] == "findings"
    assert [(f["kind"], f["where"], f["message"]) for f in res["findings"]] == [
        ("no-table", "", "cannot see the ftrace table: no __mcount_loc section and no symbol "
         "table (a stripped image) for __start_mcount_loc/__stop_mcount_loc; audit it with "
         "--system-map FILE or the unstripped vmlinux")]
    assert "--system-map" in r.stderr


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_stripped_image_audited_through_system_map(target):
    syms = _map(target)
    calls = _mcount_calls(target)
    word = 8 if target == "mips64" else 4
    n = (syms["__stop_mcount_loc"] - syms["__start_mcount_loc"]) // word
    assert n == len(calls) > 0
    for img in ("vmlinux-stripped", "vmlinux"):
        r, res = audit_json("--system-map", STRIPPED / target / "System.map", STRIPPED / target / img)
        assert r.returncode == 0 and res["status"] == "clean", r.stderr
        assert res["entries"] == n and res["states"] == {"jal _mcount": n}


@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_system_map_finds_a_call_without_entry(target, tmp_path):
    """A table word zeroed (the linker's mark of a discarded entry): with the map, audit sees
    the call it pointed at has no entry."""
    from elftools.elf.elffile import ELFFile
    syms = _map(target)
    calls = _mcount_calls(target)
    img = tmp_path / "vmlinux"
    shutil.copyfile(STRIPPED / target / "vmlinux-stripped", img)
    word = 8 if target == "mips64" else 4
    with open(img, "rb") as f:
        e = ELFFile(f)
        fmt = ("<" if e.little_endian else ">") + ("Q" if word == 8 else "I")
        sec = next(s for s in e.iter_sections() if s["sh_addr"] <= syms["__start_mcount_loc"]
                   < s["sh_addr"] + s["sh_size"] and s["sh_flags"] & 2)
        base = sec["sh_offset"] + syms["__start_mcount_loc"] - sec["sh_addr"]
    data = bytearray(img.read_bytes())
    table = [struct.unpack_from(fmt, data, base + k * word)[0] & ((1 << 8 * word) - 1)
             for k in range(len(calls))]
    assert sorted(table) == sorted(calls)
    k = table.index(calls[0])
    data[base + k * word:base + (k + 1) * word] = bytes(word)
    img.write_bytes(bytes(data))
    r, res = audit_json("--system-map", STRIPPED / target / "System.map", img)
    missing = [f for f in res["findings"] if f["kind"] == "missing"]
    assert r.returncode == 1 and len(missing) == 1 and f"{calls[0]:#x}" in missing[0]["message"]


def test_bad_system_map_is_an_error(tmp_path):
    bad = tmp_path / "System.map"
    bad.write_text("this is not a map\n")
    r = run_ours("audit", "--system-map", bad, STRIPPED / "mipsel" / "vmlinux-stripped")
    assert r.returncode == 1 and "not a System.map line" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- PR99217 in a linked image
@pytest.mark.parametrize("target", ["mipsel", "mips64"])
def test_patch_refuses_unrepaired_pads_in_a_linked_image(target, tmp_path):
    prog = tmp_path / "prog"
    r = subprocess.run([cross(target, "ld"), "-Ttext-segment=0x400000", "-e", "_start", "-o",
                        str(prog), str(FIXTURES / target / "pfe-start" / "pfe_start.o"),
                        str(FIXTURES / target / "pfe3" / "patchable.o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = run_ours("patch", prog, "-o", tmp_path / "out", "--state", "nop")
    assert r.returncode == 1 and "GCC PR99217" in r.stderr and "--repair" in r.stderr, r.stderr
    r, res = audit_json(prog)
    assert any(d["id"] == "PR99217" for d in res["defects"])
