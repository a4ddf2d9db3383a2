"""Archives that relocate themselves where nobody runs conda-unpack (Spark, YARN, Dask, Ray):
the startup hook in site-packages, run by the environment's own Python.

Every check of bytes compares every file (sha256) with the same archive relocated once by
conda-unpack at the same path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.faults import (
    as_user,
    content,
    injected,
    public_tmp,
    read_only_view,
    run_proc,
    traced,
    unprivileged,
)
from tests.helpers import LONG_SUFFIX, conda_pack, extract, run

STATE = "conda-meta/.conda-unpack-prefix"
SITE = "lib/python3.11/site-packages"
HOOK = {SITE + "/00-conda-pack-relocate.pth", SITE + "/_conda_pack_relocate.py"}
# What a task on a cluster checks: the compiled program, a text file that held the prefix,
# the interpreter's own idea of its paths.
PROBE = """
import json, os, ssl, subprocess, sys, sysconfig
root = os.path.realpath(sys.prefix)
out = subprocess.run([os.path.join(root, "bin", "cprog")], capture_output=True, text=True)
conf = open(os.path.join(root, "etc", "cprog.conf")).read()
print(json.dumps({
    "root": root,
    "cprog": [out.returncode, out.stdout.split()],
    "conf": conf.count(root),
    "sysconfig": [sysconfig.get_config_var("prefix"), sysconfig.get_paths()["stdlib"]],
    "ssl": list(ssl.get_default_verify_paths()[:2]),
}))
"""


def ours(tree: dict) -> dict:
    return {k: v for k, v in tree.items() if not k.startswith("conda-meta/.conda-unpack")}


class Case:
    """The default archive of the full environment, and the reference: what every file holds
    after conda-unpack at ``where``."""

    def __init__(self, env: Path, top: Path) -> None:
        self.archive = top / "env.tar"
        conda_pack("-p", env, "-o", self.archive, "-q")
        self.where = top / LONG_SUFFIX / "env"
        root = self.fresh()
        run([root / "bin" / "conda-unpack"])
        self.new = ours(content(root))
        shutil.rmtree(root)

    def fresh(self, where: Path | None = None) -> Path:
        where = where or self.where
        if where.exists():
            shutil.rmtree(where)
        return extract(self.archive, where, "tar")


@pytest.fixture(scope="module")
def case(full_env, tmp_path_factory) -> Case:
    return Case(full_env, tmp_path_factory.mktemp("auto"))


def probe(root: Path, **kw) -> dict:
    proc = run_proc([root / "bin" / "python", "-c", PROBE], **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_relocated(seen: dict, root: Path) -> None:
    r = str(root)
    assert seen["root"] == r
    assert seen["cprog"] == [0, ["exe=" + r, "lib=" + r]], seen
    assert seen["conf"] == 2, seen
    assert seen["sysconfig"] == [r, r + "/lib/python3.11"], seen


def test_the_first_start_relocates_as_conda_unpack_does(case):
    root = case.fresh()
    assert not (root / STATE).exists()
    assert_relocated(probe(root), root)
    assert (root / STATE).read_text() == "%s\n" % root
    assert ours(content(root)) == case.new
    assert not (root / "conda-meta" / ".conda-unpack.lock").exists()


def test_sixteen_processes_starting_at_once_relocate_once(case, tmp_path):
    """Spark starts a Python worker per task, all in one directory. Each waits, before any
    user code runs, for the one that relocates."""
    root = case.fresh()
    gate = tmp_path / "gate"
    gate.touch()
    env = dict(os.environ, CONDA_UNPACK_VERBOSE="1")
    cmd = ["flock", "-s", str(gate), str(root / "bin" / "python"), "-c", PROBE]
    with open(gate) as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)  # nobody starts before all are waiting
        procs = [
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
            for _ in range(16)
        ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outputs.append((json.loads(out), err))
    for seen, _ in outputs:
        assert_relocated(seen, root)
    said = [err for _, err in outputs if "conda-unpack: relocated" in err]
    assert len(said) == 1, [err for _, err in outputs]
    assert ours(content(root)) == case.new


def test_conda_unpack_run_by_a_python_with_site_relocates_once(case):
    """``python bin/conda-unpack`` (and Windows' launcher) start Python with site-packages:
    the hook leaves the relocation to the conda-unpack being started."""
    root = case.fresh()
    env = dict(os.environ, CONDA_UNPACK_VERBOSE="1")
    proc = run_proc([root / "bin" / "python", root / "bin" / "conda-unpack"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "conda-unpack: relocated" not in proc.stderr  # the hook did not run it first
    assert (root / STATE).read_text() == "%s\n" % root
    assert ours(content(root)) == case.new


@pytest.mark.parametrize(
    "syscall,when", [("pwrite64", 1), ("pwrite64", 3), ("pwrite64", 12), ("renameat", 2)]
)
def test_a_killed_relocation_is_finished_by_the_next_start(case, syscall, when):
    root = case.fresh()
    cmd = injected([root / "bin" / "python", "-c", "pass"], syscall, when, signal="SIGKILL")
    proc = run_proc(cmd)
    assert proc.returncode in (-9, 137), (proc.returncode, proc.stderr)
    assert_relocated(probe(root), root)
    assert ours(content(root)) == case.new


def test_a_read_only_copy_starts_with_one_warning_and_writes_nothing(case, tmp_path):
    root = case.fresh()
    before = content(root)
    with read_only_view(root, tmp_path / "ro" / "env") as view:
        proc = run_proc([view / "bin" / "python", "-c", "import sys; print(sys.prefix)"])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(view)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert "cannot be relocated" in lines[0] and "--dest-prefix" in lines[0]
        assert "CONDA_UNPACK_QUIET" in lines[0]
        env = dict(os.environ, CONDA_UNPACK_QUIET="1")
        quiet = run_proc([view / "bin" / "python", "-c", "pass"], env=env)
        assert quiet.returncode == 0 and quiet.stderr == ""
    assert content(root) == before


def test_an_environment_this_user_cannot_write_is_left_alone(case):
    uid, gid = unprivileged()
    with public_tmp() as top:
        root = case.fresh(top / "env")
        before = content(root)
        proc = run_proc([root / "bin" / "python", "-c", "pass"], preexec_fn=as_user(uid, gid))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("\n") == 1 and "cannot be relocated" in proc.stderr
        assert content(root) == before


def test_the_hook_runs_no_code_from_outside_the_environment(case, tmp_path):
    root = case.fresh()
    marker = tmp_path / "ran"
    intruder = tmp_path / "intruder.py"
    intruder.write_text("open(%r, 'w').close()\n" % str(marker))
    (root / "bin" / "conda-unpack").unlink()
    os.symlink(intruder, root / "bin" / "conda-unpack")
    proc = run_proc([root / "bin" / "python", "-c", "pass"])
    assert proc.returncode == 0 and proc.stderr == ""
    assert not marker.exists()
    assert not (root / STATE).exists()


def test_the_hook_follows_no_link_out_of_the_environment(case, tmp_path):
    root = case.fresh()
    outside = tmp_path / "meta"
    (root / "conda-meta").rename(outside)
    os.symlink(outside, root / "conda-meta")
    before = content(outside)
    proc = run_proc([root / "bin" / "python", "-c", "pass"])
    assert proc.returncode == 0
    assert proc.stderr.count("\n") == 1 and "was not relocated" in proc.stderr, proc.stderr
    assert content(outside) == before


def test_where_nothing_moved_the_hook_reads_one_small_file(case):
    """Only the state file is read (and conda-meta opened to reach it): conda-unpack is not."""
    root = case.fresh()
    run([root / "bin" / "conda-unpack"])
    log = root.parent / "trace.log"
    proc = run_proc(traced([root / "bin" / "python", "-c", "pass"], "openat", log))
    assert proc.returncode == 0, proc.stderr
    opened = [
        line.split('"')[1]
        for line in log.read_text().splitlines()
        if "openat(" in line and '"' in line
    ]
    ours_opened = [p for p in opened if "conda-meta" in p or "conda-unpack" in p]
    assert ours_opened == ["conda-meta", ".conda-unpack-prefix"], ours_opened
    before = content(root)
    run_proc([root / "bin" / "python", "-c", "pass"])
    assert content(root) == before


def test_conda_unpack_by_hand_before_or_after_the_hook(case, tmp_path):
    root = case.fresh()
    run([root / "bin" / "conda-unpack"])
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert_relocated(probe(root), root)  # the hook finds nothing to do
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    moved = tmp_path / "moved" / "env"
    moved.parent.mkdir()
    root.rename(moved)
    assert_relocated(probe(moved), moved)  # the hook relocates again
    back = case.where
    moved.rename(back)
    run([back / "bin" / "conda-unpack"])  # and conda-unpack after the hook
    assert ours(content(back)) == case.new


def test_the_hook_leaves_nothing_a_repack_would_take_in(case, tmp_path):
    """Use the archive in place (its Python relocates it), pack it again: the archive is the
    one packing the same environment relocated by conda-unpack gives, byte for byte. The
    hook leaves no file behind, and rewritten files get the same times either way."""

    def repack(relocate, name: str) -> bytes:
        root = case.fresh()
        relocate(root)
        out = tmp_path / name
        # conda-unpack makes option-carrying shebangs runnable (conda writes them in a form
        # Linux cannot run), which the packer then sees as changed since install.
        conda_pack("-p", root, "-o", out, "-q", "--ignore-missing-files")
        return out.read_bytes()

    # (Python's own bytecode caches, written with the time they were written, are kept out
    # of this comparison; the next test shows the hook's cache is left out of archives.)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

    def hand(root: Path) -> None:
        run([root / "bin" / "conda-unpack"])
        assert_relocated(probe(root, env=env), root)

    by_hand = repack(hand, "by-hand.tar")
    by_hook = repack(lambda root: assert_relocated(probe(root, env=env), root), "by-hook.tar")
    if by_hand != by_hook:
        with (
            tarfile.open(tmp_path / "by-hand.tar") as a,
            tarfile.open(tmp_path / "by-hook.tar") as b,
        ):
            ma = {m.name: (m.size, m.mtime, m.mode) for m in a.getmembers()}
            mb = {m.name: (m.size, m.mtime, m.mode) for m in b.getmembers()}
            diff = sorted(k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k))
        raise AssertionError("archives differ: %s" % diff[:20])


def test_the_hooks_bytecode_cache_stays_out_of_archives(case, tmp_path):
    root = case.fresh()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    assert_relocated(probe(root, env=env), root)
    cached = list((root / SITE / "__pycache__").glob("_conda_pack_relocate.*.pyc"))
    assert cached, "Python did not cache the hook's bytecode"
    out = tmp_path / "again.tar"
    conda_pack("-p", root, "-o", out, "-q", "--ignore-missing-files")
    with tarfile.open(out) as t:
        names = set(t.getnames())
    assert HOOK <= names
    assert not [n for n in names if "__pycache__/_conda_pack_relocate" in n]
    assert not [n for n in names if n.startswith("conda-meta/.conda-unpack")]


def test_no_auto_relocate_leaves_the_hook_out(full_env, nopython_env, tmp_path):
    import conda_pack as api

    def names(path: Path) -> set:
        with tarfile.open(path) as t:
            return set(t.getnames())

    default = tmp_path / "default.tar"
    conda_pack("-p", full_env, "-o", default, "-q")
    assert HOOK <= names(default)
    cli = tmp_path / "cli.tar"
    conda_pack("-p", full_env, "-o", cli, "-q", "--no-auto-relocate")
    assert not HOOK & names(cli)
    assert names(default) - names(cli) == HOOK
    via_api = tmp_path / "api.tar"
    api.pack(prefix=str(full_env), output=str(via_api), auto_relocate=False)
    assert not HOOK & names(via_api)
    dest = tmp_path / "dest.tar"
    conda_pack("-p", full_env, "-o", dest, "-q", "--dest-prefix", "/opt/env")
    assert not HOOK & names(dest)  # nothing to relocate: no conda-unpack, no hook
    nopython = tmp_path / "nopython.tar"
    conda_pack("-p", nopython_env, "-o", nopython, "-q")
    assert not any("site-packages" in n for n in names(nopython))
    help_text = conda_pack("--help").stdout
    assert "--no-auto-relocate" in help_text
