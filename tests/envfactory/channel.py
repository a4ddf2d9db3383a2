"""A local file channel, indexed and installed from by py-rattler (the engine behind pixi).

Environments made here are real: rattler solves against ``repodata.json``, extracts packages into a
package cache, hard-links unmodified files from it, rewrites prefixes, creates noarch entry points
and writes ``conda-meta/`` — exactly what it does for users.  Every rattler call runs in a child
process (see ``rattler_worker``) so that the test process never loads rattler's runtime.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .cache import link_or_copy
from .constants import LINUX_64, NOARCH, PLACEHOLDER_LENGTH

#: Marker file in package caches shared between environments: variants that delete the cache
#: refuse to touch a directory carrying it.
SHARED_CACHE_MARKER = ".envfactory-shared-cache"
RATTLER_WORKER = Path(__file__).resolve().with_name("rattler_worker.py")


class RattlerError(RuntimeError):
    """A rattler index/solve/install failed (message holds the child's traceback)."""


def run_rattler(request: dict[str, Any]) -> str:
    """Run one operation in ``rattler_worker`` and return its stdout."""
    proc = subprocess.run(
        [sys.executable, str(RATTLER_WORKER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RattlerError(
            f"rattler {request['op']} failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    return proc.stdout


def spec_name(spec: str) -> str:
    """Package name of a match spec such as ``python 3.11.*`` or ``pip>=22``."""
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)", spec)
    if not match:
        raise ValueError(f"cannot read a package name from spec {spec!r}")
    return match.group(1)


class LocalChannel:
    """``root/{linux-64,noarch,...}`` holding package files (a subdir per platform, made as
    packages for it arrive); re-indexed lazily after additions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for subdir in (LINUX_64, NOARCH):
            (root / subdir).mkdir(parents=True, exist_ok=True)
        self._generation = 0
        self._indexed_generation = -1

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def add(self, packages: Iterable[Path]) -> None:
        """Place package files (hard links when possible) in their subdir."""
        for pkg in packages:
            target = self.root / pkg.parent.name / pkg.name
            if self._drop_other_builds(target):
                self._generation += 1
            if target.exists() and target.stat().st_size == pkg.stat().st_size:
                continue
            link_or_copy(pkg, target)
            self._generation += 1

    @staticmethod
    def _drop_other_builds(target: Path) -> bool:
        """Remove builds of the same name and version that an older factory left in a
        persistent channel: the solver could prefer one (it did: a python without the
        openssl dependency), so an env would not be what this factory builds."""
        name_version = _name_version(target.name)
        if not target.parent.is_dir():
            return False
        dropped = False
        for other in target.parent.iterdir():
            if other.name != target.name and _name_version(other.name) == name_version:
                other.unlink()
                dropped = True
        return dropped

    def ensure_indexed(self) -> None:
        if self._indexed_generation == self._generation and self._has_repodata():
            return
        run_rattler({"op": "index", "channel": str(self.root)})
        self._indexed_generation = self._generation

    def _has_repodata(self) -> bool:
        subdirs = [d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        return all((d / "repodata.json").exists() for d in subdirs)

    def install(
        self,
        prefix: Path,
        specs: Sequence[str],
        pkgs_dir: Path,
        gateway_cache: Path,
        platform: str = LINUX_64,
    ) -> None:
        """Solve ``specs`` against this channel alone and install the result into ``prefix``."""
        if len(str(prefix)) > PLACEHOLDER_LENGTH:
            # rattler would refuse too, but only after creating a half-installed prefix.
            raise ValueError(f"prefix longer than the {PLACEHOLDER_LENGTH}-char placeholder")
        self.ensure_indexed()
        run_rattler(
            {
                "op": "install",
                "channel_url": self.url,
                "specs": list(specs),
                "prefix": str(prefix),
                "pkgs_dir": str(pkgs_dir),
                # A gateway cache per index generation: never serve repodata from before an
                # addition.
                "gateway_cache": str(gateway_cache / f"gen{self._indexed_generation}"),
                "platform": platform,
            }
        )


def _name_version(filename: str) -> tuple[str, str] | None:
    """``(name, version)`` of a package file name ``name-version-build.conda`` (or
    ``.tar.bz2``); None for other files (repodata.json)."""
    for ext in (".conda", ".tar.bz2"):
        if filename.endswith(ext):
            parts = filename[: -len(ext)].rsplit("-", 2)
            return (parts[0], parts[1]) if len(parts) == 3 else None
    return None
