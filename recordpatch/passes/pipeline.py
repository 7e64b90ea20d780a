"""Reading inputs (regular files only; xz, zstd and gzip decompressed for the commands that
only read) and `record` over files: read, plan, write (or not). Returns results.Report and
never raises for a problem with a file itself: that becomes the file's error finding."""

from __future__ import annotations

import os
import stat

from ..diag import ERROR, Finding
from ..errors import RecordpatchError, UsageError
from ..results import FileReport, Report


def read_input(path: str, hold: list | None = None) -> tuple[bytes, os.stat_result]:
    """The whole file, refusing anything but a regular file.

    The type is checked before opening (a device or FIFO is never opened) and again on
    the descriptor, which is opened non-blocking: a FIFO swapped in between cannot hang us.
    ``hold`` (a list), for a command that will replace the file: the bytes are read under
    an exclusive flock whose descriptor is appended to ``hold``; keep it open until the
    file is replaced. A second recordpatch on the same file then waits, and reads the file
    the first one wrote (normally: "already exists").
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise RecordpatchError(f"cannot open: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise RecordpatchError(f"{kind}; refusing to read it")
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise RecordpatchError(f"cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RecordpatchError("not a regular file; refusing to read it")
            if hold is not None:
                _lock(fd)
                try:
                    now = os.stat(path)
                except OSError as exc:
                    raise RecordpatchError(f"cannot open: {exc.strerror}") from None
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                    continue  # replaced while we waited for the lock: read the new file
                st = os.fstat(fd)
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
            if hold is not None:
                hold.append(fd)
                fd = -1
            return data, st
        except OSError as exc:
            raise RecordpatchError(f"cannot read: {exc.strerror}") from None
        finally:
            if fd >= 0:
                os.close(fd)
    raise RecordpatchError("the file keeps being replaced by another process")


#: A decompressed image may be at most max(MIN_LIMIT, RATIO x the compressed size): a module
#: with full debug info compresses ~5:1, a decompression bomb (kilobytes of xz or gzip
#: that expand to gigabytes) far more; it is refused before the memory is spent.
DECOMPRESS_MIN_LIMIT = 256 << 20
DECOMPRESS_RATIO = 64


def _too_big(kind: str, limit: int) -> RecordpatchError:
    return RecordpatchError(f"cannot decompress ({kind}): expands to more than {limit >> 20} MiB "
                            f"({DECOMPRESS_RATIO}x the file); refusing (a decompression bomb?)")


def _inflate(kind: str, new, data: bytes, limit: int) -> bytes:
    """Every concatenated stream/member of ``data`` through decompressor objects ``new()``
    (lzma / zlib API: decompress(data, max_length), eof, unused_data), at most ``limit`` bytes."""
    out, total, rest = [], 0, data
    while rest:
        d = new()
        piece = d.decompress(rest, limit + 1 - total)
        total += len(piece)
        if total > limit:
            raise _too_big(kind, limit)
        if not d.eof:
            raise RecordpatchError(f"cannot decompress ({kind}): compressed data ended before "
                                   "the end-of-stream marker was reached")
        out.append(piece)
        rest = d.unused_data
    return b"".join(out)


#: compressed-file magic numbers (xz, zstd, gzip) and their names
MAGIC = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))


def compression_of(data: bytes) -> str:
    """"xz", "zstd" or "gzip" when ``data`` starts with that format's magic, else ""."""
    return next((name for magic, name in MAGIC if data.startswith(magic)), "")


def read_image(path: str) -> bytes:
    """The file's bytes, decompressed if it is xz, zstd or gzip: for the commands that only
    read (audit, check, patch's IN)."""
    data, _ = read_input(path)
    return decompress(path, data)


def decompress(path: str, data: bytes) -> bytes:
    """Decompress .xz/.zst/.gz images (by magic); other data is returned as is."""
    limit = max(DECOMPRESS_MIN_LIMIT, DECOMPRESS_RATIO * len(data))
    kind = compression_of(data)
    if kind == "xz":
        import lzma
        try:
            return _inflate("xz", lzma.LZMADecompressor, data, limit)
        except lzma.LZMAError as exc:
            raise RecordpatchError(f"cannot decompress (xz): {exc}") from None
    if kind == "zstd":
        try:
            import zstandard  # optional
        except ImportError:
            zstandard = None
        if zstandard is not None:
            try:
                with zstandard.ZstdDecompressor().stream_reader(data) as r:
                    out = r.read(limit + 1)
            except zstandard.ZstdError as exc:
                raise RecordpatchError(f"cannot decompress (zstd): {exc}") from None
            if len(out) > limit:
                raise _too_big("zstd", limit)
            return out
        import shutil
        import subprocess
        exe = shutil.which("zstd")
        if exe is None:
            raise RecordpatchError("zstd-compressed: install the Python module `zstandard` or "
                                   "the `zstd` program to read it")
        with subprocess.Popen([exe, "-dc", "-q", "--", path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
            out = proc.stdout.read(limit + 1)
            if len(out) > limit:
                proc.kill()
                raise _too_big("zstd", limit)
            err = proc.stderr.read()
        if proc.returncode:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            raise RecordpatchError(f"cannot decompress (zstd): {msg[-1] if msg else 'failed'}")
        return out
    if kind == "gzip":
        import zlib
        try:
            return _inflate("gzip", lambda: zlib.decompressobj(31), data, limit)
        except zlib.error as exc:
            raise RecordpatchError(f"cannot decompress (gzip): {exc}") from None
    return data


#: How long `record` waits for another process's lock on the same file.
LOCK_WAIT = 60.0


def _lock(fd: int) -> None:
    import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    except OSError:  # no flock on this filesystem: write_atomic's expect check still applies
        return
    import time
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        time.sleep(0.005)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RecordpatchError(f"another process has held a lock on the file for "
                                       f"{LOCK_WAIT:g} s; not replaced") from None


def commit(path: str, chunks: list[bytes], st: os.stat_result, original: bytes,
           backup: str | None = None) -> None:
    """Replace the file ``path`` names by ``chunks``, atomically. Through a symlink the
    file it points to is replaced and the link stays. ``backup``: a suffix; the original
    bytes are first kept (atomically too) as that file's name + suffix."""
    from ..elf.writer import check_writable, write_atomic
    real = os.path.realpath(path)
    check_writable(real)
    if backup:
        write_atomic(real + backup, [original], st.st_mode)
    write_atomic(real, chunks, st.st_mode, expect=st)


def error_result(path: str, exc: Exception) -> FileReport:
    return FileReport(path, "error", [Finding(ERROR, "error", str(exc))], {"error": str(exc)})


def quirks_from_env() -> bool:
    """RECORDPATCH_REFERENCE_QUIRKS=1: --reference-quirks where no flag can be passed
    (Kbuild calls scripts/recordmcount with its own arguments)."""
    return os.environ.get("RECORDPATCH_REFERENCE_QUIRKS", "") not in ("", "0")


def _record_task(args) -> FileReport:
    path, kw = args
    return record_one(path, **kw)


def record_files(files: list[str], jobs: int = 1, **kw) -> Report:
    """`record` on every file (``jobs`` worker processes); ``kw`` as :func:`record_one`."""
    if jobs < 1:
        raise UsageError("-j needs a positive number")
    tasks = [(f, kw) for f in files]
    if jobs > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as ex:
            results = list(ex.map(_record_task, tasks,
                                  chunksize=max(1, len(tasks) // (8 * jobs))))
    else:
        results = [_record_task(t) for t in tasks]
    statuses = [r.status for r in results]
    summary = {"files": len(results), "recorded": statuses.count("recorded"),
               "repaired": sum((r.data or {}).get("repaired", 0) for r in results),
               "errors": statuses.count("error"),
               "sites": sum((r.data or {}).get("sites", 0) for r in results
                            if r.status in ("recorded", "dry-run"))}
    return Report("record", results, summary, {"dry_run": kw.get("dry_run", False)})


def record_one(path: str, dry_run: bool = False, warn_ignored: bool = False, quirks: bool = False,
               describe: bool = False, nops=None, table=None, repair: bool = False,
               backup: str | None = None) -> FileReport:
    """`record` on one file. ``describe`` adds per-site detail to ``info``.

    Objects with `__patchable_function_entries` (-fpatchable-function-entry) are validated
    (diagnostics only); ``repair`` fixes PR99217 pads, ``table == "mcount_loc"`` adds their
    entries to `__mcount_loc`. ``nops``: (N, M) or None to detect N with M = 0.
    ``backup``: keep the original as FILE + this suffix when FILE is rewritten."""
    from ..elf.reader import ElfFile
    from ..elf.writer import append_sections
    from . import record
    from .tables import PFE

    held: list[int] = []
    try:
        data, st = read_input(path, None if dry_run else held)
        kind = compression_of(data)
        if kind:
            raise RecordpatchError(f"{kind}-compressed: record rewrites objects in place and "
                                   "never writes compressed files; decompress it first (audit, "
                                   "check and patch read it as it is)")
        elf = ElfFile(data)
        if elf.section_by_name(PFE) is not None:
            return _record_patchable(path, data, st, elf, dry_run, warn_ignored, quirks,
                                     describe, nops, table, repair, backup)
        p = record.plan(elf, warn_ignored, quirks)
        if p.elf is not None:   # the input with section symbols added: the table goes on it
            elf = p.elf
        if p.refused:
            status = "error"
        elif p.already:
            status = "already"
        elif not p.count:
            status = "no-sites"
        elif dry_run:
            status = "dry-run"
        else:
            status = "recorded"
        info = {"abi": p.abi.name,
                "endian": "little" if elf.endian == "<" else "big",
                "reloc": "RELA" if p.rela else "REL", "sites": p.count,
                "ignored": len(p.ignored)}
        if p.refused:
            info["error"] = record.refusal(p.refused)
        if describe:
            info["entries"] = site_details(elf, p.entries)
        if status == "recorded":
            commit(path, append_sections(elf, p.new_sections), st, data, backup)
        return FileReport(path, status, p.diagnostics, info)
    except RecordpatchError as exc:
        return error_result(path, exc)
    except MemoryError:
        return error_result(path, RecordpatchError("out of memory reading this file"))
    finally:
        for fd in held:  # the flock, released once the file is replaced (or left alone)
            os.close(fd)


def site_details(elf, entries) -> list[dict]:
    """Per entry: section, offset, kind, enclosing function, base symbol and addend."""
    from bisect import bisect_right

    from ..elf import consts as C
    syms = elf.symtab
    funcs: dict[int, list[tuple[int, int]]] = {}
    wanted = {e.site.section for e in entries}
    if syms is not None:
        for i, value, info, shndx in syms.iter_raw():
            if shndx in wanted and info & 0xF == C.STT_FUNC:
                funcs.setdefault(shndx, []).append((value, i))
    starts: dict[int, list[int]] = {}
    for sec, lst in funcs.items():
        lst.sort()
        starts[sec] = [v for v, _ in lst]
    out = []
    for e in entries:
        fn = ""
        k = bisect_right(starts.get(e.site.section, ()), e.site.offset) - 1
        if k >= 0:
            value, i = funcs[e.site.section][k]
            fn, delta = syms[i].name, e.site.offset - value
        else:
            delta = None
        base = syms[e.sym]
        out.append({"section": e.site.section_name, "offset": e.site.offset,
                    "kind": e.site.kind, "function": fn, "func_offset": delta,
                    "symbol": base.name or elf.sections[base.section].name,
                    "addend": e.addend})
    return out


def _record_patchable(path, data, st, elf, dry_run, warn_ignored, quirks, describe, nops, table,
                      repair, backup=None) -> FileReport:
    """`record` on an object with `__patchable_function_entries` (maybe also -pg calls)."""
    from ..elf.reader import ElfFile
    from ..elf.writer import append_sections
    from . import patchable, record

    record.check_mips_rel(elf)
    n, m = nops if nops else (None, 0)
    pp = patchable.plan(elf, n, m)
    diags = []
    repaired = 0
    if repair:
        new, rdiags, repaired = patchable.repair(elf, pp)
        if repaired:
            elf = ElfFile(new)
            pp = patchable.plan(elf, pp.nops, m)
            diags.extend(rdiags)
    diags.extend(pp.diagnostics)
    p = record.plan(elf, warn_ignored, quirks)
    if p.elf is not None:   # section symbols added: the pads are read again from that image
        elf = p.elf
        pp = patchable.plan(elf, pp.nops, m)
    diags.extend(p.diagnostics)
    if p.refused:
        return FileReport(path, "error", diags, {"error": record.refusal(p.refused)})
    entries = list(p.entries)
    new_sections = p.new_sections
    if table == "mcount_loc" and not p.already:
        pads, bad = patchable.table_entries(elf, pp)
        if bad:
            names = ", ".join(b.func.name for b in bad[:5]) + (", ..." if len(bad) > 5 else "")
            hint = " (PR99217: add --repair)" if any(b.pr99217 for b in bad) else ""
            raise RecordpatchError(f"{len(bad)} of {len(pp.pads)} {patchable.TABLE} entries are "
                                   f"not usable pads ({names}){hint}; no table written")
        entries = sorted(entries + pads, key=lambda e: (e.site.section, e.site.offset))
        if entries:
            rela = p.rela if p.count else (pp.rela or elf.bits == 64)
            new_sections = record.build_table(elf, p.abi, rela, entries)
    else:
        new_sections = p.new_sections if entries else []
    changed = bool(new_sections) or repaired > 0
    if p.already and not repaired:
        status = "already"
    elif not changed:
        status = "checked"
    elif dry_run:
        status = "dry-run"
    else:
        status = "recorded" if new_sections else "repaired"
    info = {"abi": p.abi.name,
            "endian": "little" if elf.endian == "<" else "big",
            "reloc": "RELA" if (p.rela if p.count else pp.rela) else "REL",
            "sites": len(entries), "ignored": len(p.ignored), "repaired": repaired,
            "patchable": patchable.describe(pp)}
    if describe:
        info["entries"] = site_details(elf, entries)
    if status in ("recorded", "repaired"):
        chunks = append_sections(elf, new_sections) if new_sections else [elf.data]
        commit(path, chunks, st, data, backup)
    return FileReport(path, status, diags, info)
