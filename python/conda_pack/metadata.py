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
    #: False when neither conda-meta nor the package cache says which files hold the
    #: prefix: then every file is scanned for it.
    placeholders_known: bool = True
    #: Placeholders from a legacy ``info/has_prefix``, by installed path.
    legacy: dict = field(default_factory=dict)

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
    #: The platform its packages were built for (``win-64``, ``linux-64``...), if any is
    #: not noarch: it picks the Windows launcher's architecture.
    subdir: str | None = None

    @property
    def bin_dir(self) -> str:
        return "Scripts" if self.windows else "bin"


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


def _legacy_prefixes(pkg: Package, layout: Layout) -> dict[str, tuple[str, str]]:
    """Placeholders from a cached package's pre-paths.json ``info/has_prefix``."""
    if pkg.link_source is None:
        return {}
    has_prefix = os.path.join(pkg.link_source, "info", "has_prefix")
    if not os.path.exists(has_prefix):
        return {}
    return {installed_path(k, pkg, layout): v for k, v in read_has_prefix(has_prefix).items()}


def read_environment(prefix: str, skip_top: list[str]) -> tuple[list[Package], Layout, dict]:
    """Packages, layout and the columns of matched entries (see ``_core.index_env``) of
    ``prefix``."""
    records, columns, windows, python_version = _core.index_env(prefix, skip_top)
    pythons = [r["filename"] for r in records if r["name"] == "python"]
    if len(pythons) > 1:
        raise CondaPackException(
            "Unexpected failure, multiple versions of python found in prefix: "
            + ", ".join(sorted(pythons))
        )
    subdir = next((r["subdir"] for r in records if r["subdir"] not in (None, "noarch")), None)
    if python_version is None:
        layout = Layout(windows, None, subdir)
    elif windows:
        layout = Layout(True, "Lib/site-packages", subdir)
    else:
        major_minor = ".".join(python_version.split(".")[:2])
        layout = Layout(False, "lib/python%s/site-packages" % major_minor, subdir)
    packages = []
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
            placeholders_known=r["placeholders"] != _core.PLACEHOLDERS_UNKNOWN,
        )
        if not pkg.placeholders_known:
            pkg.legacy = _legacy_prefixes(pkg, layout)
            pkg.placeholders_known = bool(pkg.legacy)
        packages.append(pkg)
    return packages, layout, columns
