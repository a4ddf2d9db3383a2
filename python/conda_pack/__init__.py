"""Package conda environments for redistribution.

A fast, drop-in replacement for conda-pack: ``conda_pack.pack(...)``, ``CondaEnv``,
``File`` and ``CondaPackException`` behave as in conda-pack 0.9.2.
"""

from ._version import __version__
from .env import CondaEnv, File
from .errors import CondaPackException
from .packing import pack

__all__ = ["CondaEnv", "CondaPackException", "File", "pack", "__version__"]
