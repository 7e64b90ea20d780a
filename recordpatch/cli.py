"""Command line. Thin: parse, dispatch to passes, format.

Kbuild may start us once per object, so start-up is budgeted: the argument forms
Kbuild uses (`[-w] FILE...`) are parsed without importing argparse, and heavy
modules load only in the commands that need them."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

from . import __version__
from .diag import NOTE, WARNING, emit
from .errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE

COMMANDS = ("record",)


def _parser_class():
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):  # usage errors: one line, exit 2
            self.print_usage(sys.stderr)
            print(f"{self.prog}: error: {message}", file=sys.stderr)
            sys.exit(EXIT_USAGE)

    return _Parser


def _quick_record_args(argv: list[str]):
    """`[-w] FILE...` (Kbuild's forms) parsed by hand; None for anything else."""
    files = [a for a in argv if a != "-w"]
    if not files or any(a.startswith("-") for a in files):
        return None
    return SimpleNamespace(command="record", warn=len(files) != len(argv), jobs=1,
                           dry_run=False, json=False, files=files, quirks=_quirks_from_env())


def _quirks_from_env() -> bool:
    """RECORDPATCH_REFERENCE_QUIRKS=1: --reference-quirks where no flag can be passed
    (Kbuild calls scripts/recordmcount with its own arguments)."""
    return os.environ.get("RECORDPATCH_REFERENCE_QUIRKS", "") not in ("", "0")


def build_parser(prog: str = "recordpatch"):
    _Parser = _parser_class()
    p = _Parser(prog=prog, description="Record and check ftrace call-site tables in MIPS ELF objects.")
    p.add_argument("--version", action="version", version=f"recordpatch {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("record", help="append __mcount_loc to -pg objects (a drop-in recordmcount)",
                       description="Find the -pg call sites of each relocatable FILE (.o, vmlinux.o, "
                       ".ko) and append __mcount_loc and its relocation section in place.")
    add_record_args(r)
    return p


def add_record_args(r) -> None:
    r.add_argument("-w", dest="warn", action="store_true",
                   help="warn about mcount callers in sections ftrace ignores, and about "
                   "references to _mcount that are not calls")
    r.add_argument("-j", dest="jobs", type=int, default=1, metavar="N",
                   help="process files with N worker processes")
    r.add_argument("-n", "--dry-run", action="store_true", help="print what would be recorded; "
                   "write nothing")
    r.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    r.add_argument("--reference-quirks", dest="quirks", action="store_true",
                   default=_quirks_from_env(),
                   help="leave out the calls Linux 6.1's recordmcount leaves out (its +4 filter "
                   "carries over between sections), for a table identical to its own; also "
                   "RECORDPATCH_REFERENCE_QUIRKS=1")
    r.add_argument("files", nargs="+", metavar="FILE")


def _record_task(args):
    from .passes.pipeline import record_one
    path, dry, warn, describe, quirks = args
    return record_one(path, dry_run=dry, warn_ignored=warn, describe=describe, quirks=quirks)


def run_record(ns) -> int:
    if ns.jobs < 1:
        print("recordpatch: error: -j needs a positive number", file=sys.stderr)
        return EXIT_USAGE
    describe = ns.dry_run or ns.json
    tasks = [(f, ns.dry_run, ns.warn, describe, ns.quirks) for f in ns.files]
    if ns.jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=min(ns.jobs, len(tasks))) as ex:
            results = ex.map(_record_task, tasks, chunksize=max(1, len(tasks) // (8 * ns.jobs)))
            results = list(results)
    else:
        results = map(_record_task, tasks)
    failed = 0
    out = []
    for res in results:
        emit(res.path, res.diagnostics, min_level=NOTE if ns.warn else WARNING)
        failed += res.failed
        if ns.json:
            d = dict(res.info)
            d["diagnostics"] = [x.as_dict() for x in res.diagnostics]
            out.append(d)
        elif ns.dry_run and not res.failed:
            print_dry_run(res)
    if ns.json:
        import json
        json.dump({"files": out}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_FAIL if failed else EXIT_OK


def print_dry_run(res) -> None:
    i = res.info
    head = {"already": "already recorded, nothing to do", "no-sites": "no call sites"}.get(
        i["status"], f"{i['sites']} call sites would be recorded")
    print(f"{res.path}: {i['abi']} {i['endian']}-endian, {i['reloc']}: {head}")
    for e in i.get("entries", ()):
        print(f"  {e['section']}+{e['offset']:#x}\t{e['kind']:<9}\t{e['function'] or '?'}\t"
              f"-> {e['symbol'] or '(section)'}{e['addend']:+#x}")


def main(argv=None, prog: str = "recordpatch") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The bare form `recordpatch FILE...` (the Kbuild hook) means `record`.
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "record")
    ns = None
    if argv and argv[0] == "record":
        ns = _quick_record_args(argv[1:])
    if ns is None:
        ns = build_parser(prog).parse_args(argv)
    if ns.command is None:
        build_parser(prog).print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return run_record(ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


def recordmcount_main(argv=None) -> int:
    """`scripts/recordmcount [-w] file.o...`: Kbuild's calling convention, our rules."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = _quick_record_args(argv)
    if ns is None:
        p = _parser_class()(prog="recordmcount",
                            description="drop-in for Linux scripts/recordmcount (MIPS)")
        add_record_args(p)
        ns = p.parse_args(argv)
    return run_record(ns)
