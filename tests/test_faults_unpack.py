"""conda-unpack under faults and hostile input: whatever stops a run, every file is whole and
the next run finishes the job, from any path; nothing outside the environment is touched.

Each test compares every file's bytes (sha256) with an environment relocated once, without
faults, at the same path.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.faults import (
    as_user,
    content,
    delayed,
    fill,
    injected,
    public_tmp,
    run_proc,
    tmpfs,
    traced_child,
    unprivileged,
)
from tests.helpers import LONG_SUFFIX, conda_pack, extract, run, start_for_ctrl_c

STATE = "conda-meta/.conda-unpack-prefix"
# One worker, whose undo records cover two files each: the small env's five files then
# take three records, so that faults can land between and inside batches.
ONE_BY_TWO = ("--workers", "1", "--batch-files", "2")


class Case:
    """An archive, the path its environment is relocated to in a test, and what every file
    holds after one uninterrupted conda-unpack there (the reference, computed once)."""

    def __init__(self, env: Path, top: Path, where: Path | None = None) -> None:
        self.archive = top / "env.tar"
        conda_pack("-p", env, "-o", self.archive, "-q")
        self.where = where or top / LONG_SUFFIX / "env"
        root = self.fresh()
        self.old = content(root)
        run([root / "bin" / "conda-unpack"])
        self.new = content(root)
        shutil.rmtree(root)

    def fresh(self, where: Path | None = None) -> Path:
        """The archive extracted anew at ``where`` (default: the reference's path)."""
        return unpacked(self.archive, where or self.where)

    def assert_whole(self, root: Path) -> None:
        """Every file is as extracted or as relocated: none torn, none added."""
        now = ours(content(root))
        assert set(now) == set(ours(self.old)), set(now) ^ set(ours(self.old))
        torn = [k for k, v in now.items() if v != self.old[k] and v != self.new[k]]
        assert not torn, "neither old nor new: %s" % torn[:10]

    def assert_relocated(self, root: Path) -> None:
        assert ours(content(root)) == ours(self.new)
        assert_cprog_at(root)


@pytest.fixture(scope="module")
def small(nopython_env, tmp_path_factory) -> Case:
    """No Python in it (conda-unpack runs on the system's): quick to extract many times."""
    return Case(nopython_env, tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def short(nopython_env, tmp_path_factory):
    """Relocated to a path shorter than the one packed: text files shrink (a write, then a
    truncate) and C strings are padded."""
    top = Path(tempfile.mkdtemp(prefix="cu", dir="/tmp"))
    try:
        case = Case(nopython_env, tmp_path_factory.mktemp("short"), top / "e")
        assert len(str(case.where)) < len(str(nopython_env))
        yield case
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="module")
def full(full_env, tmp_path_factory) -> Case:
    """A real CPython in it: libpython is mapped by conda-unpack's own interpreter."""
    return Case(full_env, tmp_path_factory.mktemp("full"))


def unpacked(archive: Path, where: Path) -> Path:
    if where.exists():
        shutil.rmtree(where)
    return extract(archive, where, "tar")


def ours(tree: dict) -> dict:
    """``content`` without conda-unpack's own bookkeeping (the state, journals)."""
    return {k: v for k, v in tree.items() if not k.startswith("conda-meta/.conda-unpack")}


def assert_cprog_at(root: Path) -> None:
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=%s" % root, "lib=%s" % root]


def unpack_cmd(root: Path, *args) -> list:
    return [root / "bin" / "conda-unpack", *args]


# -- 1. hard-link clones ----------------------------------------------------------------------
def test_hard_link_clone_is_relocated_without_touching_the_original(full, tmp_path):
    """cp -al shares every file's inode with the original (as conda's package cache does):
    relocating the clone must replace its files, never write through them."""
    original = full.fresh(tmp_path / "original" / "env")
    run(unpack_cmd(original))
    before = content(original)
    if full.where.exists():
        shutil.rmtree(full.where)
    run(["cp", "-al", original, full.where])
    run(unpack_cmd(full.where))
    assert content(original) == before
    assert_cprog_at(original)
    full.assert_relocated(full.where)


# -- 2. write errors: full disk, I/O errors --------------------------------------------------------
@pytest.mark.parametrize(
    "syscall,error,when",
    [
        ("pwrite64", "ENOSPC", 1),
        ("pwrite64", "ENOSPC", 2),
        ("pwrite64", "ENOSPC", 3),
        ("pwrite64", "ENOSPC", 6),
        ("pwrite64", "EIO", 5),
        ("pwritev2", "ENOSPC", 2),
    ],
)
def test_a_failed_write_leaves_every_file_whole_and_a_rerun_finishes(small, syscall, error, when):
    root = small.fresh()
    proc = run_proc(injected(unpack_cmd(root, *ONE_BY_TWO), syscall, when, error=error))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conda-unpack: "), proc.stderr
    assert os.strerror(getattr(errno, error)) in lines[0]
    assert "run conda-unpack again" in lines[0] and "Traceback" not in proc.stderr
    small.assert_whole(root)
    assert not list(root.rglob(".conda-unpack-*.tmp"))
    run(unpack_cmd(root))
    small.assert_relocated(root)


def test_a_failed_write_in_a_python_environment(full):
    """The same where the interpreter's own library is replaced by rename."""
    root = full.fresh()
    proc = run_proc(injected(unpack_cmd(root, "--workers", "1"), "pwrite64", 12, error="ENOSPC"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    full.assert_whole(root)
    run(unpack_cmd(root))
    full.assert_relocated(root)


def test_full_disk_leaves_every_file_whole_and_a_rerun_finishes(small, tmp_path):
    """A real full file system (a small tmpfs): text files that grow, journals and new
    files all need room; whatever ran out first, nothing is torn."""
    with tmpfs(tmp_path / "small", "16m") as fs:
        case = Case.__new__(Case)
        case.archive, case.where = small.archive, fs / LONG_SUFFIX / "env"
        root = case.fresh()
        case.old = content(root)
        run(unpack_cmd(root))
        case.new = content(root)
        failed = 0
        for leave in (0, 2048, 8192, 32768):
            root = case.fresh()
            filler = fill(fs, leave)
            proc = run_proc(unpack_cmd(root))
            if proc.returncode == 0:
                filler.unlink()
                case.assert_relocated(root)
                continue
            failed += 1
            assert proc.returncode == 1, proc.stderr
            assert "No space left on device" in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            case.assert_whole(root)
            filler.unlink()
            run(unpack_cmd(root))
            case.assert_relocated(root)
        assert failed >= 2, "the disk never filled up during a run"


# -- 3. killed, then moved ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "syscall,when",
    [
        ("pwrite64", 1),  # the state announcing the run
        ("pwrite64", 2),  # files...
        ("pwrite64", 4),
        ("pwrite64", 6),
        ("pwritev2", 1),  # undo records
        ("pwritev2", 3),
        ("renameat", 1),
        ("renameat", 2),
        ("fsync", 1),
    ],
)
def test_killed_then_moved_is_finished_from_the_new_path(small, tmp_path, syscall, when):
    first = small.fresh(tmp_path / "first" / "env")
    cmd = injected(unpack_cmd(first, *ONE_BY_TWO), syscall, when, signal="SIGKILL")
    proc = run_proc(cmd)
    assert proc.returncode in (-9, 137), (proc.returncode, proc.stderr)
    if small.where.exists():
        shutil.rmtree(small.where)
    first.rename(small.where)
    run(unpack_cmd(small.where))
    small.assert_relocated(small.where)


@pytest.mark.parametrize(
    "syscall,when",
    [
        ("ftruncate", 1),  # a text file holds its new bytes and the end of its old ones
        ("ftruncate", 2),
        ("ftruncate", 3),
        ("pwrite64", 3),  # within and between batches, binaries half patched
        ("pwrite64", 4),
        ("pwrite64", 5),
    ],
)
def test_killed_while_files_shrink_is_finished_by_the_next_run(short, syscall, when):
    root = short.fresh()
    proc = run_proc(injected(unpack_cmd(root, *ONE_BY_TWO), syscall, when, signal="SIGKILL"))
    assert proc.returncode in (-9, 137), (proc.returncode, proc.stderr)
    run(unpack_cmd(root))
    short.assert_relocated(root)


def test_killed_then_moved_in_a_python_environment(full, tmp_path):
    first = full.fresh(tmp_path / "first" / "env")
    proc = run_proc(injected(unpack_cmd(first, "--workers", "1"), "pwrite64", 15, signal="SIGKILL"))
    assert proc.returncode in (-9, 137), (proc.returncode, proc.stderr)
    if full.where.exists():
        shutil.rmtree(full.where)
    first.rename(full.where)
    run(unpack_cmd(full.where))
    full.assert_relocated(full.where)


def test_killed_twice_even_while_finishing_the_first_run(small):
    """The second run is killed while it puts back what the first was writing."""
    root = small.fresh()
    run_proc(injected(unpack_cmd(root, *ONE_BY_TWO), "pwrite64", 4, signal="SIGKILL"))
    assert (root / STATE).read_text().startswith("# conda-unpack: unfinished")
    run_proc(injected(unpack_cmd(root, *ONE_BY_TWO), "pwrite64", 1, signal="SIGKILL"))
    run(unpack_cmd(root))
    small.assert_relocated(root)


def test_ctrl_c_stops_and_a_rerun_finishes(full):
    root = full.fresh()
    # Each write is slowed down, so that Ctrl-C lands while files are being written.
    proc = start_for_ctrl_c(
        delayed(unpack_cmd(root, "--workers", "2"), "pwrite64", 100000),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (root / STATE).exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the run has begun writing once it announced itself
    time.sleep(0.3)
    os.kill(traced_child(proc.pid), 2)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert (root / STATE).read_text().startswith("# conda-unpack: unfinished")
    run(unpack_cmd(root))
    full.assert_relocated(root)


# -- 4. links planted where conda-unpack writes ---------------------------------------------
@pytest.mark.parametrize(
    "planted",
    [
        "conda-meta/.conda-unpack-prefix.tmp",  # where older releases wrote the state
        "conda-meta/.conda-unpack-journal.0",
        "conda-meta/.conda-unpack-prefix",
        "conda-meta/.conda-unpack.lock",
    ],
)
def test_links_planted_where_it_writes_are_never_followed(small, tmp_path, planted):
    root = small.fresh(tmp_path / "env")
    victim = tmp_path / "outside.txt"
    victim.write_text("precious\n")
    os.symlink(victim, root / planted)
    proc = run_proc(unpack_cmd(root))
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "outside.txt"]
    if planted in ("conda-meta/.conda-unpack-prefix", "conda-meta/.conda-unpack.lock"):
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "symbolic link" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert_cprog_at(root)


def test_conda_meta_as_a_link_out_is_refused(small, tmp_path):
    root = small.fresh(tmp_path / "env")
    outside = tmp_path / "outside-meta"
    (root / "conda-meta").rename(outside)
    os.symlink(outside, root / "conda-meta")
    before = content(outside)
    proc = run_proc(unpack_cmd(root))
    assert proc.returncode == 1 and "conda-meta is missing, or is a link" in proc.stderr
    assert content(outside) == before


# -- 5. damaged state ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "state",
    [b"/\n", b"", b"relative/path\n", b"\x00\xff garbage", b"/usr\n", b"/a//b\n", b"/x\n/y\n"],
)
def test_a_damaged_state_changes_nothing(small, state):
    root = small.fresh()
    (root / STATE).write_bytes(state)
    before = content(root)
    proc = run_proc(unpack_cmd(root))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is damaged" in proc.stderr, proc.stderr
    assert content(root) == before


# -- 6. read-only files as an unprivileged user ----------------------------------------------------
def test_read_only_binary_is_replaced_as_an_unprivileged_user(small):
    uid, gid = unprivileged()
    with public_tmp() as top:
        case = Case.__new__(Case)
        case.archive, case.where = small.archive, top / LONG_SUFFIX / "env"
        root = case.fresh()
        run(unpack_cmd(root))
        case.new = content(root)
        root = case.fresh()
        subprocess.run(["chown", "-R", "%d:%d" % (uid, gid), str(top)], check=True)
        lib = next((root / "lib").glob("libcprog.so*"))
        for path, mode in ((root / "bin" / "cprog", 0o555), (lib, 0o444)):
            os.chmod(path, mode)
            rel = str(path.relative_to(root))
            case.new[rel] = case.new[rel][:2] + (mode,)
        proc = run_proc(unpack_cmd(root), preexec_fn=as_user(uid, gid))
        assert proc.returncode == 0, proc.stderr
        case.assert_relocated(root)
        assert os.stat(root / "bin" / "cprog").st_uid == uid


def test_unwritable_file_in_an_unwritable_directory_fails_before_any_change(small):
    uid, gid = unprivileged()
    with public_tmp() as top:
        root = small.fresh(top / LONG_SUFFIX / "env")
        subprocess.run(["chown", "-R", "%d:%d" % (uid, gid), str(top)], check=True)
        os.chmod(root / "bin" / "cprog", 0o555)
        os.chmod(root / "bin", 0o555)
        before = content(root)
        proc = run_proc(unpack_cmd(root), preexec_fn=as_user(uid, gid))
        os.chmod(root / "bin", 0o755)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and "bin/cprog" in proc.stderr, proc.stderr
        assert "Nothing was changed" in proc.stderr
        assert content(root) == before


# -- 7. runs at once ------------------------------------------------------------------------
def test_concurrent_runs_relocate_once_and_all_succeed(full):
    root = full.fresh()
    procs = [
        subprocess.Popen(
            [str(c) for c in unpack_cmd(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        results.append((p.returncode, err))
    assert all(code == 0 for code, _ in results), results
    waiting = {"conda-unpack: waiting for another run on this environment to finish"}
    assert all(set(err.splitlines()) <= waiting for _, err in results), results
    full.assert_relocated(root)
    assert not (root / "conda-meta" / ".conda-unpack.lock").exists()


# -- 8. destinations that files cannot name ---------------------------------------------------
@pytest.mark.parametrize(
    "name", ["it's", 'say "hi"', "cost$HOME", "back`tick", "a\\b", "new\nline"]
)
def test_a_destination_the_files_cannot_quote_is_refused(small, tmp_path, name):
    # Extracted elsewhere and moved: GNU tar reads backslashes in -C as escapes.
    plain = small.fresh(tmp_path / "plain" / "env")
    root = tmp_path / name / "env"
    root.parent.mkdir()
    plain.rename(root)
    before = content(root)
    proc = run_proc(unpack_cmd(root))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Nothing was changed" in proc.stderr, proc.stderr
    assert content(root) == before


def test_a_destination_that_is_not_utf8_is_refused(small, tmp_path):
    parent = os.fsencode(str(tmp_path)) + b"/caf\xe9"
    os.mkdir(parent)
    root = small.fresh(Path(os.fsdecode(parent)) / "env")
    before = content(root)
    proc = run_proc(unpack_cmd(root))
    assert proc.returncode == 1 and "not UTF-8" in proc.stderr, proc.stderr
    assert content(root) == before


def test_dest_prefix_the_files_cannot_quote_is_refused(full_env, tmp_path):
    out = tmp_path / "env.tar"
    proc = conda_pack("-p", full_env, "-o", out, "--dest-prefix", "/opt/it's", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("CondaPackError: ") and proc.stderr.count("\n") == 1
    assert "--dest-prefix" in proc.stderr
    assert not list(tmp_path.iterdir())
