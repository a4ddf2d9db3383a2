"""The self-extracting installer (``-o env.sh``): run under ``dash`` with a minimal PATH,
into a longer path; refusals before extracting; a truncated installer leaves nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import LONG_SUFFIX, conda_pack, run

#: What the installer may use, and nothing else (no python3: the env's own must do).
TOOLS = ["sh", "tail", "dd", "gzip", "tar", "mkdir", "mv", "rm", "rmdir", "ls", "cat"]

pytestmark = pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash")


@pytest.fixture(scope="module")
def installer(full_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("installer") / "env.sh"
    conda_pack("-p", full_env, "-o", out, "-q")
    return out


@pytest.fixture
def minimal_path(tmp_path) -> str:
    tools = tmp_path / "tools"
    tools.mkdir()
    for t in TOOLS:
        os.symlink(shutil.which(t), tools / t)
    return str(tools)


def install(installer, *args, path, check=True, cwd=None):
    env = {"PATH": path, "HOME": "/nonexistent", "LC_ALL": "C"}
    return run([shutil.which("dash"), installer, *args], env=env, check=check, cwd=cwd)


def test_is_executable_and_offers_help(installer, minimal_path):
    assert os.access(installer, os.X_OK)
    assert installer.read_bytes().startswith(b"#!/bin/sh\n")
    out = install(installer, "-h", path=minimal_path).stdout
    assert "-p DEST" in out and "Windows" in out


def test_installs_under_dash_into_a_longer_path_and_everything_runs(
    installer, minimal_path, tmp_path, full_env
):
    dest = tmp_path / LONG_SUFFIX / "env"
    assert len(str(dest)) > len(str(full_env))
    proc = install(installer, "-p", dest, path=minimal_path)
    assert proc.stdout.strip() == "Installed the environment into %s" % dest
    assert proc.stderr == ""
    assert os.listdir(dest.parent) == ["env"]  # no staging directory left
    py = run([dest / "bin" / "python", "-c", "import sys; print(sys.prefix)"]).stdout.strip()
    assert py == str(dest)
    assert run([dest / "bin" / "pip", "--version"]).stdout.startswith("pip ")
    assert run([dest / "bin" / "condatest-hello"]).stdout == "hello from %s\n" % dest
    assert run([dest / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % dest
    # Relocated as conda-unpack leaves it: running it again has nothing to do.
    state = dest / "conda-meta" / ".conda-unpack-prefix"
    assert state.read_text() == "%s\n" % dest
    run([dest / "bin" / "conda-unpack"])
    assert state.read_text() == "%s\n" % dest


def test_relative_dest_and_empty_dest(installer, minimal_path, tmp_path):
    (tmp_path / "empty").mkdir()
    install(installer, "-p", "empty", path=minimal_path, cwd=tmp_path)
    assert run([tmp_path / "empty" / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % (
        tmp_path / "empty"
    )


def test_non_empty_dest_needs_f(installer, minimal_path, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine").write_text("keep")
    proc = install(installer, "-p", dest, path=minimal_path, check=False)
    assert proc.returncode == 1 and "not empty" in proc.stderr
    assert os.listdir(dest) == ["mine"]
    install(installer, "-f", "-p", dest, path=minimal_path)
    assert (dest / "mine").read_text() == "keep"
    assert run([dest / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % dest
    assert sorted(os.listdir(tmp_path)) == ["dest", "tools"]


def test_too_long_a_dest_is_refused_before_extracting(installer, minimal_path, tmp_path):
    dest = tmp_path / ("x" * 200) / ("y" * 100)
    proc = install(installer, "-p", dest, path=minimal_path, check=False)
    assert proc.returncode == 1
    assert "room for at most" in proc.stderr and "Nothing was installed" in proc.stderr
    assert os.listdir(dest.parent) == []


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_installer_fails_and_leaves_nothing(installer, minimal_path, tmp_path, keep):
    data = installer.read_bytes()
    bad = tmp_path / "bad.sh"
    bad.write_bytes(data[: int(len(data) * keep)])
    work = tmp_path / "work"
    work.mkdir()
    proc = install(bad, "-p", work / "env", path=minimal_path, check=False)
    assert proc.returncode == 1
    assert "damaged or truncated" in proc.stderr and "Nothing was installed" in proc.stderr
    assert os.listdir(work) == []


def test_without_any_python_relocation_fails_clearly(installer, minimal_path, tmp_path):
    """An environment whose python cannot run here, and no python3 on PATH: simulated by
    pointing the script's probe of the env's python at a missing file (same length, so
    the payload's offset holds)."""
    data = installer.read_bytes()
    bad = tmp_path / "nopy.sh"
    probe = b'"$TMP/bin/python" -c'
    assert probe in data
    bad.write_bytes(data.replace(probe, b'"$TMP/bin/pythoX" -c', 1))
    work = tmp_path / "work"
    work.mkdir()
    proc = install(bad, "-p", work / "env", path=minimal_path, check=False)
    assert proc.returncode == 1 and "no python3 on PATH" in proc.stderr, proc.stderr
    assert os.listdir(work) == []


def test_conda_pack_unpack_reads_an_installer(installer, tmp_path):
    from conda_pack import _core

    assert _core.Unpacker(str(installer)).indexed
    dest = tmp_path / "env"
    conda_pack("unpack", installer, dest, "-q")
    assert run([dest / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % dest


def test_format_sh_by_option_and_no_arcroot(full_env, tmp_path):
    out = tmp_path / "installer.bin"
    conda_pack("-p", full_env, "-o", out, "--format", "sh", "-q")
    assert out.read_bytes().startswith(b"#!/bin/sh\n")
    proc = conda_pack("-p", full_env, "-o", tmp_path / "x.sh", "--arcroot", "a", "-q", check=False)
    assert proc.returncode == 1 and "arcroot" in proc.stderr
