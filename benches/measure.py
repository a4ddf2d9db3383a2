"""Running and measuring commands: wall time, CPU time and peak RSS of one process tree.

Every command runs under ``/usr/bin/time -f "%U %S %M"``: user and system CPU seconds of the
command and all the children it waited for, and the peak resident set size (KB) of the largest
single process in the tree (not a sum: for ``tar | pigz`` it is the bigger of the two). Wall
time is taken around the whole thing with ``time.perf_counter``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

TIME = "/usr/bin/time"
#: ext4 without a journal (the disk of the machine these ran on) passes over recently freed
#: inodes when it allocates new ones, looking each one up: an extraction right after a tree
#: of 100,000 files was removed took up to 7x the CPU, all of it in the kernel (ours 7.1 s,
#: then 33 s and 47 s round by round for the same tar.zst; `tar` 17 s, 35 s, 50 s). An inode
#: counts as freed recently for 60 s, and for 360 s while its inode-table block is dirty,
#: which allocating its neighbours makes it: 20,000 empty files took 0.7 s of kernel CPU on a
#: settled disk, 3.6 s right after removing 300,000 files and syncing, 4.6 s 70 s later,
#: 0.8 s 400 s later. So a benchmark that removed trees calls ``settle`` before it creates
#: files on that disk again (``BENCH_SETTLE``).
SETTLE = float(os.environ.get("BENCH_SETTLE", "365"))


class CommandFailed(RuntimeError):
    pass


@dataclass
class Run:
    """One measured run of one command."""

    wall: float  # seconds
    cpu: float  # user + system seconds, children included
    rss_mb: float  # peak RSS of the largest process, MiB
    size: int | None = None  # bytes written (archive size), when there is an output
    stdout: str = ""

    def as_dict(self) -> dict:
        data = asdict(self)
        if not data["stdout"]:
            del data["stdout"]
        return data


def measure(argv: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` to completion under ``/usr/bin/time``; raise ``CommandFailed`` on error."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        cmd = [TIME, "-f", "%U %S %M", "-o", report.name, *argv]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise CommandFailed(
                f"exit {proc.returncode}: {shlex.join(argv)}\n{proc.stderr[-3000:]}"
            )
        # /usr/bin/time may prefix a status line; the numbers are on the last one.
        user, sys_, rss_kb = report.read().split()[-3:]
    return Run(wall, float(user) + float(sys_), int(rss_kb) / 1024, stdout=proc.stdout)


def shell(pipeline: str) -> list[str]:
    """``argv`` running ``pipeline`` in bash with ``pipefail`` (a failing ``tar`` is an error)."""
    return ["bash", "-o", "pipefail", "-c", pipeline]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def warm_page_cache(prefix: Path) -> None:
    """Read every file of ``prefix`` once. (GNU tar skips reading when writing to /dev/null, so
    the stream goes through ``cat``.)"""
    subprocess.run(
        shell(f"tar -C {shlex.quote(str(prefix))} -cf - . | cat > /dev/null"), check=True
    )


def tree_stats(prefix: Path) -> tuple[int, int]:
    """(bytes, entries) of a directory tree: regular file sizes plus symlink lengths; every
    file, link and directory counts as an entry."""
    total = entries = 0
    stack = [str(prefix)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                entries += 1
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += st.st_size
    return total, entries


def file_digest(path: Path) -> str | None:
    """Short sha256 of a file (the installed extension module), or None if it is missing."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def command_output(argv: Sequence[str]) -> str:
    """First line of a command's output (stdout or stderr), for tool versions."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else ""


def settle() -> None:
    """Write out what is pending, then wait until the inodes freed so far no longer slow down
    making new ones (``SETTLE``)."""
    subprocess.run(["sync"], check=True)
    time.sleep(SETTLE)


def interleaved(benchmark, ours: Callable[[], None], others: list[Callable[[], None]], rounds: int):
    """``rounds`` rounds of: every competitor (in alternating order from round to round), then
    ours. Only ours is timed by pytest-benchmark (the competitors run in its untimed ``setup``);
    every callable records its own measurements."""
    counter = itertools.count()

    def setup() -> None:
        for run in others if next(counter) % 2 == 0 else others[::-1]:
            run()

    benchmark.pedantic(ours, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
