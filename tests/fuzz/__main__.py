"""`make fuzz` / `PYTHONPATH=tests python -m fuzz`: mutate the fixtures, run every command, check.

    --cases N      mutated inputs (default 10000); special paths (FIFO, symlinks, ...) and
                   many-section cases come on top
    --seconds S    stop starting new cases after S seconds (default 900)
    --seed S       every case is a pure function of (seed, case number)
    --replay ID    re-run one case (ID as printed, e.g. 1:4711) and keep its input in --keep
    --report PATH  write the figures into PATH between the fuzz markers

Exit status 0 when every case kept every promise, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from . import harness as H

BEGIN, END = "<!-- fuzz:begin -->", "<!-- fuzz:end -->"


def parse(argv):
    p = argparse.ArgumentParser(prog="fuzz")
    env = os.environ.get
    p.add_argument("--cases", type=int, default=int(env("FUZZ_CASES") or 10000))
    p.add_argument("--seconds", type=float, default=float(env("FUZZ_SECONDS") or 900))
    p.add_argument("--seed", type=int, default=int(env("FUZZ_SEED") or 1))
    p.add_argument("--subprocess-every", type=int, default=20,
                   help="run every Nth mutated case in a subprocess (the rest in process)")
    p.add_argument("--deep-every", type=int, default=10,
                   help="pyelftools/readelf checks on every Nth written in-process output "
                   "(always for subprocess cases)")
    p.add_argument("--manysec", type=int, default=0, help="cases on the 65k-section objects")
    p.add_argument("--no-fs", action="store_true", help="skip the special-path cases")
    p.add_argument("--quick-fs", action="store_true",
                   help="special paths in process, with one subprocess case per kind")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--mem-mb", type=int, default=1024)
    p.add_argument("--only", metavar="NAME", help="run only the commands whose name contains NAME")
    p.add_argument("--replay")
    p.add_argument("--keep", type=Path)
    p.add_argument("--report", type=Path)
    p.add_argument("-q", "--quiet", action="store_true")
    return p.parse_args(argv)


def replay(ns, corpus) -> int:
    seed, _, rest = ns.replay.partition(":")
    if rest.startswith("manysec:"):
        case = H.manysec_case(corpus, int(seed), int(rest.split(":")[1]))
    elif rest.startswith("fs:"):
        case = next(c for c in H.fs_cases(int(seed)) + H.fs_cases(int(seed), True)
                    if c.id == ns.replay)
    else:
        case = H.byte_case(corpus, int(seed), int(rest), ns.subprocess_every)
    print(f"case {case.id}: {case.command.name} on {case.source} [{case.mode}]")
    for s in case.steps:
        print(f"  {s}")
    if ns.keep and case.data is not None:
        ns.keep.mkdir(parents=True, exist_ok=True)
        (ns.keep / "input.o").write_bytes(case.data)
        print(f"input kept in {ns.keep / 'input.o'}")
    with tempfile.TemporaryDirectory(prefix="rpfuzz.") as d:
        r = H.run_case(case, corpus, Path(d) / "w", ns.timeout, ns.mem_mb << 20, True)
    print(f"outcome {r.outcome} in {r.seconds:.3f} s")
    for p in r.problems:
        print(f"  PROBLEM: {p}")
    return 1 if r.problems else 0


def main(argv=None) -> int:
    ns = parse(sys.argv[1:] if argv is None else argv)
    H.set_memory_limit(ns.mem_mb << 20)
    if ns.only:
        H.COMMANDS[:] = [c for c in H.COMMANDS if ns.only in c.name]
    corpus = H.Corpus()
    if ns.replay:
        return replay(ns, corpus)
    outcomes: dict[str, Counter] = defaultdict(Counter)
    modes = Counter()
    kinds = Counter()
    failures = []
    slowest = None
    t0 = time.monotonic()
    done = 0
    timed_out = False

    def cases():
        if not ns.no_fs:
            yield from H.fs_cases(ns.seed, ns.quick_fs)
        for i in range(ns.manysec):
            yield H.manysec_case(corpus, ns.seed, i)
        for i in range(ns.cases):
            yield H.byte_case(corpus, ns.seed, i, ns.subprocess_every)

    written = 0
    with tempfile.TemporaryDirectory(prefix="rpfuzz.") as d:
        work = Path(d) / "w"
        for case in cases():
            if time.monotonic() - t0 > ns.seconds:
                timed_out = True
                break
            deep = case.mode == "subproc" or written % max(1, ns.deep_every) == 0
            r = H.run_case(case, corpus, work, ns.timeout, ns.mem_mb << 20, deep)
            if r.outcome == "ok" and not case.command.read_only:
                written += 1
            done += 1
            outcomes[case.command.name][r.outcome] += 1
            modes[case.mode] += 1
            kinds["special path" if case.kind != "bytes" else
                  "many-section" if "manysec" in case.id else "mutated"] += 1
            if slowest is None or r.seconds > slowest.seconds:
                slowest = r
            if r.problems:
                failures.append(r)
                print(f"FAIL {case.id} {case.command.name} on {case.source} [{case.mode}]: "
                      f"{'; '.join(case.steps)}", flush=True)
                for p in r.problems:
                    print(f"    {p}", flush=True)
            elif not ns.quiet and done % 1000 == 0:
                print(f"{done} cases, {time.monotonic() - t0:.0f} s", flush=True)
    elapsed = time.monotonic() - t0
    text = render(ns, done, kinds, modes, outcomes, slowest, failures, elapsed, timed_out)
    print(text)
    if ns.report:
        write_report(ns.report, text)
    return 1 if failures else 0


def render(ns, done, kinds, modes, outcomes, slowest, failures, elapsed, timed_out) -> str:
    out = [f"Seed {ns.seed}: {done} cases in {elapsed:.0f} s "
           f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}; "
           f"{modes['inproc']} in process, {modes['subproc']} in a subprocess with "
           f"a {ns.timeout:g} s / {ns.mem_mb} MiB bound)"
           + (f"; stopped by the {ns.seconds:g} s time bound" if timed_out else "") + ".", "",
           "| command | cases | " + " | ".join(H.OUTCOMES) + " | other |",
           "|---|---:|" + "---:|" * (len(H.OUTCOMES) + 1)]
    tot = Counter()
    for c in H.COMMANDS:
        o = outcomes.get(c.name, Counter())
        tot.update(o)
        other = sum(v for k, v in o.items() if k not in H.OUTCOMES)
        out.append(f"| `{c.name}` | {sum(o.values())} | " +
                   " | ".join(str(o[k]) for k in H.OUTCOMES) + f" | {other} |")
    other = sum(v for k, v in tot.items() if k not in H.OUTCOMES)
    out.append(f"| all | {sum(tot.values())} | " + " | ".join(str(tot[k]) for k in H.OUTCOMES)
               + f" | {other} |")
    out.append("")
    if slowest:
        c = slowest.case
        out.append(f"Slowest case: {c.id} (`{c.command.name}` on {c.source}, {c.mode}: "
                   f"{'; '.join(c.steps)}) in {slowest.seconds:.2f} s.")
    out.append("")
    if failures:
        out.append(f"**{len(failures)} failing cases:**")
        for r in failures[:50]:
            out.append(f"- {r.case.id} `{r.case.command.name}` on {r.case.source}: "
                       f"{'; '.join(r.case.steps)}: {' / '.join(p.splitlines()[0] for p in r.problems)}")
    else:
        out.append("Failures: none (no traceback, no hang, no memory blow-up, no changed input).")
    return "\n".join(out)


def write_report(path: Path, text: str) -> None:
    block = f"{BEGIN}\n{text}\n{END}"
    if path.exists():
        doc = path.read_text()
        if BEGIN in doc and END in doc:
            head, _, rest = doc.partition(BEGIN)
            _, _, tail = rest.partition(END)
            path.write_text(head + block + tail)
            return
        path.write_text(doc.rstrip("\n") + "\n\n" + block + "\n")
        return
    path.write_text("# Reliability\n\n## Latest `make fuzz`\n\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
