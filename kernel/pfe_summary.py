#!/usr/bin/env python3
"""kernel-e2e (patchable-entry kernels): one readable summary of a kernel/pfe-e2e.sh run.

    pfe_summary.py OUT E2E_ARCH

Reads what the steps left in OUT (build.time, repair-times.log, count.txt, audit-*.txt,
init/patch.log, misalign/result.txt, for each booted variant boot.txt and selftest.txt, and
trace/result.txt) and prints the build, the recordpatch costs, the entry counts, the audits, the
controls, the self-test verdicts of every boot side by side and the tracefs trace. Missing pieces are said, not guessed.
"""
import os
import re
import sys


def read(path, default=None):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def kv(text):
    return dict(re.findall(r"(\w+)=(\S+)", text or ""))


def repair_cost(path):
    rows = [l.split(None, 3) for l in (read(path, "") or "").splitlines() if l.strip()]
    rows = [r for r in rows if len(r) == 4 and r[3].startswith("record")]
    if not rows:
        return "no repair timings"
    wall = sum(float(r[0]) for r in rows)
    cpu = sum(float(r[1]) + float(r[2]) for r in rows)
    return (f"{len(rows)} objects repaired, one process each: {cpu:.1f} s CPU in all "
            f"({1000 * cpu / len(rows):.0f} ms per object), {wall:.1f} s wall summed")


def boot_lines(d):
    sel = read(os.path.join(d, "selftest.txt"))
    if sel is None:
        return None
    lines = sel.splitlines()
    passed = sum(1 for l in lines if l.endswith(": PASSED"))
    failed = [l for l in lines if l.endswith(("FAILED", "FAILED!", "NO VERDICT"))]
    return lines, passed, failed


def main(out, arch):
    p = print
    p(f"# kernel-e2e {arch}: Linux 6.1 malta, -fpatchable-function-entry=3, repaired by recordpatch")
    t = (read(os.path.join(out, "build.time"), "") or "").split()
    if len(t) >= 3:
        p(f"build (make -j2, last run): {float(t[0]):.0f} s wall, "
          f"{float(t[1]) + float(t[2]):.0f} s CPU")
    p("repair hook: " + repair_cost(os.path.join(out, "repair-times.log")))
    c = kv(read(os.path.join(out, "count.txt")))
    if c:
        p(f"pads the compiler listed for vmlinux's objects (readelf -r vmlinux.o): "
          f"{c.get('pads_in_objects')}; entries between __start/__stop_mcount_loc "
          f"(System.map): {c.get('table_entries')}")
    for name in ("audit-vmlinux.txt", "audit-modules.txt"):
        a = read(os.path.join(out, name))
        if a is not None:
            body = [l for l in a.splitlines() if l.strip() and not l.startswith("rc=")]
            p(f"{name[:-4]}: exit {kv(a).get('rc', '?')}; {body[-1] if body else ''}")
    pl = read(os.path.join(out, "init", "patch.log"))
    if pl is not None:
        p("patch --state init: " + (pl.strip().splitlines() or [""])[-1])
    m = read(os.path.join(out, "misalign", "result.txt"))
    if m is not None:
        msg = next((l for l in m.splitlines() if "recordpatch" in l), "no recordpatch message")
        p(f"misaligned control build: exit {kv(m).get('rc')}: {msg.strip()}")
    p("")
    variants = [("pfe", "repaired"), ("init", "repaired, pre-patched (--state init)"),
                ("norepair", "control: not repaired (GCC's pads before the labels)")]
    booted = {}
    for v, what in variants:
        d = os.path.join(out, v)
        b = boot_lines(d)
        if b is None:
            continue
        booted[v] = b
        bt = kv(read(os.path.join(d, "boot.txt")))
        lines, passed, failed = b
        p(f"## {v}: {what}")
        p(f"boot: {bt.get('secs', '?')} s, {passed} self-tests PASSED, {len(failed)} failed")
        for l in lines:
            p("  " + l)
        p("")
    t = read(os.path.join(out, "trace", "result.txt"))
    if t is not None:
        bt = kv(read(os.path.join(out, "trace", "boot.txt")))
        p("## trace: vmlinux + initramfs, ftrace driven through tracefs (kernel/pfe/trace-init.c)")
        p(f"boot: {bt.get('secs', '?')} s")
        for l in t.splitlines():
            p("  " + l)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
