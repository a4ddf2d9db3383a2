"""Real conda environments for tests, built offline.

The factory builds conda packages itself (the files conda-build writes), indexes a local channel
and installs with py-rattler, so the packer under test meets what users' environments contain.
See ``EnvFactory`` and the variant functions (user actions that mutate an installed prefix).
"""

from .constants import PLACEHOLDER, cache_dir
from .factory import EnvFactory

CACHE_DIR = cache_dir()

__all__ = ["CACHE_DIR", "PLACEHOLDER", "EnvFactory"]
