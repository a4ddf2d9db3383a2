"""Finding an environment by name, or the active one; and finding out whether this
``conda_pack`` shares its directory with conda-pack 0.9.2's.

Names are resolved from what conda knows. The ``conda-pack`` command asks a ``conda``
executable (``conda info --json``); ``conda pack`` runs inside conda's own process, which
may have been started by its full path with nothing on ``PATH``, so there the answers
come from conda's in-process context instead (see :func:`names_from_running_conda`).
Both follow the same rules, in :func:`_resolve`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import CondaPackException

_HINT = (
    "Is conda on your PATH? If not, set CONDA_EXE to the conda executable, or pass --prefix "
    "instead."
)

# Set while ``conda pack`` runs: conda's context is then the source of truth.
_in_conda = False


@contextmanager
def names_from_running_conda() -> Iterator[None]:
    """Within the block, resolve names from the conda this process is running.

    Only the ``conda pack`` plugin uses it: the console script may run where a
    ``conda`` package is importable but is not the conda the user works with.
    """
    global _in_conda
    old, _in_conda = _in_conda, True
    try:
        yield
    finally:
        _in_conda = old


def _conda_command() -> list[str]:
    """``conda`` from PATH, or ``$CONDA_EXE``: a path to the executable (spaces and all),
    or a command line such as ``python -m conda``."""
    conda = os.environ.get("CONDA_EXE") or "conda"
    if os.path.isfile(conda):
        return [conda]
    return shlex.split(conda)


def _conda_info(what: str) -> dict:
    try:
        out = subprocess.run(
            _conda_command() + ["info", "--json"],
            check=True,
            capture_output=True,
        ).stdout
        info = json.loads(out)
    except (OSError, subprocess.CalledProcessError, ValueError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise CondaPackException(
            "Failed to determine path to %s: `conda info --json` did not answer. %s It "
            "said:\n\n%s" % (what, _HINT, detail.strip())
        ) from exc
    if not isinstance(info, dict):
        raise CondaPackException(
            "Failed to determine path to %s: `conda info --json` did not print a JSON object."
            % what
        )
    return info


class _InfoJson:
    """Answers from ``conda info --json``, run once on the first question."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._info: dict | None = None

    def _get(self) -> dict:
        if self._info is None:
            self._info = _conda_info(self.what)
        return self._info

    def _field(self, key: str) -> str:
        value = self._get().get(key)
        if not isinstance(value, str) or not value:
            raise CondaPackException(
                "Failed to determine path to %s: `conda info --json` has no %r." % (self.what, key)
            )
        return value

    def root_prefix(self) -> str:
        # Answers without root_prefix fall back to default_prefix: the root when nothing
        # is active.
        return self._field("root_prefix" if self._get().get("root_prefix") else "default_prefix")

    def default_prefix(self) -> str:
        return self._field("default_prefix")

    def envs_dirs(self) -> list[str]:
        dirs = self._get().get("envs_dirs")
        return [d for d in dirs if isinstance(d, str) and d] if isinstance(dirs, list) else []

    def envs(self) -> list[str]:
        envs = self._get().get("envs")
        return [e for e in envs if isinstance(e, str) and e] if isinstance(envs, list) else []


class _RunningConda:
    """Answers from the conda this process runs (``conda.base.context``), which is what
    its ``conda info --json`` would print."""

    def __init__(self, what: str) -> None:
        self.what = what

    def _failed(self, source: str, exc: BaseException) -> CondaPackException:
        return CondaPackException(
            "Failed to determine path to %s: conda's %s failed (%s: %s); pass --prefix instead."
            % (self.what, source, type(exc).__name__, exc)
        )

    def _context_path(self, attribute: str) -> str:
        try:
            from conda.base.context import context

            value = getattr(context, attribute)
        except Exception as exc:  # conda's own errors (bad config, a changed API)
            raise self._failed("context." + attribute, exc) from exc
        path = _path(value)
        if path is None:
            raise CondaPackException(
                "Failed to determine path to %s: conda's context.%s is %r; pass --prefix "
                "instead." % (self.what, attribute, value)
            )
        return path

    def root_prefix(self) -> str:
        return self._context_path("root_prefix")

    def default_prefix(self) -> str:
        return self._context_path("default_prefix")

    def envs_dirs(self) -> list[str]:
        try:
            from conda.base.context import context

            dirs = list(context.envs_dirs)
        except Exception as exc:
            raise self._failed("context.envs_dirs", exc) from exc
        return [p for p in map(_path, dirs) if p is not None]

    def envs(self) -> list[str]:
        # Reads every environments.txt it may (all users' when run as root): asked only
        # when no envs_dir holds the name.
        try:
            from conda.core.envs_manager import list_all_known_prefixes

            envs = list(list_all_known_prefixes())
        except Exception as exc:
            raise self._failed("list_all_known_prefixes()", exc) from exc
        return [p for p in map(_path, envs) if p is not None]


def _path(value: object) -> str | None:
    """``value`` as a path string (conda's type hints allow ``os.PathLike``), or None."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    return None


def _resolve(name: str | None, conda: _InfoJson | _RunningConda) -> str:
    if name is None:
        active = os.environ.get("CONDA_PREFIX")
        if active and os.path.isdir(os.path.join(active, "conda-meta")):
            return active
        return conda.default_prefix()
    if name in ("base", "root"):
        return conda.root_prefix()
    # As `conda activate NAME` resolves it: the first envs_dir holding NAME wins.
    if name not in (".", "..") and "/" not in name and os.sep not in name:
        for envs_dir in conda.envs_dirs():
            candidate = os.path.join(envs_dir, name)
            if os.path.isdir(os.path.join(candidate, "conda-meta")):
                return candidate
    # Environments conda knows of elsewhere (registered in environments.txt).
    by_name: dict[str, str] = {}
    for env in conda.envs():
        by_name.setdefault(os.path.basename(env.rstrip("/\\")), env)
    if name not in by_name:
        raise CondaPackException("Environment name %r doesn't exist" % name)
    return by_name[name]


def name_to_prefix(name: str | None = None) -> str:
    """Where environment ``name`` is, as conda resolves it (``base`` or ``root``: conda's
    root environment); with no name, the activated environment (``$CONDA_PREFIX``), else
    conda's default one. Raises :class:`CondaPackException` if conda does not know it."""
    what = "current environment" if name is None else "environment: %r" % name
    conda = _RunningConda(what) if _in_conda else _InfoJson(what)
    return _resolve(name, conda)


# What the metadata directory of conda-pack itself (not conda-pack-rs) is called: wheels and
# conda write conda_pack-VERSION.dist-info, older setuptools installs an .egg-info.
_THEIR_METADATA = re.compile(r"conda[-_.]pack(-[^-]*)*\.(dist|egg)-info", re.IGNORECASE)
_FIX = "pip uninstall conda-pack conda-pack-rs && pip install conda-pack-rs"


def mixed_installation(package_dir: str | None = None) -> str | None:
    """What is wrong, if conda-pack's metadata sits beside the ``conda_pack`` package being
    run (``package_dir``, default: this one), else None.

    Both distributions install ``conda_pack/``, so installing one over the other mixes
    their files, and uninstalling either deletes files the other needs.
    """
    if package_dir is None:
        package_dir = os.path.dirname(os.path.abspath(__file__))
    site = os.path.dirname(package_dir)
    try:
        theirs = sorted(n for n in os.listdir(site) if _THEIR_METADATA.fullmatch(n))
    except OSError:
        return None
    if not theirs:
        return None
    # Only now: importlib.metadata costs more than the rest of this check.
    from importlib import metadata
    from pathlib import Path

    dist = metadata.PathDistribution(Path(site, theirs[0]))
    try:
        ours = "conda-pack-rs " + metadata.version("conda-pack-rs")
    except metadata.PackageNotFoundError:
        ours = "conda-pack-rs"
    installer = (dist.read_text("INSTALLER") or "").strip()
    fix = _FIX
    if installer == "conda":
        fix = "conda remove conda-pack && pip install --force-reinstall conda-pack-rs"
    return (
        "conda-pack %s and %s are both installed in %s, and their conda_pack modules "
        "overwrite each other; keep only %s: %s"
        % (dist.version or "(unknown version)", ours, site, ours.split()[0], fix)
    )


def check_installation(package_dir: str | None = None) -> None:
    """Raise :class:`CondaPackException` if :func:`mixed_installation` finds a problem."""
    problem = mixed_installation(package_dir)
    if problem is not None:
        raise CondaPackException(problem)
