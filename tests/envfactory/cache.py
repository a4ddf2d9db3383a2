"""Cross-run cache of built artifacts, keyed by a hash of what went into them.

Building packages (CPython above all) is the slow part of the test bed, so artifacts are kept under
``cache_dir()`` and reused as long as their inputs hash the same.  Several pytest processes may
share one cache, so every build runs under an exclusive file lock and is published by an atomic
rename: a reader never sees half an artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def hash_inputs(parts: Iterable[str | bytes], length: int = 12) -> str:
    """Stable short hex digest of a sequence of strings/bytes (order matters)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:length]


def module_sources(*names: str) -> list[bytes]:
    """Contents of sibling modules, so editing a recipe's code changes its cache key."""
    return [(_HERE / f"{name}.py").read_bytes() for name in names]


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if needed) for the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (removing leftovers of an interrupted build) and return it."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.mkdir(parents=True)
    return path


def publish(tmp: Path, final: Path) -> Path:
    """Atomically move a finished artifact (file or directory) into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (cheap), copying when they live on different filesystems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
