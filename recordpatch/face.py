"""The typed command line (typer): one function per command, help panels, shell completion.

Imported only for the commands and options the Kbuild fast path in cli.py does not parse
by hand (`recordpatch [-w] FILE...`): typer, the pydantic adapters it builds and its rich
help cost 0.1-0.4 s (docs/benchmarks.md), ten times recording one object. Each command
calls its pass and hands the Report to render.show; usage errors exit 2 (typer's own, and
errors.UsageError from a pass), findings 1, success 0.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated, List, Literal, Optional

import typer

from . import __version__, render
from .diag import NOTE, WARNING

OUT = "Output"
SEL = "Selection"
REC = "Recording"
PFE = "Patchable entries"

app = typer.Typer(name="recordpatch", no_args_is_help=True, add_completion=True,
                  rich_markup_mode="markdown", pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Record, check, patch and audit ftrace call-site tables in MIPS ELF "
                  "objects, modules and kernels. `recordpatch FILE...` is "
                  "`recordpatch record FILE...` (the Kbuild hook).")


def _version(value: bool):
    if value:
        print(f"recordpatch {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = None):
    """Record, check, patch and audit ftrace call-site tables (MIPS)."""


def _done(rep, json: bool = False, plain: bool = False, min_level: str = WARNING):
    raise typer.Exit(render.show(rep, json=json, plain=plain, min_level=min_level))


def _jobs(n: int) -> int:
    if n < 1:
        raise typer.BadParameter("needs a positive number")
    return n


def _nops(text: Optional[str]):
    if text is None:
        return None
    try:
        parts = [int(x, 0) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] < 1 or (len(parts) == 2 and not 0 <= parts[1] <= parts[0]):
        raise typer.BadParameter(f"expected N or N,M with 0 <= M <= N, got {text!r}")
    return (parts[0], parts[1] if len(parts) == 2 else 0)


def _suffix(text: Optional[str]):
    if text is not None and (not text or "/" in text or "\0" in text):
        raise typer.BadParameter(f"not a file name suffix: {text!r}")
    return text


def _size(text) -> int:
    if isinstance(text, int):
        return text
    t = text.strip().lower()
    mult = 1
    for suf, m in (("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)):
        if t.endswith(suf):
            t, mult = t[:-len(suf)], m
            break
    try:
        v = int(t, 0) * mult
    except ValueError:
        raise typer.BadParameter(f"not a size: {text!r}") from None
    if v <= 0 or v & (v - 1):
        raise typer.BadParameter(f"{text!r} is not a power of two")
    return v


Json = Annotated[bool, typer.Option("--json", help="print the result as JSON on stdout "
                                    "(schema recordpatch/COMMAND/1)", rich_help_panel=OUT)]
Jobs = Annotated[int, typer.Option("-j", metavar="N", callback=_jobs,
                                   help="work with N processes")]


@app.command()
def record(
    files: Annotated[List[str], typer.Argument(metavar="FILE", help=".o, vmlinux.o or .ko")],
    warn: Annotated[bool, typer.Option("-w", help="also list mcount callers in sections ftrace "
                                       "ignores and references to _mcount that are not calls",
                                       rich_help_panel=OUT)] = False,
    jobs: Jobs = 1,
    dry_run: Annotated[bool, typer.Option("-n", "--dry-run", help="print what would be "
                                          "recorded; write nothing", rich_help_panel=OUT)] = False,
    json: Json = False,
    quirks: Annotated[bool, typer.Option(
        "--reference-quirks", help="leave out the calls recordmcount (Linux 6.1, 6.12) leaves "
        "out (its +4 filter carries over between sections), for its exact table; also "
        "RECORDPATCH_REFERENCE_QUIRKS=1", rich_help_panel=REC)] = False,
    backup: Annotated[bool, typer.Option("--backup", help="keep each rewritten FILE's "
                                         "original as FILE.orig", rich_help_panel=REC)] = False,
    backup_suffix: Annotated[Optional[str], typer.Option(
        "--backup-suffix", metavar="SUFFIX", callback=_suffix,
        help="--backup with FILE + SUFFIX as the original's name", rich_help_panel=REC)] = None,
    nops: Annotated[Optional[str], typer.Option(
        "--nops", metavar="N[,M]", help="the pad has N nops, M of them before the function "
        "symbol (default: N detected, M = 0)", rich_help_panel=PFE)] = None,
    table: Annotated[Optional[Literal["mcount_loc"]], typer.Option(
        "--table", help="also write __mcount_loc from the validated "
        "__patchable_function_entries", rich_help_panel=PFE)] = None,
    repair: Annotated[bool, typer.Option("--repair", help="make PR99217 pads (all nops "
                                         "before the label) the functions' entries",
                                         rich_help_panel=PFE)] = False,
):
    """Append __mcount_loc to -pg objects (a drop-in recordmcount); check pad objects."""
    from .passes.pipeline import quirks_from_env, record_files
    rep = record_files(files, jobs, dry_run=dry_run, warn_ignored=warn,
                       describe=dry_run or json, quirks=quirks or quirks_from_env(),
                       nops=_nops(nops), table=table, repair=repair,
                       backup=backup_suffix or (".orig" if backup else None))
    _done(rep, json, min_level=NOTE if warn else WARNING)


@app.command()
def audit(
    paths: Annotated[List[str], typer.Argument(
        metavar="PATH", help="files, or directories searched for .o, .ko, .ko.xz, "
        ".ko.zst, .ko.gz and vmlinux*")],
    jobs: Jobs = 1,
    json: Json = False,
    plain: Annotated[bool, typer.Option("--plain", help="plain lines, never a table "
                                        "(also NO_COLOR, or not a terminal)",
                                        rich_help_panel=OUT)] = False,
    system_map: Annotated[Optional[str], typer.Option(
        "--system-map", metavar="FILE", help="symbols (System.map, `nm -n`) for a stripped "
        "image: __start_mcount_loc/__stop_mcount_loc and _mcount")] = None,
):
    """Check the ftrace tables of objects, modules and kernels (read-only).

    Every table entry resolved and the instructions there decoded; exit 0 clean, 1
    findings or errors, 2 usage."""
    from .passes.audit import audit as run
    bar = None
    if not json and sys.stderr.isatty() and any(os.path.isdir(p) for p in paths):
        bar = render.progress_bar(sys.stderr)
    _done(run(paths, jobs, bar, system_map), json, plain)


@app.command()
def check(
    files: Annotated[List[str], typer.Argument(metavar="FILE")],
    trampoline: Annotated[Optional[List[str]], typer.Option(
        "--trampoline", metavar="SYM", help="symbol to check (repeatable; default "
        "ftrace_regs_caller)")] = None,
    align: Annotated[str, typer.Option("--align", metavar="BYTES", callback=_size,
                                       help="required alignment (a power of two: "
                                       "65536, 64k)")] = "65536",
    json: Json = False,
):
    """Check the ftrace trampoline's alignment (`lui at,%hi(SYM)` alone reaches it)."""
    from .passes.check import check_files
    _done(check_files(files, trampoline, align), json)


@app.command("probe-cc")
def probe_cc(
    cc: Annotated[str, typer.Argument(metavar="CC", help="the compiler, e.g. "
                                      "mipsel-linux-gnu-gcc")],
    flags: Annotated[Optional[List[str]], typer.Argument(
        metavar="FLAGS", help="compiler flags (-fpatchable-function-entry=3 if none "
        "gives it)")] = None,
    json: Json = False,
):
    """Probe a compiler's -fpatchable-function-entry (exit 0: usable).

    Compiles real functions and looks for PR93242, PR99217, SHF_LINK_ORDER and microMIPS
    pad defects."""
    if cc.startswith("-"):
        raise typer.BadParameter(f"no such option {cc!r} (CC comes first, then its flags)",
                                 param_hint="CC")
    from .passes.probe import probe_cc as run
    _done(run(cc, list(flags or ())), json)


@app.command()
def verify(
    transitions: Annotated[bool, typer.Option("--transitions", help="analyse state "
                                              "transitions (the only mode so far)")] = False,
    abi: Annotated[Literal["o32", "n64"], typer.Option("--abi")] = "o32",
    endian: Annotated[Literal["big", "little"], typer.Option("--endian")] = "big",
    r6: Annotated[bool, typer.Option("--r6", help="MIPS Release 6 encodings")] = False,
    flag_reg: Annotated[Optional[str], typer.Option(
        "--flag-reg", metavar="REG", help="register `li` sets (default: the ABI's t0: $8 on "
        "o32, $12 on n64)")] = None,
    model: Annotated[Literal["preempt", "live"], typer.Option(
        "--model", help="preempt: CPUs switch images at preemption points; live: also "
        "between a branch and its delay slot")] = "preempt",
    json: Json = False,
):
    """Prove which single-word write orders switch ftrace call-site states safely."""
    if not transitions:
        raise typer.BadParameter("give --transitions (the only verify mode so far)",
                                 param_hint="--transitions")
    from .passes.transitions import verify as run
    _done(run(abi, endian, r6, flag_reg, model), json)


@app.command()
def patch(
    input: Annotated[str, typer.Argument(metavar="IN", help="never modified")],
    output: Annotated[str, typer.Option("-o", metavar="OUT", help="the patched copy")],
    state: Annotated[Literal["nop", "init", "call-regs", "call", "redirect"], typer.Option(
        "--state", help="pads: nop, init (lui at,%hi(tramp); nop; li FLAG,0), call-regs "
        "(...; jalr at,at; li FLAG,0), call (...; li FLAG,1), redirect (4-word pads: "
        "lui/addiu at to --target; jr at; nop); -pg sites: nop, call")],
    trampoline: Annotated[Optional[str], typer.Option(
        "--trampoline", metavar="SYM|ADDR", help="what the pad calls (default "
        "ftrace_regs_caller; 64 KiB aligned)")] = None,
    target: Annotated[Optional[str], typer.Option("--target", metavar="SYM|ADDR",
                                                  help="B' for --state redirect")] = None,
    flag_reg: Annotated[Optional[str], typer.Option(
        "--flag-reg", metavar="REG", help="register `li` sets in pads (default: the ABI's "
        "t0)")] = None,
    only: Annotated[Optional[List[str]], typer.Option(
        "--only", metavar="FUNC", help="patch only this function's sites (repeatable)",
        rich_help_panel=SEL)] = None,
    exclude: Annotated[Optional[List[str]], typer.Option(
        "--except", metavar="FUNC", help="leave this function's sites as they are "
        "(repeatable)", rich_help_panel=SEL)] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="list each site's new "
                                          "words", rich_help_panel=OUT)] = False,
    json: Json = False,
):
    """Rewrite the ftrace call sites of a MIPS image into a state (IN is never modified).

    Every site must hold an expected sequence, or nothing is written."""
    from .passes.patch import Options, patch_file
    rep = patch_file(input, output, Options(state, trampoline, target, flag_reg,
                                            tuple(only or ()), tuple(exclude or ())))
    _done(rep._replace(view={"verbose": verbose}), json)


def _compiler_flags_verbatim(argv: list[str]) -> list[str]:
    """`probe-cc [OPTIONS] CC FLAGS...`: FLAGS are the compiler's, never ours (click would
    read `-march=...` as a cluster of short options holding -h): `--` goes before CC."""
    for i, a in enumerate(argv[1:], 1):
        if a == "--":
            break
        if not a.startswith("-"):
            return argv[:i] + ["--"] + argv[i:]
    return argv


def run(argv: list[str], prog: str = "recordpatch", command=None) -> int:
    """Run the app on ``argv``: the exit status (typer's usage errors: 2)."""
    if argv[:1] == ["probe-cc"]:
        argv = _compiler_flags_verbatim(argv)
    cli = _app_command() if command is None else command
    try:
        cli.main(args=argv, prog_name=prog, standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


@functools.lru_cache(maxsize=None)
def _app_command():
    """The click command typer builds from ``app`` (once per process: it builds a pydantic
    adapter per parameter, ~20 ms a time in a process that runs many command lines)."""
    return typer.main.get_command(app)


@functools.lru_cache(maxsize=None)
def record_command():
    """The `record` command alone (scripts/recordmcount's slow path)."""
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]})
    one.command()(record)
    return typer.main.get_command(one)
