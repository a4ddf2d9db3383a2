"""Fault injection for the fault tests: system calls that fail or kill at a chosen point
(strace), a small file system that fills up (tmpfs), read-only mounts, another user.

Each helper skips the test, with the reason, where this machine cannot do it (no ptrace, no
permission to mount, not root), rather than pretending the fault happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import default_sigint, sha256


def content(root: Path) -> dict[str, tuple]:
    """Every file and link under ``root``: ``rel -> ('f', sha256, mode) | ('l', target)``.
    Bytecode caches are left out: whichever Python ran there wrote them."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = ("f", sha256(p), p.stat().st_mode & 0o7777)
    return out


# -- strace: a system call that fails, or a signal, at its n-th call ----------------------------
def _strace_works() -> bool:
    exe = shutil.which("strace")
    if exe is None:
        return False
    proc = subprocess.run([exe, "-qq", "-o", "/dev/null", "true"], capture_output=True)
    return proc.returncode == 0


STRACE = shutil.which("strace") if _strace_works() else None


def injected(cmd: list, syscall: str, when: int, *, signal: str = "", error: str = "") -> list:
    """``cmd`` run under strace so that the ``when``-th ``syscall`` of each process fails
    with ``error`` (e.g. ENOSPC) or is hit by ``signal`` (e.g. SIGKILL)."""
    if STRACE is None:
        pytest.skip("strace cannot trace here (not installed, or ptrace is not allowed)")
    what = "signal=%s" % signal if signal else "error=%s" % error
    inject = "inject=%s:%s:when=%d" % (syscall, what, when)
    return [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", "trace=" + syscall, "-e", inject, *cmd]


def traced(cmd: list, syscall: str, log: Path) -> list:
    """``cmd`` run under strace, its ``syscall`` calls written to ``log``."""
    if STRACE is None:
        pytest.skip("strace cannot trace here (not installed, or ptrace is not allowed)")
    return [STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=" + syscall, *cmd]


def delayed(cmd: list, syscall: str, usec: int) -> list:
    """``cmd`` run under strace, each ``syscall`` delayed by ``usec`` microseconds."""
    if STRACE is None:
        pytest.skip("strace cannot trace here (not installed, or ptrace is not allowed)")
    inject = "inject=%s:delay_enter=%d" % (syscall, usec)
    return [STRACE, "-f", "-qq", "-o", "/dev/null", "-e", "trace=" + syscall, "-e", inject, *cmd]


def traced_child(strace_pid: int, timeout: float = 10.0) -> int:
    """The pid of the program strace started (its first child)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/task/%d/children" % (strace_pid, strace_pid)) as f:
                kids = f.read().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("strace started no program")


# -- mounts --------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(where: Path, size: str):
    """A tmpfs of ``size`` at ``where`` (root only; skipped where mounting is refused)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % proc.stderr.strip())
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@contextlib.contextmanager
def read_only_view(source: Path, where: Path):
    """``source`` seen read-only at ``where`` (a read-only bind mount)."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "--bind", str(source), str(where)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip("cannot bind-mount here: %s" % proc.stderr.strip())
    try:
        ro = ["mount", "-o", "remount,bind,ro", str(where)]
        proc = subprocess.run(ro, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip("cannot remount read-only here: %s" % proc.stderr.strip())
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path, leave: int) -> Path:
    """Fill the file system holding ``fs`` up to ``leave`` free bytes; returns the filler."""
    filler = fs / "filler"
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as f:
        todo = max(free - leave, 0)
        block = b"\0" * (1 << 20)
        while todo > 0:
            try:
                todo -= f.write(block[: min(len(block), todo)])
            except OSError:
                break
    return filler


# -- another user --------------------------------------------------------------------------------
def unprivileged() -> tuple[int, int]:
    """(uid, gid) of ``nobody``, for running a child without root's powers."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as another user")
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    return pw.pw_uid, pw.pw_gid


def as_user(uid: int, gid: int):
    """preexec_fn dropping to ``uid``/``gid`` (and the default SIGINT)."""

    def drop() -> None:
        default_sigint()
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


@contextlib.contextmanager
def public_tmp():
    """A scratch directory every user can reach (pytest's are private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="conda-pack-public-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def run_proc(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("preexec_fn", default_sigint)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)


PYTHON = sys.executable
