"""Finding an environment by name, or the active one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from .errors import CondaPackException

_HINT = "This may be due to conda not being on your PATH (set CONDA_EXE, or pass --prefix instead)."


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
            "Failed to determine path to %s. %s The full error is below:\n\n%s"
            % (what, _HINT, detail.strip())
        ) from exc
    if not isinstance(info, dict):
        raise CondaPackException(
            "Failed to determine path to %s: `conda info --json` did not print a JSON object."
            % what
        )
    return info


def _field(info: dict, key: str, what: str) -> str:
    value = info.get(key)
    if not isinstance(value, str) or not value:
        raise CondaPackException(
            "Failed to determine path to %s: `conda info --json` has no %r." % (what, key)
        )
    return value


def name_to_prefix(name: str | None = None) -> str:
    """The prefix of environment ``name`` (``base`` is the root), or of the active one."""
    if name is None:
        active = os.environ.get("CONDA_PREFIX")
        if active and os.path.isdir(os.path.join(active, "conda-meta")):
            return active
        what = "current environment"
        return _field(_conda_info(what), "default_prefix", what)
    what = "environment: %r" % name
    info = _conda_info(what)
    if name in ("base", "root"):
        if info.get("root_prefix"):
            return _field(info, "root_prefix", what)
        return _field(info, "default_prefix", what)
    # As `conda activate NAME` resolves it: the first envs_dir holding NAME wins.
    envs_dirs = info.get("envs_dirs")
    plain = name not in (".", "..") and "/" not in name and os.sep not in name
    for envs_dir in envs_dirs if plain and isinstance(envs_dirs, list) else ():
        if isinstance(envs_dir, str) and envs_dir:
            candidate = os.path.join(envs_dir, name)
            if os.path.isdir(os.path.join(candidate, "conda-meta")):
                return candidate
    # Environments conda knows of elsewhere (registered in environments.txt).
    by_name = {}
    envs = info.get("envs")
    for env in envs if isinstance(envs, list) else ():
        if isinstance(env, str):
            by_name.setdefault(os.path.basename(env.rstrip("/\\")), env)
    if name not in by_name:
        raise CondaPackException("Environment name %r doesn't exist" % name)
    return by_name[name]
