"""win-64 packages: what conda-build produces on Windows, built on Linux for py-rattler.

Windows packages differ from Linux ones in ways a packer must see: the layout (``python.exe``
at the root, ``Lib/site-packages``, ``Library/bin``, ``Scripts``), a short placeholder that is
the build machine's own path (``D:\\bld\\...``; Windows binaries are never patched, so it is
not padded), and files that hold that path in several spellings. conda-build searches each
file for the backslash, forward-slash and doubled-backslash forms and records one of them;
the other copies go unrecorded (conda-pack #141). Installed with ``platform="win-64"``,
rattler replaces the recorded spelling in text files, copies binaries untouched, and writes
``Scripts/<name>-script.py`` + ``Scripts/<name>.exe`` for noarch entry points.

The programs are stand-ins (nothing here runs on Linux): ``python.exe`` and the DLL are
small PE-looking blobs. What matters is their bytes: where the placeholder sits, and the
shape of a distlib launcher (stub + ``#!<python>`` line + appended zip) whose shebang
conda-unpack must rewrite.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from conda_package_handling import api as cph

from .cache import fresh_dir, publish
from .constants import NOARCH
from .pkgbuild import CONDA, TAR_BZ2, ZSTD_LEVEL, PackageMeta, PathRecord, whole_second_mtimes
from .pkgbuild import write_info as _write_info
from .recipes import Recipe, Staged, _write

WIN_64 = "win-64"
#: The build prefix a Windows package was made in (conda-build: ``<croot>\<pkg>_<ts>\_h_env``).
WIN_PLACEHOLDER = "D:\\bld\\envfactory_1700000000000\\_h_env"
#: The same path as Unix tools and Qt write it, and as it appears escaped in Python strings.
WIN_PLACEHOLDER_FORWARD = WIN_PLACEHOLDER.replace("\\", "/")
WIN_PLACEHOLDER_ESCAPED = WIN_PLACEHOLDER.replace("\\", "\\\\")
#: conda-build's search order; a file's record names the first spelling found in it.
SPELLINGS = (WIN_PLACEHOLDER, WIN_PLACEHOLDER_FORWARD, WIN_PLACEHOLDER_ESCAPED)
PYTHON_VERSION = "3.11.9"

#: Bytes that start like a Windows program; enough for anything that only looks at them.
PE_STUB = (
    b"MZ\x90\x00\x03" + bytes(55) + b"\x80\x00\x00\x00"
    b"This program cannot be run in DOS mode.\r\n$" + bytes(64)
)


def placeholder_in(data: bytes) -> str | None:
    """The spelling conda-build would record for ``data``, or None."""
    for spelling in SPELLINGS:
        if spelling.encode() in data:
            return spelling
    return None


def distlib_launcher(python: str, module: str, func: str) -> bytes:
    """A console-script ``.exe`` as pip (distlib) writes it on Windows: a launcher, the
    ``#!`` line naming the interpreter, then a zip whose ``__main__.py`` calls the entry
    point. The launcher finds the shebang by locating the zip at the end of its own file."""
    main = f"import sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("__main__.py", date_time=(2023, 11, 14, 22, 13, 20))
        zf.writestr(info, main)
    return PE_STUB + b"distlib launcher stand-in\0" + f"#!{python}\r\n".encode() + buf.getvalue()


# -- recipes -----------------------------------------------------------------------------------
def stage_win_python(stage: Path, _scratch: Path, _cpython: object) -> Staged:
    """The interpreter's layout: python.exe at the root, the stdlib in Lib/."""
    (stage / "python.exe").write_bytes(PE_STUB + b"python stand-in\0")
    (stage / "python311.dll").write_bytes(PE_STUB + b"python311 stand-in\0")
    _write(stage / "Lib" / "os.py", "# stand-in for the standard library\n")
    _write(stage / "Lib" / "site-packages" / "README.txt", "Third-party packages go here.\n")
    _write(stage / "DLLs" / "_ssl.pyd", "stand-in extension module\n")
    return Staged(PYTHON_VERSION)


WINLIB_BAT = (
    "@echo off\n"
    f'set "WINLIB_HOME={WIN_PLACEHOLDER}\\Library"\n'
    f'set "WINLIB_DATA={WIN_PLACEHOLDER_FORWARD}/Library/share/winlib"\n'
    f'"{WIN_PLACEHOLDER}\\python.exe" -c "print(1)"\n'
)
WINLIB_CFG = (
    "[paths]\n"
    f"home = {WIN_PLACEHOLDER}\\Library\n"
    f"data = {WIN_PLACEHOLDER_FORWARD}/Library/share/winlib\n"
)
# Qt's qt.conf, written only with forward slashes (conda-pack #141).
WINLIB_QT_CONF = (
    "[Paths]\n"
    f"Prefix = {WIN_PLACEHOLDER_FORWARD}/Library\n"
    f"Binaries = {WIN_PLACEHOLDER_FORWARD}/Library/bin\n"
)
# A path in a Python string literal: the backslashes are escaped.
WINLIB_PY = (
    f'PREFIX = "{WIN_PLACEHOLDER_ESCAPED}"\n'
    'DATA = PREFIX + "/Library/share/winlib"\n\n\n'
    "def main():\n    print(PREFIX)\n"
)
# Extended-length spellings of the prefix, and one of an unrelated path that must stay.
WINLIB_LONG = (
    f"root = \\\\?\\{WIN_PLACEHOLDER}\\Library\n"
    f"root_forward = //?/{WIN_PLACEHOLDER_FORWARD}/Library\n"
    f"other = \\\\?\\C:\\Windows\\System32\n"
)
WINLIB_SCRIPT = (
    f"#!{WIN_PLACEHOLDER}\\python.exe\n# -*- coding: utf-8 -*-\nimport sys\nprint(sys.prefix)\n"
)


def stage_winlib(stage: Path, _scratch: Path, _cpython: object) -> Staged:
    """Every way a Windows package holds its build prefix."""
    lib = stage / "Library"
    dll = PE_STUB + b"winlib\0" + f"{WIN_PLACEHOLDER}\\Library\\share\\winlib".encode() + bytes(32)
    (lib / "bin").mkdir(parents=True)
    (lib / "bin" / "winlib.dll").write_bytes(dll)
    _write(lib / "bin" / "winlib-env.bat", WINLIB_BAT, crlf=True)
    _write(lib / "share" / "winlib" / "winlib.cfg", WINLIB_CFG)
    _write(lib / "bin" / "qt.conf", WINLIB_QT_CONF)
    _write(lib / "etc" / "winlib-long.ini", WINLIB_LONG)
    # Some packages ship read-only files; Windows refuses to overwrite them (conda-pack #241).
    _write(lib / "etc" / "winlib-ro.ini", WINLIB_CFG, mode=0o444)
    _write(stage / "Lib" / "site-packages" / "winlib_paths.py", WINLIB_PY)
    # setuptools-style entry point: a generic launcher reading the -script.py next to it.
    _write(stage / "Scripts" / "wintool-script.py", WINLIB_SCRIPT, crlf=True)
    (stage / "Scripts" / "wintool.exe").write_bytes(PE_STUB + b"cli launcher stand-in\0")
    # distlib-style entry point: the shebang is inside the .exe, followed by a zip.
    launcher = distlib_launcher(f"{WIN_PLACEHOLDER}\\python.exe", "winlib_paths", "main")
    (stage / "Scripts" / "winlib-tool.exe").write_bytes(launcher)
    return Staged("1.0.0")


@dataclass(frozen=True)
class WinRecipe(Recipe):
    """A recipe whose package is built for win-64 (see :func:`build_windows_package`)."""

    platform: str = WIN_64


WIN_RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        WinRecipe("python", stage_win_python, CONDA, modules=("windows",)),
        WinRecipe("winlib", stage_winlib, TAR_BZ2, depends=("python",), modules=("windows",)),
    )
}


# -- building ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WinPackageMeta(PackageMeta):
    @property
    def subdir(self) -> str:
        return NOARCH if self.noarch_python else WIN_64


def _describe(full: Path, rel: str) -> PathRecord:
    data = full.read_bytes()
    sha, size = hashlib.sha256(data).hexdigest(), len(data)
    placeholder = None if rel.endswith(".pyc") else placeholder_in(data)
    mode = None if placeholder is None else ("binary" if b"\0" in data else "text")
    return PathRecord(rel, "hardlink", sha, size, placeholder, mode)


def scan_windows_stage(stage: Path) -> list[PathRecord]:
    """paths.json records, each file's placeholder in the spelling it holds."""
    records = []
    for full in sorted(stage.rglob("*")):
        rel = full.relative_to(stage).as_posix()
        if rel.startswith("info/") or full.is_dir():
            continue
        if full.is_symlink() or not stat.S_ISREG(full.lstat().st_mode):
            raise ValueError(f"unsupported file type in a Windows package stage: {full}")
        records.append(_describe(full, rel))
    return records


def build_windows_package(stage: Path, meta: WinPackageMeta, out_dir: Path) -> Path:
    """Package ``stage`` as ``out_dir/win-64/<filename>`` (see ``pkgbuild.build_package``)."""
    records = scan_windows_stage(stage)
    members = _write_info(stage, meta, records)
    index_path = stage / "info" / "index.json"
    index = json.loads(index_path.read_text())
    index.update(arch="x86_64", platform="win")
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
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
