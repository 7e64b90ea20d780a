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

COMMANDS = ("record", "check", "probe-cc", "verify", "audit", "patch")


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
                           dry_run=False, json=False, files=files, quirks=_quirks_from_env(),
                           nops=None, table=None, repair=False, backup=None)


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
    _add_check_and_probe_commands(sub)
    _add_verify_command(sub)
    _add_patch_command(sub)
    _add_audit_command(sub)
    return p


# ---- audit of built kernels (logic in passes/audit.py) ----
def _add_audit_command(sub) -> None:
    a = sub.add_parser("audit", help="check the ftrace tables of built objects, modules and "
                       "kernels (read-only)",
                       description="Resolve every __mcount_loc and __patchable_function_entries "
                       "entry of each PATH (files, or directories searched recursively for .o, "
                       ".ko, .ko.xz, .ko.zst, .ko.gz, vmlinux) and decode the instructions there. "
                       "Never writes. Exit 0 clean, 1 findings or errors, 2 usage.")
    a.add_argument("-j", dest="jobs", type=int, default=1, metavar="N",
                   help="audit with N worker processes")
    a.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    a.add_argument("--system-map", metavar="FILE",
                   help="symbols (System.map, `nm -n` output) for linked images without a "
                   "symbol table: finds __start_mcount_loc/__stop_mcount_loc and _mcount")
    a.add_argument("paths", nargs="+", metavar="PATH")


# ---- verify --transitions (logic in passes/transitions.py) ----
def _add_verify_command(sub) -> None:
    """`verify --transitions`: write plans between call-site states, derived from the encodings."""
    v = sub.add_parser("verify", help="prove which single-word write orders switch ftrace "
                       "call-site states safely",
                       description="For the patchable-entry pad states (nop, init, call-regs, call, "
                       "redirect) and the -pg call sites, encode every state with the MIPS backend, "
                       "run the words in an abstract interpreter and, for every pair of states, "
                       "print the ordered single-word writes and whether a CPU preempted anywhere "
                       "in the old sequence runs only the old or the new behaviour.")
    v.add_argument("--transitions", action="store_true", required=True,
                   help="analyse state transitions (the only verify mode so far)")
    v.add_argument("--abi", choices=("o32", "n64"), default="o32")
    v.add_argument("--endian", choices=("big", "little"), default="big")
    v.add_argument("--r6", action="store_true", help="MIPS Release 6 encodings")
    v.add_argument("--flag-reg", metavar="REG",
                   help="register `li` sets (default: the ABI's t0: $8 on o32, $12 on n64)")
    v.add_argument("--model", choices=("preempt", "live"), default="preempt",
                   help="preempt: CPUs switch images at preemption points (default); live: also "
                   "between a branch and its delay slot")
    v.add_argument("--json", action="store_true", help="print the analysis as JSON on stdout")


# ---- patch (logic in passes/patch.py) ----
def _add_patch_command(sub) -> None:
    """`patch IN -o OUT --state STATE`: rewrite ftrace call sites into a state."""
    p = sub.add_parser("patch", help="rewrite the ftrace call sites of a MIPS image into a state",
                       description="Write every call site of IN (pads from __patchable_function_entries, "
                       "-pg calls from __mcount_loc) in STATE to OUT. Pads: nop, init (lui at,%%hi(tramp); "
                       "nop; li FLAG,0), call-regs (...; jalr at,at; li FLAG,0), call (...; li FLAG,1), "
                       "redirect (4-word pads: lui/addiu at to --target; jr at; nop). -pg sites: nop, call. "
                       "Every site must hold an expected sequence, or nothing is written. IN is never "
                       "modified.")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", dest="output", required=True, metavar="OUT")
    p.add_argument("--state", required=True,
                   choices=("nop", "init", "call-regs", "call", "redirect"))
    p.add_argument("--trampoline", metavar="SYM|ADDR",
                   help="what the pad calls (default ftrace_regs_caller; must be 64 KiB aligned)")
    p.add_argument("--target", metavar="SYM|ADDR", help="B' for --state redirect")
    p.add_argument("--flag-reg", metavar="REG",
                   help="register `li` sets (default: the ABI's t0: $8 on o32, $12 on n64)")
    p.add_argument("--only", nargs="+", metavar="FUNC", help="patch only these functions' sites")
    p.add_argument("--except", dest="exclude", nargs="+", metavar="FUNC",
                   help="leave these functions' sites as they are")
    p.add_argument("-v", "--verbose", action="store_true", help="list each site's new words")


def _add_check_and_probe_commands(sub) -> None:
    """`check` (trampoline alignment) and `probe-cc` (compiler probe for patchable entries)."""
    import argparse
    c = sub.add_parser("check", help="check the ftrace trampoline's alignment",
                       description="Check that each trampoline symbol is aligned as the MIPS "
                       "DYNAMIC_FTRACE_WITH_REGS design needs (lui at,%%hi(SYM) alone reaches "
                       "it): its address in a linked vmlinux, its section alignment and offset "
                       "in a relocatable.")
    c.add_argument("--trampoline", action="append", metavar="SYM",
                   help="symbol to check (repeatable; default ftrace_regs_caller)")
    c.add_argument("--align", type=_size, default=65536, metavar="BYTES",
                   help="required alignment (default 65536)")
    c.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    c.add_argument("files", nargs="+", metavar="FILE")
    pc = sub.add_parser("probe-cc", help="probe a compiler's -fpatchable-function-entry",
                        description="Compile and assemble a real function (and a "
                        "-ffunction-sections pair) with CC and FLAGS, inspect the objects and "
                        "report the known MIPS defects (PR93242, PR99217, SHF_LINK_ORDER, "
                        "microMIPS pads). Exit 0 only when the option is usable.")
    pc.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    pc.add_argument("cc", metavar="CC")
    pc.add_argument("flags", nargs=argparse.REMAINDER, metavar="FLAGS")


def _size(text: str) -> int:
    import argparse
    t = text.strip().lower()
    mult = 1
    for suf, m in (("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)):
        if t.endswith(suf):
            t, mult = t[:-len(suf)], m
            break
    try:
        v = int(t, 0) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if v <= 0 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a power of two")
    return v


def _suffix(text: str) -> str:
    import argparse
    if not text or "/" in text or "\0" in text:
        raise argparse.ArgumentTypeError(f"not a file name suffix: {text!r}")
    return text


def _nops(text: str):
    import argparse
    try:
        parts = [int(x, 0) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] < 1 or (len(parts) == 2 and not 0 <= parts[1] <= parts[0]):
        raise argparse.ArgumentTypeError(f"expected N or N,M with 0 <= M <= N, got {text!r}")
    return (parts[0], parts[1] if len(parts) == 2 else 0)


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
    r.add_argument("--nops", type=_nops, metavar="N[,M]",
                   help="-fpatchable-function-entry objects: the pad has N nops, M of them "
                   "before the function symbol (default: N detected, M = 0)")
    r.add_argument("--table", choices=("mcount_loc",),
                   help="also write __mcount_loc from the validated __patchable_function_entries")
    r.add_argument("--backup", dest="backup", action="store_const", const=".orig",
                   help="keep each rewritten FILE's original as FILE.orig")
    r.add_argument("--backup-suffix", dest="backup", metavar="SUFFIX", type=_suffix,
                   help="--backup with FILE + SUFFIX as the original's name")
    r.add_argument("--repair", action="store_true",
                   help="make PR99217 pads (all nops before the label) the functions' entries")
    r.add_argument("files", nargs="+", metavar="FILE")


def _record_task(args):
    from .passes.pipeline import record_one
    path, dry, warn, describe, quirks, nops, table, repair, backup = args
    return record_one(path, dry_run=dry, warn_ignored=warn, describe=describe, quirks=quirks,
                      nops=nops, table=table, repair=repair, backup=backup)


def run_record(ns) -> int:
    if ns.jobs < 1:
        print("recordpatch: error: -j needs a positive number", file=sys.stderr)
        return EXIT_USAGE
    describe = ns.dry_run or ns.json
    tasks = [(f, ns.dry_run, ns.warn, describe, ns.quirks, ns.nops, ns.table, ns.repair, ns.backup)
             for f in ns.files]
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
    head = {"already": "already recorded, nothing to do", "no-sites": "no call sites",
            "checked": "patchable entries checked, nothing to write"}.get(
        i["status"], f"{i['sites']} call sites would be recorded")
    print(f"{res.path}: {i['abi']} {i['endian']}-endian, {i['reloc']}: {head}")
    for e in i.get("entries", ()):
        print(f"  {e['section']}+{e['offset']:#x}\t{e['kind']:<9}\t{e['function'] or '?'}\t"
              f"-> {e['symbol'] or '(section)'}{e['addend']:+#x}")


def _raw_names() -> None:
    """File names are bytes: print undecodable ones back as the bytes they were
    (surrogateescape) rather than fail in a strict UTF-8 locale."""
    for s in (sys.stdout, sys.stderr):
        if hasattr(s, "reconfigure"):
            s.reconfigure(errors="surrogateescape")


def main(argv=None, prog: str = "recordpatch") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _raw_names()
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
        if ns.command == "check":
            from .passes.check import run_check
            return run_check(ns)
        if ns.command == "probe-cc":
            from .passes.probe import run_probe
            return run_probe(ns)
        if ns.command == "audit":
            from .passes.audit import run_audit
            return run_audit(ns)
        if ns.command == "patch":
            from .passes.patch import run_patch
            return run_patch(ns)
        if ns.command == "verify":
            from .passes.transitions import run_verify
            return run_verify(ns)
        return run_record(ns)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


def recordmcount_main(argv=None) -> int:
    """`scripts/recordmcount [-w] file.o...`: Kbuild's calling convention, our rules."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _raw_names()
    ns = _quick_record_args(argv)
    if ns is None:
        p = _parser_class()(prog="recordmcount",
                            description="drop-in for Linux scripts/recordmcount (MIPS)")
        add_record_args(p)
        ns = p.parse_args(argv)
    return run_record(ns)
