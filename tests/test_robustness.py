"""Faults around `record`: a process killed at any moment, several processes at once,
permissions, a full disk, and --backup.

The promises (issue 6, docs/reliability.md): the file is always either the original or the
complete recorded output; a killed run leaves at most its hidden temporary file
``.NAME.XXXXXXXX.rp`` (never read by anyone, ignored by later runs); two processes on one
file record it once; every refusal is one line ``FILE: error: recordpatch: ...``.

CI runs as root, which writes anything: permission cases run the child without
CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH/CAP_FOWNER (setpriv), as tests/test_cli.py does.
"""

from __future__ import annotations

import fcntl
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
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, built_with_pg, need, recorded_sites

NOBODY = 65534


def fixture_copy(tmp_path: Path, rel: str = "mipsel/kernel/vmlinux.o", name: str | None = None) -> Path:
    dst = tmp_path / (name or Path(rel).name)
    shutil.copyfile(FIXTURES / rel, dst)
    return dst


def recorded_bytes(src: Path, tmp_path: Path) -> bytes:
    """What `record` makes of ``src`` (in this process, on a private copy)."""
    from recordpatch.passes.pipeline import record_one
    d = tmp_path / "expected"
    d.mkdir(exist_ok=True)
    c = d / src.name
    shutil.copyfile(src, c)
    r = record_one(str(c))
    assert r.status == "recorded", r
    return c.read_bytes()


def temp_leftovers(d: Path, name: str) -> list[Path]:
    return [p for p in d.iterdir() if p.name.endswith(".rp")]


def only_our_temps(d: Path, name: str, allowed=()) -> None:
    """Nothing but FILE, the allowed names and our own temporary files in ``d``."""
    pat = re.compile(r"^\." + re.escape(name) + r"(\.orig)?\.[0-9a-f]{8}\.rp$")
    for p in d.iterdir():
        assert p.name == name or p.name in allowed or pat.match(p.name), p.name


def run(*args, unprivileged=False, preexec=None, check=False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "recordpatch", *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        need("setpriv (util-linux)", setpriv is not None)
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, preexec_fn=preexec,
                          check=check)


def one_error(r, path, needle):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{path}: error: recordpatch: "), r.stderr
    assert needle in lines[0], lines[0]


# ------------------------------------------------------------------ crash safety
def _die_at(point: str, path: Path, backup: str | None = None) -> int:
    """Run `record` on ``path`` in a forked child that dies (os._exit, like SIGKILL: no
    cleanup runs) at ``point``; return its exit status (9 = died there)."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            _install(point)
            from recordpatch.passes.pipeline import record_one
            record_one(str(path), backup=backup)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _install(point: str) -> None:
    from recordpatch.elf import writer
    calls = {"replace": 0, "write": 0}
    real_replace, real_fdopen, real_create = os.replace, os.fdopen, writer._create_temp
    if point == "temp-created":
        def create(d, base):
            r = real_create(d, base)
            os._exit(9)
        writer._create_temp = create
    elif point.startswith("write-"):
        k = int(point.split("-")[1])

        def fdopen(fd, *a, **kw):
            f = real_fdopen(fd, *a, **kw)

            class Dying:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    return f.__exit__(*exc)

                def fileno(self):
                    return f.fileno()

                def flush(self):
                    return f.flush()

                def write(self, chunk):
                    calls["write"] += 1
                    if calls["write"] == k:
                        f.write(chunk[:len(chunk) // 2])
                        f.flush()
                        os._exit(9)
                    return f.write(chunk)
            return Dying()
        os.fdopen = fdopen
    elif point == "before-chmod":
        os.fchmod = lambda *a: os._exit(9)
    elif point.startswith("replace-"):  # "replace-N-before" / "replace-N-after"
        _, n, when = point.split("-")

        def replace(a, b):
            calls["replace"] += 1
            if calls["replace"] == int(n) and when == "before":
                os._exit(9)
            real_replace(a, b)
            if calls["replace"] == int(n):
                os._exit(9)
        os.replace = replace
    else:
        raise ValueError(point)


POINTS = ["temp-created", "write-1", "write-3", "write-6", "before-chmod", "replace-1-before",
          "replace-1-after"]


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_each_step_of_the_write(tmp_path, point):
    """Killed at every step of write_atomic: the file is the original (or, after the rename,
    the complete output); the only leftover is the hidden temporary file, and the next run
    ignores it and records normally."""
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    want = recorded_bytes(f, tmp_path)
    assert _die_at(point, f) == 9
    now = f.read_bytes()
    assert now == (want if point == "replace-1-after" else orig)
    only_our_temps(tmp_path, f.name, allowed=("expected",))
    left = {p: p.read_bytes() for p in temp_leftovers(tmp_path, f.name)}
    assert len(left) == (0 if point.endswith("-after") else 1)
    r = run("record", f)
    assert r.returncode == 0
    assert f.read_bytes() == want
    assert {p: p.read_bytes() for p in temp_leftovers(tmp_path, f.name)} == left  # ignored


@pytest.mark.parametrize("point", ["write-1", "replace-1-before", "replace-1-after",
                                   "replace-2-before", "replace-2-after"])
def test_killed_with_backup(tmp_path, point):
    """--backup writes FILE.orig atomically before replacing FILE: whenever the process
    dies, FILE.orig is absent or the complete original, and FILE is old or new, whole."""
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    want = recorded_bytes(f, tmp_path)
    bak = Path(str(f) + ".orig")
    assert _die_at(point, f, backup=".orig") == 9
    assert f.read_bytes() == (want if point == "replace-2-after" else orig)
    assert not bak.exists() or bak.read_bytes() == orig
    if point.startswith("replace-2"):
        assert bak.read_bytes() == orig
    only_our_temps(tmp_path, f.name, allowed=("expected", bak.name))


def _kill_trials(f: Path, orig: bytes, want: bytes, trials: int, seed: int, span: float,
                 on_temp: bool) -> None:
    """Each trial's file is whole: the original or the complete output."""
    rng = random.Random(seed)
    for i in range(trials):
        f.write_bytes(orig)
        p = subprocess.Popen([sys.executable, "-m", "recordpatch", "record", str(f)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if on_temp and i % 2:
            # half the trials: wait for the temporary file, then kill within its write
            t0 = time.monotonic()
            while p.poll() is None and not temp_leftovers(f.parent, f.name) \
                    and time.monotonic() - t0 < 30:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.02))
        else:
            time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.wait()
        now = f.read_bytes()
        assert now in (orig, want), f"trial {i}: file is neither the original nor the output"
        only_our_temps(f.parent, f.name, allowed=("expected",))


def _span(f: Path, orig: bytes) -> float:
    t = time.monotonic()
    run("record", f, check=True)
    d = time.monotonic() - t
    f.write_bytes(orig)
    return d * 1.2


def test_sigkill_at_random_moments(tmp_path):
    """20 runs on a small object, each SIGKILLed at a random moment of its life."""
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    want = recorded_bytes(f, tmp_path)
    _kill_trials(f, orig, want, 20, 1, _span(f, orig), on_temp=False)
    assert run("record", f).returncode == 0 and f.read_bytes() == want


@pytest.mark.slow
def test_sigkill_large_object(tmp_path):
    """24 runs on the 65,000-section mipsel object (7.7 MB), SIGKILLed at random moments,
    half of them while the temporary file is being written."""
    f = tmp_path / "manysec.o"
    f.write_bytes(lzma.decompress((FIXTURES / "mipsel/manysec/manysec.o.xz").read_bytes()))
    orig = f.read_bytes()
    want = recorded_bytes(f, tmp_path)
    _kill_trials(f, orig, want, 24, 2, _span(f, orig), on_temp=True)
    left = temp_leftovers(tmp_path, f.name)
    f.write_bytes(orig)
    r = run("record", f)
    assert r.returncode == 0 and f.read_bytes() == want
    assert temp_leftovers(tmp_path, f.name) == left or set(left) <= set(temp_leftovers(tmp_path, f.name))


# ------------------------------------------------------------------ write faults
def test_file_too_large_for_the_disk(tmp_path):
    """The new file cannot be written (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC):
    one error line, the file untouched, the temporary file removed. Was a traceback."""
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    size = len(orig)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    r = run("record", f, preexec=limit)
    one_error(r, f, "cannot write vmlinux.o: File too large")
    assert f.read_bytes() == orig
    assert not temp_leftovers(tmp_path, f.name)
    r = run("record", "--backup", f, preexec=limit)  # the backup fits, the output does not
    one_error(r, f, "File too large")
    assert f.read_bytes() == orig and not temp_leftovers(tmp_path, f.name)


def test_file_changed_before_the_replace(tmp_path):
    """write_atomic's expect check: a file replaced since it was read is not overwritten
    (the last line of defence where flock is unavailable)."""
    from recordpatch.elf.writer import write_atomic
    from recordpatch.errors import RecordpatchError
    f = fixture_copy(tmp_path)
    st = f.stat()
    tmp = tmp_path / "other"
    tmp.write_bytes(b"someone else's")
    os.replace(tmp, f)
    with pytest.raises(RecordpatchError, match="file changed while it was being processed"):
        write_atomic(str(f), [b"ours"], st.st_mode, expect=st)
    assert f.read_bytes() == b"someone else's" and not temp_leftovers(tmp_path, f.name)


# ------------------------------------------------------------------ concurrency
def test_many_processes_on_distinct_files(tmp_path):
    """`make -j`: 24 record processes at once, one per file: each output is exactly the
    single-process result."""
    srcs = [p for p in sorted(FIXTURES.glob("*/kernel*/*.o"))
            if p.name not in ("weakstrip.o", "nosites.o") and built_with_pg(p)]
    srcs = srcs[::max(1, len(srcs) // 24)][:24]
    assert len(srcs) >= 20
    files, wants = [], []
    for i, s in enumerate(srcs):
        f = tmp_path / f"{i:02d}-{s.parent.parent.name}-{s.name}"
        shutil.copyfile(s, f)
        files.append(f)
        wants.append(recorded_bytes(f, tmp_path))
    procs = [subprocess.Popen([sys.executable, "-m", "recordpatch", "record", str(f)], cwd=ROOT,
                              stderr=subprocess.PIPE) for f in files]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
        p.stderr.close()
    for f, w in zip(files, wants):
        assert f.read_bytes() == w, f.name


def _race(f: Path, n: int, hold_lock: bool) -> list[dict]:
    """n `record --json` processes on one file; with hold_lock all of them start while we
    hold the file's flock, and race for it when we let go."""
    fd = os.open(f, os.O_RDONLY)
    if hold_lock:
        fcntl.flock(fd, fcntl.LOCK_EX)
    procs = [subprocess.Popen([sys.executable, "-m", "recordpatch", "record", "--json", str(f)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    if hold_lock:
        time.sleep(1.0)  # all of them started and wait on the lock
        assert all(p.poll() is None for p in procs), "a process did not wait for the lock"
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    out = []
    for p in procs:
        so, se = p.communicate(timeout=120)
        out.append({"rc": p.returncode, "status": json.loads(so)["files"][0]["status"],
                    "stderr": se})
    return out


@pytest.mark.parametrize("hold_lock", [False, True], ids=["free-race", "released-together"])
def test_same_file_many_processes(tmp_path, hold_lock):
    """Six processes on one file, three rounds: exactly one records, the others (which wait
    on its flock, then find the file it wrote) report "already exists"; the file is valid
    and recorded exactly once."""
    f = fixture_copy(tmp_path, "mips64el/kernel/vmlinux.o")
    orig = f.read_bytes()
    want = recorded_bytes(f, tmp_path)
    for _ in range(3):
        f.write_bytes(orig)
        res = _race(f, 6, hold_lock)
        assert all(r["rc"] == 0 for r in res), res
        assert sorted(r["status"] for r in res) == ["already"] * 5 + ["recorded"], res
        assert all("already exists" in r["stderr"] for r in res if r["status"] == "already")
        assert f.read_bytes() == want
        assert not temp_leftovers(tmp_path, f.name)


def test_lock_held_too_long(tmp_path, monkeypatch):
    """Another process keeps the file's lock: record waits LOCK_WAIT seconds, then gives up
    with one error; the file is untouched."""
    from recordpatch.passes import pipeline
    monkeypatch.setattr(pipeline, "LOCK_WAIT", 0.3)
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    fd = os.open(f, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        t = time.monotonic()
        r = pipeline.record_one(str(f))
        assert 0.25 < time.monotonic() - t < 5
    finally:
        os.close(fd)
    assert r.status == "error" and "held a lock" in r.findings[0].message
    assert f.read_bytes() == orig
    assert pipeline.record_one(str(f), dry_run=True).status == "dry-run"  # reads never lock


def test_waiter_reads_the_replaced_file(tmp_path):
    """A process waiting on the lock of a file that is replaced meanwhile reads the new
    file (here: already recorded), not the stale one it opened."""
    f = fixture_copy(tmp_path)
    want = recorded_bytes(f, tmp_path)
    fd = os.open(f, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    p = subprocess.Popen([sys.executable, "-m", "recordpatch", "record", str(f)], cwd=ROOT,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    new = tmp_path / "new"
    new.write_bytes(want)
    os.replace(new, f)
    os.close(fd)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0 and "already exists" in err, err
    assert f.read_bytes() == want


# ------------------------------------------------------------------ permissions
def test_read_only_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    f = fixture_copy(d)
    orig = f.read_bytes()
    d.chmod(0o555)
    try:
        r = run("record", f, unprivileged=True)
        one_error(r, f, f"directory {d} is not writable")
        r = run("record", "--dry-run", f, unprivileged=True)   # reading is fine
        assert r.returncode == 0
    finally:
        d.chmod(0o755)
    assert f.read_bytes() == orig and sorted(p.name for p in d.iterdir()) == [f.name]


def test_unreadable_file(tmp_path):
    f = fixture_copy(tmp_path)
    f.chmod(0)
    r = run("record", f, unprivileged=True)
    one_error(r, f, "cannot open: Permission denied")


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")


def test_file_owned_by_another_user(tmp_path):
    _need_root()
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    os.chown(f, NOBODY, NOBODY)
    f.chmod(0o644)
    r = run("record", f, unprivileged=True)
    one_error(r, f, "file is not writable")
    assert f.read_bytes() == orig


def test_sticky_directory_of_another_user(tmp_path):
    """In a sticky directory (like /tmp) a file of another user cannot be replaced even if
    its mode lets us write it: the rename fails. One clear error (was a traceback)."""
    _need_root()
    d = tmp_path / "sticky"
    d.mkdir()
    f = fixture_copy(d)
    orig = f.read_bytes()
    os.chown(f, NOBODY, NOBODY)
    f.chmod(0o666)
    os.chown(d, NOBODY, NOBODY)
    d.chmod(0o1777)
    r = run("record", f, unprivileged=True)
    one_error(r, f, "sticky directory")
    assert f.read_bytes() == orig
    assert not temp_leftovers(d, f.name)


def test_root_keeps_the_owner(tmp_path):
    """root recording another user's object (a build tree of that user) gives the new file
    the original owner, group and mode, as `sed -i` does."""
    _need_root()
    f = fixture_copy(tmp_path)
    os.chown(f, NOBODY, NOBODY)
    f.chmod(0o640)
    r = run("record", f)
    assert r.returncode == 0, r.stderr
    st = f.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert recorded_sites(f)


# ------------------------------------------------------------------ --backup
def test_backup(tmp_path):
    f = fixture_copy(tmp_path)
    orig = f.read_bytes()
    f.chmod(0o640)
    r = run("record", "--backup", f)
    assert r.returncode == 0, r.stderr
    bak = Path(str(f) + ".orig")
    assert bak.read_bytes() == orig and stat.S_IMODE(bak.stat().st_mode) == 0o640
    recorded = f.read_bytes()
    # already recorded: nothing written, the backup stays the original
    r = run("record", "--backup", f)
    assert r.returncode == 0 and "already exists" in r.stderr
    assert bak.read_bytes() == orig and f.read_bytes() == recorded
    # a chosen suffix; an existing backup is replaced by the new original
    f.write_bytes(orig)
    bak.write_bytes(b"stale")
    r = run("record", "--backup-suffix", ".pre-mcount", f)
    assert r.returncode == 0
    assert Path(str(f) + ".pre-mcount").read_bytes() == orig and bak.read_bytes() == b"stale"
    only_our_temps(tmp_path, f.name, allowed=("expected", bak.name, f.name + ".pre-mcount"))
    assert not temp_leftovers(tmp_path, f.name)


def test_backup_only_when_rewritten(tmp_path):
    nos = fixture_copy(tmp_path, "mipsel/kernel/nosites.o")
    bad = tmp_path / "bad.o"
    bad.write_bytes(b"\x7fELF nonsense")
    r = run("record", "--backup", nos, bad)
    assert r.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.o", "nosites.o"]
    r = run("record", "--dry-run", "--backup", fixture_copy(tmp_path))
    assert r.returncode == 0 and not list(tmp_path.glob("*.orig"))


@pytest.mark.parametrize("bad", ["", "a/b"])
def test_backup_suffix_usage(tmp_path, bad):
    r = run("record", "--backup-suffix", bad, fixture_copy(tmp_path))
    assert r.returncode == 2 and "suffix" in r.stderr
