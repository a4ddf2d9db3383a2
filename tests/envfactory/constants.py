"""Constants shared by every part of the environment factory.

The placeholder is the prefix that packages are "built" in. conda-build uses a 255-character path
so that binaries (where the room for a string is fixed at build time) can later be relocated to any
install prefix up to that length; we mimic its exact shape so the packer sees what it sees in the
wild.
"""

from __future__ import annotations

import os
from pathlib import Path

PLACEHOLDER_LENGTH = 255


def _make_placeholder() -> str:
    """Return a conda-build style placeholder ``/opt/conda/conda-bld/<name>_<ts>/_h_env_plac…``.

    The timestamp is fixed (not ``time.time()``) so that packages built on different days hash
    to the same cache key.
    """
    head = "/opt/conda/conda-bld/envfactory_1700000000000/_h_env"
    text = head
    while len(text) < PLACEHOLDER_LENGTH:
        text += "_placehold"
    return text[:PLACEHOLDER_LENGTH]


PLACEHOLDER: str = _make_placeholder()
PLACEHOLDER_BYTES: bytes = PLACEHOLDER.encode()

#: The Debian source package our CPython is built from; its name fixes major.minor.
PYTHON_SOURCE_PACKAGE = "python3.11"
PYTHON_VERSION = "3.11"

#: Subdirs of the local channel.
LINUX_64 = "linux-64"
NOARCH = "noarch"

#: Fixed build timestamp (ms) written to index.json; constant so package bytes are reproducible.
BUILD_TIMESTAMP_MS = 1_700_000_000_000

#: Environment variable overriding where built packages are cached across runs.
CACHE_ENV_VAR = "CONDA_PACK_TESTBED_CACHE"


def cache_dir() -> Path:
    """Directory where built packages (and the expensive CPython build) persist across runs."""
    override = os.environ.get(CACHE_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path("~/.cache/conda-pack-rs/testbed").expanduser().resolve()
