"""Shared test helpers: packing through the real CLI/API, extracting with the real tools,
running programs from an environment, and comparing trees."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

# A destination deeper than any source prefix the tests create, so relocation always grows.
LONG_SUFFIX = "a-considerably-longer-directory-name-to-move-the-environment-into"

TAR_FORMATS = ("tar", "tar.gz", "tar.bz2", "tar.xz", "tar.zst")
ALL_FORMATS = TAR_FORMATS + ("zip", "squashfs", "no-archive")


def run(cmd, check=True, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure show it."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            "command failed (%d): %s\n--- stdout\n%s\n--- stderr\n%s"
            % (proc.returncode, " ".join(map(str, cmd)), proc.stdout, proc.stderr)
        )
    return proc


def default_sigint() -> None:
    """preexec_fn: SIGINT at its default, as a user's shell delivers Ctrl-C. A test run
    started in the background (``make test &``, nohup, some CI runners) hands SIGINT down
    ignored, and the program under test would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_for_ctrl_c(cmd, **popen) -> subprocess.Popen:
    """Start ``cmd`` to be sent SIGINT. It is started with SIGINT ignored here, as in a run
    started in the background, so every run checks that the child gets the default."""
    popen.setdefault("preexec_fn", default_sigint)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.Popen([str(c) for c in cmd], **popen)
    finally:
        signal.signal(signal.SIGINT, before)


def conda_pack(*args, check=True, env=None) -> subprocess.CompletedProcess:
    """The installed console script, exactly as a user runs it."""
    return run([sys.executable, "-m", "conda_pack", *args], check=check, env=env)


def extract(archive: Path, dest: Path, fmt: str) -> Path:
    """Unpack with the tool a user would use; returns the environment root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "no-archive":
        shutil.copytree(archive, dest, symlinks=True)
    elif fmt == "zip":
        dest.mkdir()
        run(["unzip", "-q", archive, "-d", dest])
    elif fmt == "squashfs":
        run(["unsquashfs", "-q", "-n", "-d", dest, archive])
    else:
        dest.mkdir()
        flag = {"tar": "", "tar.gz": "z", "tar.bz2": "j", "tar.xz": "J"}.get(fmt)
        if flag is None:  # tar.zst: GNU tar calls zstd
            run(["tar", "--zstd", "-xf", archive, "-C", dest])
        else:
            run(["tar", "-x%sf" % flag, archive, "-C", dest])
    return dest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: ``rel -> ('f', sha) | ('l', target) | ('d',)``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("l", os.readlink(p))
            elif p.is_dir():
                if not any(p.iterdir()):
                    out[rel] = ("d",)
            else:
                out[rel] = ("f", sha256(p))
    return out


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return z.namelist()


def env_python(prefix: Path) -> Path:
    return prefix / "bin" / "python"
