"""One face for every command (issue 13): the same JSON envelope from every command, usage
errors exit 2, text that a new user can read. The expected values come from the fixtures'
own bytes (readelf/objdump), never from recordpatch's output."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, IN_CI, ROOT, cross, run_ours

QEMU_FIX = ROOT / "testdata" / "qemu" / "fixtures"
#: fields that are numbers wherever they appear: never "0x1c" or "12" as text
INT_FIELDS = {"offset", "func_offset", "address", "addend", "entries", "sites", "nops",
              "before", "files", "clean", "errors", "skipped", "finding_count", "required",
              "section_align", "flag_reg", "rewritten", "ignored", "repaired", "recorded",
              "word", "image"}
#: lists of numbers: instruction words
INT_LISTS = {"words"}
FINDING_KEYS = {"level", "kind", "message", "where", "section", "offset", "function",
                "func_offset"}


def _ints(node, path="$"):
    """Every INT_FIELDS value under ``node`` is an int (or null), never a string."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in INT_FIELDS and not isinstance(v, (dict, list)):
                assert v is None or (isinstance(v, int) and not isinstance(v, bool)), \
                    f"{path}.{k} = {v!r}"
            if k in INT_LISTS:
                assert all(isinstance(x, int) for x in v), f"{path}.{k} = {v!r}"
            _ints(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _ints(v, f"{path}[{i}]")


def check_envelope(cmd: str, stdout: str) -> dict:
    doc = json.loads(stdout)
    assert set(doc) == {"schema", "files", "summary"}, set(doc)
    assert doc["schema"] == f"recordpatch/{cmd}/1"
    assert isinstance(doc["files"], list) and isinstance(doc["summary"], dict)
    for f in doc["files"]:
        assert isinstance(f["path"], str) and isinstance(f["status"], str)
        for x in f["findings"]:
            assert set(x) == FINDING_KEYS, x
            assert x["level"] in ("error", "warning", "note") and x["kind"]
            if x["section"] and x["offset"] is not None:
                assert x["where"] == f"{x['section']}+{x['offset']:#x}"
    _ints(doc)
    return doc


def test_every_command_json_envelope(tmp_path):
    """Each command with --json: one envelope, integers as integers, findings as fields."""
    obj = tmp_path / "basic.o"
    shutil.copyfile(FIXTURES / "mipsel" / "kernel" / "basic.o", obj)
    prog = tmp_path / "prog3"
    prog.write_bytes(lzma.decompress((QEMU_FIX / "mipsel" / "prog3.xz").read_bytes()))
    elf = tmp_path / "tramp.elf"
    elf.write_bytes(lzma.decompress(
        (FIXTURES / "mipsel" / "check" / "tramp_aligned-64k.elf.xz").read_bytes()))
    runs = {
        "record": ["record", "--dry-run", "--json", obj],
        "audit": ["audit", "--json", FIXTURES / "mipsel" / "pfe3" / "pfe_setmode.o"],
        "check": ["check", "--json", elf, FIXTURES / "mipsel" / "pfe3" / "patchable.o"],
        # the compiler's flags are its own: -march=... holds an `h` that is not our -h
        "probe-cc": ["probe-cc", "--json", cross("mipsel", "gcc"), "-O2", "-march=mips32r2"],
        "patch": ["patch", "--json", prog, "-o", tmp_path / "out", "--state", "call"],
        "verify": ["verify", "--transitions", "--json"],
    }
    for cmd, argv in runs.items():
        r = run_ours(*argv)
        assert r.returncode in (0, 1), (cmd, r.stderr)
        assert "Traceback" not in r.stderr
        doc = check_envelope(cmd, r.stdout)
        if cmd == "probe-cc":
            assert doc["files"][0]["flags"] == ["-O2", "-march=mips32r2"]
        if cmd == "record":
            e = doc["files"][0]["entries"][0]
            assert isinstance(e["function"], str) and "+" not in e["function"]
    r = run_ours("record", "--json", obj)
    doc = check_envelope("record", r.stdout)
    assert doc["files"][0]["status"] == "recorded" and doc["summary"]["recorded"] == 1


def test_audit_findings_name_kind_and_place():
    """pfe_setmode.o: set_mode's short pad is a finding with its section, offset and
    function as separate fields (readelf: set_mode is the .text symbol at 0x8, its pad the
    two words before it)."""
    r = run_ours("audit", "--json", FIXTURES / "mipsel" / "pfe3" / "pfe_setmode.o")
    doc = check_envelope("audit", r.stdout)
    mine = [x for x in doc["files"][0]["findings"] if x["function"] == "set_mode"]
    assert mine and all((x["section"], x["offset"]) == (".text", 0) for x in mine)


def test_record_places_pad_findings_like_audit(tmp_path):
    """record's findings about a pad carry the same section/offset/function fields as
    audit's (readelf: set_mode's pad is .text+0x0), so the text says `.text+0x0: ...`."""
    obj = tmp_path / "pfe_setmode.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe3" / "pfe_setmode.o", obj)
    r = run_ours("record", "--json", obj)
    doc = check_envelope("record", r.stdout)
    mine = [x for x in doc["files"][0]["findings"] if x["function"] == "set_mode"]
    assert mine and all((x["section"], x["offset"]) == (".text", 0) for x in mine), mine
    assert all(x["where"] == ".text+0x0" for x in mine)
    r = run_ours("record", obj)
    assert f"{obj}: warning: recordpatch: .text+0x0: pad of set_mode" in r.stderr, r.stderr


BAD_OPTION = {
    "record": ["record", "--no-such-option", "x.o"],
    "audit": ["audit", "--no-such-option", "x"],
    "check": ["check", "--no-such-option", "x"],
    "probe-cc": ["probe-cc", "--no-such-option"],
    "verify": ["verify", "--transitions", "--no-such-option"],
    "patch": ["patch", "--no-such-option", "x", "-o", "y", "--state", "nop"],
}


@pytest.mark.parametrize("cmd", sorted(BAD_OPTION))
def test_bad_option_exits_2(cmd, tmp_path):
    r = run_ours(*BAD_OPTION[cmd], cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "no-such-option" in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


def _imports(code: str) -> set:
    """Modules imported by ``code`` in a fresh interpreter without site (as the shim runs
    it; python -X importtime)."""
    r = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", code],
                       capture_output=True, text=True, cwd=ROOT)
    return {ln.split("|")[-1].strip() for ln in r.stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln} - {"imported package"}


@pytest.mark.parametrize("entry", ["main(['-w', {f!r}])", "main([{f!r}])",
                                   "recordmcount_main(['-w', {f!r}])"])
def test_kbuild_forms_import_neither_typer_nor_argparse(entry, tmp_path):
    """The per-object Kbuild path stays on the standard library: no typer, click, rich or
    argparse (python -X importtime lists every module imported)."""
    f = tmp_path / "basic.o"
    shutil.copyfile(FIXTURES / "mipsel" / "kernel" / "basic.o", f)
    mods = _imports("from recordpatch.cli import main, recordmcount_main; "
                    + entry.format(f=str(f)))
    assert "recordpatch.passes.record" in mods          # it did record
    assert not {m for m in mods if m.split(".")[0] in ("typer", "click", "rich", "argparse",
                                                        "pydantic")}, sorted(mods)
    assert not {m for m in mods if not m.startswith("recordpatch")
                and m.split(".")[0] not in sys.stdlib_module_names}


def test_help_panels_and_completion():
    """typer's face: commands listed, options in panels, shell completion offered."""
    r = run_ours("--help")
    assert r.returncode == 0
    for word in ("record", "audit", "check", "probe-cc", "verify", "patch",
                 "--install-completion", "--show-completion"):
        assert word in r.stdout, word
    r = run_ours("patch", "--help")
    assert r.returncode == 0 and "Selection" in r.stdout and "Output" in r.stdout
    assert "%%" not in r.stdout and "%hi(tramp)" in r.stdout


# ---------------------------------------------------------------- the new user's list
def _pyelf(path: Path):
    from elftools.elf.elffile import ELFFile
    return ELFFile(open(path, "rb"))


def _prog3(tmp_path: Path) -> Path:
    p = tmp_path / "prog3"
    p.write_bytes(lzma.decompress((QEMU_FIX / "mipsel" / "prog3.xz").read_bytes()))
    return p


def test_patch_only_keeps_in_and_counts_in_english(tmp_path):
    """`patch --only f IN -o OUT` (IN after --only is IN, not a second function); the count
    of sites is the number of __patchable_function_entries words at fb's pad (pyelftools),
    "1 site", never "1 sites"."""
    src = _prog3(tmp_path)
    e = _pyelf(src)
    fb = next(s for s in e.get_section_by_name(".symtab").iter_symbols() if s.name == "fb")
    table = e.get_section_by_name("__patchable_function_entries").data()
    words = [int.from_bytes(table[i:i + 4], "little") for i in range(0, len(table), 4)]
    n = sum(fb["st_value"] - 12 <= w <= fb["st_value"] for w in words)
    assert n == 1
    out = tmp_path / "out"
    r = run_ours("patch", "--only", "fb", src, "-o", out, "--state", "call")
    assert r.returncode == 0, r.stderr
    assert out.exists() and ": 1 site to call (1 rewritten)" in r.stdout, r.stdout
    r = run_ours("patch", "--only", "fb", "--only", "nosuch", src, "-o", tmp_path / "o2",
                 "--state", "call")
    assert r.returncode == 1 and "nosuch" in r.stderr


def test_probe_cc_without_arguments():
    r = run_ours("probe-cc")
    assert r.returncode == 2 and "Missing argument 'CC'" in r.stderr
    assert "FLAGS is required" not in r.stderr


@pytest.mark.slow
def test_audit_of_many_sections_prints_short_lines(tmp_path):
    """mipsel/manysec/manysec.o: 32,800 .text.* sections (readelf counts them); the plain line
    names a few and how many more, never one line per section (600 KB)."""
    obj = tmp_path / "manysec.o"
    obj.write_bytes(lzma.decompress((FIXTURES / "mipsel" / "manysec" / "manysec.o.xz").read_bytes()))
    n = sum(1 for s in _pyelf(obj).iter_sections() if s.name.startswith(".text.")
            and s["sh_flags"] & 4)
    assert n >= 32800
    rec = run_ours("record", obj)
    assert rec.returncode == 0, rec.stderr
    r = run_ours("audit", "--plain", obj)
    assert r.returncode == 0, r.stderr
    assert max(len(ln) for ln in r.stdout.splitlines()) < 1000
    assert f"({n - 8} more)" in r.stdout


def test_directory_audit_finds_kernel_images_by_their_usual_names(tmp_path):
    """vmlinux-6.1.0 and vmlinux.elf (linked images, ET_EXEC per readelf) are audited in a
    directory walk; vmlinux.lds (text) is counted as skipped, not ignored."""
    img = FIXTURES / "mipsel" / "check" / "tramp_smallalign.elf"
    assert _pyelf(img).header["e_type"] == "ET_EXEC"
    for name in ("vmlinux-6.1.0", "vmlinux.elf"):
        shutil.copyfile(img, tmp_path / name)
    (tmp_path / "vmlinux.lds").write_text("SECTIONS { }\n")
    r = run_ours("audit", "--json", tmp_path)
    doc = check_envelope("audit", r.stdout)
    names = {Path(f["path"]).name: f["status"] for f in doc["files"]}
    assert set(names) == {"vmlinux-6.1.0", "vmlinux.elf", "vmlinux.lds"}
    assert names["vmlinux.lds"] == "skipped" and doc["summary"]["skipped"] == 1
    assert doc["summary"]["files"] == 3


def test_record_repair_says_what_it_did(tmp_path):
    """mipsel/pfe3/patchable.o: every pad stands before its label (PR99217). The number of
    functions repaired is the number of FUNC symbols 12 bytes past a table entry, read with
    pyelftools (REL: the addend is the table word, against the symbol of the relocation)."""
    obj = tmp_path / "patchable.o"
    shutil.copyfile(FIXTURES / "mipsel" / "pfe3" / "patchable.o", obj)
    e = _pyelf(obj)
    symtab = e.get_section_by_name(".symtab")
    table = e.get_section_by_name("__patchable_function_entries")
    rel = e.get_section_by_name(".rel__patchable_function_entries")
    data = table.data()
    targets = set()
    for r in rel.iter_relocations():
        s = symtab.get_symbol(r["r_info_sym"])
        targets.add((s["st_shndx"], s["st_value"] + int.from_bytes(data[r["r_offset"]:][:4],
                                                                    "little")))
    funcs = {(s["st_shndx"], s["st_value"]) for s in symtab.iter_symbols()
             if s["st_info"]["type"] == "STT_FUNC"}
    n = sum((sec, v + 12) in funcs for sec, v in targets)
    assert n >= 2
    r = run_ours("record", "--repair", obj)
    assert r.returncode == 0, r.stderr
    assert f"{obj}: repaired {n} functions (PR99217" in r.stdout, r.stdout


def test_compressed_modules(tmp_path):
    """A .ko.xz: audit, check and patch read it (the same result as the file it holds);
    record says why it does not, and leaves it untouched."""
    ko = FIXTURES / "mipsel" / "module" / "module.ko"
    xz = tmp_path / "module.ko.xz"
    xz.write_bytes(lzma.compress(ko.read_bytes()))
    before = xz.read_bytes()
    r = run_ours("record", xz)
    assert r.returncode == 1 and "xz-compressed" in r.stderr and "decompress it" in r.stderr
    assert xz.read_bytes() == before
    tramp = FIXTURES / "mipsel" / "check" / "tramp_aligned-64k.o.xz"
    plain = tmp_path / "tramp.o"
    plain.write_bytes(lzma.decompress(tramp.read_bytes()))
    a = json.loads(run_ours("check", "--json", tramp).stdout)["files"][0]["symbols"]
    b = json.loads(run_ours("check", "--json", plain).stdout)["files"][0]["symbols"]
    assert a == b and a[0]["ok"]
    src = _prog3(tmp_path)
    (tmp_path / "prog3.xz").write_bytes(lzma.compress(src.read_bytes()))
    r1 = run_ours("patch", tmp_path / "prog3.xz", "-o", tmp_path / "o1", "--state", "call")
    r2 = run_ours("patch", src, "-o", tmp_path / "o2", "--state", "call")
    assert r1.returncode == r2.returncode == 0, r1.stderr
    assert (tmp_path / "o1").read_bytes() == (tmp_path / "o2").read_bytes()


def test_audit_table_fits_80_columns_and_plain_on_request(tmp_path):
    """On a terminal of 80 columns the table wraps a long path (all of its characters are
    there, no ellipsis) and no line is wider than the terminal; --plain and NO_COLOR give
    the plain lines instead."""
    pytest.importorskip("rich") if not IN_CI else None
    from test_audit import _run_on_pty
    deep = tmp_path / "lib" / "modules" / "6.1.0-rc7-a-rather-long-release-name" / "kernel"
    deep.mkdir(parents=True)
    ko = deep / "drivers-with-a-long-module-name.ko"
    shutil.copyfile(FIXTURES / "mipsel" / "module" / "module.ko", ko)
    run_ours("record", ko, check=True)
    code, out = _run_on_pty(["audit", str(ko)], columns=80)
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)   # colours and styles take no columns
    lines = [ln.rstrip("\r") for ln in out.split("\n")]
    assert "┃" in out and "…" not in out, out
    assert max(len(ln) for ln in lines) <= 80, out
    joined = "".join(ln.strip("│┃ ").split("│")[0].strip() for ln in lines if "│" in ln)
    assert str(ko) in joined.replace(" ", "") or str(ko).replace(" ", "") in joined, out
    for extra, env in ((["--plain"], {}), ([], {"NO_COLOR": "1"})):
        code, out = _run_on_pty(["audit", *extra, str(ko)], columns=80, **env)
        assert "┃" not in out and f"{ko}: ET_REL" in out, out
