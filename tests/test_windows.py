"""Windows environments packed on Linux: layout, launcher, and conda-unpack's Windows rules.

The environment is a real win-64 install: the factory builds packages the way conda-build
does on Windows (``Scripts``, ``Library``, ``Lib/site-packages``, a ``D:\\bld\\...`` build
prefix in several spellings) and py-rattler installs them for ``win-64``. Nothing in it can
run here, so conda-unpack's Windows branch is run with any Python and the hidden
``--new-prefix`` option, which names the ``C:\\...`` path the environment will have.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
from conda_pack.errors import CondaPackException
from conda_pack.unpack import conda_unpack as cu
from conda_pack.unpack import windows_launcher

from tests.envfactory import WIN_64, WIN_PLACEHOLDER
from tests.envfactory.windows import (
    PE_STUB,
    SPELLINGS,
    WIN_PLACEHOLDER_ESCAPED,
    WIN_PLACEHOLDER_FORWARD,
)
from tests.helpers import conda_pack, extract, run, sha256, tree

LAUNCHERS = Path(cu.__file__).parent / "launchers"
WIN_PACKAGES = ["python", "winlib", "condatest-lib"]
# Where the environment will be on Windows: a blank in it, as under "C:\Program Files".
NEW = "C:\\Users\\Jane Doe\\envs\\my env"
NEW_FWD = NEW.replace("\\", "/")
# Longer than the build prefix: no room is needed, Windows binaries are never patched.
LONGER = "C:\\Users\\some user\\envs\\a longer path than the build prefix\\env"
# Files of the winlib package that hold the build prefix, and the spelling recorded for each.
PREFIX_FILES = {
    "Library/bin/winlib-env.bat": WIN_PLACEHOLDER,
    "Library/bin/qt.conf": WIN_PLACEHOLDER_FORWARD,
    "Library/share/winlib/winlib.cfg": WIN_PLACEHOLDER,
    "Library/etc/winlib-long.ini": WIN_PLACEHOLDER,
    "Library/etc/winlib-ro.ini": WIN_PLACEHOLDER,
    "Lib/site-packages/winlib_paths.py": WIN_PLACEHOLDER_ESCAPED,
    "Scripts/wintool-script.py": WIN_PLACEHOLDER,
    "Scripts/winlib-tool.exe": WIN_PLACEHOLDER,
    "Library/bin/winlib.dll": WIN_PLACEHOLDER,
}


@pytest.fixture(scope="module")
def win_env(factory, tmp_path_factory) -> Path:
    prefix = tmp_path_factory.mktemp("winenvs") / "win"
    return factory.install(prefix, WIN_PACKAGES, platform=WIN_64)


@pytest.fixture(scope="module")
def win_archive(win_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("winpack") / "win.tar.gz"
    conda_pack("-p", win_env, "-o", out, "-q")
    return out


def records(prefix: Path) -> dict[str, dict]:
    out = {}
    for path in (prefix / "conda-meta").glob("*.json"):
        rec = json.loads(path.read_text())
        out[rec["name"]] = rec
    return out


def path_records(prefix: Path) -> dict[str, dict]:
    return {p["_path"]: p for rec in records(prefix).values() for p in rec["paths_data"]["paths"]}


def unpack(root: Path, new_prefix: str = NEW, python: str = sys.executable, **kwargs):
    script = root / "Scripts" / "conda-unpack-script.py"
    return run([python, script, "--new-prefix", new_prefix], **kwargs)


def pe_image_end(exe: bytes) -> int:
    """Where a PE file's last section ends: anything after it was appended."""
    pe = struct.unpack_from("<I", exe, 0x3C)[0]
    assert exe[:2] == b"MZ" and exe[pe : pe + 4] == b"PE\0\0"
    sections, opt_size = struct.unpack_from("<H12xH", exe, pe + 6)
    table = pe + 24 + opt_size
    ends = []
    for i in range(sections):
        raw_size, raw_ptr = struct.unpack_from("<II", exe, table + 40 * i + 16)
        ends.append(raw_ptr + raw_size)
    return max(ends)


def launcher_shebang(data: bytes) -> bytes:
    start = data.index(b"#!")
    return data[start : data.index(b"\n", start) + 1]


def no_placeholder_left(root: Path) -> None:
    """No spelling of the build prefix, in any case, in any file that should have been
    rewritten (conda-meta, conda-unpack's records and DLLs keep it)."""
    pattern = re.compile(b"|".join(re.escape(s.encode()) for s in SPELLINGS), re.I)
    for path in root.rglob("*"):
        if not path.is_file() or "conda-meta" in path.parts or path.suffix == ".dll":
            continue
        if path.name != "conda-unpack-script.py":
            assert not pattern.search(path.read_bytes()), path


# -- the environment the factory made --------------------------------------------------------
def winlib_env_bat(fwd: str) -> bytes:
    """winlib's .bat relocated to ``fwd``: every spelling of the prefix becomes ``fwd``;
    the CRLF line endings and the quoted interpreter stay as they were."""
    return (
        "@echo off\r\n"
        f'set "WINLIB_HOME={fwd}\\Library"\r\n'
        f'set "WINLIB_DATA={fwd}/Library/share/winlib"\r\n'
        f'"{fwd}\\python.exe" -c "print(1)"\r\n'
    ).encode()


def qt_conf(fwd: str) -> str:
    return f"[Paths]\nPrefix = {fwd}/Library\nBinaries = {fwd}/Library/bin\n"


def test_factory_makes_a_real_win64_environment(win_env):
    recs = records(win_env)
    assert recs["python"]["subdir"] == recs["winlib"]["subdir"] == "win-64"
    assert recs["condatest-lib"]["subdir"] == "noarch"
    assert (win_env / "python.exe").read_bytes().startswith(b"MZ")
    assert (win_env / "Lib/site-packages/condatest_lib/__init__.py").is_file()
    assert not (win_env / "bin").exists() and not (win_env / "lib").exists()
    paths = path_records(win_env)
    # rattler made a launcher + script for the noarch entry point, as conda does on Windows.
    assert paths["Scripts/condatest-hello-script.py"]["path_type"] == (
        "windows_python_entry_point_script"
    )
    assert paths["Scripts/condatest-hello.exe"]["path_type"] == "windows_python_entry_point_exe"
    for path, spelling in PREFIX_FILES.items():
        assert paths[path]["prefix_placeholder"] == spelling, path
    assert paths["Library/bin/winlib.dll"]["file_mode"] == "binary"
    # Windows binaries are installed untouched; text files hold the install prefix, and the
    # copies of the build prefix in other spellings were left as they were (#141).
    assert WIN_PLACEHOLDER.encode() in (win_env / "Library/bin/winlib.dll").read_bytes()
    bat = (win_env / "Library/bin/winlib-env.bat").read_text()
    assert str(win_env) in bat and WIN_PLACEHOLDER_FORWARD in bat
    assert stat.S_IMODE((win_env / "Library/etc/winlib-ro.ini").stat().st_mode) == 0o444


# -- the archive -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archive_has_the_windows_layout_only(win_env, tmp_path, fmt):
    out = tmp_path / ("win." + fmt)
    conda_pack("-p", win_env, "-o", out, "-q")
    if fmt == "zip":
        with zipfile.ZipFile(out) as zf:
            members = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    else:
        with tarfile.open(out) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}
    names = set(members)
    exe = members["Scripts/conda-unpack.exe"]
    assert exe == (LAUNCHERS / "cli-64.exe").read_bytes()
    # setuptools' launcher carries nothing of its own: no #! line, no zip appended (as a
    # distlib one has). It runs <its name>-script.py from its folder, so the pair must match.
    assert exe.startswith(b"MZ") and pe_image_end(exe) == len(exe)
    assert b"PK\x05\x06" not in exe
    script = members["Scripts/conda-unpack-script.py"]
    # The launcher runs the interpreter this line names; a relative one is the env's root.
    assert script.startswith(b"#!python.exe\n")
    assert b'"windows":true' in script
    for name in ("activate.bat", "deactivate.bat", "activate.ps1", "deactivate.ps1"):
        assert "Scripts/" + name in names
    # cmd.exe scripts with Windows line endings only.
    for name in ("activate.bat", "deactivate.bat"):
        bat = members["Scripts/" + name]
        assert bat.count(b"\n") == bat.count(b"\r\n") > 0, name
    assert "Library/bin/winlib.dll" in names and "python.exe" in names
    # Nothing POSIX: no bin/, no sh conda-unpack, no fish or csh scripts.
    assert not [n for n in names if n.startswith("bin/") or n.endswith((".fish", ".csh"))]
    assert "Scripts/conda-unpack" not in names
    assert not [n for n in names if n.startswith("lib/")]
    assert "Lib/site-packages/condatest_lib/__init__.py" in names
    # Files holding the prefix are packed as the package built them.
    paths = path_records(win_env)
    for path in PREFIX_FILES:
        assert hashlib.sha256(members[path]).hexdigest() == paths[path]["sha256"], path


def test_posix_archive_has_no_windows_files(nopython_env, tmp_path):
    out = tmp_path / "posix.tar"
    conda_pack("-p", nopython_env, "-o", out, "-q")
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert "bin/conda-unpack" in names and "bin/activate" in names
    # (The env's own etc/conda/activate.d/*.bat are package files, packed as they are.)
    assert not [n for n in names if n.endswith(".exe") or n.startswith("Scripts/")]
    assert not [n for n in names if n.startswith("bin/") and n.endswith(".bat")]
    assert "conda-unpack-script.py" not in {n.rsplit("/", 1)[-1] for n in names}


def test_launchers_are_setuptools_and_match_the_platform():
    note = (LAUNCHERS / "LICENSE.setuptools").read_text()
    assert "MIT" in note and "Permission is hereby granted" in note
    machines = {"win-64": 0x8664, "win-arm64": 0xAA64, "win-32": 0x14C, None: 0x8664}
    for subdir, machine in machines.items():
        exe = windows_launcher(subdir)
        assert hashlib.sha256(exe).hexdigest() in note
        pe = struct.unpack_from("<I", exe, 0x3C)[0]
        assert exe[pe : pe + 4] == b"PE\0\0"
        assert struct.unpack_from("<H", exe, pe + 4)[0] == machine, subdir
    with pytest.raises(CondaPackException, match="No conda-unpack launcher for platform"):
        windows_launcher("win-sparc")


def test_win_arm64_environment_gets_the_arm64_launcher(win_env, tmp_path):
    """The launcher follows the platform the packages were built for. The factory builds
    win-64 only, so this is its environment with the records saying win-arm64."""
    env = tmp_path / "arm"
    shutil.copytree(win_env, env, symlinks=True)
    for path in (env / "conda-meta").glob("*.json"):
        rec = json.loads(path.read_text())
        if rec["subdir"] == "win-64":
            rec["subdir"] = "win-arm64"
            rec["url"] = rec["url"].replace("/win-64/", "/win-arm64/")
            path.write_text(json.dumps(rec))
    out = tmp_path / "arm.zip"
    conda_pack("-p", env, "-o", out, "-q")
    with zipfile.ZipFile(out) as zf:
        exe = zf.read("Scripts/conda-unpack.exe")
        assert zf.read("Scripts/conda-unpack-script.py").startswith(b"#!python.exe\n")
    assert exe == (LAUNCHERS / "cli-arm64.exe").read_bytes() != windows_launcher("win-64")
    assert exe.startswith(b"MZ")


def test_unpack_script_is_conda_unpack(win_archive, tmp_path):
    root = extract(win_archive, tmp_path / "env", "tar.gz")
    script = root / "Scripts" / "conda-unpack-script.py"
    version = run([sys.executable, script, "--version"]).stdout
    assert re.fullmatch(r"conda-unpack \S+\n", version)
    assert "--new-prefix" not in run([sys.executable, script, "--help"]).stdout
    # A Python 3.6+ without the environment: the script needs nothing but the stdlib.
    proc = run([sys.executable, "-I", "-S", script, "--new-prefix", NEW])
    assert proc.stdout == proc.stderr == ""
    assert (root / "conda-meta/.conda-unpack-prefix").read_text() == NEW_FWD + "\n"


# -- conda-unpack's Windows rules on the extracted tree ----------------------------------------
@pytest.mark.parametrize("new", [NEW, LONGER], ids=["blank", "longer"])
def test_unpack_applies_every_windows_rule(win_archive, tmp_path, new):
    root = extract(win_archive, tmp_path / "env", "tar.gz")
    before = tree(root)
    packed_tool = (root / "Scripts/winlib-tool.exe").read_bytes()
    unpack(root, new)
    fwd = new.replace("\\", "/")
    after = tree(root)

    # Every spelling of the build prefix became the new prefix with forward slashes (#141);
    # line endings stay as they were.
    # The quoted interpreter in a .bat needs no more quotes.
    assert (root / "Library/bin/winlib-env.bat").read_bytes() == winlib_env_bat(fwd)
    cfg = f"[paths]\nhome = {fwd}\\Library\ndata = {fwd}/Library/share/winlib\n"
    assert (root / "Library/share/winlib/winlib.cfg").read_text() == cfg
    assert (root / "Library/bin/qt.conf").read_text() == qt_conf(fwd)
    # A path inside a Python string literal stays a valid, unescaped string.
    source = (root / "Lib/site-packages/winlib_paths.py").read_text()
    assert source.startswith(f'PREFIX = "{fwd}"\nDATA = PREFIX + "/Library/share/winlib"\n')
    namespace: dict = {}
    exec(compile(source, "winlib_paths.py", "exec"), namespace)
    assert namespace["PREFIX"] == fwd
    # Extended-length markers go with the prefix they stood before; others stay.
    assert (root / "Library/etc/winlib-long.ini").read_text() == (
        f"root = {fwd}\\Library\nroot_forward = {fwd}/Library\n"
        "other = \\\\?\\C:\\Windows\\System32\n"
    )
    # A blank in the prefix: the interpreter of a #! line is quoted (#311).
    assert (root / "Scripts/wintool-script.py").read_bytes() == (
        f'#!"{fwd}\\python.exe"\r\n# -*- coding: utf-8 -*-\r\nimport sys\r\nprint(sys.prefix)\r\n'
    ).encode()
    # The distlib launcher: only its #! line changed (backslashes: the launcher runs it as a
    # command line), its zip still reads.
    tool = (root / "Scripts/winlib-tool.exe").read_bytes()
    start, zip_start = packed_tool.index(b"#!"), packed_tool.index(b"PK\x03\x04")
    assert tool == (
        packed_tool[:start] + f'#!"{new}\\python.exe"\r\n'.encode() + packed_tool[zip_start:]
    )
    with zipfile.ZipFile(root / "Scripts/winlib-tool.exe") as zf:
        assert zf.testzip() is None
        assert b"from winlib_paths import main" in zf.read("__main__.py")
    # A read-only file was rewritten and is read-only again (#241).
    ro = root / "Library/etc/winlib-ro.ini"
    assert ro.read_text() == cfg and stat.S_IMODE(ro.stat().st_mode) == 0o444
    # Other binaries are never patched; files without the prefix are untouched.
    changed = {p for p in before if before[p] != after.get(p)}
    expected = set(PREFIX_FILES) - {"Library/bin/winlib.dll"}
    assert changed == expected
    assert set(after) - set(before) == {"conda-meta/.conda-unpack-prefix"}
    assert (root / "conda-meta/.conda-unpack-prefix").read_text() == fwd + "\n"
    no_placeholder_left(root)


def test_unpack_again_after_moving(win_archive, tmp_path):
    root = extract(win_archive, tmp_path / "env", "tar.gz")
    unpack(root)
    unpack(root, "D:\\apps\\env")
    assert (root / "Library/bin/qt.conf").read_text().startswith("[Paths]\nPrefix = D:/apps/env/")
    # The quotes the blank needed stay: a quoted interpreter is always understood.
    tool = (root / "Scripts/winlib-tool.exe").read_bytes()
    assert launcher_shebang(tool) == b'#!"D:\\apps\\env\\python.exe"\r\n'
    script = (root / "Scripts/wintool-script.py").read_bytes()
    assert script.startswith(b'#!"D:/apps/env\\python.exe"\r\n')
    for path in PREFIX_FILES:
        data = (root / path).read_bytes()
        assert b"Jane Doe" not in data, path
    no_placeholder_left(root)


def test_pack_again_after_unpacking(win_archive, tmp_path):
    """An environment conda-unpack relocated, packed again. Its files hold the prefix in
    spellings the package did not (every copy forward slashes, a launcher's backslashes,
    quotes for the blank), so the build placeholder cannot be put back: packing names the
    files, and with --ignore-missing-files packs them as they are, each with a record, so
    that conda-unpack still relocates all of them, the launcher's #! line included."""
    root = extract(win_archive, tmp_path / "un packed", "tar.gz")
    run([sys.executable, root / "Scripts/conda-unpack-script.py"])
    assert (
        launcher_shebang((root / "Scripts/winlib-tool.exe").read_bytes())
        == ('#!"%s\\python.exe"\r\n' % str(root).replace("/", "\\")).encode()
    )
    out = tmp_path / "again.tar"
    proc = conda_pack("-p", root, "-o", out, "-q", check=False)
    assert proc.returncode == 1 and "Library/bin/winlib-env.bat (changed since install)" in (
        proc.stderr
    )
    conda_pack("-p", root, "-o", out, "-q", "--ignore-missing-files")
    again = extract(out, tmp_path / "again", "tar")
    unpack(again)
    assert (again / "Library/bin/winlib-env.bat").read_bytes() == (
        "@echo off\r\n"
        f'set "WINLIB_HOME={NEW_FWD}\\Library"\r\n'
        f'set "WINLIB_DATA={NEW_FWD}/Library/share/winlib"\r\n'
        f'"{NEW_FWD}\\python.exe" -c "print(1)"\r\n'
    ).encode()
    tool = (again / "Scripts/winlib-tool.exe").read_bytes()
    assert launcher_shebang(tool) == f'#!"{NEW}\\python.exe"\r\n'.encode()
    assert (
        (again / "Scripts/wintool-script.py")
        .read_bytes()
        .startswith(f'#!"{NEW_FWD}\\python.exe"\r\n'.encode())
    )
    old = re.compile(re.escape(str(root)).replace("/", "[/\\\\]+").encode())
    for path in again.rglob("*"):
        if path.is_file() and "conda-meta" not in path.parts:
            if path.name != "conda-unpack-script.py":  # its records name the old prefix
                assert not old.search(path.read_bytes()), path
    no_placeholder_left(again)


def test_environment_installed_on_windows_and_packed_from_here(win_env, tmp_path):
    """An environment created on Windows, packed from Linux (WSL, a copied tree): its
    files name C:/..., not where it is now. Packing says exactly that, instead of calling
    every file changed since install; with --ignore-missing-files the files are packed as
    they are and conda-unpack relocates them from the Windows path."""
    installed = "C:/Users/Jane/envs/w"
    env = tmp_path / "copied"
    shutil.copytree(win_env, env, symlinks=True)
    here = str(win_env).encode()
    for path in env.rglob("*"):
        if path.is_file() and not path.is_symlink() and "conda-meta" not in path.parts:
            data = path.read_bytes()
            if here in data:
                mode = path.stat().st_mode
                path.chmod(0o644)
                path.write_bytes(data.replace(here, installed.encode()))
                path.chmod(mode)
    out = tmp_path / "w.tar"
    proc = conda_pack("-p", env, "-o", out, "-q", check=False)
    assert proc.returncode == 1
    assert "installed on Windows at %s" % installed in proc.stderr
    assert "(changed since install)" not in proc.stderr  # no list of "changed" files
    assert not out.exists()
    conda_pack("-p", env, "-o", out, "-q", "--ignore-missing-files")
    root = extract(out, tmp_path / "unpacked", "tar")
    assert installed in (root / "Library/bin/qt.conf").read_text()
    unpack(root)
    assert (root / "Library/bin/qt.conf").read_text() == qt_conf(NEW_FWD)
    # What the installer left as it was (copies of the build prefix in other spellings,
    # #141) stays so; the path it installed at is relocated.
    bat = (env / "Library/bin/winlib-env.bat").read_bytes()
    assert installed.encode() in bat
    assert (root / "Library/bin/winlib-env.bat").read_bytes() == bat.replace(
        installed.encode(), NEW_FWD.encode()
    )
    for path in root.rglob("*"):
        if path.is_file() and path.name != "conda-unpack-script.py":
            assert b"Jane/envs/w" not in path.read_bytes(), path


@pytest.mark.parametrize(
    "given, written",
    [
        ("\\\\?\\C:\\envs\\x", "C:/envs/x"),
        ("//?/C:/envs/x", "C:/envs/x"),
        ("\\\\?\\UNC\\server\\share\\x", "//server/share/x"),
        ("c:\\Envs\\X", "c:/Envs/X"),
    ],
)
def test_extended_length_paths_never_reach_the_files(win_archive, tmp_path, given, written):
    """An extended-length path (as a launcher run through one reports it) is written as a
    plain one: in a #! line it would become sys.prefix (conda-pack #502)."""
    root = extract(win_archive, tmp_path / "env", "tar.gz")
    unpack(root, given)
    assert (root / "Library/bin/qt.conf").read_text().startswith(f"[Paths]\nPrefix = {written}/")
    script = (root / "Scripts/wintool-script.py").read_bytes()
    assert script.startswith(f"#!{written}\\python.exe".encode())
    tool = (root / "Scripts/winlib-tool.exe").read_bytes()
    assert launcher_shebang(tool) == ("#!%s\\python.exe\r\n" % written.replace("/", "\\")).encode()


def test_read_only_files_when_not_root(win_archive):
    """Writing a read-only file fails for anyone but root, as it does on Windows for
    everyone: conda-unpack lifts the flag, writes, and puts it back."""
    if os.geteuid() != 0 or shutil.which("python3", path="/usr/bin") is None:
        pytest.skip("needs root (to hand the tree to nobody) and /usr/bin/python3")
    # Under /tmp itself: pytest's own directories are closed to other users.
    base = Path(tempfile.mkdtemp(prefix="cp-win-ro-"))
    try:
        base.chmod(0o755)
        root = extract(win_archive, base / "env", "tar.gz")
        for path in [root, *root.rglob("*")]:
            os.lchown(path, 65534, 65534)
        proc = subprocess.run(
            ["/usr/bin/python3", root / "Scripts/conda-unpack-script.py", "--new-prefix", NEW],
            user=65534,
            group=65534,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        ro = root / "Library/etc/winlib-ro.ini"
        assert NEW_FWD in ro.read_text()
        assert stat.S_IMODE(ro.stat().st_mode) == 0o444
    finally:
        shutil.rmtree(base)


def python36_candidates() -> list[str]:
    pyenv = Path(os.path.expanduser("~/.pyenv/versions"))
    found = sorted(str(p) for p in pyenv.glob("3.6.*/bin/python3.6"))
    return found + [p for p in (shutil.which("python3.6"),) if p]


def works(python: str) -> bool:
    return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0


def test_unpack_script_runs_on_python_3_6(win_archive, tmp_path):
    python = next((p for p in python36_candidates() if works(p)), None)
    if python is None:
        pytest.skip("no Python 3.6 here")
    root = extract(win_archive, tmp_path / "env", "tar.gz")
    unpack(root, python=python)
    assert (root / "Library/bin/qt.conf").read_text().startswith(f"[Paths]\nPrefix = {NEW_FWD}/")


# -- --dest-prefix: the same rules at pack time ----------------------------------------------
@pytest.mark.parametrize(
    "dest, written",
    [
        (NEW, NEW),
        (LONGER, LONGER),
        ("\\\\?\\D:\\apps\\env", "D:\\apps\\env"),
        ("D:/apps/env", "D:\\apps\\env"),
    ],
    ids=["blank", "longer", "extended", "forward"],
)
def test_dest_prefix_uses_the_windows_rules(win_env, tmp_path, dest, written):
    fwd = written.replace("\\", "/")
    q = '"' if " " in written else ""
    out = tmp_path / "dest.tar"
    conda_pack("-p", win_env, "-o", out, "-q", "--dest-prefix", dest)
    root = extract(out, tmp_path / "env", "tar")
    # Nothing left to relocate: no conda-unpack, as conda-pack does; activation stays.
    assert not (root / "Scripts/conda-unpack.exe").exists()
    assert not (root / "Scripts/conda-unpack-script.py").exists()
    assert (root / "Scripts/activate.bat").is_file() and not (root / "bin").exists()
    assert (root / "Library/bin/qt.conf").read_text() == qt_conf(fwd)
    assert (root / "Library/bin/winlib-env.bat").read_bytes() == winlib_env_bat(fwd)
    assert (root / "Library/etc/winlib-long.ini").read_text() == (
        f"root = {fwd}\\Library\nroot_forward = {fwd}/Library\n"
        "other = \\\\?\\C:\\Windows\\System32\n"
    )
    script = (root / "Scripts/wintool-script.py").read_bytes()
    assert script.startswith(f"#!{q}{fwd}\\python.exe{q}\r\n".encode())
    tool = root / "Scripts/winlib-tool.exe"
    assert launcher_shebang(tool.read_bytes()) == f"#!{q}{written}\\python.exe{q}\r\n".encode()
    with zipfile.ZipFile(tool) as zf:
        assert zf.testzip() is None
    dll = "Library/bin/winlib.dll"
    assert sha256(root / dll) == path_records(win_env)[dll]["sha256"]
    assert stat.S_IMODE((root / "Library/etc/winlib-ro.ini").stat().st_mode) == 0o444
    no_placeholder_left(root)
    assert str(win_env).encode() not in b"".join(
        p.read_bytes() for p in root.rglob("*") if p.is_file() and "conda-meta" not in p.parts
    )


def test_dest_prefix_must_be_absolute(win_env, tmp_path):
    proc = conda_pack(
        "-p", win_env, "-o", tmp_path / "x.tar", "--dest-prefix", "envs\\x", check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("CondaPackError: --dest-prefix")
    for dest in ("C:\\envs\\x", "C:/envs/x", "\\\\server\\share\\x", "/opt/x"):
        conda_pack("-p", win_env, "-o", tmp_path / "ok.tar", "-q", "-f", "--dest-prefix", dest)


# -- the rules themselves ----------------------------------------------------------------------
def test_text_rule_is_one_pass_and_case_blind():
    # The new prefix contains the old one: a second pass would rewrite it again.
    assert cu.windows_replace_text(b"x=/env/lib", [b"/env"], b"C:/env") == b"x=C:/env/lib"
    old = WIN_PLACEHOLDER.encode()
    data = b"a=" + old.lower() + b"\nb=" + old.upper().replace(b"\\", b"/") + b"\n"
    assert cu.windows_replace_text(data, [old], b"E:\\x") == b"a=E:/x\nb=E:/x\n"
    # No blank in the prefix: the #! line is left unquoted.
    assert cu.windows_replace_text(b"#!" + old + b"\\python.exe\n", [old], b"E:\\x") == (
        b"#!E:/x\\python.exe\n"
    )


@pytest.mark.parametrize("encoding", cu.WIDE_ENCODINGS)
def test_text_rule_relocates_utf16_and_utf32_text(encoding):
    """Text files in UTF-16 or UTF-32 (a .reg file, a PowerShell profile) are relocated in
    their own encoding, as conda does, every spelling and case; a byte order mark stays."""
    old = WIN_PLACEHOLDER.encode()
    text = 'Windows Registry Editor\r\n@="%s\\\\python.exe"\r\nhome=%s/Library\r\n'
    packed = "\ufeff" + text % (
        WIN_PLACEHOLDER_ESCAPED,
        WIN_PLACEHOLDER_FORWARD.upper(),
    )
    got = cu.windows_replace_text(packed.encode(encoding), [old], NEW.encode())
    assert got.decode(encoding) == "\ufeff" + text % (NEW_FWD, NEW_FWD)
    # Out of step by one byte, little-endian UTF-16 reads as big-endian text that holds the
    # prefix: only whole characters are replaced, so a new prefix holding the old one is
    # not rewritten again by the next encoding's pass.
    deeper = WIN_PLACEHOLDER + "\\deeper"
    got = cu.windows_replace_text(packed.encode(encoding), [old], deeper.encode())
    fwd = deeper.replace("\\", "/")
    assert got.decode(encoding) == "\ufeff" + text % (fwd, fwd)
    # The same words in UTF-8: the UTF-8 rule alone, with the same result.
    got = cu.windows_replace_text(packed.encode(), [old], NEW.encode())
    assert got.decode() == "\ufeff" + text % (NEW_FWD, NEW_FWD)


def test_launcher_rule_needs_a_launcher():
    old = WIN_PLACEHOLDER.encode()
    no_zip = PE_STUB + b"#!" + old + b"\\python.exe\r\n" + bytes(8)
    assert cu.windows_replace_launcher(no_zip, [old], b"E:\\x") == no_zip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("__main__.py", "pass\n")
    no_shebang = PE_STUB + buf.getvalue()
    assert cu.windows_replace_launcher(no_shebang, [old], b"E:\\x") == no_shebang
    # Text that merely mentions the prefix, in a binary without a launcher's shape: kept.
    dll = PE_STUB + old + b"\0"
    assert cu.windows_replace_launcher(dll, [old], b"E:\\x") == dll


# -- the launcher itself, under wine -----------------------------------------------------------
WINE_CANDIDATES = ("wine", "wine64", "/usr/lib/wine/wine64")
# Stands in for python.exe: wine starts Unix programs too, handing them the launcher's
# Windows arguments. It records them, then runs the script (its path made a Unix one) with
# this Python. The launcher cannot wait for a Unix child ("failed to get exit code from
# process"), so the stand-in leaves its exit status in a file the test waits for.
STAND_IN = """#!/bin/sh
printf '%%s\\n' "$0" "$@" > "%(log)s/argv"
script=$(printf '%%s' "$1" |
    sed -e 's/^[\\\\][\\\\][?][\\\\]//' -e 's/^[A-Za-z]://' -e 's/[\\\\]/\\//g')
shift
"%(python)s" "$script" "$@" > "%(log)s/out" 2>&1
echo $? > "%(log)s/rc.tmp" && mv "%(log)s/rc.tmp" "%(log)s/rc"
"""


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """(wine program, environment) with a fresh, booted wine prefix; skips without wine."""
    exe = next((p for p in map(shutil.which, WINE_CANDIDATES) if p), None)
    if exe is None:
        pytest.skip("wine is not installed (Debian: apt-get install wine64)")
    env = dict(
        os.environ,
        WINEPREFIX=str(tmp_path_factory.mktemp("wineprefix")),
        WINEDEBUG="-all",
        WINEDLLOVERRIDES="mscoree,mshtml=",  # no Mono/Gecko install prompts
    )
    try:
        proc = subprocess.run(
            [exe, "cmd", "/c", "echo", "wine-ok"], env=env, capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        pytest.skip("wine did not start within 5 minutes")
    if b"wine-ok" not in proc.stdout:
        pytest.skip("wine cannot run programs here: %s" % proc.stderr.decode(errors="replace"))
    return exe, env


def run_launcher(wine, root: Path, *args: str, timeout: float = 120) -> tuple[list[str], str]:
    """Run Scripts/conda-unpack.exe under wine with the stand-in python.exe; the argv the
    stand-in was given, and the script's output."""
    exe, env = wine
    log = root.parent / "log"
    shutil.rmtree(log, ignore_errors=True)
    log.mkdir()
    python = Path(sys.executable).resolve()
    (root / "python.exe").write_text(STAND_IN % {"log": log, "python": python})
    (root / "python.exe").chmod(0o755)
    subprocess.run(
        [exe, root / "Scripts" / "conda-unpack.exe", *args],
        env=env,
        cwd=root.parent,
        capture_output=True,
        timeout=timeout,
    )
    deadline = time.monotonic() + timeout
    while not (log / "rc").exists():
        assert time.monotonic() < deadline, "the launcher never ran python.exe"
        time.sleep(0.1)
    out = (log / "out").read_text()
    assert (log / "rc").read_text() == "0\n", out
    return (log / "argv").read_text().splitlines(), out


def test_launcher_runs_the_script_under_wine(wine, win_archive, tmp_path):
    """The vendored launcher itself: it reads the #!python.exe line of
    conda-unpack-script.py, finds python.exe in the environment's root, and hands it the
    script and every argument as they were, blanks included."""
    root = extract(win_archive, tmp_path / "my env", "tar.gz")
    argv, out = run_launcher(wine, root, "--version")
    assert re.fullmatch(r"conda-unpack \S+\n", out)
    python, script, *args = argv
    assert python.endswith("/dosdevices/z:" + str(root / "python.exe"))
    assert re.fullmatch(r"(\\\\\?\\)?Z:" + re.escape(str(root).replace("/", "\\")), script[:-31])
    assert script.endswith("\\Scripts\\conda-unpack-script.py") and args == ["--version"]

    argv, out = run_launcher(wine, root, "--new-prefix", LONGER)
    assert argv[2:] == ["--new-prefix", LONGER] and out == ""
    fwd = LONGER.replace("\\", "/")
    assert (root / "Library/bin/qt.conf").read_text() == qt_conf(fwd)
    tool = (root / "Scripts/winlib-tool.exe").read_bytes()
    assert launcher_shebang(tool) == f'#!"{LONGER}\\python.exe"\r\n'.encode()
    no_placeholder_left(root)


# -- packing on Windows: what the Python layer may call there ------------------------------------
@pytest.mark.parametrize("directory", [False, True], ids=["file", "dir"])
def test_staging_an_output_uses_nothing_windows_lacks(monkeypatch, tmp_path, directory):
    """No Windows CPython runs here, so the staging of an output is run with what Windows'
    os module lacks taken away, and with os.kill (which would end a process there)
    forbidden. A stale-looking staging file is left alone: nothing can tell it is stale."""
    from conda_pack import packing

    monkeypatch.setattr(packing, "_WINDOWS", True)
    monkeypatch.delattr(packing, "fcntl", raising=False)
    for name in ("O_NOFOLLOW", "O_DIRECTORY", "O_CLOEXEC", "getuid", "sched_getaffinity"):
        monkeypatch.delattr(os, name)

    def kill(*args):
        raise AssertionError("os.kill ends the process on Windows")

    monkeypatch.setattr(os, "kill", kill)
    stale = tmp_path / ".out.conda-pack-999999999-deadbeef.partial"
    stale.write_bytes(b"left by a pack that died")
    output = tmp_path / "out"
    with packing.staged_output(str(output), directory) as tmp:
        if directory:
            (Path(tmp) / "f").write_bytes(b"x")
        else:
            Path(tmp).write_bytes(b"x")
        # Held by no descriptor: Windows could not rename it into place otherwise.
        assert not [
            fd
            for fd in os.listdir("/proc/self/fd")
            if os.path.realpath("/proc/self/fd/" + fd) == tmp
        ]
    got = output / "f" if directory else output
    assert got.read_bytes() == b"x"
    assert stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", stale.name])


def test_file_sources_use_one_separator_on_windows(monkeypatch):
    """A file's path on disk, made from the environment and its "/"-separated target:
    Windows reads a mixed one, except under an extended-length (\\\\?\\) root, which takes
    backslashes only."""
    import types

    from conda_pack import files

    root = "\\\\?\\C:\\envs\\x"
    f = files.File._in_env(root, "Lib/site-packages/a.py", True, None, None, 0, None)
    assert f.source == root + "/Lib/site-packages/a.py"  # here, on Linux
    monkeypatch.setattr(files, "os", types.SimpleNamespace(sep="\\"))
    assert f.source == "\\\\?\\C:\\envs\\x\\Lib\\site-packages\\a.py"
