"""Files conda-pack generates into every archive: conda-unpack, activation scripts, and
parcel metadata. Their sources live beside this module; this module fills them in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import CondaPackException
from ..traces import HOOK_MODULE, hook_paths

__all__ = [
    "Generated",
    "PrefixRecord",
    "PrefixRows",
    "ShebangRecord",
    "activation_scripts",
    "conda_unpack_files",
    "conda_unpack_program",
    "conda_unpack_script",
    "parcel_files",
    "relocation_hook",
    "windows_launcher",
]

# conda-unpack is Python; this prelude, a no-op string to Python, lets `sh` find an
# interpreter for it: the environment's own first (it runs before relocation), then any
# Python 3 on PATH, so the archive needs nothing installed on the target. -I -S: it needs
# only the standard library, so neither PYTHON* variables nor the site-packages' .pth files
# (slow to process, and possibly broken before relocation) can get in its way.
_SH_PRELUDE = """\
#!/bin/sh
''':'
case $0 in */*) bin=${0%/*} ;; *) bin=. ;; esac
bin=$(CDPATH= cd -- "$bin" && pwd) || exit 1
for py in "$bin/python3" "$bin/python" python3 python; do
    if "$py" -I -S -c 'import sys; sys.exit(sys.version_info < (3, 6))' >/dev/null 2>&1; then
        exec "$py" -I -S "$0" "$@"
    fi
done
echo "conda-unpack: no Python 3.6+ found (tried $bin/python3, $bin/python and PATH)" >&2
exit 127
'''
"""


class PrefixRecord(NamedTuple):
    """A file conda-unpack must rewrite: it holds ``placeholder`` in ``mode``; for a
    binary file, ``offsets`` are where it starts in each C string holding it."""

    path: str
    placeholder: str
    mode: str
    offsets: tuple = ()


class ShebangRecord(NamedTuple):
    """A script whose first line conda-unpack points at ``prefix/exe``."""

    path: str
    exe: str
    options: str


class Generated(NamedTuple):
    """A generated file: where it goes in the environment, its bytes, its mode."""

    target: str
    data: bytes
    mode: int


def _resource(*parts: str):
    # Imported when first needed: importlib.resources (with pathlib and zipfile behind
    # it) is a noticeable share of conda-pack's start-up, which every run waits for.
    from importlib import resources

    return resources.files(__package__).joinpath(*parts)


def _read(name: str) -> str:
    return _resource(name).read_text(encoding="utf-8")


def _script(name: str) -> bytes:
    return _resource("scripts", name).read_bytes()


_encode = json.JSONEncoder(separators=(",", ":")).encode

#: Records encoded per call of the JSON encoder when rows are made from a collection.
_BATCH = 1024


class PrefixRows:
    """conda-unpack's prefix rows, encoded as JSON as records are added, a batch at a
    time. Packing adds each chunk's records on its reports thread while the core writes
    the next chunk, so the end of the archive does not wait for ~15k rows (0.13 s on the
    3 GB benchmark env) to be encoded, and holds them as ~50 bytes of text each.
    Placeholders are numbered in order of first use. Rows are written in path order;
    records that do not come in that order (packing's do: the plan is in path order) are
    sorted when the data is asked for."""

    def __init__(self) -> None:
        #: Comma-separated rows, one string per batch.
        self._parts: list[str] = []
        self._numbers: dict[str, int] = {}
        self._last: PrefixRecord | None = None
        self._count = 0
        self.ordered = True

    def __len__(self) -> int:
        return self._count

    def add(self, records: Iterable[PrefixRecord]) -> None:
        rows = []
        number, last, ordered = self._numbers, self._last, self.ordered
        for r in records:
            if ordered and last is not None and r < last:
                ordered = False
            last = r
            k = number.setdefault(r.placeholder, len(number))
            rows.append([r.path, k, r.mode, list(r.offsets)] if r.offsets else [r.path, k, r.mode])
        self._last, self.ordered = last, ordered
        if rows:
            self._count += len(rows)
            self._parts.append(_encode(rows)[1:-1])

    def data(self, shebang_records: list[ShebangRecord], windows: bool) -> str:
        """The JSON conda-unpack reads: these rows, the placeholders they number, the
        shebang records (sorted here) and the platform."""
        placeholders = list(self._numbers)
        rows = ",".join(self._parts)
        if not self.ordered:
            unsorted = json.loads("[%s]" % rows)
            unsorted.sort(key=lambda r: (r[0], placeholders[r[1]], r[2], r[3:]))
            rows = _encode(unsorted)[1:-1]
        shebang = [list(r) for r in sorted(shebang_records)]
        return '{"placeholders":%s,"prefix":[%s],"shebang":%s,"windows":%s}' % (
            _encode(placeholders),
            rows,
            _encode(shebang),
            _encode(windows),
        )


def conda_unpack_script(
    prefix_records: Iterable[PrefixRecord],
    shebang_records: list[ShebangRecord],
    version: str,
    windows: bool = False,
) -> bytes:
    """The conda-unpack program, with its records filled in (in path order, however they
    come)."""
    rows = PrefixRows()
    batch: list[PrefixRecord] = []
    for r in prefix_records:
        batch.append(r)
        if len(batch) == _BATCH:
            rows.add(batch)
            batch = []
    rows.add(batch)
    return conda_unpack_program(rows, shebang_records, version, windows)


def conda_unpack_program(
    rows: PrefixRows, shebang_records: list[ShebangRecord], version: str, windows: bool = False
) -> bytes:
    """The conda-unpack program from rows already encoded (see ``PrefixRows``)."""
    blob = rows.data(shebang_records, windows)
    source = _read("conda_unpack.py")
    source, n = re.subn(
        r"^# <conda-pack:data>\n_DATA = .*$",
        lambda _: "# <conda-pack:data>\n_DATA = json.loads(%r)" % blob,
        source,
        flags=re.M,
    )
    source, m = re.subn(
        r"^# <conda-pack:version>\nVERSION = .*$",
        lambda _: "# <conda-pack:version>\nVERSION = %r" % version,
        source,
        flags=re.M,
    )
    assert n == 1 and m == 1, "conda_unpack.py lost its fill-in markers"
    # Windows: Scripts\conda-unpack.exe reads this line; a relative interpreter is looked
    # up in the directory above the launcher's, the environment's root.
    prelude = "#!python.exe\n" if windows else _SH_PRELUDE
    return (prelude + source).encode("utf-8")


# setuptools' console-script launchers (see launchers/LICENSE.setuptools), by platform.
_LAUNCHERS = {"win-64": "cli-64.exe", "win-arm64": "cli-arm64.exe", "win-32": "cli-32.exe"}


def windows_launcher(subdir: str | None) -> bytes:
    """The launcher program for an environment of ``subdir`` (x64 when unknown)."""
    name = _LAUNCHERS.get(subdir or "win-64")
    if name is None:
        raise CondaPackException(
            "No conda-unpack launcher for platform %r (known: %s)"
            % (subdir, ", ".join(sorted(_LAUNCHERS)))
        )
    return _resource("launchers", name).read_bytes()


def conda_unpack_files(script: bytes, windows: bool, subdir: str | None = None) -> list[Generated]:
    """Where conda-unpack goes. POSIX: ``bin/conda-unpack``, run by ``sh``. Windows:
    ``Scripts/conda-unpack-script.py`` and ``Scripts/conda-unpack.exe``, a launcher that
    runs that script with the environment's ``python.exe``."""
    if not windows:
        return [Generated("bin/conda-unpack", script, 0o755)]
    return [
        Generated("Scripts/conda-unpack-script.py", script, 0o755),
        Generated("Scripts/conda-unpack.exe", windows_launcher(subdir), 0o755),
    ]


def relocation_hook(site_packages: str, windows: bool) -> list[Generated]:
    """The startup hook that relocates the environment the first time its Python starts in
    a new place (``relocate_hook.py``): the module, and a .pth file importing it. Python
    caches the module's bytecode like any other's: compiling it at every start would cost
    a millisecond, loading its .pyc a tenth of that (packing leaves the .pyc out)."""
    depth = site_packages.count("/") + 1
    unpack = ("Scripts", "conda-unpack-script.py") if windows else ("bin", "conda-unpack")
    source, n = re.subn(
        r"^(# <conda-pack:hook>\n)DEPTH = .*\nUNPACK = .*$",
        lambda m: "%sDEPTH = %d\nUNPACK = %r" % (m[1], depth, unpack),
        _read("relocate_hook.py"),
        flags=re.M,
    )
    assert n == 1, "relocate_hook.py lost its fill-in marker"
    pth = "import %s\n" % HOOK_MODULE
    pth_path, module_path = hook_paths(site_packages)
    return [
        Generated(pth_path, pth.encode("utf-8"), 0o644),
        Generated(module_path, source.encode("utf-8"), 0o644),
    ]


def activation_scripts(windows: bool = False) -> list[Generated]:
    """The activate/deactivate scripts for the target platform's shells, all sourced (0o644).

    POSIX: sh family (``bin/activate``, ``bin/deactivate``), fish, csh/tcsh and PowerShell.
    Windows: cmd.exe and PowerShell, in ``Scripts/``.
    """
    if windows:
        folder, names = "Scripts", ["activate.bat", "deactivate.bat"]
    else:
        folder, names = "bin", ["activate", "deactivate", "activate.fish"]
        names += ["activate.csh", "deactivate.csh"]
    names += ["activate.ps1", "deactivate.ps1"]
    sources = {"activate": "activate.sh", "deactivate": "deactivate.sh"}
    return [Generated("%s/%s" % (folder, n), _script(sources.get(n, n)), 0o644) for n in names]


def parcel_files(name: str, version: str, distro: str, packages: list[dict]) -> list[Generated]:
    """``meta/parcel.json`` and ``meta/conda_env.sh`` for a Cloudera parcel."""
    parcel = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "setActiveSymlink": True,
        "depends": "",
        "replaces": "",
        "conflicts": "",
        "provides": ["spark-plugin"],
        "scripts": {"defines": "conda_env.sh"},
        "packages": [
            {"name": p["name"], "version": "%s-%s" % (p["version"], p["build"])}
            for p in sorted(packages, key=lambda p: p["name"])
        ],
        "components": [{"name": name, "version": version, "pkg_version": version}],
        "groups": [],
        "users": {},
        "extraVersionInfo": {
            "baseVersion": version,
            "fullVersion": "%s-%s" % (version, distro),
            "patchCount": "0",
        },
    }
    text = json.dumps(parcel, indent=2, sort_keys=True) + "\n"
    return [
        Generated("meta/parcel.json", text.encode("utf-8"), 0o644),
        Generated("meta/conda_env.sh", _script("parcel_env.sh"), 0o644),
    ]
