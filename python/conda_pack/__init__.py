"""Package conda environments for redistribution.

A fast, drop-in replacement for conda-pack: ``conda_pack.pack(...)``, ``CondaEnv``,
``File`` and ``CondaPackException`` behave as in conda-pack 0.9.2.

The names are imported on first use: conda imports ``conda_pack.conda_plugin`` (and so
this package) on every ``conda`` command, which must not pay for the packer and its Rust
core unless ``conda pack`` runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._version import __version__
    from .env import CondaEnv
    from .errors import CondaPackException
    from .files import File
    from .packing import pack

__all__ = ["CondaEnv", "CondaPackException", "File", "pack", "__version__"]

_HOMES = {
    "__version__": "._version",
    "CondaEnv": ".env",
    "File": ".files",
    "CondaPackException": ".errors",
    "pack": ".packing",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
