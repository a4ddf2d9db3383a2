"""Turn a staged prefix tree into a conda package, the way conda-build would.

The stage directory holds the payload exactly as it will appear in an environment (``bin/…``,
``lib/…``; for ``noarch: python`` packages ``site-packages/…`` and ``python-scripts/…``).  We scan
it, write the ``info/`` metadata conda-build writes (index.json, paths.json with per-file
``prefix_placeholder``/``file_mode``, files, has_prefix, link.json) and let
``conda_package_handling`` produce the ``.conda`` or ``.tar.bz2`` archive, so installers read the
same bytes they would read from a real channel.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from conda_package_handling import api as cph

from .cache import fresh_dir, publish
from .constants import BUILD_TIMESTAMP_MS, LINUX_64, NOARCH, PLACEHOLDER_BYTES

CONDA = ".conda"
TAR_BZ2 = ".tar.bz2"

#: zstd level for ``.conda`` archives. cph defaults to 19, which takes minutes on big payloads;
#: the level changes nothing an installer or packer can observe.
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class PackageMeta:
    """What ``info/index.json`` and ``info/link.json`` say about a package."""

    name: str
    version: str
    build_string: str
    build_number: int = 0
    depends: Sequence[str] = ()
    noarch_python: bool = False
    #: ``console_scripts``-style entry points (``"name = module:func"``), noarch python only.
    entry_points: Sequence[str] = ()
    license: str = "BSD-3-Clause"
    fmt: str = CONDA

    @property
    def subdir(self) -> str:
        return NOARCH if self.noarch_python else LINUX_64

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build_string}{self.fmt}"


@dataclass
class PathRecord:
    """One ``info/paths.json`` entry."""

    path: str
    path_type: str  # "hardlink" (a regular file) or "softlink"
    sha256: str | None = None
    size: int | None = None
    placeholder: str | None = None
    file_mode: str | None = None  # "text" or "binary" when a placeholder was found

    def to_json(self) -> dict[str, object]:
        entry: dict[str, object] = {"_path": self.path, "path_type": self.path_type}
        if self.placeholder is not None:
            entry["prefix_placeholder"] = self.placeholder
            entry["file_mode"] = self.file_mode
        if self.sha256 is not None:
            entry["sha256"] = self.sha256
        if self.size is not None:
            entry["size_in_bytes"] = self.size
        return entry


def classify(data: bytes, relpath: str) -> str | None:
    """conda-build's rule: ``None`` without placeholder, else ``binary`` if any NUL byte, else
    ``text``.  ``.pyc`` files are never scanned (marshalled strings are length-prefixed, so
    patching them would corrupt them)."""
    if relpath.endswith(".pyc") or PLACEHOLDER_BYTES not in data:
        return None
    return "binary" if b"\x00" in data else "text"


def _sha256_file(path: Path) -> tuple[str, int, bytes]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data), data


def scan_stage(stage: Path) -> list[PathRecord]:
    """Describe every file and symlink under ``stage`` (directories are implied, as in
    conda-build: empty directories are not part of a package)."""
    records: list[PathRecord] = []
    for root, dirs, files in os.walk(stage):
        rel_root = Path(root).relative_to(stage)
        # A symlink to a directory shows up in ``dirs``; it is a path of its own.
        names = list(files) + [d for d in dirs if (Path(root) / d).is_symlink()]
        for name in names:
            full = Path(root) / name
            rel = (rel_root / name).as_posix()
            if rel.startswith("info/"):
                continue
            records.append(_describe(full, rel))
    records.sort(key=lambda r: r.path)
    return records


def _describe(full: Path, rel: str) -> PathRecord:
    if full.is_symlink():
        record = PathRecord(rel, "softlink")
        if full.is_file():
            # conda-build hashes what the link resolves to.
            record.sha256, record.size, _ = _sha256_file(full)
        return record
    if not stat.S_ISREG(full.lstat().st_mode):
        raise ValueError(f"unsupported file type in package stage: {full}")
    sha, size, data = _sha256_file(full)
    mode = classify(data, rel)
    placeholder = PLACEHOLDER_BYTES.decode() if mode else None
    return PathRecord(rel, "hardlink", sha, size, placeholder, mode)


def write_info(stage: Path, meta: PackageMeta, records: Sequence[PathRecord]) -> list[str]:
    """Write the ``info/`` directory; return the archive member list (payload + info)."""
    info = stage / "info"
    info.mkdir(exist_ok=True)
    index: dict[str, object] = {
        "name": meta.name,
        "version": meta.version,
        "build": meta.build_string,
        "build_number": meta.build_number,
        "depends": list(meta.depends),
        "license": meta.license,
        "subdir": meta.subdir,
        "timestamp": BUILD_TIMESTAMP_MS,
    }
    if meta.noarch_python:
        index["noarch"] = "python"
    else:
        index.update(arch="x86_64", platform="linux")
    _write_json(info / "index.json", index)
    _write_json(
        info / "paths.json",
        {"paths": [r.to_json() for r in records], "paths_version": 1},
    )
    (info / "files").write_text("".join(f"{r.path}\n" for r in records))
    prefix_lines = [f"{r.placeholder} {r.file_mode} {r.path}\n" for r in records if r.placeholder]
    if prefix_lines:
        (info / "has_prefix").write_text("".join(prefix_lines))
    if meta.noarch_python:
        _write_json(
            info / "link.json",
            {
                "noarch": {"type": "python", "entry_points": list(meta.entry_points)},
                "package_metadata_version": 1,
            },
        )
    _write_json(info / "about.json", {"summary": f"{meta.name}, built by tests.envfactory"})
    info_members = sorted(p.relative_to(stage).as_posix() for p in info.iterdir())
    return [r.path for r in records] + info_members


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def whole_second_mtimes(stage: Path) -> None:
    """Drop sub-second mtimes, as conda-build's archives have none.

    A .pyc records its source's mtime truncated to the second; the archive-to-install path
    rounds a fractional mtime instead, which would leave every compiled module stale (and
    rewritten by the first interpreter that imports it).
    """
    for path in [stage, *stage.rglob("*")]:
        st = path.lstat()
        whole = st.st_mtime_ns - st.st_mtime_ns % 1_000_000_000
        os.utime(path, ns=(whole, whole), follow_symlinks=False)


def build_package(stage: Path, meta: PackageMeta, out_dir: Path) -> Path:
    """Package ``stage`` as ``out_dir/<subdir>/<filename>`` and return that path.

    The archive is written to a temporary name and renamed into place, so a crash never leaves a
    truncated package that a later run would trust.
    """
    records = scan_stage(stage)
    if not records:
        raise ValueError(f"empty package stage for {meta.name}")
    members = write_info(stage, meta, records)
    whole_second_mtimes(stage)
    final = out_dir / meta.subdir / meta.filename
    tmp_dir = fresh_dir(out_dir / meta.subdir / f".tmp-{meta.filename}")
    try:
        kwargs = {"compression_level": ZSTD_LEVEL} if meta.fmt == CONDA else {}
        cph.create(str(stage), members, meta.filename, out_folder=str(tmp_dir), **kwargs)
        publish(tmp_dir / meta.filename, final)
    finally:
        for leftover in tmp_dir.iterdir():
            leftover.unlink()
        tmp_dir.rmdir()
    return final
