"""The record command as users and Kbuild call it: forms, options, and every error case.

Each error case checks the three promises: one line `FILE: error: recordpatch: ...`,
exit status 1, and the input byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, need, recorded_sites, run_ours, run_reference


def fixture(target="mipsel", flavour="kernel", name="basic.o") -> Path:
    p = FIXTURES / target / flavour / name
    if not p.exists():
        pytest.fail(f"missing fixture {p}")
    return p


@pytest.fixture
def obj(tmp_path) -> Path:
    dst = tmp_path / "basic.o"
    shutil.copyfile(fixture(), dst)
    return dst


def assert_one_error(r: subprocess.CompletedProcess, path: Path, needle: str):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"{path}: error: recordpatch: "), lines[0]
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_bare_form_and_record_are_the_same(obj, tmp_path):
    other = tmp_path / "other.o"
    shutil.copyfile(obj, other)
    assert run_ours(obj).returncode == 0
    assert run_ours("record", other).returncode == 0
    assert obj.read_bytes() == other.read_bytes() == by_reference(tmp_path)


def by_reference(tmp_path: Path) -> bytes:
    """The fixture as Debian's recordmcount records it (the same bytes on this object)."""
    ref = tmp_path / "ref" / "basic.o"
    ref.parent.mkdir()
    shutil.copyfile(fixture(), ref)
    assert run_reference(ref).returncode == 0
    return ref.read_bytes()


def test_recordmcount_shim(obj, tmp_path):
    """scripts/recordmcount run as Kbuild runs it: directly, and through a symlink placed
    in a build tree (it must still find the checkout)."""
    other = tmp_path / "other.o"
    shutil.copyfile(obj, other)
    link = tmp_path / "scripts" / "recordmcount"
    link.parent.mkdir()
    link.symlink_to(ROOT / "scripts" / "recordmcount")
    env = dict(os.environ, RECORDPATCH_PYTHON=sys.executable)
    r = subprocess.run([str(link), "-w", str(obj)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    run_ours("record", other, check=True)
    assert obj.read_bytes() == other.read_bytes()
    r = subprocess.run([str(ROOT / "scripts" / "recordmcount")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and "usage" in r.stderr
    r = subprocess.run([str(ROOT / "scripts" / "recordmcount"), "-w", str(obj)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "already exists" in r.stderr


def test_dry_run_writes_nothing_and_lists_sites(obj, tmp_path):
    before = obj.read_bytes()
    r = run_ours("record", "--dry-run", obj)
    assert r.returncode == 0, r.stderr
    assert obj.read_bytes() == before
    assert "call sites would be recorded" in r.stdout
    listed = [ln.split()[0] for ln in r.stdout.splitlines() if ln.startswith("  ")]
    ref = tmp_path / "ref.o"
    ref.write_bytes(by_reference(tmp_path))
    assert listed == [f"{n}+{o:#x}" for _, n, o in recorded_sites(ref)]


def test_json_output(obj):
    r = run_ours("record", "--dry-run", "--json", obj)
    doc = json.loads(r.stdout)
    (f,) = doc["files"]
    assert f["status"] == "dry-run" and f["abi"] == "o32" and f["reloc"] == "REL"
    assert f["sites"] == len(f["entries"]) > 0
    e = f["entries"][0]
    assert set(e) == {"section", "offset", "kind", "function", "func_offset", "symbol", "addend"}
    r = run_ours("record", "--json", obj)
    assert json.loads(r.stdout)["files"][0]["status"] == "recorded"
    r = run_ours("record", "--json", obj)
    assert json.loads(r.stdout)["files"][0]["status"] == "already"


def test_no_sites_leaves_file_untouched(tmp_path):
    src = fixture(name="nosites.o")
    f = tmp_path / "nosites.o"
    shutil.copyfile(src, f)
    st = f.stat()
    r = run_ours("record", f)
    assert r.returncode == 0 and r.stderr == ""
    assert f.read_bytes() == src.read_bytes() and f.stat().st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_many_files_one_process(tmp_path, jobs):
    srcs = sorted((FIXTURES).glob("*/kernel/*.o"))
    # weakstrip.o is refused (no non-weak symbol), by the reference too: tested on its own.
    srcs = [p for p in srcs if p.name not in ("vmlinux.o", "weakstrip.o")]
    assert len(srcs) >= 10
    copies = []
    for i, p in enumerate(srcs):
        c = tmp_path / f"{i}-{p.parent.parent.name}-{p.name}"
        shutil.copyfile(p, c)
        copies.append(c)
    r = run_ours("record", "-j", jobs, *copies)
    assert r.returncode == 0, r.stderr
    for p, c in zip(srcs, copies):
        single = tmp_path / "single.o"
        shutil.copyfile(p, single)
        run_ours("record", single, check=True)
        assert c.read_bytes() == single.read_bytes(), c.name


def test_one_bad_file_does_not_stop_the_others(obj, tmp_path):
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"not an object\n")
    r = run_ours("record", bad, obj)
    assert r.returncode == 1
    assert obj.read_bytes() == by_reference(tmp_path)
    assert bad.read_bytes() == b"not an object\n"


# ------------------------------------------------------------------ error cases
def check_error(path: Path, needle: str, *extra):
    before = path.read_bytes() if path.is_file() else None
    r = run_ours("record", *extra, path)
    assert_one_error(r, path, needle)
    if before is not None:
        assert path.read_bytes() == before
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".rp")]
    assert not leftovers


def test_error_not_elf(tmp_path):
    f = tmp_path / "x.o"
    f.write_bytes(b"\x7fELG" + b"\0" * 60)
    check_error(f, "not an ELF file")


def test_error_empty(tmp_path):
    f = tmp_path / "empty.o"
    f.write_bytes(b"")
    check_error(f, "not an ELF file")


@pytest.mark.parametrize("cut", [20, 60, 0.5, -1])
def test_error_truncated(obj, cut):
    data = obj.read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else (cut if cut > 0 else len(data) - 1)
    obj.write_bytes(data[:n])
    check_error(obj, "truncated" if n < 200 or cut == -1 else "")


def test_error_wrong_machine(obj):
    data = bytearray(obj.read_bytes())
    data[18:20] = struct.pack("<H", 62)  # EM_X86_64 (mipsel fixture: little-endian)
    obj.write_bytes(bytes(data))
    check_error(obj, "wrong machine")


def test_error_unsupported_abi_n32(tmp_path):
    cc = shutil.which("mips64el-linux-gnuabi64-gcc")
    if cc is None:
        from conftest import need
        need("mips64el-linux-gnuabi64-gcc", False)
    src = tmp_path / "n32.c"
    src.write_text("extern int g(int); int f(int x) { return g(x) + 1; }\n")
    out = tmp_path / "n32.o"
    subprocess.run([cc, "-mabi=n32", "-O2", "-G0", "-mno-abicalls", "-fno-pic", "-pg",
                    "-c", str(src), "-o", str(out)], check=True)
    check_error(out, "unsupported MIPS ABI n32")


def test_error_exec_file(obj, tmp_path):
    data = bytearray(obj.read_bytes())
    data[16:18] = struct.pack("<H", 2)   # ET_EXEC
    obj.write_bytes(bytes(data))
    check_error(obj, "ET_EXEC")


def test_error_non_regular(tmp_path):
    fifo = tmp_path / "fifo.o"
    os.mkfifo(fifo)
    r = run_ours("record", fifo)
    assert_one_error(r, fifo, "not a regular file")
    r = run_ours("record", tmp_path)
    assert_one_error(r, tmp_path, "directory")


def test_error_missing(tmp_path):
    r = run_ours("record", tmp_path / "nope.o")
    assert_one_error(r, tmp_path / "nope.o", "No such file")


def test_error_unwritable_file(obj):
    """A mode-0444 file. Root may write anything, and CI runs as root, so there the
    check runs in a child without CAP_DAC_OVERRIDE (setpriv drops it from the bounding
    set), which makes the permission bits bind uid 0 as they bind a user."""
    obj.chmod(0o444)
    before = obj.read_bytes()
    if os.geteuid() != 0:
        check_error(obj, "not writable")
        return
    setpriv = shutil.which("setpriv")
    need("setpriv (util-linux)", setpriv is not None)
    r = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner",
                        sys.executable, "-m", "recordpatch", "record", str(obj)],
                       capture_output=True, text=True, cwd=ROOT)
    assert_one_error(r, obj, "not writable")
    assert obj.read_bytes() == before


@pytest.mark.parametrize("past", [0x40, -2], ids=["past-the-end", "straddles-the-end"])
def test_error_reloc_outside_section(obj, past):
    """A relocation against _mcount whose 4-byte word does not lie inside its section: wholly
    past the end, or starting 2 bytes before it. Positions read with pyelftools."""
    from elftools.elf.elffile import ELFFile
    data = bytearray(obj.read_bytes())
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        rel = elf.get_section_by_name(".rel.text")
        assert rel is not None, "no .rel.text"
        syms = elf.get_section(rel["sh_link"])
        k = next(i for i, r in enumerate(rel.iter_relocations())
                 if syms.get_symbol(r["r_info_sym"]).name == "_mcount")
        pos = rel["sh_offset"] + k * rel["sh_entsize"]
        end = "<" if elf.little_endian else ">"
        struct.pack_into(end + "I", data, pos, text["sh_size"] + past)
    obj.write_bytes(bytes(data))
    check_error(obj, "points outside")


def test_usage_errors():
    r = run_ours("record")
    assert r.returncode == 2
    r = run_ours("record", "-j", "0", "x.o")
    assert r.returncode == 2
    r = run_ours()
    assert r.returncode == 2
