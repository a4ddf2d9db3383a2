"""Reading conda's records of what is installed in an environment.

For every installed file we want its path, and — when it holds the install prefix — the
placeholder it was built with and whether it is text or binary. Installers record this
differently: conda and rattler (pixi) copy it into ``conda-meta/*.json``; micromamba does
not, so it comes from the package cache's ``info/paths.json`` (or the legacy
``info/has_prefix``); with neither, the files must be scanned for the prefix.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from . import _core
from .errors import CondaPackException

# conda-build's original placeholder, implied by a one-field has_prefix line. Split so that
# this file itself never holds it.
LEGACY_PLACEHOLDER = "/opt/anaconda1anaconda2" + "anaconda3"

# (_path, path_type, prefix_placeholder, file_mode, size_in_bytes, sha256, sha256_in_prefix)
PathTuple = tuple


@dataclass
class Package:
    """One installed package: its record plus the resolved facts about its files."""

    filename: str
    name: str
    version: str
    build: str
    url: str | None
    subdir: str | None
    noarch: str | None
    link_source: str | None
    #: Installed paths (relative to the prefix) with their placeholder and mode.
    paths: list[PathTuple] = field(default_factory=list)
    #: False when neither conda-meta nor the package cache says which files hold the
    #: prefix: then every file is scanned for it.
    placeholders_known: bool = True

    @property
    def is_noarch_python(self) -> bool:
        return self.noarch == "python"

    def as_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "build": self.build}


@dataclass
class Layout:
    """Where things live in an environment of the target platform."""

    windows: bool
    site_packages: str | None

    @property
    def bin_dir(self) -> str:
        return "Scripts" if self.windows else "bin"


def detect_layout(records: list[dict]) -> Layout:
    """The platform comes from the packages' subdirs, not from the OS we run on."""
    windows = any(str(r.get("subdir") or "").startswith("win-") for r in records)
    pythons = [r for r in records if r.get("name") == "python"]
    if len(pythons) > 1:
        raise CondaPackException(
            "Unexpected failure, multiple versions of python found in prefix: "
            + ", ".join(sorted(r["filename"] for r in pythons))
        )
    if not pythons:
        return Layout(windows, None)
    if windows:
        return Layout(True, "Lib/site-packages")
    major_minor = ".".join(str(pythons[0]["version"]).split(".")[:2])
    return Layout(False, "lib/python%s/site-packages" % major_minor)


def read_has_prefix(path: str) -> dict[str, tuple[str, str]]:
    """conda-build's legacy ``info/has_prefix``: ``[placeholder mode] path`` per line."""
    out = {}
    with open(path, encoding="utf-8") as fil:
        for line in fil:
            if not line.strip():
                continue
            rec = [x.strip("\"'") for x in shlex.split(line, posix=False)]
            if len(rec) == 1:
                out[rec[0]] = (LEGACY_PLACEHOLDER, "text")
            elif len(rec) == 3:
                out[rec[2]] = (rec[0], rec[1])
            else:
                raise CondaPackException("Failed to parse has_prefix file %r" % path)
    return out


def installed_path(rel: str, pkg: Package, layout: Layout) -> str:
    """Where a package-relative path lands in the environment (noarch: python moves)."""
    if pkg.is_noarch_python and layout.site_packages is not None:
        if rel.startswith("site-packages/"):
            return layout.site_packages + rel[13:]
        if rel.startswith("python-scripts/"):
            return layout.bin_dir + rel[14:]
    return rel


def package_path(installed: str, pkg: Package, layout: Layout) -> str:
    """The inverse of :func:`installed_path`, to find a file in the package cache."""
    if pkg.is_noarch_python and layout.site_packages is not None:
        sp = layout.site_packages + "/"
        if installed.startswith(sp):
            return "site-packages/" + installed[len(sp) :]
        if installed.startswith(layout.bin_dir + "/"):
            return "python-scripts/" + installed[len(layout.bin_dir) + 1 :]
    return installed


def _from_package(
    pkg: Package, layout: Layout, entries: list[PathTuple] | None
) -> dict[str, tuple] | None:
    """Placeholder and mode per installed path from the package cache, if it has them."""
    if entries is not None:
        return {installed_path(e[0], pkg, layout): (e[2], e[3], e[4], e[5]) for e in entries}
    if pkg.link_source is None:
        return None
    has_prefix = os.path.join(pkg.link_source, "info", "has_prefix")
    files = os.path.join(pkg.link_source, "info", "files")
    if not os.path.exists(files):
        return None
    out = {}
    prefixed = read_has_prefix(has_prefix) if os.path.exists(has_prefix) else {}
    with open(files, encoding="utf-8") as fil:
        for line in fil:
            rel = line.strip()
            if rel:
                ph, mode = prefixed.get(rel, (None, None))
                out[installed_path(rel, pkg, layout)] = (ph, mode, None, None)
    return out


def read_packages(prefix: str) -> tuple[list[Package], Layout]:
    """Every package installed in ``prefix``, with its files resolved."""
    conda_meta = os.path.join(prefix, "conda-meta")
    records = _core.read_records(conda_meta)
    layout = detect_layout(records)
    packages = []
    need_cache = []
    for r in records:
        pkg = Package(
            filename=r["filename"],
            name=r["name"],
            version=r["version"],
            build=r["build"],
            url=r["url"],
            subdir=r["subdir"],
            noarch=r["noarch"],
            link_source=r["link_source"],
        )
        paths = r["paths"]
        if paths is None:
            paths = [(f, None, None, None, None, None, None) for f in r["files"]]
        pkg.paths = paths
        if not any(p[2] for p in paths):
            # No placeholder recorded: either none of its files hold the prefix, or the
            # installer (micromamba) did not copy that part of the package's record.
            need_cache.append(pkg)
        packages.append(pkg)

    dirs = [p.link_source for p in need_cache if p.link_source and os.path.isdir(p.link_source)]
    from_json = dict(zip(dirs, _core.read_paths_json(dirs))) if dirs else {}
    for pkg in need_cache:
        usable = pkg.link_source in from_json
        info = _from_package(pkg, layout, from_json.get(pkg.link_source)) if usable else None
        if info is None:
            pkg.placeholders_known = False
            continue
        resolved = []
        for t in pkg.paths:
            ph, mode, size, sha = info.get(t[0], (None, None, None, None))
            if ph:
                t = (
                    t[0],
                    t[1],
                    ph,
                    mode or "text",
                    t[4] if t[4] is not None else size,
                    t[5] or sha,
                    t[6],
                )
            resolved.append(t)
        pkg.paths = resolved
    return packages, layout
