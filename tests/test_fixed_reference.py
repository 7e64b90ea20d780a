"""kernel/patches/recordmcount-{6.1,6.12}.patch: the kernel's own recordmcount with its "+4"
filter kept within one section, built from Debian's linux-source tarballs the way Kbuild
builds it (kernel/fixed-recordmcount.sh), must record exactly what recordpatch records by
default, on every committed -pg fixture it accepts.

The oracles are the C tool itself and conftest's relocation-level models (pyelftools): the
unpatched tool, built from the same tarball, must follow `reference_model`, the patched one
`reference_model(per_section=True)`, and the objects where the two models differ must be
exactly the objects the patch changes. The known differences the patch does not touch
(README "Where we differ" 1 and 3) are checked to be unchanged by it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (FIXTURES, ROOT, fixture_id, materialize, need, pg_objects, recorded_sites,
                      reference_model, run_ours)

VERSIONS = ["6.1", "6.12"]
OBJECTS = pg_objects()
MANYSEC = sorted(FIXTURES.rglob("manysec*.o.xz"))
#: not -pg code: _mcount address loads, which every recordmcount records (README difference 1)
LOADS = {"mcount_user.o", "vmlinux.o", "mcount_near.o"}
#: what every recordmcount refuses and recordpatch records (README, where we differ 6: a
#: section with only weak functions and no section symbol; tests/test_weakonly.py proves it)
NO_SYMBOL = "Cannot find symbol for section"
#: what recordpatch refuses and every recordmcount records (README, where we differ: calls
#: Linux's MIPS ftrace cannot patch; tests/test_shapes.py, test_differential.py)
CANNOT_PATCH = "that Linux's MIPS ftrace cannot patch"

_spec = importlib.util.spec_from_file_location("mcount_table", ROOT / "kernel" / "mcount_table.py")
mcount_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mcount_table)


@pytest.fixture(scope="session", params=VERSIONS)
def tools(request):
    """(patched, unpatched) recordmcount built from /usr/src/linux-source-VERSION.tar.xz."""
    v = request.param
    tar = Path(f"/usr/src/linux-source-{v}.tar.xz")
    need(f"{tar} (linux-source-{v})", tar.is_file())
    need("gcc", shutil.which("gcc") is not None)
    need("patch", shutil.which("patch") is not None)
    out = ROOT / "build" / "recordmcount-fixed" / v
    r = subprocess.run(["bash", str(ROOT / "kernel" / "fixed-recordmcount.sh"), v, str(out)],
                       env=dict(os.environ, ORIG="1"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == out / "recordmcount"
    return v, out / "recordmcount", out / "recordmcount-orig"


def test_patch_builds_without_new_warnings(tools):
    _, fixed, orig = tools
    assert fixed.read_bytes() != orig.read_bytes()
    assert (fixed.parent / "recordmcount.warnings").read_text() == \
        (orig.parent / "recordmcount-orig.warnings").read_text()


@pytest.fixture(scope="session")
def ours(tmp_path_factory):
    """recordpatch's default output for every fixture: one `recordpatch record` process on
    private copies. src -> (refused, output bytes, output path)."""
    d = tmp_path_factory.mktemp("ours")
    copies = {}
    for i, src in enumerate(OBJECTS):
        (d / str(i)).mkdir()
        copies[src] = materialize(src, d / str(i))
    r = run_ours("record", *copies.values())
    refused = {ln.split(": error: ", 1)[0] for ln in r.stderr.splitlines() if ": error: " in ln}
    assert r.returncode == (1 if refused else 0), r.stderr
    return {src: (str(f) in refused, f.read_bytes(), f) for src, f in copies.items()}


def _run(tool: Path, src: Path, tmp: Path, name: str):
    (tmp / name).mkdir()
    f = materialize(src, tmp / name)
    r = subprocess.run([str(tool), str(f)], capture_output=True, text=True)
    return r, f


@pytest.mark.parametrize("src", OBJECTS, ids=fixture_id)
def test_patched_reference_is_recordpatch(tools, ours, src: Path, tmp_path):
    v, fixed, _ = tools
    rf, f = _run(fixed, src, tmp_path, "fixed")
    refused, ours, ours_path = ours[src]
    if rf.returncode != 0:  # a weak-only section without a symbol: refused, untouched
        (tmp_path / "input").mkdir()
        assert NO_SYMBOL in rf.stderr and f.read_bytes() == materialize(
            src, tmp_path / "input").read_bytes(), rf.stderr
        # recordpatch records it, unless its calls are ones the kernel cannot patch
        assert (src.parent.name == "clang-module") if refused else recorded_sites(ours_path)
        return
    if refused:  # calls the kernel cannot patch: the reference records them, we refuse
        assert src.parent.name.startswith("clang-module") and recorded_sites(f)
        return
    theirs = recorded_sites(f)
    assert theirs == reference_model(src, per_section=True)
    if src.name in LOADS:
        # every call recordpatch records is there too, plus the address loads, which the patch
        # does not touch (tests/test_differential.py checks recordpatch records only the calls)
        assert set(recorded_sites(ours_path) or ()) < set(theirs)
        assert theirs == reference_model(src)
        return
    mine = f.read_bytes()
    if mine != ours:  # README "Padding bytes": only the alignment gap may differ
        assert len(mine) == len(ours), f"{v}: patched recordmcount and recordpatch differ"
        offs = [i for i in range(len(mine)) if mine[i] != ours[i]]
        assert mcount_table.in_padding(str(f), offs), f"{v}: differ at {offs[:8]}"


def test_patch_changes_exactly_the_leaking_objects(tools, tmp_path):
    """Control: the unpatched tool from the same tarball; the objects whose output the patch
    changes are those where the leaking filter drops a call (fsections/*, module*/leak.o)."""
    v, fixed, orig = tools
    changed, leaking = set(), set()
    for i, src in enumerate(OBJECTS):
        d = tmp_path / str(i)
        d.mkdir()
        ro, o = _run(orig, src, d, "orig")
        rf, f = _run(fixed, src, d, "fixed")
        assert ro.returncode == rf.returncode
        if ro.returncode != 0:
            continue   # refused by both (NO_SYMBOL), untouched by both
        assert recorded_sites(o) == reference_model(src)
        if o.read_bytes() != f.read_bytes():
            changed.add(fixture_id(src))
        if reference_model(src) != reference_model(src, per_section=True):
            leaking.add(fixture_id(src))
    assert changed == leaking
    names = {(Path(p).parent.name, Path(p).name) for p in changed}
    assert ("fsections", "fsections.o") in names and ("module", "leak.o") in names
    gcc = sorted(c for c in changed if "/clang-" not in c)
    assert len(gcc) == 20, gcc   # GCC's: 4 objects x 5 targets


@pytest.mark.slow
@pytest.mark.parametrize("src", MANYSEC, ids=fixture_id)
def test_patched_reference_manysec(tools, src: Path, tmp_path):
    """~65,600 sections (extended numbering): the output is recordpatch's, except ELF64
    big-endian, where every recordmcount sees no sections and leaves the file alone (README
    difference 3, not what this patch is about; tests/test_differential.py checks what
    recordpatch records there)."""
    _, fixed, _ = tools
    rf, f = _run(fixed, src, tmp_path, "fixed")
    if src.parent.name == "clang-manysec":   # weak-only sections: NO_SYMBOL (test_weakonly.py)
        # ELF64 big-endian: no section seen at all (README difference 3), file untouched
        assert (rf.returncode, NO_SYMBOL in rf.stderr) == \
            ((0, False) if src.parent.parent.name == "mips64" else (1, True)), rf.stderr
        return
    assert rf.returncode == 0, rf.stderr
    (tmp_path / "ours").mkdir()
    o = materialize(src, tmp_path / "ours")
    assert run_ours("record", o).returncode == 0
    ours = o.read_bytes()
    if src.parent.parent.name == "mips64":
        (tmp_path / "input").mkdir()
        assert f.read_bytes() == materialize(src, tmp_path / "input").read_bytes() != ours
    else:
        assert f.read_bytes() == ours
