"""Upstream source tarballs from the Debian archive, and the build-step runner the native
recipes share.

No conda channel is reachable, but the Debian archive is: ``apt-get source --download-only``
with a private sources list (no root-owned apt state is touched) gives the ``.orig`` tarball of
the release the machine runs, so what we build is what the machine's own packages were built
from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .cache import locked, publish


class BuildDependencyError(RuntimeError):
    """A tool or header needed for a native build is missing (message names the apt packages)."""


def source_tarball(package: str, src_dir: Path, lock_dir: Path) -> Path:
    """The upstream ``.orig.tar.*`` of Debian's source package ``package``, downloaded once
    into ``src_dir``."""
    found = _origs(package, src_dir)
    if found:
        return found[-1]
    with locked(lock_dir / f"{package}-source.lock"):
        found = _origs(package, src_dir)
        if found:
            return found[-1]
        return _download(package, src_dir)


def _origs(package: str, src_dir: Path) -> list[Path]:
    found = src_dir.glob(f"{package}_*.orig.tar.*")
    return sorted(p for p in found if not p.name.endswith(".asc"))  # not the signature


def _download(package: str, src_dir: Path) -> Path:
    if shutil.which("apt-get") is None:
        raise BuildDependencyError(f"apt-get is needed to fetch the {package} source")
    src_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=src_dir, prefix=".apt-") as tmp_str:
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
        run(["apt-get", "-q", *opts, "update"], tmp)
        run(["apt-get", "-q", *opts, "source", "--download-only", package], tmp / "dl")
        origs = _origs(package, tmp / "dl")
        if not origs:
            raise RuntimeError(f"apt-get source gave no .orig tarball in {tmp / 'dl'}")
        return publish(origs[0], src_dir / origs[0].name)


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


def missing_headers(headers: dict[str, str]) -> set[str]:
    """Debian packages (values of ``headers``) whose header (key) the C compiler cannot find."""
    missing = set()
    for header, package in headers.items():
        probe = subprocess.run(
            ["gcc", "-E", "-x", "c", "-", "-o", "/dev/null"],
            input=f"#include <{header}>\n",
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            missing.add(package)
    return missing


def is_elf(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"\x7fELF"


def patchelf(args: list[str]) -> str:
    return subprocess.run(["patchelf", *args], check=True, capture_output=True, text=True).stdout


def ldd(path: Path, env: dict[str, str] | None = None) -> dict[str, Path]:
    """soname -> the file the dynamic loader resolves it to for ``path`` (normalised)."""
    env = env if env is not None else {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env).stdout
    found = {}
    for line in out.splitlines():
        name, arrow, rest = line.strip().partition(" => ")
        target = rest.split(" (")[0].strip()
        if arrow and target.startswith("/"):
            found[name] = Path(os.path.realpath(target))
    return found


def run(cmd: list[str], cwd: Path, log: Path | None = None) -> None:
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
