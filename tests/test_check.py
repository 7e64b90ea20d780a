"""`recordpatch check` (issue 3, section 2): trampoline alignment in linked programs and
relocatables. Fixtures: testdata/fixtures/{mipsel,mips64}/check/ (64 KiB-aligned ones xz'd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, materialize, run_ours

TARGETS = ["mipsel", "mips64"]


def fx(target: str, name: str, tmp: Path) -> Path:
    p = FIXTURES / target / "check" / name
    if not p.exists():
        pytest.fail(f"missing fixture {p}")
    return materialize(p, tmp)


def one_error_per(r, path: Path) -> list[str]:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr
    for ln in lines:
        assert ln.startswith(f"{path}: error: recordpatch: ftrace_regs_caller: "), ln
    return lines


@pytest.mark.parametrize("target", TARGETS)
def test_aligned_clean(target, tmp_path):
    for name in ("tramp_aligned-64k.o.xz", "tramp_aligned-64k.elf.xz"):
        f = fx(target, name, tmp_path)
        before = f.read_bytes()
        r = run_ours("check", f)
        assert r.returncode == 0, r.stderr
        assert r.stderr == "" and "ftrace_regs_caller" in r.stdout and "ok" in r.stdout
        assert f.read_bytes() == before
    r = run_ours("check", "--json", fx(target, "tramp_aligned-64k.elf.xz", tmp_path))
    sym = json.loads(r.stdout)["files"][0]["symbols"][0]
    assert sym["ok"] and sym["address"] & 0xFFFF == 0 and sym["required"] == 65536


@pytest.mark.parametrize("target", TARGETS)
def test_linked_misaligned(target, tmp_path):
    f = fx(target, "tramp_smallalign.elf", tmp_path)
    r = run_ours("check", f)
    assert r.returncode == 1
    lines = one_error_per(r, f)
    assert len(lines) == 2
    assert "at 0x" in lines[0] and "80101010, not 65536-byte aligned (0x1010 past the boundary)" \
        in lines[0] and "`.align 16`" in lines[0]
    assert "lui at,%hi(ftrace_regs_caller) alone gives" in lines[1] and "(0x1010)" in lines[1]
    # a smaller requirement is met, but %hi alone still does not reach it
    r = run_ours("check", "--align", "16", f)
    assert r.returncode == 1
    lines = one_error_per(r, f)
    assert len(lines) == 1 and "%hi(ftrace_regs_caller) alone" in lines[0]


@pytest.mark.parametrize("target", TARGETS)
def test_relocatable_misaligned_offset(target, tmp_path):
    f = fx(target, "tramp_misaligned-64k.o.xz", tmp_path)
    r = run_ours("check", f)
    assert r.returncode == 1
    lines = one_error_per(r, f)
    assert len(lines) == 1
    assert "at .text.ftrace_tramp+0x20, not a multiple of 65536" in lines[0]


@pytest.mark.parametrize("target", TARGETS)
def test_relocatable_section_alignment_too_small(target, tmp_path):
    f = fx(target, "tramp_smallalign.o", tmp_path)
    r = run_ours("check", f)
    assert r.returncode == 1
    lines = one_error_per(r, f)
    assert len(lines) == 1
    assert "in section .text.ftrace_tramp aligned to 16 bytes, less than the required 65536" \
        in lines[0] and "`.align 16`" in lines[0]
    r = run_ours("check", "--align", "16", f)
    assert r.returncode == 1 and "alone reaches it only if it is 64 KiB aligned; here only " \
        "16-byte alignment is guaranteed" in r.stderr


def test_symbols_usage_and_errors(tmp_path):
    f = fx("mipsel", "tramp_aligned-64k.o.xz", tmp_path)
    r = run_ours("check", "--trampoline", "ftrace_regs_caller", "--trampoline", "ftrace_caller", f)
    assert r.returncode == 1
    assert f"{f}: error: recordpatch: ftrace_caller: symbol not defined in this file" in r.stderr
    assert run_ours("check", "--align", "100", f).returncode == 2
    assert run_ours("check").returncode == 2
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf")
    r = run_ours("check", junk)
    assert r.returncode == 1 and r.stderr.strip() == f"{junk}: error: recordpatch: not an ELF file"
    r = run_ours("check", tmp_path)
    assert r.returncode == 1 and "a directory" in r.stderr
