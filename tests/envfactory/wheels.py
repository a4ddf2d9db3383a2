"""Wheels: write small ones by hand, and unpack any pure-Python wheel as a noarch conda payload.

No build backend or network is needed: a wheel is a zip with a ``.dist-info`` directory whose
``RECORD`` lists urlsafe-base64 sha256 digests.  Unpacking a wheel into ``site-packages/`` plus
``python-scripts/`` and turning its console scripts into ``info/link.json`` entry points is what
conda-build's ``noarch: python`` does, so packages made this way install like conda-forge's pip.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

#: Fixed zip timestamp so hand-written wheels are byte-for-byte reproducible.
_ZIP_DATE = (2023, 11, 14, 22, 13, 20)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def normalize(name: str) -> str:
    """Wheel filename form of a project name (``condatest-lib`` -> ``condatest_lib``)."""
    return name.replace("-", "_").replace(".", "_")


def write_wheel(
    out_dir: Path,
    name: str,
    version: str,
    files: Mapping[str, str | bytes],
    console_scripts: Mapping[str, str] | None = None,
    summary: str = "built by tests.envfactory",
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` holding ``files`` (paths relative to
    site-packages) and return its path."""
    dist_info = f"{normalize(name)}-{version}.dist-info"
    members: dict[str, bytes] = {
        path: data.encode() if isinstance(data, str) else data for path, data in files.items()
    }
    members[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
    ).encode()
    members[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests.envfactory\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    if console_scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(console_scripts.items()))
        members[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in sorted(members.items()))
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{normalize(name)}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return wheel


def console_scripts(wheel: Path) -> dict[str, str]:
    """The wheel's ``[console_scripts]`` as ``{name: "module:func"}``."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        if not names:
            return {}
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(zf.read(names[0]).decode())
    if not parser.has_section("console_scripts"):
        return {}
    return {k.strip(): v.strip() for k, v in parser.items("console_scripts")}


def unpack_as_noarch(wheel: Path, stage: Path, installer: str = "conda") -> None:
    """Lay out a pure-Python wheel the way a ``noarch: python`` package holds it.

    ``INSTALLER`` is set to ``conda`` (as conda-build's pip step leaves it), which tells pip the
    files belong to another installer but still lets ``pip uninstall`` remove them via RECORD.
    """
    site = stage / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        dist_info = ""
        for item in zf.infolist():
            if item.is_dir():
                continue
            parts = PurePosixPath(item.filename).parts
            if parts[0].endswith(".data"):
                kind, rest = parts[1], parts[2:]
                if kind == "scripts":
                    target = stage / "python-scripts" / Path(*rest)
                elif kind in ("purelib", "platlib"):
                    target = site / Path(*rest)
                else:
                    raise ValueError(f"unsupported wheel data kind {kind!r} in {wheel}")
            else:
                target = site / Path(*parts)
                if parts[0].endswith(".dist-info"):
                    dist_info = parts[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(item))
    if not dist_info:
        raise ValueError(f"{wheel} has no .dist-info")
    installer_file = site / dist_info / "INSTALLER"
    installer_file.write_text(f"{installer}\n")
    record = site / dist_info / "RECORD"
    with record.open("a") as handle:
        handle.write(f"{dist_info}/INSTALLER,,\n")


def entry_point_lines(scripts: Mapping[str, str], wanted: Iterable[str] | None = None) -> list[str]:
    """``info/link.json`` entry points (``"name = module:func"``), optionally only ``wanted``."""
    keep = set(wanted) if wanted is not None else set(scripts)
    return [f"{k} = {v}" for k, v in sorted(scripts.items()) if k in keep]
