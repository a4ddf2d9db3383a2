"""Finding an environment by name, or the active one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

from .errors import CondaPackException


def _conda_info(what: str) -> dict:
    conda = os.environ.get("CONDA_EXE") or "conda"
    try:
        out = subprocess.run(
            shlex.split(conda) + ["info", "--json"],
            check=True,
            capture_output=True,
        ).stdout
        return json.loads(out)
    except (OSError, subprocess.CalledProcessError, ValueError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace")
        raise CondaPackException(
            "Failed to determine path to %s. This may be due to conda not being on your "
            "PATH (set CONDA_EXE, or pass --prefix instead). The full error is below:\n\n%s"
            % (what, detail.strip())
        ) from exc


def name_to_prefix(name: str | None = None) -> str:
    """The prefix of environment ``name`` (``base`` is the root), or of the active one."""
    if name is None:
        active = os.environ.get("CONDA_PREFIX")
        if active and os.path.isdir(os.path.join(active, "conda-meta")):
            return active
        return _conda_info("current environment")["default_prefix"]
    info = _conda_info("environment: %r" % name)
    if name in ("base", "root"):
        return info.get("root_prefix") or info["default_prefix"]
    by_name = {}
    for env in info.get("envs", []):
        by_name.setdefault(os.path.basename(env), env)
    if name not in by_name:
        raise CondaPackException("Environment name %r doesn't exist" % name)
    return by_name[name]
