"""kernel/e2e-setup.sh (sourced by kernel/e2e.sh): on a fresh Debian machine `make kernel-e2e`
installs what the variant needs. Checked with E2E_SETUP_DRYRUN=1 and a `dpkg-query` that knows no
package (a fresh machine) or every package; the expected names are Debian's package names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

COMMON = {"make", "gcc", "libc6-dev", "bc", "flex", "bison", "libssl-dev", "libelf-dev", "cpio",
          "xz-utils", "patch", "file", "time", "git", "linux-source-6.1", "linux-kbuild-6.1",
          "python3", "python3-venv"}
CROSS = {"mipsel": {"gcc-mipsel-linux-gnu", "binutils-mipsel-linux-gnu"},
         "mips64": {"gcc-mips64-linux-gnuabi64", "binutils-mips64-linux-gnuabi64"},
         "mipsr6": {"gcc-mipsisa32r6-linux-gnu", "binutils-mipsisa32r6-linux-gnu"}}


def dry_run(tmp: Path, known: bool, **env):
    """kernel/e2e.sh up to its set-up, with stub dpkg-query and python3 (fresh machine unless known)."""
    stubs = tmp / "bin"
    stubs.mkdir(exist_ok=True)
    # dpkg-query prints the status the set-up reads ("install ok installed" when known)
    stub = {"dpkg-query": "printf 'install ok installed'" if known else "exit 1",
            "python3": f"exit {0 if known else 1}"}
    for tool, body in stub.items():
        (stubs / tool).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / tool).chmod(0o755)
    e = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", WORK=str(tmp / "work"),
             E2E_SETUP_ONLY="1", E2E_SETUP_DRYRUN="1", **env)
    if "STEPS" not in env:
        e.pop("STEPS", None)
    r = subprocess.run(["bash", str(ROOT / "kernel" / "e2e.sh")], env=e, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert not (tmp / "work").exists(), "the set-up-only run must not touch WORK"
    lines = r.stdout.splitlines()
    would = [ln.split("--no-install-recommends ", 1)[1].split() for ln in lines if "would run" in ln]
    return lines, (set(would[0]) if would else None)


@pytest.mark.parametrize("arch", sorted(CROSS))
def test_fresh_machine_gets_every_package(arch, tmp_path):
    lines, pkgs = dry_run(tmp_path, known=False, E2E_ARCH=arch)
    assert pkgs == COMMON | CROSS[arch] | {"qemu-system-mips", "ipxe-qemu", "seabios"}
    assert "expected time" in lines[0] and "reference build" in lines[0]


def test_linux_6_12_source_and_no_kbuild_package(tmp_path):
    """KERNEL_VERSION=6.12: the 6.12 source package; its reference is the tree's own build of
    scripts/recordmcount, so no linux-kbuild package; the times are 6.12's (487 s measured for
    mipsr6's reference build, docs/kernel-e2e.md), not 6.1's (485 s)."""
    lines, pkgs = dry_run(tmp_path, known=False, KERNEL_VERSION="6.12", E2E_ARCH="mipsr6")
    assert pkgs == ((COMMON - {"linux-source-6.1", "linux-kbuild-6.1"}) | {"linux-source-6.12"}
                    | CROSS["mipsr6"] | {"qemu-system-mips", "ipxe-qemu", "seabios"})
    assert "[mipsr6-6.12 " in lines[0] and "(487 s)" in lines[0]


def test_unknown_kernel_version_is_refused(tmp_path):
    e = dict(os.environ, KERNEL_VERSION="5.10", WORK=str(tmp_path / "work"), E2E_SETUP_DRYRUN="1")
    r = subprocess.run(["bash", str(ROOT / "kernel" / "e2e.sh")], env=e, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "KERNEL_VERSION must be 6.1 or 6.12" in r.stderr


def test_no_qemu_without_boot_and_other_source(tmp_path):
    _, pkgs = dry_run(tmp_path, known=False, BOOT="0", SRC_TAR="/usr/src/linux-source-6.12.tar.xz")
    assert "qemu-system-mips" not in pkgs and "linux-source-6.12" in pkgs
    assert "linux-source-6.1" not in pkgs
    _, pkgs = dry_run(tmp_path, known=False, STEPS="ref B")
    assert "qemu-system-mips" not in pkgs


def test_installed_machine_installs_nothing(tmp_path):
    lines, pkgs = dry_run(tmp_path, known=True, E2E_ARCH="mips64")
    assert pkgs is None and len(lines) == 1 and "expected time" in lines[0]


def test_setup_can_be_skipped(tmp_path):
    lines, pkgs = dry_run(tmp_path, known=False, E2E_SETUP="0")
    assert pkgs is None and lines == []


def test_llvm_toolchain_adds_clang_lld_llvm(tmp_path):
    """E2E_TOOLCHAIN=llvm (`make LLVM=1`): clang, lld and llvm on top of everything GCC's run
    needs (GNU binutils stay: kernel/calls_check.py reads the images with them); its results
    carry -llvm."""
    lines, pkgs = dry_run(tmp_path, known=False, E2E_TOOLCHAIN="llvm")
    assert pkgs == COMMON | CROSS["mipsel"] | {"qemu-system-mips", "ipxe-qemu", "seabios",
                                               "clang", "lld", "llvm"}
    assert "[mipsel-llvm " in lines[0] and "clang" in lines[0]
    lines, pkgs = dry_run(tmp_path, known=False, E2E_DCE="1")
    assert "[mipsel-dce " in lines[0] and not {"clang", "lld", "llvm"} & pkgs


def test_unknown_toolchain_is_refused(tmp_path):
    e = dict(os.environ, E2E_TOOLCHAIN="icc", WORK=str(tmp_path / "w"), E2E_SETUP_DRYRUN="1")
    r = subprocess.run(["bash", str(ROOT / "kernel" / "e2e.sh")], env=e, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "E2E_TOOLCHAIN must be gcc or llvm" in r.stderr
