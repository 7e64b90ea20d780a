#!/usr/bin/env python3
"""Benchmark recordpatch side by side with Debian's recordmcount, in one run.

  B1  one small object, fresh process each time: median of N runs
  B2  a batch of objects: one recordpatch process vs one reference process per object
  B3  a large `ld -r` object (a kernel vmlinux.o with its table stripped, if given)
  B4  (P4) `recordpatch audit` of a directory: every fixture object plus the kernel corpus
      (KBUILD_WORK/corpus-mipsel, if present), recorded copies; files/s
  B5  the typed face's start-up: `recordpatch audit --help` (typer), median of N runs

Every run works on a fresh copy (recording is in place), written outside the timed
region just before the run; B1 and B3 interleave the two tools run by run. Prints a
Markdown table with ratios; `--out FILE` also writes it.
"""

from __future__ import annotations

import argparse
import lzma
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "testdata" / "fixtures"
REF = Path(os.environ.get("RECORDMCOUNT_REF", "/usr/lib/linux-kbuild-6.1/scripts/recordmcount"))


def ours_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "recordpatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "recordpatch"]


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"bench: {cmd[0]} failed: {r.stderr.decode()[:300]}")
    return dt


def load(src: Path) -> bytes:
    return lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()


#: What any Python implementation pays before ELF work: start the interpreter, import the
#: recording path, read the file, write it back beside itself and rename it over it.
FLOOR = """import os, sys
sys.path.insert(0, sys.argv[1])
import recordpatch.cli, recordpatch.passes.pipeline, recordpatch.passes.record
import recordpatch.elf.writer
p = sys.argv[2]
with open(p, "rb") as f:
    data = f.read()
fd = os.open(p + ".floor", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)
os.close(fd)
os.replace(p + ".floor", p)
"""


def single(src: Path, runs: int, tmp: Path, ours: list[str] | None = None, floor: bool = False):
    """Median wall time of each tool on ``src``, runs interleaved (reference, ours,
    reference, ...), each on a new file written just before it, as Kbuild's objects are
    (the linker or assembler creates them anew): both tools meet the same page-cache
    state and the same machine load. ``floor``: also time :data:`FLOOR` the same way."""
    data = load(src)
    cmd = ours or ours_cmd() + ["record"]
    dst = tmp / f"run-{src.name.removesuffix('.xz')}"
    tools = [([str(REF)], []), (cmd, [])]
    if floor:
        tools.append(([sys.executable, "-S", "-c", FLOOR, str(ROOT)], []))
    for _ in range(runs):
        for tool, times in tools:
            dst.unlink(missing_ok=True)
            dst.write_bytes(data)
            times.append(timed(tool + [str(dst)]))
    return tuple(statistics.median(t) for _, t in tools[1:]) + (statistics.median(tools[0][1]),)


def batch(objs: list[Path], tmp: Path):
    (tmp / "bref").mkdir()
    (tmp / "bours").mkdir()
    ref_files, our_files = [], []
    for i, p in enumerate(objs):
        for d, lst in ((tmp / "bref", ref_files), (tmp / "bours", our_files)):
            q = d / f"{i}-{p.name}"
            shutil.copyfile(p, q)
            lst.append(q)
    t = time.perf_counter()
    for q in ref_files:
        subprocess.run([str(REF), str(q)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_ref = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(ours_cmd() + ["record", *map(str, our_files)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    t_ours = time.perf_counter() - t
    return t_ours, t_ref


def audit_rate(tmp: Path, corpus: Path | None, jobs: int = 1):
    """(files, seconds) of one `recordpatch audit` process over a tree of recorded copies:
    every fixture object (.o, .ko; -pg and patchable) and the kernel corpus if present."""
    d = tmp / "audit"
    pool = sorted(p for p in FIX.rglob("*") if p.suffix in (".o", ".ko") and p.is_file()
                  and p.parent.name != "manysec")
    for i, p in enumerate(pool):
        q = d / "fixtures" / f"{i}-{p.name}"
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, q)
    if corpus is not None and corpus.is_dir():
        shutil.copytree(corpus, d / "corpus", symlinks=True)
    files = sorted(str(p) for p in d.rglob("*") if p.is_file())
    # recorded copies (weakstrip.o is refused: it stays unrecorded, a finding for audit)
    subprocess.run(ours_cmd() + ["record", "-j", "2", *files], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    t = time.perf_counter()
    r = subprocess.run(ours_cmd() + ["audit", "-j", str(jobs), str(d)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode not in (0, 1):
        sys.exit(f"bench: audit failed: {r.stderr.decode()[:300]}")
    return len(files), dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--large-runs", type=int, default=9, help="runs per tool for B3")
    ap.add_argument("--small", type=Path, default=FIX / "mipsel" / "kernel" / "basic.o")
    ap.add_argument("--corpus", type=Path, help="directory of real objects for B2 (default: "
                    "every fixture object, repeated to --batch files)")
    ap.add_argument("--batch", type=int, default=400,
                    help="number of objects in B2 (0: the whole --corpus)")
    ap.add_argument("--large", type=Path, action="append", help="large ld -r object(s) for B3 "
                    "(default: the committed many-section objects)")
    ap.add_argument("--audit-corpus", type=Path,
                    default=Path(os.environ.get("KBUILD_WORK", "/work/kbuild")) / "corpus-mipsel",
                    help="kernel objects added to the B4 audit tree (skipped if missing)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if not REF.exists():
        sys.exit(f"bench: reference tool {REF} missing (apt-get install linux-kbuild-6.1)")
    # Measure what an installed package runs: byte-compiled modules (pip compiles on install;
    # with PYTHONDONTWRITEBYTECODE set nothing else would, and every start would recompile).
    import compileall
    compileall.compile_dir(str(ROOT / "recordpatch"), quiet=1)
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as td:
        tmp = Path(td)
        o, r = single(a.small, a.runs, tmp)
        small = f"{a.small.relative_to(ROOT) if a.small.is_relative_to(ROOT) else a.small}"
        rows.append(("B1 one object, fresh process, `recordpatch record` (median of %d)" % a.runs,
                     small, o, r, "<= 60 ms"))
        # What Kbuild runs once per object: the sh shim, venv interpreter without site.
        o, r = single(a.small, a.runs, tmp, [str(ROOT / "scripts" / "recordmcount")])
        rows.append(("B1 the same through `scripts/recordmcount` (Kbuild's per-object path)",
                     small, o, r, "<= 60 ms"))
        if a.corpus:
            objs = sorted(p for p in a.corpus.rglob("*.o") if p.is_file())
            objs = objs[:a.batch] if a.batch else objs
            label = f"{len(objs)} objects from {a.corpus}"
        else:
            pool = sorted(p for p in FIX.rglob("*.o") if p.is_file() and p.parent.name != "manysec")
            objs = [pool[i % len(pool)] for i in range(a.batch)]
            label = f"{len(objs)} fixture objects"
        o, r = batch(objs, tmp)
        rows.append(("B2 batch: one process vs one reference process per object", label, o, r,
                     "ours <= reference"))
        # mips64/manysec is left out by default: the reference records nothing there (its
        # 32-bit read of an ELF64 big-endian section count), so a ratio would mean nothing;
        # so is clang-manysec: its weak-only sections make the reference fail (issue 15).
        larges = a.large or [p for p in sorted(FIX.rglob("manysec*.o.xz"))
                             if p.parent.parent.name != "mips64" and p.parent.name == "manysec"]
        for big in larges:
            kernel = "vmlinux" in big.name
            o, *floor, r = single(big, a.large_runs, tmp, floor=kernel)
            label = f"{big.parent.parent.name}/{big.name}" if big.is_relative_to(FIX) else str(big)
            rows.append((f"B3 large object{' (P1: kernel vmlinux.o)' if kernel else ''} "
                         f"(median of {a.large_runs})", label, o, r, "<= 3x reference"))
            if floor:
                rows.append(("B3 floor: Python start + recordpatch imports + read + write + "
                             "rename, no ELF work", label, floor[0], r, "(context)"))
        n, dt = audit_rate(tmp, a.audit_corpus)
        extra = (f" + {a.audit_corpus}" if a.audit_corpus and a.audit_corpus.is_dir() else "")
        b4 = (f"| B4 (P4) `recordpatch audit` of a tree, one process | {n} recorded copies: "
              f"fixture objects{extra} | {dt * 1000:.1f} ms ({n / dt:.0f} files/s) | — | — | "
              "files/s |")
        helps = []
        for _ in range(a.runs):
            helps.append(timed(ours_cmd() + ["audit", "--help"]))
        b5 = (f"| B5 `recordpatch audit --help`: typer's face, fresh process (median of "
              f"{a.runs}) | — | {statistics.median(helps) * 1000:.1f} ms | — | — | (reported) |")
    load = " / ".join(f"{x:.2f}" for x in load_before + os.getloadavg())
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}; reference: {REF}",
             f"Load average (1, 5, 15 min) before / after: {load}", "",
             "| benchmark | input | recordpatch | recordmcount | ratio | target |",
             "|---|---|---:|---:|---:|---|"]
    for name, inp, o, r, target in rows:
        lines.append(f"| {name} | {inp} | {o * 1000:.1f} ms | {r * 1000:.1f} ms | "
                     f"{o / r:.2f}x | {target} |")
    lines.append(b4)
    lines.append(b5)
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
