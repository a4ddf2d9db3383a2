"""``EnvFactory``: the one object tests use to get real, installed conda environments."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .channel import SHARED_CACHE_MARKER, LocalChannel, spec_name
from .constants import LINUX_64, PYTHON_VERSION, cache_dir
from .cpython import CPython
from .store import PackageStore


class EnvFactory:
    """Builds the test bed's packages on demand and installs them with py-rattler.

    ``workdir`` is scratch space for this session (channel, default package cache); built package
    files persist in ``cache`` (default: ``$CONDA_PACK_TESTBED_CACHE`` or
    ``~/.cache/conda-pack-rs/testbed``) and are reused across sessions.
    """

    def __init__(self, workdir: os.PathLike[str] | str, cache: os.PathLike[str] | None = None):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache_dir = Path(cache).resolve() if cache else cache_dir()
        self.cpython = CPython(self.cache_dir)
        self.store = PackageStore(self.cache_dir, self.cpython)
        self.default_pkgs_dir = self.workdir / "pkgs"
        self._channel: LocalChannel | None = None

    @property
    def python_version(self) -> str:
        """major.minor of the interpreter the ``python`` package holds."""
        return PYTHON_VERSION

    @property
    def channel(self) -> Path:
        """Root of a valid, indexed local channel; packages are added to it (and built if
        needed) as installs ask for them."""
        channel = self._local_channel()
        channel.ensure_indexed()
        return channel.root

    def _local_channel(self) -> LocalChannel:
        if self._channel is None:
            self._channel = LocalChannel(self.workdir / "channel")
        return self._channel

    def packages(self, names: Sequence[str], platform: str = LINUX_64) -> list[Path]:
        """Built package files for ``names`` and their dependencies (building what is missing),
        for an environment of ``platform`` (``linux-64`` or ``win-64``)."""
        closure = self.store.closure(list(names), platform)
        return [self.store.package(n, platform) for n in closure]

    def install(
        self,
        prefix: os.PathLike[str] | str,
        specs: Sequence[str],
        pkgs_dir: os.PathLike[str] | str | None = None,
        platform: str = LINUX_64,
    ) -> Path:
        """Solve and install ``specs`` into the new directory ``prefix``; return it.

        Environments installed with the default ``pkgs_dir`` share one package cache, and rattler
        hard-links unmodified files from it: an environment that will have files deleted, edited
        or its cache removed must get its own ``pkgs_dir``.
        """
        target = Path(prefix).absolute()
        if target.exists():
            raise FileExistsError(f"install target must not exist yet: {target}")
        channel = self._local_channel()
        channel.add(self.packages([spec_name(s) for s in specs], platform))
        pkgs = self.resolve_pkgs_dir(pkgs_dir)
        channel.install(target, specs, pkgs, self.workdir / "gateway", platform)
        return target

    def resolve_pkgs_dir(self, pkgs_dir: os.PathLike[str] | str | None) -> Path:
        """``pkgs_dir`` made absolute and created, or the factory's shared cache (marked so that
        ``remove_package_cache`` refuses to delete it)."""
        if pkgs_dir is not None:
            path = Path(pkgs_dir).absolute()
            path.mkdir(parents=True, exist_ok=True)
            return path
        self.default_pkgs_dir.mkdir(parents=True, exist_ok=True)
        (self.default_pkgs_dir / SHARED_CACHE_MARKER).touch()
        return self.default_pkgs_dir

    def build_scale_env(
        self,
        prefix: os.PathLike[str] | str,
        size_gb: float = 1.0,
        seed: int = 0,
        pkgs_dir: os.PathLike[str] | str | None = None,
    ) -> Path:
        """Install a benchmark-scale environment (see ``tests.envfactory.scale``); the synthetic
        packages are built once per ``(size_gb, seed)`` and cached."""
        from .scale import install_scale_env

        pkgs = Path(pkgs_dir).absolute() if pkgs_dir is not None else None
        return install_scale_env(self, Path(prefix).absolute(), size_gb, seed, pkgs)
