"""Command line entry points. Kbuild starts us once per object, so start-up is budgeted:
the forms Kbuild uses (`recordpatch [-w] FILE...`, `scripts/recordmcount [-w] FILE...`)
are parsed by hand here and import only the standard library; every other command line
goes to the typed face (face.py, typer), imported only then."""

from __future__ import annotations

import os
import sys

from .diag import NOTE, WARNING, one_line
from .errors import EXIT_FAIL, EXIT_USAGE, UsageError

COMMANDS = ("record", "check", "probe-cc", "verify", "audit", "patch")
#: what the typer app itself answers (not file names)
APP_OPTIONS = ("-h", "--help", "--version", "--install-completion", "--show-completion")


def _quick_record(argv: list[str]):
    """`[-w] FILE...` (Kbuild's forms) parsed by hand: (warn, files), or None for anything
    else (the typed face parses that)."""
    files = [a for a in argv if a != "-w"]
    if not files or any(a.startswith("-") for a in files):
        return None
    return len(files) != len(argv), files


def _record_fast(warn: bool, files: list[str]) -> int:
    from . import render
    from .passes.pipeline import quirks_from_env, record_files
    rep = record_files(files, 1, warn_ignored=warn, quirks=quirks_from_env())
    return render.show(rep, min_level=NOTE if warn else WARNING)


def _raw_names() -> None:
    """File names are bytes: print undecodable ones back as the bytes they were
    (surrogateescape) rather than fail in a strict UTF-8 locale."""
    for s in (sys.stdout, sys.stderr):
        if hasattr(s, "reconfigure"):
            s.reconfigure(errors="surrogateescape")


def _guarded(prog: str, call) -> int:
    """``call()``'s exit status; a pass's UsageError is one line and exit 2."""
    try:
        return call()
    except UsageError as exc:
        print(one_line(f"{prog}: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


def main(argv=None, prog: str = "recordpatch") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _raw_names()
    # The bare form `recordpatch FILE...` (the Kbuild hook) means `record`.
    if argv and argv[0] not in COMMANDS and argv[0] not in APP_OPTIONS:
        argv.insert(0, "record")
    quick = _quick_record(argv[1:]) if argv and argv[0] == "record" else None
    if quick is not None:
        return _guarded(prog, lambda: _record_fast(*quick))
    from . import face
    return _guarded(prog, lambda: face.run(argv, prog))


def recordmcount_main(argv=None) -> int:
    """`scripts/recordmcount [-w] file.o...`: Kbuild's calling convention, our rules."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _raw_names()
    quick = _quick_record(argv)
    if quick is not None:
        return _guarded("recordmcount", lambda: _record_fast(*quick))
    try:
        from . import face
    except ImportError:   # the shim runs python -S: no site-packages, so no typer
        print("usage: recordmcount [-w] FILE...\nrecordmcount: error: only Kbuild's form "
              "here; `recordpatch record --help` has the other options", file=sys.stderr)
        return EXIT_USAGE
    return _guarded("recordmcount", lambda: face.run(argv, "recordmcount",
                                                     face.record_command()))
