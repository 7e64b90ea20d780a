"""The fuzz harness (tests/fuzz/): a short run of the real thing, and tests of the tester.

`make fuzz` runs >= 10,000 cases and writes docs/reliability.md; here ~300 mutated inputs
plus every special path (FIFO, symlinks, bombs, ...) with every command, in under a minute.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT
from fuzz import elfmut
from fuzz import harness as H

SEED = int(os.environ.get("FUZZ_SEED", "20261123"))


def test_short_fuzz_run():
    """~300 mutated inputs across all commands + the special paths: zero failures."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    r = subprocess.run([sys.executable, "-m", "fuzz", "--cases", "300", "--seconds", "120",
                        "--seed", str(SEED), "--subprocess-every", "15", "--quick-fs", "-q"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "Failures: none" in r.stdout
    assert "300 mutated" in r.stdout and "stopped by" not in r.stdout, r.stdout[-3000:]


def test_cases_are_deterministic():
    corpus = H.Corpus()
    a = [H.byte_case(corpus, 7, i, 20) for i in range(40)]
    b = [H.byte_case(corpus, 7, i, 20) for i in range(40)]
    assert [(c.id, c.command.name, c.steps, c.data) for c in a] == \
           [(c.id, c.command.name, c.steps, c.data) for c in b]
    assert len({c.data for c in a}) > 30


def test_every_target_and_command_is_covered():
    corpus = H.Corpus()
    targets = {n.split("/")[0] for n in corpus.names}
    assert set(H.TARGETS) <= targets
    cases = [H.byte_case(corpus, 1, i, 20) for i in range(len(H.COMMANDS) * 20)]
    assert {c.command.name for c in cases} == {c.name for c in H.COMMANDS}
    assert {c.source.split("/")[0] for c in cases} == set(H.TARGETS)
    assert {c.mode for c in cases} == {"inproc", "subproc"}


@pytest.mark.parametrize("mutator", [f for f, _ in elfmut.MUTATORS + elfmut.RECORDED_MUTATORS],
                         ids=lambda f: f.__name__)
def test_each_mutator_changes_the_input(mutator):
    data = (FIXTURES / "mips64el" / "kernel" / "basic.o").read_bytes()
    if mutator is elfmut.m_mcount_dup:
        data = H.Corpus().recorded("mips64el/kernel/basic.o")
    lay = elfmut.Layout(data)
    changed = 0
    for i in range(20):
        what, out = mutator(data, lay, random.Random(i))
        assert isinstance(what, str) and what
        changed += out != data
    assert changed >= 15


# ------------------------------------------------------------------ the oracles catch bugs
def test_oracle_flags_an_escaped_exception(tmp_path, monkeypatch):
    from recordpatch import cli

    def boom(argv=None, prog="recordpatch"):
        raise IndexError("list index out of range")
    monkeypatch.setattr(cli, "main", boom)
    p = tmp_path / "x.o"
    p.write_bytes(b"")
    rc, out, err, crash = H.run_inproc(H.COMMANDS[0], p, 5)
    assert rc is None and "IndexError" in crash


def test_oracle_flags_a_hang(tmp_path, monkeypatch):
    import time

    from recordpatch import cli
    monkeypatch.setattr(cli, "main", lambda argv=None, prog="": time.sleep(30))
    p = tmp_path / "x.o"
    p.write_bytes(b"")
    t = time.monotonic()
    rc, out, err, crash = H.run_inproc(H.COMMANDS[0], p, 0.3)
    assert crash.startswith("hang") and time.monotonic() - t < 5


def test_oracle_flags_a_corrupted_output():
    data = (FIXTURES / "mipsel" / "kernel" / "basic.o").read_bytes()
    good = H.Corpus().recorded("mipsel/kernel/basic.o")
    assert H.check_output(data, good, deep=True) == []
    # a byte of .text changed on the way: caught
    from recordpatch.elf.reader import ElfFile
    text = ElfFile(data).section_by_name(".text")
    bad = bytearray(good)
    bad[text.offset + 8] ^= 1
    probs = H.check_output(data, bytes(bad), deep=False)
    assert any("rewrote input bytes" in p or "contents of section" in p for p in probs), probs
    # the table missing (the input written back): caught
    assert any("no __mcount_loc" in p for p in H.check_output(data, data, deep=False))


def test_oracle_flags_stray_output_and_changed_input(tmp_path, monkeypatch):
    from recordpatch import cli

    def sloppy(argv=None, prog=""):
        Path(argv[-1]).write_bytes(b"clobbered")
        print("Traceback (most recent call last):", file=sys.stderr)
        return 1
    monkeypatch.setattr(cli, "main", sloppy)
    corpus = H.Corpus()
    case = H.Case("t:0", H.COMMANDS[1], "mipsel/kernel/basic.o", ["none"],
                  corpus.data["mipsel/kernel/basic.o"], "bytes", "inproc")
    r = H.run_case(case, corpus, tmp_path / "w", 5, 1 << 30, False)
    text = " / ".join(r.problems)
    assert "traceback" in text and "input changed" in text and "stray stderr" in text


def test_report_is_written_between_markers(tmp_path):
    from fuzz import __main__ as M
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\nhand-written text\n\n" + M.BEGIN + "\nold\n" + M.END + "\n\ntail\n")
    M.write_report(doc, "new figures")
    t = doc.read_text()
    assert "hand-written text" in t and "tail" in t and "new figures" in t and "old" not in t
