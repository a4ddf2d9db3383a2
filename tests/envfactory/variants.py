"""Variants: what users (and other installers) do to an environment after it is installed.

Each function takes an installed prefix and changes it the way a real action would — pip
installing or removing things, a file edited in place, the package cache cleaned, conda-meta as
micromamba or pixi write it — so packer tests can assert how each case is handled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .channel import SHARED_CACHE_MARKER
from .wheels import write_wheel

WHEEL_PROJECT = "cp-wheel-demo"
WHEEL_SCRIPT = "cp-wheel-hello"
EDITABLE_PROJECT = "cp-editable-demo"


def run_python(prefix: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the environment's interpreter with a neutral environment (no user config leaks in)."""
    env = {
        "PATH": f"{prefix / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONNOUSERSITE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    proc = subprocess.run(
        [str(prefix / "bin" / "python"), *args], capture_output=True, text=True, env=env
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"python {' '.join(args)} failed in {prefix}:\n{proc.stdout}{proc.stderr}"
        )
    return proc


def pip_install_wheel(prefix: os.PathLike[str] | str) -> str:
    """``pip install`` a locally built wheel: unmanaged files plus ``bin/<script>`` whose shebang
    points into the prefix.  Returns the script name."""
    prefix = Path(prefix)
    module = (
        '"""Installed by pip into a conda env by the test bed."""\n\nimport sys\n\n\n'
        'def main() -> None:\n    print(f"wheel hello from {sys.prefix}")\n'
    )
    with tempfile.TemporaryDirectory(prefix="envfactory-wheel-") as tmp:
        wheel = write_wheel(
            Path(tmp),
            WHEEL_PROJECT,
            "0.1.0",
            {"cp_wheel_demo/__init__.py": module},
            {WHEEL_SCRIPT: "cp_wheel_demo:main"},
        )
        run_python(prefix, "-m", "pip", "install", "--no-index", "--no-deps", str(wheel))
    return WHEEL_SCRIPT


# A PEP 517/660 backend small enough to live inside the project: the env needs neither `wheel`
# nor network, and pip records the install with direct_url.json {"dir_info": {"editable": true}}.
EDITABLE_BACKEND = '''"""In-tree build backend for the test bed's editable project (stdlib only)."""
import base64, hashlib, os, zipfile

NAME, VERSION = "@NAME@", "0.1.0"
DIST = NAME.replace("-", "_")
SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "sha256=" + digest


def _write(directory, members):
    info = f"{DIST}-{VERSION}.dist-info"
    members = dict(members)
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"
    members[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\\nGenerator: envfactory\\nRoot-Is-Purelib: true\\n"
        "Tag: py3-none-any\\n"
    )
    record = "".join(f"{p},{_record(d.encode())},{len(d.encode())}\\n" for p, d in members.items())
    members[f"{info}/RECORD"] = record + f"{info}/RECORD,,\\n"
    name = f"{DIST}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as zf:
        for path, data in members.items():
            zf.writestr(path, data)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    pkg = os.path.join(SRC, "src", DIST)
    files = {f"{DIST}/{f}": open(os.path.join(pkg, f)).read() for f in os.listdir(pkg)
             if f.endswith(".py")}
    return _write(wheel_directory, files)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write(wheel_directory, {f"__editable__.{DIST}.pth": os.path.join(SRC, "src") + "\\n"})


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel
'''


def write_editable_project(srcdir: Path, name: str = EDITABLE_PROJECT) -> None:
    """A minimal project in ``srcdir`` whose code stays there (``src/<module>/``)."""
    dist = name.replace("-", "_")
    (srcdir / "_backend").mkdir(parents=True, exist_ok=True)
    (srcdir / "_backend" / "envfactory_backend.py").write_text(
        EDITABLE_BACKEND.replace("@NAME@", name)
    )
    (srcdir / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "envfactory_backend"\n'
        'backend-path = ["_backend"]\n'
    )
    (srcdir / "src" / dist).mkdir(parents=True, exist_ok=True)
    (srcdir / "src" / dist / "__init__.py").write_text('WHERE = "editable source tree"\n')


def pip_install_editable(prefix: os.PathLike[str] | str, srcdir: os.PathLike[str] | str) -> str:
    """``pip install -e srcdir`` (writing a small project there if it holds none).

    Leaves ``*.dist-info/direct_url.json`` with ``dir_info.editable: true`` and a ``.pth`` file
    pointing outside the prefix.  Returns the project name.
    """
    prefix, src = Path(prefix), Path(srcdir)
    name = EDITABLE_PROJECT
    if not (src / "pyproject.toml").exists() and not (src / "setup.py").exists():
        write_editable_project(src, name)
    run_python(
        prefix,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-deps",
        "--no-build-isolation",
        "-e",
        str(src),
    )
    return name


def pip_uninstall(prefix: os.PathLike[str] | str, name: str = "condatest-lib") -> None:
    """``pip uninstall`` a conda-managed package: its files vanish but conda-meta still lists
    them."""
    run_python(Path(prefix), "-m", "pip", "uninstall", "-y", name)


def overwrite_managed_file(
    prefix: os.PathLike[str] | str, relpath: str, same_size: bool = False
) -> Path:
    """Change a conda-managed file in place, as an editor or a build step would.

    The new content is written to a new inode and renamed over the file, so the hard link into
    the package cache is broken and the cache stays pristine.  ``same_size`` keeps the byte count
    (only a hash can tell the change); otherwise a line is appended.
    """
    path = Path(prefix) / relpath
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"not a regular file: {path}")
    data = path.read_bytes()
    if same_size:
        if not data:
            raise ValueError(f"cannot change an empty file keeping its size: {path}")
        # Flip the case of one letter (or bump one byte), keeping the length.
        index = next((i for i, b in enumerate(data) if chr(b).isalpha()), 0)
        new = (
            data[:index]
            + bytes([data[index] ^ 0x20 if chr(data[index]).isalpha() else (data[index] + 1) % 256])
            + data[index + 1 :]
        )
    else:
        new = data + b"\n# edited after install by tests.envfactory\n"
    mode = path.stat().st_mode
    tmp = path.with_name(f".{path.name}.envfactory-tmp")
    tmp.write_bytes(new)
    tmp.chmod(mode & 0o7777)
    os.replace(tmp, path)
    return path


def _records(prefix: Path) -> list[Path]:
    return sorted((prefix / "conda-meta").glob("*.json"))


def _rewrite_record(path: Path, record: dict[str, object]) -> None:
    mode = path.stat().st_mode & 0o7777
    path.write_text(json.dumps(record, indent=2) + "\n")
    path.chmod(mode)


def package_cache_dirs(prefix: os.PathLike[str] | str) -> set[Path]:
    """Package cache directories that the env's records (``link.source``) point into."""
    dirs: set[Path] = set()
    for path in _records(Path(prefix)):
        link = json.loads(path.read_text()).get("link") or {}
        if link.get("source"):
            dirs.add(Path(link["source"]).parent)
    return dirs


def remove_package_cache(prefix: os.PathLike[str] | str) -> list[Path]:
    """Delete the package cache the environment was installed from; return what was removed.

    Refuses a cache shared with other test environments (they hard-link into it): install the env
    with its own ``pkgs_dir`` first.
    """
    removed = []
    for cache in sorted(package_cache_dirs(prefix)):
        if (cache / SHARED_CACHE_MARKER).exists():
            raise ValueError(
                f"{cache} is shared by other environments; install with a private "
                "pkgs_dir before removing its cache"
            )
        shutil.rmtree(cache)
        removed.append(cache)
    return removed


def make_micromamba_like(prefix: os.PathLike[str] | str) -> None:
    """Strip ``prefix_placeholder``/``file_mode`` from ``paths_data`` as micromamba's records lack
    them (readers must fall back to ``<link.source>/info/paths.json``)."""
    for path in _records(Path(prefix)):
        record = json.loads(path.read_text())
        for entry in record.get("paths_data", {}).get("paths", []):
            entry.pop("prefix_placeholder", None)
            entry.pop("file_mode", None)
        _rewrite_record(path, record)


def make_pixi_like(prefix: os.PathLike[str] | str) -> None:
    """conda-meta as pixi before mid-2024 left it: ``"link": null``, no ``history``, plus
    ``conda-meta/pixi`` and ``conda-meta/pixi_env_prefix`` (the absolute prefix)."""
    root = Path(prefix).absolute()
    for path in _records(root):
        record = json.loads(path.read_text())
        record["link"] = None
        _rewrite_record(path, record)
    history = root / "conda-meta" / "history"
    if history.exists():
        history.unlink()
    (root / "conda-meta" / "pixi").write_text(
        json.dumps(
            {
                "manifest_path": str(root.parent / "pixi.toml"),
                "environment_name": "default",
                "pixi_version": "0.20.1",
            }
        )
        + "\n"
    )
    (root / "conda-meta" / "pixi_env_prefix").write_text(str(root))
