"""`recordpatch patch` and its executed proof under qemu-user (issue 4, parts 2 and 4).

The programs (testdata/qemu/: sources, Makefile, xz fixtures) print one line:
    sum=78 calls=C flags=F mcount=M bprime=B
sum is what the traced functions computed (82 when fb runs as B' = fb_prime), C and F the
calls into ftrace_regs_caller and the sum of the flag register it saw, M the _mcount calls.
Each program is patched into each state and run under qemu-{mips,mipsel,mips64,mips64el};
then every intermediate image of every safe write plan from transitions.py is run too.
"""

from __future__ import annotations

import lzma
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, need, need_module

QEMU_FIX = ROOT / "testdata" / "qemu" / "fixtures"
TARGETS = ("mips", "mipsel", "mips64", "mips64el")
RP = [sys.executable, "-m", "recordpatch"]

need_module("keystone")
need_module("capstone")

from recordpatch.arch.encode import Target  # noqa: E402
from recordpatch.passes import patch as P  # noqa: E402
from recordpatch.passes import transitions as T  # noqa: E402


def out(calls=0, flags=0, mcount=0, bprime=0, total=78):
    return f"sum={total} calls={calls} flags={flags} mcount={mcount} bprime={bprime}"


NOP = out()
#: state -> expected line, for all sites of prog3/prog4
PAD_OUT = {"nop": NOP, "init": NOP, "call-regs": out(11, 0), "call": out(11, 11)}
#: only fb's site patched (fb runs 4 times: 3 from main, 1 from fc)
FB_OUT = {"nop": NOP, "init": NOP, "call-regs": out(4, 0), "call": out(4, 4),
          "redirect": out(bprime=4, total=82)}
PG_OUT = {"nop": NOP, "call": out(mcount=11)}


def prog(target: str, v: str, tmp: Path) -> Path:
    dst = tmp / f"{target}-prog{v}"
    dst.write_bytes(lzma.decompress((QEMU_FIX / target / f"prog{v}.xz").read_bytes()))
    dst.chmod(0o755)
    return dst


def qemu(target: str, exe: Path) -> str:
    q = shutil.which(f"qemu-{target}")
    need(f"qemu-{target} (qemu-user)", q is not None)
    r = subprocess.run([q, str(exe)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout.strip()


def run_bytes(target: str, data: bytes, tmp: Path, name: str) -> str:
    p = tmp / name
    p.write_bytes(data)
    p.chmod(0o755)
    return qemu(target, p)


def rp(*args):
    return subprocess.run([*RP, *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def target_of(elf_path: Path) -> Target:
    return P.Image(elf_path.read_bytes()).t


# ---------------------------------------------------------------- each state, each target
@pytest.mark.parametrize("target", TARGETS)
def test_pad3_states_run(target, tmp_path):
    src = prog(target, "3", tmp_path)
    before = src.read_bytes()
    assert qemu(target, src) == NOP
    flag = "$8 (t0 on o32)" if "64" not in target else "$12 (t0 on n64)"
    for state, want in PAD_OUT.items():
        o = tmp_path / f"p-{state}"
        r = rp("patch", src, "-o", o, "--state", state)
        assert r.returncode == 0, r.stderr
        assert f"flag register {flag}" in r.stdout
        assert qemu(target, o) == want, state
    assert src.read_bytes() == before  # input untouched


@pytest.mark.parametrize("target", TARGETS)
def test_pad4_call_and_redirect_run(target, tmp_path):
    src = prog(target, "4", tmp_path)
    r = rp("patch", src, "-o", tmp_path / "c", "--state", "call")
    assert r.returncode == 0, r.stderr
    assert qemu(target, tmp_path / "c") == out(11, 11)
    r = rp("patch", src, "-o", tmp_path / "r", "--state", "redirect", "--target", "fb_prime",
           "--only", "fb")
    assert r.returncode == 0, r.stderr
    assert "B' fb_prime" in r.stdout
    assert qemu(target, tmp_path / "r") == FB_OUT["redirect"]
    # back from redirect to call, then to nop: the original bytes
    r = rp("patch", tmp_path / "r", "-o", tmp_path / "rc", "--state", "call", "--only", "fb")
    assert r.returncode == 0, r.stderr
    assert qemu(target, tmp_path / "rc") == FB_OUT["call"]
    r = rp("patch", tmp_path / "rc", "-o", tmp_path / "n", "--state", "nop")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "n").read_bytes() == src.read_bytes()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("v,kind", [("pg", "pg-kernel"), ("pgl", "pg-module")])
def test_pg_nop_and_back(target, v, kind, tmp_path):
    src = prog(target, v, tmp_path)
    assert qemu(target, src) == PG_OUT["call"]
    r = rp("patch", "-v", src, "-o", tmp_path / "n", "--state", "nop")
    assert r.returncode == 0, r.stderr
    assert f"{kind}: call -> nop" in r.stdout
    assert "flag register" not in r.stdout and "trampoline" not in r.stdout  # pads only
    assert qemu(target, tmp_path / "n") == PG_OUT["nop"]   # stack intact: o32 slot nopped too
    r = rp("patch", tmp_path / "n", "-o", tmp_path / "c", "--state", "call")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c").read_bytes() == src.read_bytes()
    r = rp("patch", src, "-o", tmp_path / "x", "--state", "call-regs")
    assert r.returncode == 1 and "has no call-regs state" in r.stderr


# ---------------------------------------------------------------- every step of every safe plan
def _safe_plans(t: Target, family: str):
    d = T.verify_transitions(t)
    fam = next(f for f in d["families"] if f["name"] == family)
    return [(p["from"], p["to"]) for p in fam["plans"] if p["safe"]]


def _to_state(data: bytes, opts: P.Options) -> bytes:
    img, _st, changes, diags, _ = P.plan_changes(data, opts)
    assert not diags, diags
    return P.apply(data, img, changes)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("family,v", [("pad3", "3"), ("pad4", "4"), ("pg-kernel", "pg"),
                                      ("pg-module", "pgl")])
def test_every_intermediate_state_runs(target, family, v, tmp_path):
    base = prog(target, v, tmp_path).read_bytes()
    t = P.Image(base).t
    only = ("fb",) if family == "pad4" else ()
    expect = FB_OUT if family == "pad4" else PG_OUT if family.startswith("pg") else PAD_OUT
    extra = {"target": "fb_prime"} if family == "pad4" else {}
    ran = 0
    plans = [p for p in _safe_plans(t, family) if p[0] in expect and p[1] in expect]
    if family == "pg-kernel":
        unsafe = not any(p == ("nop", "call") for p in plans)
        # o32: jal + stack-adjust slot change together (two words): no safe single-word plan
        assert unsafe == (t.abi == "o32")
        if unsafe:
            with pytest.raises(P.PatchError, match="must change at once"):
                P.staged_images(base, P.Options("nop"))
            return
    assert plans
    for src, dst in plans:
        start = _to_state(base, P.Options(src, only=only, **extra))
        assert run_bytes(target, start, tmp_path, "start") == expect[src]
        images = P.staged_images(start, P.Options(dst, only=only, **extra))
        assert images and images[-1] == _to_state(start, P.Options(dst, only=only, **extra))
        for k, img in enumerate(images):
            got = run_bytes(target, img, tmp_path, f"{src}-{dst}-{k}")
            assert got in (expect[src], expect[dst]), (src, dst, k, got)
            ran += 1
    assert ran >= len(plans)


# ---------------------------------------------------------------- refusals
def _word_at(path: Path, addr: int) -> tuple[int, str]:
    img = P.Image(path.read_bytes())
    off, _ = img.file_offset(addr)
    return off, img.elf.endian


def test_unexpected_words_reported_per_site_nothing_written(tmp_path):
    src = prog("mipsel", "3", tmp_path)
    img = P.Image(src.read_bytes())
    sites = P.find_sites(img, 3)
    buf = bytearray(src.read_bytes())
    struct.pack_into("<I", buf, sites[1].off + 4, 0x24020001)  # li v0,1 inside fb's pad
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(buf))
    o = tmp_path / "o"
    r = rp("patch", bad, "-o", o, "--state", "call")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(ln.startswith(f"{bad}: error: recordpatch: fb: ") and "unexpected words" in ln
               and "li v0,1" in ln for ln in lines), r.stderr
    assert "1 of 3 sites" in lines[-1] and "nothing written" in lines[-1]
    assert not o.exists() and "Traceback" not in r.stderr


def test_other_flag_register_and_refusals(tmp_path):
    src = prog("mips64", "3", tmp_path)
    r = rp("patch", src, "-o", tmp_path / "o", "--state", "call", "--flag-reg", "t1")
    assert r.returncode == 0 and "flag register $13 (t1 on n64)" in r.stdout
    # the image now holds li t1: with the default flag register those words are unexpected
    r = rp("patch", tmp_path / "o", "-o", tmp_path / "o2", "--state", "nop")
    assert r.returncode == 1 and "unexpected words" in r.stderr
    r = rp("patch", tmp_path / "o", "-o", tmp_path / "o2", "--state", "nop", "--flag-reg", "$13")
    assert r.returncode == 0 and (tmp_path / "o2").read_bytes() == src.read_bytes()
    # usage errors (issue 13: exit 2, as in verify): a flag register that breaks the call, an
    # unknown register, redirect without B'
    r = rp("patch", src, "-o", tmp_path / "o", "--state", "call", "--flag-reg", "a0")
    assert r.returncode == 2 and "a0, an argument register on n64" in r.stderr
    r = rp("patch", src, "-o", tmp_path / "o", "--state", "call", "--flag-reg", "ra")
    assert r.returncode == 2 and "cannot be the flag register" in r.stderr
    r = rp("patch", src, "-o", tmp_path / "o", "--state", "call", "--flag-reg", "q9")
    assert r.returncode == 2 and "unknown register 'q9'" in r.stderr
    # trampoline not 64 KiB aligned
    r = rp("patch", src, "-o", tmp_path / "o3", "--state", "init", "--trampoline", "fb_prime")
    assert r.returncode == 1 and "65536-byte aligned" in r.stderr and not (tmp_path / "o3").exists()
    r = rp("patch", src, "-o", tmp_path / "o3", "--state", "init", "--trampoline", "0x10020004")
    assert r.returncode == 1 and "not 64 KiB aligned" in r.stderr
    # redirect needs B' and a 4-word pad
    r = rp("patch", src, "-o", tmp_path / "o3", "--state", "redirect")
    assert r.returncode == 2 and "--target" in r.stderr
    r = rp("patch", src, "-o", tmp_path / "o3", "--state", "redirect", "--target", "fb_prime")
    assert r.returncode == 1 and "unexpected words" in r.stderr  # the 4th word is the body
    r = rp("patch", src, "-o", tmp_path / "o3", "--state", "call", "--only", "nosuch")
    assert r.returncode == 1 and "nosuch" in r.stderr
    r = rp("patch", src, "-o", src, "--state", "call")
    assert r.returncode == 2 and "never modified" in r.stderr
    for res in (r,):
        assert "Traceback" not in res.stderr


def test_only_and_except(tmp_path):
    src = prog("mipsel", "3", tmp_path)
    r = rp("patch", src, "-o", tmp_path / "a", "--state", "call", "--only", "fa")
    assert r.returncode == 0 and ": 1 site to call" in r.stdout   # not "1 sites" (issue 13)
    assert qemu("mipsel", tmp_path / "a") == out(6, 6)
    r = rp("patch", src, "-o", tmp_path / "b", "--state", "call", "--except", "fa")
    assert r.returncode == 0 and "2 sites" in r.stdout
    assert qemu("mipsel", tmp_path / "b") == out(5, 5)


def test_relocatable_objects(tmp_path):
    """.o files: only states that need no new relocation (numeric addresses)."""
    obj = ROOT / "testdata" / "fixtures" / "mipsel" / "pfe3" / "patchable.o"
    assert obj.exists(), f"committed fixture {obj} missing"
    o = tmp_path / "o.o"
    # GCC 12 put every pad before its label (PR99217): patch refuses it as record does
    r = rp("patch", obj, "-o", o, "--state", "call", "--trampoline", "0x10020000")
    assert r.returncode == 1 and "GCC PR99217" in r.stderr and "--repair" in r.stderr, r.stderr
    assert not o.exists()
    fixed = tmp_path / "fixed.o"
    shutil.copyfile(obj, fixed)
    assert rp("record", "--repair", fixed).returncode == 0
    obj = fixed
    r = rp("patch", obj, "-o", o, "--state", "call")
    assert r.returncode == 1 and "would need a new relocation" in r.stderr, r.stderr
    assert not o.exists()
    r = rp("patch", obj, "-o", o, "--state", "call", "--trampoline", "0x10020000")
    assert r.returncode == 0, r.stderr
    img = P.Image(o.read_bytes())
    for s in P.find_sites(img, 3):
        assert [img.read(s.off + 4 * i) for i in range(3)] == [0x3C011002, 0x00200809, 0x24080001]
    r = rp("patch", o, "-o", tmp_path / "back.o", "--state", "nop", "--trampoline", "0x10020000")
    assert r.returncode == 0 and (tmp_path / "back.o").read_bytes() == obj.read_bytes()
    pg = ROOT / "testdata" / "fixtures" / "mipsel" / "kernel" / "basic.o"
    r = rp("patch", pg, "-o", o, "--state", "nop")
    assert r.returncode == 1 and "relocation the linker" in r.stderr, r.stderr


@pytest.mark.slow
def test_fixtures_rebuild_identically(tmp_path):
    """testdata/qemu/Makefile rebuilds the committed programs bit for bit (needs the cross gcc)."""
    from conftest import cross
    for t in TARGETS:
        cross(t, "gcc")
    need("make", shutil.which("make") is not None)
    r = subprocess.run(["make", "-s", "-C", str(ROOT / "testdata" / "qemu"), f"BUILD={tmp_path}/b",
                        f"FIX={tmp_path}/f", f"RECORDPATCH={sys.executable} -m recordpatch"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for t in TARGETS:
        for v in ("3", "4", "pg", "pgl"):
            new = lzma.decompress((tmp_path / "f" / t / f"prog{v}.xz").read_bytes())
            old = lzma.decompress((QEMU_FIX / t / f"prog{v}.xz").read_bytes())
            assert new == old, f"{t}/prog{v}: rebuild differs from the committed fixture"
