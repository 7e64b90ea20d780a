"""The one face of every command: a results.Report shown as text, JSON or a table, and its
exit status. Passes never print; results are printed here and only here (cli.py prints a
usage error's one line, face.py --version and typer its help).

* stderr: one line per finding, readelf/objtool spelling
  (`file.o: warning: recordpatch: func+0x12: message`);
* stdout, JSON: one envelope for every command,
  ``{"schema": "recordpatch/<command>/1", "files": [...], "summary": {...}}``;
* stdout, text: each command's lines; `audit` on a terminal a rich table that fits the
  terminal by wrapping (never cutting) paths, unless --plain, NO_COLOR or not a TTY.

Standard library only at import: the Kbuild path renders through here.
"""

from __future__ import annotations

import os
import sys

from .diag import ERROR, NOTE, WARNING, one_line
from .errors import EXIT_FAIL, EXIT_OK

SCHEMA = "recordpatch/{}/1"
_ORDER = {ERROR: 0, WARNING: 1, NOTE: 2}


def exit_code(rep) -> int:
    """0: done, nothing found; 1: findings or failures. (2, usage, is errors.UsageError.)"""
    return EXIT_FAIL if rep.failed else EXIT_OK


def plural(n: int, word: str, many: str = "") -> str:
    """"1 site", "2 sites" (``many``: an irregular plural)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def file_json(f) -> dict:
    return {"path": f.path, "status": f.status, **(f.data or {}),
            "findings": [x.as_dict() for x in f.findings]}


def envelope(rep) -> dict:
    return {"schema": SCHEMA.format(rep.command), "files": [file_json(f) for f in rep.files],
            "summary": rep.summary}


def findings(rep, stream=None, min_level: str = WARNING) -> None:
    """Every file's findings at ``min_level`` or above, one line each, on stderr."""
    stream = stream or sys.stderr
    top = _ORDER[min_level]
    for f in rep.files:
        for x in f.findings:
            if _ORDER[x.level] <= top:
                print(x.render(f.path), file=stream)


def fancy(plain: bool = False, stream=None) -> bool:
    """A rich table, not plain lines: asked for, allowed by NO_COLOR, and on a terminal."""
    stream = stream or sys.stdout
    return not plain and not os.environ.get("NO_COLOR") and stream.isatty()


def show(rep, json: bool = False, plain: bool = False, min_level: str = WARNING) -> int:
    """Print ``rep`` (findings on stderr, the rest on stdout); the exit status."""
    findings(rep, min_level=min_level)
    if json:
        import json as _json
        _json.dump(envelope(rep), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        text = TEXT.get(rep.command)
        if text is not None:
            text(rep, fancy(plain))
    if rep.command == "verify":   # about the design's registers, not about a file
        for w in rep.summary["warnings"]:
            print(f"recordpatch: warning: {w}", file=sys.stderr)
    return exit_code(rep)


def progress_bar(stream=None):
    """A callback (done, total, path) drawing `[####....] 12/300` in place on ``stream``."""
    stream = stream or sys.stderr
    bar = 30

    def show_(done, total, path):
        fill = bar * done // max(total, 1)
        stream.write(f"\r[{'#' * fill}{'.' * (bar - fill)}] {done}/{total}")
        if done == total:
            stream.write("\r" + " " * (bar + 24) + "\r")
        stream.flush()
    return show_


def _out(line: str) -> None:
    """A stdout line: names from files cannot add lines (tabs are the dry run's columns)."""
    print(one_line(line).replace("\\x09", "\t"))


# ---------------------------------------------------------------- record
def _record(rep, _fancy: bool) -> None:
    view = rep.view or {}
    for f in rep.files:
        if f.failed:
            continue
        d = f.data
        if view.get("dry_run"):
            head = {"already": "already recorded, nothing to do", "no-sites": "no call sites",
                    "checked": "patchable entries checked, nothing to write"}.get(
                f.status, f"{plural(d['sites'], 'call site')} would be recorded")
            _out(f"{f.path}: {d['abi']} {d['endian']}-endian, {d['reloc']}: {head}")
            for e in d.get("entries", ()):
                fn = e["function"] or "?"
                if e["func_offset"]:
                    fn += f"+{e['func_offset']:#x}"
                _out(f"  {e['section']}+{e['offset']:#x}\t{e['kind']:<9}\t{fn}\t"
                     f"-> {e['symbol'] or '(section)'}{e['addend']:+#x}")
        elif f.status == "repaired" or d.get("repaired"):
            _out(f"{f.path}: repaired {plural(d['repaired'], 'function')} (PR99217: entry "
                 "moved to the pad start)" + (f"; recorded {plural(d['sites'], 'call site')}"
                                              if f.status == "recorded" else ""))


# ---------------------------------------------------------------- audit
def _audit_line(f) -> str:
    if f.status == "error":
        return f"{f.path}: error"
    d = f.data
    if f.status == "skipped":
        return f"{f.path}: skipped ({d.get('reason', '')})"
    tabs = ", ".join(f"{k} {v}" for k, v in sorted(d["tables"].items())) or "no table"
    secs = ", ".join(f"{k} {v}" for k, v in sorted(d["sections"].items()))
    states = ", ".join(f"{k} {v}" for k, v in sorted(d["states"].items()))
    nf = len(f.findings)
    parts = [f"{f.path}: {d['elf_type']} {d['abi']} {d['endian']}-endian", tabs]
    if secs:
        parts.append(f"sections: {_cap(secs)}")
    if states:
        parts.append(f"states: {states}")
    if d["defects"]:
        parts.append("defects: " + ", ".join(x["id"] for x in d["defects"]))
    if d["compiler"]:
        parts.append(f"compiler: {d['compiler']}")
    parts.append(plural(nf, "finding") if nf else "clean")
    return "; ".join(parts)


#: At most this many "name count" pairs in one line of the plain audit output (an object
#: with 32,800 sections would otherwise print one 600 KB line).
CAP = 8


def _cap(text: str) -> str:
    parts = text.split(", ")
    if len(parts) <= CAP:
        return text
    return ", ".join(parts[:CAP]) + f", ... ({len(parts) - CAP} more)"


def audit_summary_line(s: dict) -> str:
    return (f"audited {plural(s['files'], 'file')}: {s['clean']} clean, "
            f"{s['findings']} with findings ({s['finding_count']}), "
            f"{plural(s['errors'], 'error')}, {s['skipped']} skipped; "
            f"{plural(s['entries'], 'entry', 'entries')}")


def _audit(rep, fancy_: bool) -> None:
    if fancy_ and _audit_table(rep):
        return
    for f in rep.files:
        _out(_audit_line(f))
    _out(audit_summary_line(rep.summary))


def _audit_table(rep) -> bool:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    con = Console(highlight=False)
    tab = Table(title="recordpatch audit", expand=False)
    tab.add_column("file", overflow="fold", ratio=3)
    tab.add_column("type", overflow="fold")
    tab.add_column("entries", justify="right")
    tab.add_column("states", overflow="fold", ratio=2)
    tab.add_column("defects", overflow="fold")
    tab.add_column("findings", overflow="fold")
    compilers = []
    for f in rep.files:
        d = f.data or {}
        if f.status in ("error", "skipped"):
            why = d.get("error", d.get("reason", ""))
            tab.add_row(f.path, f.status, "", "", "", why)
            continue
        if d["compiler"] and d["compiler"] not in compilers:
            compilers.append(d["compiler"])
        tab.add_row(f.path, f"{d['elf_type']} {d['abi']}", str(d["entries"]),
                    ", ".join(f"{k} {v}" for k, v in sorted(d["states"].items())),
                    ", ".join(x["id"] for x in d["defects"]),
                    str(len(f.findings)) if f.findings else "clean")
    con.print(tab)
    for c in compilers:
        con.print(f"compiler: {c}", soft_wrap=False)
    con.print(audit_summary_line(rep.summary))
    return True


# ---------------------------------------------------------------- check
def _check(rep, _fancy: bool) -> None:
    for f in rep.files:
        for r in f.data.get("symbols", ()):
            if r.get("ok"):
                where = (f"{r['address']:#x}" if "address" in r
                         else f"{r['section']}+{r['offset']:#x} (section aligned to "
                         f"{r['section_align']})")
                _out(f"{f.path}: {r['symbol']}: {where}: {r['required']}-byte aligned, ok")


# ---------------------------------------------------------------- probe-cc
def _probe(rep, _fancy: bool) -> None:
    for f in rep.files:
        d = f.data
        if "usable" not in d:
            continue
        what = " ".join(d["flags"] + d["added_flags"])
        verdict = "usable" if d["usable"] else "NOT usable"
        _out(f"{f.path} {what}: {verdict} for MIPS patchable function entries"
             + (f" ({d['compiler']})" if d["compiler"] else ""))


# ---------------------------------------------------------------- patch
def _patch(rep, _fancy: bool) -> None:
    s = rep.summary
    if "output" not in s:
        return
    flag = (f", flag register ${s['flag_reg']} ({s['flag_reg_name']} on {s['abi']})"
            if s.get("flag_reg") is not None else "")
    _out(f"{s['output']}: {s['target']}: {plural(s['sites'], 'site')} to {s['state']} "
         f"({s['rewritten']} rewritten){flag}"
         + (f", trampoline {s['trampoline']}" if s.get("trampoline") else "")
         + (f", B' {s['redirect']}" if s.get("redirect") else ""))
    if (rep.view or {}).get("verbose"):
        for f in rep.files:
            for c in f.data.get("changes", ()):
                _out(f"  {c['function'] or '?'} {c['address']:#x} {c['kind']}: {c['from']} -> "
                     f"{c['to']}: " + "; ".join(c["asm"]))


# ---------------------------------------------------------------- verify
def _verify(rep, _fancy: bool) -> None:
    d = rep.summary
    lines = [f"{d['target']}: flag register ${d['flag_reg']} ({d['flag_reg_name']}), trampoline "
             f"{d['addresses']['trampoline']:#x}, pad at {d['addresses']['pad']:#x}",
             f"model {d['model']}: {d['model_description']}"]
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    for fam in d["families"]:
        lines.append("")
        lines.append(f"== {fam['name']}: {fam['description']}")
        for s in fam["states"]:
            lines.append(f"  {s['name']:<12} " + " | ".join(f"{w:#010x} {x}" for w, x in
                                                          zip(s["words"], s["asm"])))
            for b in s["behaviour"]:
                lines.append(f"  {'':<12}   runs: {b}")
            for h in s["delay_slot_hazards"]:
                lines.append(f"  {'':<12}   hazard (interrupt in a delay slot): {h}")
        lines.append(f"  {'from':<12} {'to':<12} {'plan':<7} writes in order")
        for p in fam["plans"]:
            if p["safe"]:
                steps = (", ".join(f"+{s['offset']} <- {s['new']['word']:#010x} {s['new']['asm']}"
                                   for s in p["steps"])
                         or "(same words)")
                lines.append(f"  {p['from']:<12} {p['to']:<12} {'safe':<7} {steps}")
            else:
                lines.append(f"  {p['from']:<12} {p['to']:<12} {'UNSAFE':<7} {p['reason']}")
    sys.stdout.write("\n".join(lines) + "\n")


TEXT = {"record": _record, "audit": _audit, "check": _check, "probe-cc": _probe,
        "patch": _patch, "verify": _verify}
