"""An environment as a list of files to pack: :class:`CondaEnv` and :class:`File`."""

from __future__ import annotations

import glob
import json
import os
import re
from array import array
from fnmatch import translate
from operator import attrgetter

from ._core import (
    FLAG_BYTECODE_OF_RECORDED,
    FLAG_PLACEHOLDER,
    FLAG_SIZE_RECORDED,
    KIND_FILE,
    KIND_MISSING,
    KIND_OTHER,
    KIND_SYMLINK,
)
from .errors import CondaPackException
from .files import (
    CHECK_SIZE,
    HOLDS_PLACEHOLDER,
    IS_CONDA,
    UNKNOWN,
    EnvColumns,
    File,
    FileTable,
)
from .locate import name_to_prefix
from .metadata import Layout, Package, read_environment
from .traces import is_trace
from .warn import warn

__all__ = ["CondaEnv", "load_environment"]

# Top-level names conda keeps in a root prefix that are not part of the environment.
SKIP_TOP = (
    "pkgs",
    "envs",
    "conda-bld",
    ".conda_lock",
    "users",
    "conda-recipes",
    ".index",
    ".unionfs",
    ".nonadmin",
    "python.app",
    "Launcher.app",
)
_MISSING_FILES = """
Files managed by conda were found to have been deleted/overwritten in the
following packages:

{0}

This is usually due to `pip` uninstalling or clobbering conda managed files,
resulting in an inconsistent environment. Please check your environment for
conda/pip conflicts using `conda list`, and fix the environment by ensuring
only one version of each package is installed (conda preferred). To pack the
environment as it is, pass --ignore-missing-files."""

_UNCACHED = """
Conda-managed packages were found without entries in the package cache and
without prefix records in conda-meta (as some installers write them):

{0}"""

_UNCACHED_WARNING = (
    _UNCACHED
    + """

Continuing with packing: their files are scanned for the environment's prefix
instead. Text files relocate as usual; binary files holding the prefix can only
be moved to paths no longer than this environment's own."""
)

_EDITABLE = (
    "Cannot pack an environment with editable packages\n"
    "installed (e.g. from `python setup.py develop` or\n"
    "`pip install -e`). Editable packages found:\n\n"
    "{0}\n\n"
    "Install them without -e, or pass --ignore-editable-packages to pack anyway\n"
    "(the editable packages will not work in the unpacked environment)."
)


def missing_files_error(missing: dict[tuple[str, str], list[str]]) -> CondaPackException:
    lines = []
    for (name, version), paths in sorted(missing.items()):
        lines.append("- %s %s:" % (name, version))
        paths = sorted(paths)
        if len(paths) > 4:
            paths = paths[:3] + ["+ %d others" % (len(paths) - 3)]
        lines.extend("    " + p for p in paths)
    return CondaPackException(_MISSING_FILES.format("\n".join(lines)))


def check_no_editable_packages(prefix: str, site_packages: str) -> None:
    """Editable installs point outside the environment; they cannot be moved with it."""
    found = set()
    sp = os.path.join(prefix, site_packages)
    for dist_info in glob.glob(os.path.join(sp, "*.dist-info")):
        try:
            with open(os.path.join(dist_info, "direct_url.json"), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and (data.get("dir_info") or {}).get("editable") is True:
            found.add(os.path.basename(dist_info).split("-")[0])
    for egg_link in glob.glob(os.path.join(sp, "*.egg-link")):
        found.add(os.path.basename(egg_link)[: -len(".egg-link")])
    if found:
        raise CondaPackException(_EDITABLE.format("\n".join("- %s" % p for p in sorted(found))))


# Files an installer writes itself (entry points), holding the install prefix it chose.
_INSTALLER_MADE = frozenset(
    {
        "unix_python_entry_point",
        "windows_python_entry_point_script",
        "windows_python_entry_point_exe",
    }
)
# Recorded paths that may legitimately be absent: bytecode conda failed to compile, and
# directories it made.
_MAY_BE_ABSENT = frozenset({"directory", "pyc_file"})


def load_environment(
    prefix: str,
    on_missing_cache: str = "warn",
    ignore_editable_packages: bool = False,
    ignore_missing_files: bool = False,
) -> list[File]:
    """The files of the environment at ``prefix``, as conda-pack 0.9.2 returned them."""
    files, _, _ = read_files(
        prefix, on_missing_cache, ignore_editable_packages, ignore_missing_files
    )
    return list(files)


def read_files(
    prefix: str,
    on_missing_cache: str = "warn",
    ignore_editable_packages: bool = False,
    ignore_missing_files: bool = False,
) -> tuple[FileTable, list[Package], Layout]:
    """The files of the environment at ``prefix``, its packages and its layout."""
    if not os.path.exists(prefix):
        raise CondaPackException("Environment path %r doesn't exist" % prefix)
    conda_meta = os.path.join(prefix, "conda-meta")
    if not os.path.exists(conda_meta):
        raise CondaPackException("Path %r is not a conda environment" % prefix)

    packages, layout, columns = read_environment(prefix, list(SKIP_TOP))
    if layout.site_packages is not None and not ignore_editable_packages:
        check_no_editable_packages(prefix, layout.site_packages)

    cols = EnvColumns(prefix, columns, packages)
    kinds, flags, type_of = columns["kind"], columns["flags"], columns["path_type"]
    type_names = [None, *columns["path_types"]]
    package, info, special = cols.package, cols.info, cols.special

    bin_prefix = layout.bin_dir + "/"
    records = {"conda-meta/" + p.filename for p in packages}
    records.add("conda-meta/history")
    # conda of old put its own scripts into child environments.
    skip = {layout.bin_dir + "/" + n for n in ("conda", "activate", "deactivate")}
    if layout.windows:
        skip |= {"Scripts/" + n for n in ("conda.bat", "activate.bat", "deactivate.bat")}
    site_packages = layout.site_packages
    rows = array("I")
    keep = rows.append
    missing: dict[tuple[str, str], list[str]] = {}
    caches: dict[str, str] = {}
    for e, path in enumerate(cols.targets()):
        kind = kinds[e]
        index = package[e]
        if index < 0:  # no package records it
            if kind == KIND_OTHER or path in skip or is_trace(path, site_packages):
                continue
            if "/" not in path and (path.endswith("~") or path.endswith(".DS_STORE")):
                continue
            if path in records:
                info[e] = IS_CONDA
            elif flags[e] & FLAG_BYTECODE_OF_RECORDED:
                continue  # bytecode of a conda file, regenerated where it lands
            else:
                info[e] = UNKNOWN
            keep(e)
            continue
        pkg = packages[index]
        ptype = type_names[type_of[e]]
        if kind == KIND_MISSING:
            if not (path.endswith(".pyc") or ptype in _MAY_BE_ABSENT or path == ".nonadmin"):
                missing.setdefault((pkg.name, pkg.version), []).append(path)
            continue
        if kind == KIND_SYMLINK and ptype not in ("softlink", None):
            # Installed as a link into the package cache: pack the file it points to. A
            # link anywhere else was put there after install; following it would archive
            # a file from outside the environment, so it is packed as the link it is.
            real = os.path.realpath(prefix + "/" + path)
            if _in_own_cache(real, pkg, caches) and os.path.isfile(real):
                f = File(real, path, True, None, None)
                f._package, f._size = pkg, os.path.getsize(real)
                special[e] = f
                keep(e)
                continue
        if flags[e] & FLAG_PLACEHOLDER:
            placeholder = True
        elif pkg.legacy and path in pkg.legacy:
            placeholder = pkg.legacy[path][0]
            cols.legacy[e] = pkg.legacy[path]
        else:
            placeholder = None
        if placeholder:
            # The facts make a File when one is asked for. A File made here would outlive
            # the loop's strings and pin their memory.
            info[e] = IS_CONDA | HOLDS_PLACEHOLDER
        elif (
            (not pkg.placeholders_known and ptype != "softlink")
            or ptype in _INSTALLER_MADE
            # Without path types (old records), conda-pack has always scanned noarch scripts.
            or (ptype is None and pkg.is_noarch_python and path.startswith(bin_prefix))
        ):
            info[e] = IS_CONDA | UNKNOWN
        elif (
            # Plain (hard-linked or copied) files without a prefix are installed byte for
            # byte, so another size means something (pip, an editor) changed them; the
            # packer compares when it reads the file. Files with a prefix are checked by
            # hash when their placeholder is restored. Bytecode is exempt: Python rewrites
            # a stale .pyc itself, which is no damage.
            flags[e] & FLAG_SIZE_RECORDED
            and kind == KIND_FILE
            and (ptype is None or ptype == "hardlink")
            and not path.endswith((".pyc", ".pyo"))
        ):
            info[e] = IS_CONDA | CHECK_SIZE
        else:
            info[e] = IS_CONDA
        keep(e)

    if missing and not ignore_missing_files:
        raise missing_files_error(missing)
    files = FileTable(cols, rows)
    if missing:
        gone = {p for paths in missing.values() for p in paths}
        files, _ = files.partition(gone.__contains__)

    unknown = [p for p in packages if not p.placeholders_known]
    if unknown and on_missing_cache in ("warn", "raise"):
        listing = "\n".join(
            "- %s=%s   %s" % (p.name, p.version, p.url or p.filename) for p in unknown
        )
        if on_missing_cache == "raise":
            raise CondaPackException(_UNCACHED.format(listing))
        warn(_UNCACHED_WARNING.format(listing))
    return files, packages, layout


def _in_own_cache(real: str, pkg: Package, caches: dict[str, str]) -> bool:
    """Whether ``real`` lies in ``pkg``'s own directory in the package cache (resolved
    once per package into ``caches``)."""
    if not pkg.link_source:
        return False
    cache = caches.get(pkg.link_source)
    if cache is None:
        cache = caches[pkg.link_source] = os.path.realpath(pkg.link_source)
    return real.startswith(cache.rstrip("/") + "/")


def _sorted(files):
    if isinstance(files, FileTable):
        return files.sorted()
    return sorted(files, key=attrgetter("target"))


def _partition(files, pattern: str) -> tuple:
    """``(files not matching the glob pattern, files matching it)``."""
    matches = re.compile(translate(pattern)).match
    if isinstance(files, FileTable):
        return files.partition(matches)
    keep: list[File] = []
    drop: list[File] = []
    for f in files:
        (drop if matches(f.target) else keep).append(f)
    return keep, drop


def _joined(a, b):
    if not len(a):
        return b
    if not len(b):
        return a
    if isinstance(a, FileTable):
        both = a.joined(b)
        if both is not None:
            return both
    return [*a, *b]


class CondaEnv:
    """The files of one conda environment that packing would archive.

    Make one with :meth:`from_prefix`, :meth:`from_name` or :meth:`from_default`, narrow
    it with :meth:`exclude` and :meth:`include` (each returns a new one), then call
    :meth:`pack`::

        env = CondaEnv.from_name("ml").exclude("*.pyx")
        env.pack(output="ml.zip")

    Attributes
    ----------
    prefix : str
        The environment's directory, absolute.
    files : list of File
        What will be archived, one :class:`File` each, sorted by path in the archive.
    ignore_missing_files : bool
        Pack even if files conda installed are missing or were changed. Loading already
        left out the missing ones; changes are only found while packing, so the flag
        stays with the environment and every environment filtered from it.
    """

    def __init__(
        self, prefix: str, files, excluded_files=None, *, ignore_missing_files: bool = False
    ) -> None:
        self.prefix = prefix
        # A FileTable until someone asks for ``files``; then the list they were given.
        self._files = _sorted(files)
        self._excluded_files = excluded_files if excluded_files is not None else []
        self.ignore_missing_files = ignore_missing_files
        self._packages: list[Package] = []
        self._layout = Layout(False, None)

    @property
    def files(self) -> list[File]:
        """The files to archive, sorted by target. A list, as in conda-pack 0.9.2: made
        on first use (packing does not need one), then kept, edits included."""
        if isinstance(self._files, FileTable):
            self._files = list(self._files)
        return self._files

    @files.setter
    def files(self, value) -> None:
        self._files = value

    def _derived(self, files, excluded) -> CondaEnv:
        env = CondaEnv(self.prefix, files, excluded, ignore_missing_files=self.ignore_missing_files)
        env._packages = self._packages
        env._layout = self._layout
        return env

    def __repr__(self) -> str:
        return "CondaEnv<%r, %d files>" % (self.prefix, len(self))

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self):
        return iter(self.files)

    @property
    def name(self) -> str:
        """The last component of :attr:`prefix`: default output names start with it."""
        return os.path.basename(self.prefix)

    @classmethod
    def from_name(cls, name: str, **kwargs) -> CondaEnv:
        """The environment conda knows by ``name`` (``'base'``: conda's root one).

        Keyword arguments are those of :meth:`from_prefix`.
        """
        return cls.from_prefix(name_to_prefix(name), **kwargs)

    @classmethod
    def from_prefix(cls, prefix: str, **kwargs) -> CondaEnv:
        """The environment in the directory ``prefix``.

        ``ignore_editable_packages=True`` and ``ignore_missing_files=True`` load an
        environment that would otherwise be refused (see :func:`conda_pack.pack`).
        Raises :class:`CondaPackException` if ``prefix`` is not a conda environment.
        """
        prefix = os.path.abspath(prefix)
        files, packages, layout = read_files(prefix, **kwargs)
        env = cls(prefix, files, ignore_missing_files=kwargs.get("ignore_missing_files", False))
        env._packages = packages
        env._layout = layout
        return env

    @classmethod
    def from_default(cls, **kwargs) -> CondaEnv:
        """The activated environment (``$CONDA_PREFIX``), else conda's default one.

        Keyword arguments are those of :meth:`from_prefix`.
        """
        return cls.from_prefix(name_to_prefix(), **kwargs)

    def exclude(self, pattern: str) -> CondaEnv:
        """A new env without the files matching the glob ``pattern``."""
        files, excluded = _partition(self._files, pattern)
        return self._derived(files, _joined(self._excluded_files, excluded))

    def include(self, pattern: str) -> CondaEnv:
        """A new env with the excluded files matching ``pattern`` added back."""
        excluded, files = _partition(self._excluded_files, pattern)
        return self._derived(_joined(self._files, files), excluded)

    def pack(
        self,
        output=None,
        format="infer",
        arcroot="",
        dest_prefix=None,
        parcel_root=None,
        parcel_name=None,
        parcel_version=None,
        parcel_distro=None,
        verbose=False,
        force=False,
        compress_level=4,
        n_threads=None,
        zip_symlinks=False,
        zip_64=True,
        auto_relocate=True,
    ) -> str:
        """Write an archive of this environment; return the archive's path.

        Parameters are those of :func:`conda_pack.pack`, less the ones choosing the env.
        """
        # The package's one import against its layering (see tests/test_layering.py):
        # the packer builds on this module, and conda-pack's API puts ``pack`` here.
        from .packing import pack_env

        return pack_env(
            self,
            output=output,
            format=format,
            arcroot=arcroot,
            dest_prefix=dest_prefix,
            parcel_root=parcel_root,
            parcel_name=parcel_name,
            parcel_version=parcel_version,
            parcel_distro=parcel_distro,
            verbose=verbose,
            force=force,
            compress_level=compress_level,
            n_threads=n_threads,
            zip_symlinks=zip_symlinks,
            zip_64=zip_64,
            auto_relocate=auto_relocate,
        )
