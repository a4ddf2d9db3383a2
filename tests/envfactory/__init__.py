"""Real conda environments for tests, built offline.

The factory builds conda packages itself (the files conda-build writes), indexes a local channel
and installs with py-rattler, so the packer under test meets what users' environments contain::

    from tests.envfactory import EnvFactory, PLACEHOLDER
    fac = EnvFactory(tmp_path_factory.mktemp("envfactory"))
    prefix = fac.install(tmp / "env", ["cprog", "python", "pip"])          # pkgs_dir=, platform=
    win = fac.install(tmp / "win", ["python", "winlib"], platform="win-64")  # Windows layout
    fac.build_scale_env(tmp / "big", size_gb=1.0, seed=0)                  # benchmarks only

Packages: cprog (.conda, ELF with binary prefixes), cprog-data (.tar.bz2, text prefixes), links
(symlinks + hard links), activate-scripts, openssl (OpenSSL built from Debian's source, its
certificate directory compiled into libcrypto), python (CPython built from Debian's source against
that openssl, which it depends on), pip, setuptools, condatest-lib (noarch python), pyscripts
(placeholder shebangs); for win-64 (see ``windows``): python (stand-in with python.exe,
Lib/site-packages) and winlib (the build prefix in every Windows spelling, a read-only file,
setuptools- and distlib-style entry points).

Variants mutate an installed prefix like a user would: ``pip_install_wheel``,
``pip_install_editable``, ``pip_uninstall``, ``overwrite_managed_file``, ``remove_package_cache``,
``make_micromamba_like``, ``make_pixi_like``.  Give an environment its own ``pkgs_dir`` before
deleting or editing its files or its cache.
"""

from .constants import PLACEHOLDER, cache_dir
from .factory import EnvFactory
from .variants import (
    make_micromamba_like,
    make_pixi_like,
    overwrite_managed_file,
    pip_install_editable,
    pip_install_wheel,
    pip_uninstall,
    remove_package_cache,
)
from .windows import WIN_64, WIN_PLACEHOLDER

#: Where built packages persist (``$CONDA_PACK_TESTBED_CACHE`` or ~/.cache/conda-pack-rs/testbed).
CACHE_DIR = cache_dir()

__all__ = [
    "CACHE_DIR",
    "PLACEHOLDER",
    "WIN_64",
    "WIN_PLACEHOLDER",
    "EnvFactory",
    "make_micromamba_like",
    "make_pixi_like",
    "overwrite_managed_file",
    "pip_install_editable",
    "pip_install_wheel",
    "pip_uninstall",
    "remove_package_cache",
]
