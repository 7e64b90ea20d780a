"""The fuzz harness: which commands run, how one case runs, and what must hold afterwards.

Adding a command (check, patch, audit, verify, ...) is one entry in :data:`COMMANDS`.
Every case is checked against the same promises (issue 6):

* exit status 0, 1 or 2 (2 never happens here: every command line we build is valid);
* no traceback, no hang (a time bound per case), bounded memory (RLIMIT_AS);
* stderr holds only ``FILE: error|warning|note: recordpatch: ...`` lines, and exactly one
  error line per failed file;
* the input is byte-identical whenever the command failed, was read-only, or had
  nothing to do; no temporary file is left behind;
* a written output is parseable by recordpatch's reader and by pyelftools (when the
  input was), is the input with sections appended (only the ELF header and the old
  section header table may change), is recognised as recorded by a second run, and
  (sampled) ``readelf -SW`` complains no more about it than about the input.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections import namedtuple
from pathlib import Path

from . import elfmut

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "testdata" / "fixtures"
QEMU_FIXTURES = ROOT / "testdata" / "qemu" / "fixtures"
SHIM = ROOT / "scripts" / "recordmcount"
TARGETS = ("mips", "mipsel", "mips64", "mips64el", "mipsr6")

OUTCOMES = ("ok", "no-sites", "already", "findings", "error")


class Command(namedtuple("Command", "name argv entry read_only json extra_check findings prefer "
                         "appends", defaults=("main", False, False, None, False, "", True))):
    """One way of running recordpatch on a FILE.

    argv: arguments before FILE (or with "{in}" and "{out}" where they go); entry: "main" (``recordpatch ...``, in process
    ``cli.main``) or "shim" (``scripts/recordmcount``, in process ``cli.recordmcount_main``);
    read_only: the command must never change the file; json: stdout is a JSON document;
    extra_check(path, before, outcome) -> list of problems, for command-specific promises;
    findings: exit 1 may report several findings (``FILE: error: recordpatch: WHERE: ...``),
    one per problem found, instead of the single line of a file it could not process;
    prefer: most of the command's inputs are mutated from fixtures whose path contains this;
    appends: a written output is the input with sections appended (else: rewritten bytes,
    e.g. --repair moves symbols; only readability is checked).
    """
    __slots__ = ()


def _backup_check(path: Path, before: bytes | None, outcome: str) -> list[str]:
    bak = Path(str(path) + ".orig")
    if outcome == "ok" and before is not None:
        if not bak.is_file() or bak.read_bytes() != before:
            return ["--backup: FILE.orig missing or not the original"]
    elif os.path.lexists(bak):
        return [f"--backup: FILE.orig written although the outcome was {outcome}"]
    return []


#: Every command that exists now. One entry per command or option set that changes behaviour.
COMMANDS = [
    Command("record", ("record",)),
    Command("record --dry-run", ("record", "--dry-run"), read_only=True),
    Command("record --json", ("record", "--json"), json=True),
    Command("record --dry-run --json", ("record", "--dry-run", "--json"), read_only=True, json=True),
    Command("record -w", ("record", "-w")),
    Command("record --backup", ("record", "--backup"), extra_check=_backup_check),
    Command("bare FILE", ()),
    Command("scripts/recordmcount", (), entry="shim"),
    Command("record --table mcount_loc", ("record", "--table", "mcount_loc"), prefer="/pfe"),
    Command("record --repair --table mcount_loc", ("record", "--repair", "--table", "mcount_loc"),
            prefer="/pfe", appends=False),
    Command("audit", ("audit",), read_only=True, findings=True),
    Command("audit --json", ("audit", "--json"), read_only=True, json=True, findings=True),
    Command("patch -o OUT --state nop", ("patch", "{in}", "-o", "{out}", "--state", "nop"),
            read_only=True, findings=True, prefer="/qemu/", appends=False),
    Command("patch -o OUT --state call", ("patch", "{in}", "-o", "{out}", "--state", "call"),
            read_only=True, findings=True, prefer="/qemu/", appends=False),
    Command("check", ("check",), read_only=True, findings=True, prefer="/check/"),
    Command("check --json", ("check", "--json"), read_only=True, json=True, findings=True,
            prefer="/check/"),
]

#: Non-regular or special paths: each runs with every command, in and out of process.
FS_KINDS = ("empty", "directory", "symlink", "symlink-dangling", "symlink-loop", "symlink-devnull",
            "fifo", "odd-name", "newline-name", "symlinked-dir", "xz-bomb", "gz-bomb",
            "xz-garbage")
#: Kinds run both in process and in a subprocess with every command (the others alternate).
FS_BOTH_MODES = ("fifo", "odd-name", "xz-bomb")


class Case(namedtuple("Case", "id command source steps data kind mode")):
    """kind: "bytes" (data is the file), or one of FS_KINDS; mode: "inproc" or "subproc"."""
    __slots__ = ()


class Result(namedtuple("Result", "case outcome seconds problems")):
    __slots__ = ()


# ------------------------------------------------------------------ corpus
def fixture_paths() -> list[Path]:
    """The committed objects (X.xz, never its uncompressed build product X), manysec aside."""
    out = []
    for t in TARGETS:
        for p in (FIXTURES / t).rglob("*"):
            if not p.is_file() or p.parent.name == "manysec":
                continue
            name = p.name[:-3] if p.name.endswith(".xz") else p.name
            if not name.endswith((".o", ".ko", ".elf")):
                continue
            if p.suffix != ".xz" and p.with_name(p.name + ".xz").exists():
                continue
            out.append(p)
    if not out:
        raise SystemExit(f"no fixtures under {FIXTURES}")
    return sorted(out)


def manysec_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*/manysec/manysec.o.xz"))


class Corpus:
    def __init__(self):
        self.paths = fixture_paths()
        self.data = {}
        for p in self.paths:
            raw = p.read_bytes()
            name = str(p.relative_to(FIXTURES))
            if name.endswith(".xz"):
                name, raw = name[:-3], lzma.decompress(raw)
            self.data[name] = raw
        # linked programs with patchable pads and -pg tables (what `patch` rewrites)
        for p in sorted(QEMU_FIXTURES.glob("*/*.xz")):
            if p.parent.name in TARGETS:
                self.data[f"{p.parent.name}/qemu/{p.stem}"] = lzma.decompress(p.read_bytes())
        self.names = sorted(self.data)
        self._recorded: dict[str, bytes | None] = {}
        self._manysec: dict[str, bytes] = {}
        self._bombs: dict[str, bytes] = {}

    def recorded(self, name: str) -> bytes | None:
        """The fixture after `record` (None when nothing is recorded), made once."""
        if name not in self._recorded:
            from recordpatch.elf.reader import ElfFile
            from recordpatch.elf.writer import append_sections
            from recordpatch.errors import RecordpatchError
            from recordpatch.passes import record
            try:
                elf = ElfFile(self.data[name])
                p = record.plan(elf)
                self._recorded[name] = (b"".join(append_sections(p.elf or elf, p.new_sections))
                                        if p.new_sections else None)
            except RecordpatchError:
                self._recorded[name] = None
        return self._recorded[name]

    def bomb(self, kind: str) -> bytes:
        if kind not in self._bombs:
            self._bombs[kind] = bomb(kind)
        return self._bombs[kind]

    def manysec(self, p: Path) -> bytes:
        k = str(p.relative_to(FIXTURES))
        if k not in self._manysec:
            self._manysec[k] = lzma.decompress(p.read_bytes())
        return self._manysec[k]


# ------------------------------------------------------------------ case generation
def fs_cases(seed: int, quick: bool = False) -> list[Case]:
    """Every special path with every command. Full: in process and in a subprocess
    (FS_BOTH_MODES) or alternating; quick: in process, plus one subprocess case per kind."""
    out = []
    for k in FS_KINDS:
        for j, c in enumerate(COMMANDS):
            if quick:
                modes = ("inproc", "subproc") if j == (FS_KINDS.index(k) % len(COMMANDS)) else ("inproc",)
            else:
                modes = (("inproc", "subproc") if k in FS_BOTH_MODES else
                         (("inproc", "subproc")[j % 2],))
            for mode in modes:
                out.append(Case(f"{seed}:fs:{k}:{c.name}:{mode}", c, "mipsel/kernel/basic.o", [k],
                                None, k, mode))
    return out


def bomb(kind: str) -> bytes:
    """1.25 GiB of zeros as concatenated xz streams (~200 KB) or gzip members (~1.3 MB)."""
    import zlib
    if kind == "xz":
        one = lzma.compress(bytes(64 << 20), preset=0)
    else:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)   # gzip member
        one = c.compress(bytes(64 << 20)) + c.flush()
    return one * 20


def byte_case(corpus: Corpus, seed: int, i: int, subprocess_every: int) -> Case:
    rng = random.Random(f"{seed}:{i}")
    cmd = COMMANDS[i % len(COMMANDS)]
    names = corpus.names
    if cmd.prefer and rng.random() < 0.6:
        names = [n for n in names if cmd.prefer in "/" + n] or names
    name = rng.choice(names)
    base = corpus.data[name]
    recorded = False
    if rng.random() < 0.15:
        rec = corpus.recorded(name)
        if rec is not None:
            base, recorded = rec, True
    steps, data = elfmut.mutate(base, rng, recorded)
    src = name + (" (recorded)" if recorded else "")
    mode = "subproc" if subprocess_every and i % subprocess_every == subprocess_every - 1 else "inproc"
    return Case(f"{seed}:{i}", cmd, src, steps, data, "bytes", mode)


def manysec_case(corpus: Corpus, seed: int, i: int) -> Case:
    rng = random.Random(f"{seed}:manysec:{i}")
    paths = manysec_paths()
    p = paths[i % len(paths)]
    data = corpus.manysec(p)
    lay = elfmut.Layout(data)
    # mutators that matter at this size: extended numbering, SHN_XINDEX, counts, relocations
    f = rng.choice((elfmut.m_extnum, elfmut.m_xindex, elfmut.m_huge_count, elfmut.m_reloc,
                    elfmut.m_shdr, elfmut.m_truncate_struct, elfmut.m_symbol))
    what, out = f(data, lay, rng)
    cmd = COMMANDS[i % len(COMMANDS)]
    return Case(f"{seed}:manysec:{i}", cmd, str(p.relative_to(FIXTURES)), [f"{f.__name__[2:]}: {what}"],
                out, "bytes", "inproc")


# ------------------------------------------------------------------ materialising a case
def materialize(case: Case, work: Path, corpus: Corpus) -> tuple[Path, Path | None, bytes | None]:
    """Create the case's input in ``work``: (path to pass, real file behind it, its bytes)."""
    good = corpus.data[case.source] if case.kind != "bytes" else None
    if case.kind == "bytes":
        p = work / "case.o"
        p.write_bytes(case.data)
        return p, p, case.data
    k = case.kind
    p = work / "case.o"
    if k == "empty":
        p.write_bytes(b"")
        return p, p, b""
    if k == "directory":
        p.mkdir()
        return p, None, None
    if k == "symlink":
        real = work / "real.o"
        real.write_bytes(good)
        p.symlink_to("real.o")
        return p, real, good
    if k == "symlink-dangling":
        p.symlink_to("missing.o")
        return p, None, None
    if k == "symlink-loop":
        p.symlink_to("case.o")
        return p, None, None
    if k == "symlink-devnull":
        p.symlink_to("/dev/null")
        return p, None, None
    if k == "fifo":
        os.mkfifo(p)
        return p, None, None
    if k == "odd-name":
        p = Path(os.fsdecode(bytes(work) + b"/b\xffd n\xe4me.o"))
        p.write_bytes(good)
        return p, p, good
    if k in ("xz-bomb", "gz-bomb"):
        p = work / ("case.ko.xz" if k == "xz-bomb" else "case.ko.gz")
        data = corpus.bomb(k[:2])
        p.write_bytes(data)
        return p, p, data
    if k == "xz-garbage":
        p = work / "case.ko.xz"
        data = bytearray(lzma.compress(good))
        data[len(data) // 2] ^= 0x55
        p.write_bytes(bytes(data))
        return p, p, bytes(data)
    if k == "newline-name":
        p = work / "a\nFILE: error: b.o"
        p.write_bytes(good)
        return p, p, good
    if k == "symlinked-dir":
        (work / "d").mkdir()
        real = work / "d" / "real.o"
        real.write_bytes(good)
        (work / "l").symlink_to("d")
        p = work / "l" / "real.o"
        return p, real, good
    raise ValueError(k)


# ------------------------------------------------------------------ running
class CaseTimeout(BaseException):
    """Raised by SIGALRM inside an in-process case that overran its time bound."""


def _alarm(signum, frame):
    raise CaseTimeout()


OUT_NAME = "out.o"


def command_line(cmd: Command, path: Path) -> list[str]:
    """``cmd.argv`` with FILE: in place of "{in}" (and "{out}": OUT_NAME beside it), else last."""
    out = str(path.parent / OUT_NAME)
    if "{in}" in cmd.argv:
        return [str(path) if a == "{in}" else out if a == "{out}" else a for a in cmd.argv]
    return [*cmd.argv, str(path)]


def run_inproc(cmd: Command, path: Path, timeout: float):
    """(rc, stdout, stderr, crash) running ``cmd`` in this process on ``path``."""
    from recordpatch import cli
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    crash = None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        if cmd.entry == "shim":
            rc = cli.recordmcount_main([str(path)])
        else:
            rc = cli.main(command_line(cmd, path))
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except CaseTimeout:
        rc, crash = None, f"hang: no result after {timeout} s"
    except BaseException:  # the harness reports every escaping exception as a bug
        rc, crash = None, "exception escaped:\n" + traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        sys.stdout, sys.stderr = saved
    texts = []
    for s in (out, err):
        try:
            s.flush()
        except (ValueError, UnicodeEncodeError):
            pass
        texts.append(s.buffer.getvalue().decode("utf-8", "surrogateescape"))
    return rc, texts[0], texts[1], crash


def _limit(mem_bytes: int):
    def pre():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    return pre


def run_subproc(cmd: Command, path: Path, timeout: float, mem_bytes: int):
    if cmd.entry == "shim":
        argv = [str(SHIM), str(path)]
    else:
        argv = [sys.executable, "-m", "recordpatch", *command_line(cmd, path)]
    # strict UTF-8 on stdout (PYTHONIOENCODING): what a UTF-8 locale other than C.UTF-8 gives
    env = dict(os.environ, PYTHONIOENCODING="utf-8", RECORDPATCH_PYTHON=sys.executable)
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout, preexec_fn=_limit(mem_bytes),
                           env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, "", "", f"hang: killed after {timeout} s"
    crash = None
    if r.returncode < 0:
        crash = f"killed by signal {-r.returncode}"
    return (r.returncode, r.stdout.decode("utf-8", "surrogateescape"),
            r.stderr.decode("utf-8", "surrogateescape"), crash)


# ------------------------------------------------------------------ oracles
_LINE = re.compile(r": (error|warning|note): recordpatch: ")


def readelf() -> str | None:
    return shutil.which("mips-linux-gnu-readelf") or shutil.which("readelf")


def readelf_complaints(path: Path) -> int:
    r = subprocess.run([readelf(), "-SW", str(path)], capture_output=True, timeout=30)
    return sum(1 for ln in r.stderr.splitlines() if ln.strip())


def pyelftools_reads(data: bytes) -> bool:
    from elftools.elf.elffile import ELFFile
    try:
        e = ELFFile(io.BytesIO(data))
        for s in e.iter_sections():
            s.name, s.header
            if s["sh_type"] in ("SHT_REL", "SHT_RELA") and s.name.endswith("__mcount_loc"):
                list(s.iter_relocations())
        return True
    except Exception:  # an oracle: any failure of the independent reader is "does not read"
        return False


def check_output(before: bytes, after: bytes, deep: bool, appends: bool = True) -> list[str]:
    """A written output: what must hold of it."""
    from recordpatch.elf.reader import ElfFile
    from recordpatch.errors import RecordpatchError
    from recordpatch.passes import record
    probs = []
    try:
        old = ElfFile(before)
        new = ElfFile(after)
    except RecordpatchError as e:
        return [f"output not readable by recordpatch: {e}"]
    if not appends:
        if deep and pyelftools_reads(before) and not pyelftools_reads(after):
            probs.append("pyelftools reads the input but not the output")
        return probs
    if not record.already_recorded(new):
        probs.append("output has no __mcount_loc")
    try:
        if not record.plan(new).already:
            probs.append("a second run would record again")
    except RecordpatchError as e:
        probs.append(f"a second run fails on the output: {e}")
    # append-only: only the ELF header and the old section header table may differ
    hdr = len(old.sections) * old.shentsize
    allowed = [(0, 52 if old.bits == 32 else 64), (old.shoff, old.shoff + hdr)]
    if after[:len(before)] != before:
        a = memoryview(after)[:len(before)]
        pos = 0
        n = len(before)
        for lo, hi in sorted(allowed):
            if a[pos:min(lo, n)] != before[pos:min(lo, n)]:
                probs.append(f"output rewrote input bytes outside the headers ({pos:#x}..{lo:#x})")
                break
            pos = max(pos, min(hi, n))
        else:
            if a[pos:] != before[pos:]:
                probs.append(f"output rewrote input bytes outside the headers (after {pos:#x})")
    # every input section keeps its bytes (the name table alone moves, to the end)
    for s in old.sections:
        if s.type in (0, 8) or s.index == old.shstrndx or not s.size:
            continue
        if after[s.offset:s.offset + s.size] != before[s.offset:s.offset + s.size]:
            probs.append(f"output changed the contents of section {s.index} ({s.name})")
            break
    if deep and pyelftools_reads(before) and not pyelftools_reads(after):
        probs.append("pyelftools reads the input but not the output")
    return probs


_STATUS = {"recorded": "ok", "dry-run": "ok", "repaired": "ok", "clean": "ok",
           "checked": "no-sites", "skipped": "no-sites"}


def classify(cmd: Command, rc, stdout: str, stderr: str, changed: bool) -> str:
    if cmd.json:
        try:
            files = json.loads(stdout)["files"]
            st = files[0].get("status", "ok" if rc == 0 else "") if files else "no-sites"
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            st = "" if rc == 1 else "?json"
        if st:
            return _STATUS.get(st, st)
    if rc == 1:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if cmd.findings and not (len(lines) == 1 and ": error: recordpatch: " in lines[0]):
            return "findings"
        return "error"
    if rc == 0 and cmd.findings:   # audit, check, patch: a clean result
        return "no-sites" if "audited 0 files" in stdout else "ok"
    if changed or "call sites would be recorded" in stdout:
        return "ok"
    if "already exists" in stderr:
        return "already"
    return "no-sites"


def snapshot(work: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, files in os.walk(work):
        for n in dirnames + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, work)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_ino,
                                             os.readlink(p) if stat.S_ISLNK(st.st_mode) else None)
    return out


def run_case(case: Case, corpus: Corpus, work: Path, timeout: float, mem_bytes: int,
             deep: bool) -> Result:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    path, real, before = materialize(case, work, corpus)
    snap = snapshot(work)
    t = time.perf_counter()
    if case.mode == "subproc":
        rc, out, err, crash = run_subproc(case.command, path, timeout, mem_bytes)
    else:
        rc, out, err, crash = run_inproc(case.command, path, timeout)
    dt = time.perf_counter() - t
    probs = []
    if crash:
        probs.append(crash)
    if rc is not None and rc not in (0, 1, 2):
        probs.append(f"exit status {rc}")
    if rc == 2:
        probs.append("usage error on a valid command line")
    if "Traceback" in err or "Traceback" in out:
        probs.append("traceback in output")
    if "out of memory" in err:
        probs.append("ran out of memory (an allocation driven by an unchecked count?)")
    if "internal error" in err:
        probs.append("internal error reported (an exception caught broadly: a bug)")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    shown = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", str(path))
    for ln in lines:
        if not ln.startswith(shown + ": ") or not _LINE.search(ln[len(shown):]):
            probs.append(f"stray stderr line: {ln[:200]!r}")
            break
    errors = [ln for ln in lines if ": error: recordpatch: " in ln]
    if rc == 1 and len(errors) != 1 and not (case.command.findings and lines):
        probs.append(f"{len(errors)} error lines for one failed file")
    if rc == 0 and errors:
        probs.append("error line with exit status 0")
    after = real.read_bytes() if real is not None and real.is_file() else None
    changed = after is not None and after != before
    outcome = "crash" if rc is None else classify(case.command, rc, out, err, changed)
    if case.command.json and rc in (0, 1):
        try:
            json.loads(out)
        except ValueError:
            probs.append("--json: stdout is not JSON")
    if changed and (case.command.read_only or outcome != "ok"):
        probs.append(f"input changed although the outcome was {outcome}"
                     f"{' (read-only command)' if case.command.read_only else ''}")
    if outcome == "ok" and not case.command.read_only and not changed and rc == 0:
        probs.append("reported recorded but the file is unchanged")
    # the directory: nothing new except FILE.orig from --backup; symlinks stay symlinks
    now = snapshot(work)
    writes_out = "{out}" in case.command.argv
    for k in now.keys() - snap.keys():
        if writes_out and os.path.basename(k) == OUT_NAME:
            outcome = "ok" if rc == 0 else outcome
            if rc != 0:
                probs.append(f"{OUT_NAME} written although the command failed")
            elif before is not None:
                probs += [f"-o output: {p}" for p in
                          check_output(before, (work / k).read_bytes(), deep, appends=False)]
        elif not (case.command.extra_check and k.endswith(".orig")):
            probs.append(f"new file left behind: {k}")
    for k in snap.keys() - now.keys():
        probs.append(f"file disappeared: {k}")
    for k in snap.keys() & now.keys():
        if snap[k][0] != now[k][0] or snap[k][3] != now[k][3]:
            probs.append(f"{k} changed kind or link target")
    if changed and not probs:
        probs += check_output(before, after, deep, case.command.appends)
        if deep and readelf() and not case.source.endswith("xz"):
            orig = work / "orig.o"
            orig.write_bytes(before)
            if readelf_complaints(real) > readelf_complaints(orig):
                probs.append("readelf -SW complains more about the output than the input")
    if case.command.extra_check and rc is not None:
        probs += case.command.extra_check(real or path, before, outcome)
    return Result(case, outcome, dt, probs)


def set_memory_limit(mem_bytes: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        mem_bytes = min(mem_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, hard))
