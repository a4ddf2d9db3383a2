"""An environment as a list of files to pack: :class:`CondaEnv` and :class:`File`."""

from __future__ import annotations

import glob
import json
import os
from fnmatch import fnmatch
from importlib.util import source_from_cache
from operator import attrgetter

from .errors import CondaPackException
from .locate import name_to_prefix
from .metadata import Layout, Package, read_environment
from .warn import warn

__all__ = ["CondaEnv", "File", "load_environment"]

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
# Written by conda-unpack into an unpacked environment; meaningless in a new archive.
UNPACK_STATE = "conda-meta/.conda-unpack-prefix"


class File:
    """A single archive record.

    Parameters
    ----------
    source : str
        Absolute path to the source.
    target : str
        Relative path from the target prefix (e.g. ``lib/foo/bar.py``).
    is_conda : bool, optional
        Whether the file was installed by conda, or comes from somewhere else.
    file_mode : {None, 'text', 'binary', 'unknown'}, optional
        The type of record.
    prefix_placeholder : None or str, optional
        The prefix placeholder in the file (if any)
    """

    __slots__ = (
        "_source",
        "_root",
        "target",
        "is_conda",
        "file_mode",
        "prefix_placeholder",
        "_record",
        "_package",
        "_size",
        "_check_size",
    )

    def __init__(
        self,
        source: str,
        target: str,
        is_conda: bool = True,
        file_mode: str | None = None,
        prefix_placeholder: str | None = None,
    ) -> None:
        self._source = source
        self._root = None
        self.target = target
        self.is_conda = is_conda
        self.file_mode = file_mode
        self.prefix_placeholder = prefix_placeholder
        #: (size_in_bytes, sha256, sha256_in_prefix) of a conda file with a placeholder.
        self._record: tuple | None = None
        self._package: Package | None = None
        #: Size from the scan or the record, for progress and batching.
        self._size: int | None = None
        #: The packer must report this conda file if its size is not `_size`.
        self._check_size = False

    @classmethod
    def _in_env(cls, root, target, is_conda, file_mode, placeholder, size, package) -> File:
        """A file at ``root/target``; its source path is derived when asked for, which
        saves a string per file in environments of hundreds of thousands of files."""
        f = cls.__new__(cls)
        f._source = None
        f._root = root
        f.target = target
        f.is_conda = is_conda
        f.file_mode = file_mode
        f.prefix_placeholder = placeholder
        f._record = None
        f._package = package
        f._size = size
        f._check_size = False
        return f

    @property
    def source(self) -> str:
        if self._source is not None:
            return self._source
        return self._root + "/" + self.target

    @source.setter
    def source(self, value: str) -> None:
        self._source = value

    def __repr__(self) -> str:
        return "File<%r, is_conda=%r>" % (self.target, self.is_conda)


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


def _size_is_checkable(path: str, path_type, expected, kind: str) -> bool:
    """Whether a conda file must still be the size its package recorded.

    Plain (hard-linked or copied) files without a prefix are installed byte for byte, so
    a different size means something (pip, an editor) changed them; the packer compares
    when it reads the file. Files with a prefix are checked by hash when their placeholder
    is restored. Bytecode is exempt: Python rewrites a stale .pyc itself, which is no
    damage.
    """
    return (
        expected is not None
        and kind == "f"
        and path_type in (None, "hardlink")
        and not path.endswith((".pyc", ".pyo"))
    )


def load_environment(
    prefix: str,
    on_missing_cache: str = "warn",
    ignore_editable_packages: bool = False,
    ignore_missing_files: bool = False,
) -> tuple[list[File], list[Package], Layout]:
    """The files of the environment at ``prefix``, its packages and its layout."""
    if not os.path.exists(prefix):
        raise CondaPackException("Environment path %r doesn't exist" % prefix)
    conda_meta = os.path.join(prefix, "conda-meta")
    if not os.path.exists(conda_meta):
        raise CondaPackException("Path %r is not a conda environment" % prefix)

    packages, layout, entries = read_environment(prefix, list(SKIP_TOP))
    if layout.site_packages is not None and not ignore_editable_packages:
        check_no_editable_packages(prefix, layout.site_packages)

    bin_prefix = layout.bin_dir + "/"
    files: list[File] = []
    managed: set[str] = set()
    missing: dict[tuple[str, str], list[str]] = {}
    in_env = File._in_env
    for entry in entries:
        path, index, kind, size, ptype, placeholder, mode, expected, sha, sha_in = entry
        if index is None:
            break  # the unrecorded files follow the recorded ones
        pkg = packages[index]
        managed.add(path)
        if kind is None:
            if not (path.endswith(".pyc") or ptype in _MAY_BE_ABSENT or path == ".nonadmin"):
                missing.setdefault((pkg.name, pkg.version), []).append(path)
            continue
        if kind == "l" and ptype not in ("softlink", None):
            # Installed as a link into the package cache: pack the file it points to.
            real = os.path.realpath(prefix + "/" + path)
            if os.path.isfile(real):
                f = File(real, path, True, None, None)
                f._package, f._size = pkg, os.path.getsize(real)
                files.append(f)
                continue
        if not placeholder and pkg.legacy:
            placeholder, mode = pkg.legacy.get(path, (None, None))
        if placeholder:
            f = in_env(prefix, path, True, mode or "text", placeholder, size, pkg)
            f._record = (expected, sha, sha_in)
        elif (
            (not pkg.placeholders_known and ptype != "softlink")
            or ptype in _INSTALLER_MADE
            # Without path types (old records), conda-pack has always scanned noarch scripts.
            or (ptype is None and pkg.is_noarch_python and path.startswith(bin_prefix))
        ):
            f = in_env(prefix, path, True, "unknown", None, size, pkg)
        else:
            f = in_env(prefix, path, True, None, None, size, pkg)
            # Inlined _size_is_checkable: this loop runs once per file.
            f._check_size = (
                expected is not None
                and kind == "f"
                and (ptype is None or ptype == "hardlink")
                and not path.endswith((".pyc", ".pyo"))
            )
        files.append(f)

    if missing and not ignore_missing_files:
        raise missing_files_error(missing)
    if missing:
        gone = {p for paths in missing.values() for p in paths}
        files = [f for f in files if f.target not in gone]

    records = {"conda-meta/" + p.filename for p in packages}
    records.add("conda-meta/history")
    # conda of old put its own scripts into child environments; conda-unpack leaves state.
    skip = {layout.bin_dir + "/" + n for n in ("conda", "activate", "deactivate")}
    if layout.windows:
        skip |= {"Scripts/" + n for n in ("conda.bat", "activate.bat", "deactivate.bat")}
    skip.add(UNPACK_STATE)
    for entry in entries:
        path, index, kind, size = entry[0], entry[1], entry[2], entry[3]
        if index is not None:
            continue
        if kind == "o" or path in skip or path in managed:
            continue
        if "/" not in path and (path.endswith("~") or path.endswith(".DS_STORE")):
            continue
        if path in records:
            files.append(in_env(prefix, path, True, None, None, size, None))
            continue
        if path.endswith(".pyc"):
            try:
                if source_from_cache(path) in managed:
                    continue  # bytecode of a conda file, regenerated where it lands
            except ValueError:
                pass
        files.append(in_env(prefix, path, False, "unknown", None, size, None))

    unknown = [p for p in packages if not p.placeholders_known]
    if unknown and on_missing_cache in ("warn", "raise"):
        listing = "\n".join(
            "- %s=%s   %s" % (p.name, p.version, p.url or p.filename) for p in unknown
        )
        if on_missing_cache == "raise":
            raise CondaPackException(_UNCACHED.format(listing))
        warn(_UNCACHED_WARNING.format(listing))
    return files, packages, layout


class CondaEnv:
    """A Conda environment for packaging.

    Use :func:`CondaEnv.from_prefix`, :func:`CondaEnv.from_name`, or
    :func:`CondaEnv.from_default` instead of the default constructor.

    Attributes
    ----------
    prefix : str
        The path to the conda environment.
    files : list of File
        A list of :class:`File` objects representing all files in conda
        environment.
    """

    def __init__(self, prefix: str, files, excluded_files=None) -> None:
        self.prefix = prefix
        self.files = sorted(files, key=attrgetter("target"))
        self._excluded_files = list(excluded_files or [])
        self._packages: list[Package] = []
        self._layout = Layout(False, None)

    def _derived(self, files, excluded) -> CondaEnv:
        env = CondaEnv(self.prefix, files, excluded)
        env._packages = self._packages
        env._layout = self._layout
        return env

    def __repr__(self) -> str:
        return "CondaEnv<%r, %d files>" % (self.prefix, len(self))

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self):
        return iter(self.files)

    @property
    def name(self) -> str:
        """The name of the environment"""
        return os.path.basename(self.prefix)

    @classmethod
    def from_name(cls, name: str, **kwargs) -> CondaEnv:
        """Create a ``CondaEnv`` from a named environment (``base`` is the root)."""
        return cls.from_prefix(name_to_prefix(name), **kwargs)

    @classmethod
    def from_prefix(cls, prefix: str, **kwargs) -> CondaEnv:
        """Create a ``CondaEnv`` from a given prefix."""
        prefix = os.path.abspath(prefix)
        files, packages, layout = load_environment(prefix, **kwargs)
        env = cls(prefix, files)
        env._packages = packages
        env._layout = layout
        return env

    @classmethod
    def from_default(cls, **kwargs) -> CondaEnv:
        """Create a ``CondaEnv`` from the current (activated) environment."""
        return cls.from_prefix(name_to_prefix(), **kwargs)

    def exclude(self, pattern: str) -> CondaEnv:
        """A new env without the files matching the glob ``pattern``."""
        files, excluded = [], list(self._excluded_files)
        for f in self.files:
            (excluded if fnmatch(f.target, pattern) else files).append(f)
        return self._derived(files, excluded)

    def include(self, pattern: str) -> CondaEnv:
        """A new env with the excluded files matching ``pattern`` added back."""
        files, excluded = list(self.files), []
        for f in self._excluded_files:
            (files if fnmatch(f.target, pattern) else excluded).append(f)
        return self._derived(files, excluded)

    def _output_and_format(self, output=None, format="infer"):
        from .plan import output_and_format

        return output_and_format(self.name, output, format)

    def _parcel_output(self, parcel_root, parcel_name, parcel_version, parcel_distro):
        from .plan import parcel_output

        return parcel_output(self.name, parcel_root, parcel_name, parcel_version, parcel_distro)

    def _check_output_location(self, output, force):
        from .plan import check_output_location

        check_output_location(output, force)

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
    ) -> str:
        """Package the environment into an archive; returns the archive's path.

        Parameters are those of :func:`conda_pack.pack`, less the ones choosing the env.
        """
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
        )
