"""The ``conda-pack`` command line, option by option and error by error, run as a user runs
it (a subprocess) against real environments from the env factory.

Every user error must end the same way: one ``CondaPackError: ...`` line on stderr (a
listing may follow on the next lines), exit code 1, no traceback, and nothing left in the
output directory.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import conda_pack
import pytest
from conda_pack import cli

from tests.conftest import FULL, NO_PYTHON
from tests.envfactory import PLACEHOLDER, variants
from tests.helpers import extract, run, start_for_ctrl_c

# --format choices of conda-pack 0.9.2, less 'infer'.
FORMATS = (
    "zip",
    "tar.gz",
    "tgz",
    "tar.bz2",
    "tbz2",
    "tar.xz",
    "txz",
    "tar",
    "tar.zst",
    "tzst",
    "parcel",
    "squashfs",
    "no-archive",
)
# What each format's output is, by its first bytes.
KIND = {
    "zip": "zip",
    "tar.gz": "gz",
    "tgz": "gz",
    "tar.bz2": "bz2",
    "tbz2": "bz2",
    "tar.xz": "xz",
    "txz": "xz",
    "tar": "tar",
    "tar.zst": "zst",
    "tzst": "zst",
    "parcel": "gz",
    "squashfs": "squashfs",
    "no-archive": "dir",
}
SUFFIXES = {
    ".zip": "zip",
    ".tar.gz": "gz",
    ".tgz": "gz",
    ".tar.bz2": "bz2",
    ".tbz2": "bz2",
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar": "tar",
    ".tar.zst": "zst",
    ".tzst": "zst",
    ".parcel": "gz",
    ".squashfs": "squashfs",
    ".no-archive": "dir",
}
GENERATED = ("bin/conda-unpack", "bin/activate", "bin/deactivate", "bin/activate.fish")
needs_squashfs = pytest.mark.skipif(
    shutil.which("mksquashfs") is None or shutil.which("unsquashfs") is None,
    reason="squashfs-tools not installed",
)


# -- running the CLI --------------------------------------------------------------------------
def cp(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``conda-pack ARGS`` in a subprocess; never raises on failure."""
    return run([sys.executable, "-m", "conda_pack", *args], check=False, cwd=cwd, env=env)


def ok(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """``conda-pack ARGS`` that must succeed quietly: exit 0, no stderr."""
    proc = cp(*args, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def assert_user_error(proc, *fragments: str, outdir: Path | None = None, before=()) -> str:
    """The CLI reported a user error: exit 1, exactly one ``CondaPackError: `` line on
    stderr (continued by the rest of the message), no traceback, no stdout with -q, and
    ``outdir`` holds what it held before. Returns the message."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("CondaPackError: ")]
    assert len(starts) == 1, proc.stderr
    message = "\n".join(lines[starts[0] :])[len("CondaPackError: ") :]
    for fragment in fragments:
        assert fragment in message, message
    assert proc.stdout == "", proc.stdout
    if outdir is not None:
        assert listing(outdir) == sorted(before), "left behind in the output directory"
    return message


def cli_env(*path_dirs, **extra) -> dict:
    """os.environ with PATH limited to ``path_dirs`` and no conda activation variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CONDA_EXE", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "_CE_CONDA", "_CE_M")
    }
    env["PATH"] = os.pathsep.join(str(p) for p in path_dirs)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def fake_conda(directory: Path, info=None, *, stderr: str = "", code: int = 0) -> Path:
    """An executable ``conda`` that answers ``conda info --json`` with ``info``."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "conda"
    lines = [
        "#!/bin/sh",
        '[ "$1 $2" = "info --json" ] || { echo "unexpected arguments: $*" >&2; exit 3; }',
    ]
    if stderr:
        lines.append("echo %s >&2" % shlex.quote(stderr))
    if info is not None:
        text = info if isinstance(info, str) else json.dumps(info)
        lines.append("printf '%%s\\n' %s" % shlex.quote(text))
    lines.append("exit %d" % code)
    exe.write_text("\n".join(lines) + "\n")
    exe.chmod(0o755)
    return exe


# -- looking into outputs ---------------------------------------------------------------------
def kind(path: Path) -> str:
    if path.is_dir():
        return "dir"
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, name in (
        (b"\x1f\x8b", "gz"),
        (b"BZh", "bz2"),
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x28\xb5\x2f\xfd", "zst"),
        (b"PK\x03\x04", "zip"),
        (b"hsqs", "squashfs"),
    ):
        if head.startswith(magic):
            return name
    if head[257:262] == b"ustar":
        return "tar"
    return "unknown"


def names(path: Path) -> list[str]:
    """Member names of an archive, or files under an output directory."""
    k = kind(path)
    if k == "dir":
        return sorted(
            str(Path(d, f).relative_to(path))
            for d, dirs, files in os.walk(path)
            for f in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]
        )
    if k == "zip":
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    if k == "squashfs":
        out = run(["unsquashfs", "-l", "-d", "", path]).stdout.splitlines()
        return [line.lstrip("/") for line in out if line.startswith("/")]
    if k == "zst":
        return run(["tar", "--zstd", "-tf", path]).stdout.splitlines()
    with tarfile.open(path) as t:
        return t.getnames()


def member(path: Path, name: str) -> bytes:
    if kind(path) == "zip":
        with zipfile.ZipFile(path) as z:
            return z.read(name)
    with tarfile.open(path) as t:
        return t.extractfile(name).read()


@pytest.fixture
def outdir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def empty_path(tmp_path) -> Path:
    """A PATH directory with nothing in it (so no conda, no mksquashfs)."""
    d = tmp_path / "empty-path"
    d.mkdir()
    return d


# -- --help, --version, bad options -----------------------------------------------------------
OPTIONS = (
    "--name",
    "-n",
    "--prefix",
    "-p",
    "--output",
    "-o",
    "--arcroot",
    "--dest-prefix",
    "-d",
    "--parcel-root",
    "--parcel-name",
    "--parcel-version",
    "--parcel-distro",
    "--format",
    "--compress-level",
    "--n-threads",
    "-j",
    "--zip-symlinks",
    "--no-zip-64",
    "--ignore-editable-packages",
    "--ignore-missing-files",
    "--exclude",
    "--include",
    "--force",
    "-f",
    "--quiet",
    "-q",
    "--help",
    "-h",
    "--version",
)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag):
    proc = ok(flag)
    assert proc.stdout.startswith("usage: conda-pack")
    for option in OPTIONS:
        assert option in proc.stdout, option


def test_format_choices_are_conda_packs():
    (action,) = [a for a in cli.PARSER._actions if "--format" in a.option_strings]
    # Ours adds the self-extracting installer.
    assert set(action.choices) == {"infer", *FORMATS, "sh"}
    assert action.default == "infer"


def test_version():
    proc = ok("--version")
    assert proc.stdout == "conda-pack %s\n" % conda_pack.__version__


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--no-such-option"], "unrecognized arguments"),
        (["--pref", "x"], "unrecognized arguments"),  # no abbreviations, as in 0.9.2
        (["--format", "rar"], "invalid choice"),
        (["--compress-level", "high"], "invalid int value"),
        (["-j", "many"], "invalid int value"),
        (["--output"], "expected one argument"),
    ],
)
def test_bad_option_is_a_usage_error(args, complaint, outdir):
    proc = cp(*args, cwd=outdir)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("usage: conda-pack")
    assert complaint in proc.stderr
    assert "Traceback" not in proc.stderr
    assert listing(outdir) == []


def test_filters_are_passed_in_order():
    seen = {}
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["--exclude", "a/*", "--include", "*.py", "--include", "*.pyx", "--exclude", "b"],
            pack=lambda **kw: seen.update(kw),
        )
    assert exc.value.code == 0
    assert seen["filters"] == [
        ("exclude", "a/*"),
        ("include", "*.py"),
        ("include", "*.pyx"),
        ("exclude", "b"),
    ]
    assert seen["verbose"] is True and seen["zip_64"] is True
    assert seen["format"] == "infer" and seen["compress_level"] == 4


def test_every_option_reaches_pack():
    seen = {}
    args = ["-p", "P", "-o", "O", "--arcroot", "A", "-d", "/D", "--parcel-root", "R",
            "--parcel-name", "N", "--parcel-version", "V", "--parcel-distro", "X",
            "--format", "zip", "--compress-level", "7", "-j", "3", "--zip-symlinks",
            "--no-zip-64", "--ignore-editable-packages", "--ignore-missing-files",
            "--exclude", "e", "-f", "-q", "--no-auto-relocate"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        cli.main(args, pack=lambda **kw: seen.update(kw))
    assert exc.value.code == 0
    assert seen == dict(
        name=None,
        prefix="P",
        output="O",
        format="zip",
        force=True,
        compress_level=7,
        n_threads=3,
        zip_symlinks=True,
        zip_64=False,
        arcroot="A",
        dest_prefix="/D",
        parcel_root="R",
        parcel_name="N",
        parcel_version="V",
        parcel_distro="X",
        verbose=False,
        filters=[("exclude", "e")],
        ignore_editable_packages=True,
        ignore_missing_files=True,
        auto_relocate=False,
    )


# -- every user error, one table --------------------------------------------------------------
LONG_DEST = "/" + "d" * 300
ERRORS = [
    ("missing-prefix", ["-p", "{tmp}/no-such-env"], ["Environment path", "doesn't exist"]),
    ("not-an-env", ["-p", "{tmp}/not-an-env"], ["is not a conda environment"]),
    ("name-and-prefix", ["-n", "x", "-p", "{env}"], ["Cannot specify both 'name' and 'prefix'"]),
    ("unknown-extension", ["-o", "{out}/env.rar"], ["Unknown file extension", "env.rar"]),
    ("parcel-as-zip", ["-o", "{out}/x.parcel", "--format", "zip"], ["Invalid format for parcel"]),
    ("parcel-as-tar", ["-o", "{out}/x.parcel", "--format", "tar"], ["Invalid format for parcel"]),
    ("arcroot-dotdot", ["--arcroot", ".."], ["--arcroot", ".."]),
    ("arcroot-up", ["--arcroot", "../elsewhere"], ["--arcroot", "../elsewhere"]),
    ("arcroot-escape", ["--arcroot", "a/../../b"], ["--arcroot", "a/../../b"]),
    ("dest-relative", ["-d", "relative/dest"], ["relative/dest", "absolute"]),
    ("dest-too-long", ["-d", LONG_DEST], ["bin/cprog", "at most 255 characters"]),
    ("parcel-name-dash", ["--format", "parcel", "--parcel-name", "a-b"], ["dashes", "a-b"]),
    ("parcel-distro-dash", ["--format", "parcel", "--parcel-distro", "el-7"], ["dashes"]),
    ("parcel-dest", ["--format", "parcel", "-d", "/opt/x"], ["dest_prefix", "parcels"]),
    ("parcel-arcroot", ["--format", "parcel", "--arcroot", "x"], ["arcroot", "parcels"]),
    ("threads-zero", ["-j", "0"], ["n-threads must be >= 1"]),
    ("threads-negative", ["-j", "-2"], ["n-threads must be >= 1"]),
    ("no-output-dir", ["-o", "{out}/missing/env.tar"], ["does not exist", "--force"]),
]
LEVELS = [
    ("tar.gz", 10, "0 to 9"),
    ("tar.gz", -1, "0 to 9"),
    ("tgz", 10, "0 to 9"),
    ("zip", 10, "0 to 9"),
    ("tar.bz2", 0, "1 to 9"),
    ("tar.bz2", 10, "1 to 9"),
    ("tar.xz", 10, "0 to 9"),
    ("tar.zst", 23, "22"),
    ("tar.zst", -8, "22"),
    ("squashfs", 10, "0 to 9"),
    ("parcel", 10, "0 to 9"),
]


def _fill(args, **paths):
    return [a.format(**paths) for a in args]


@pytest.mark.parametrize("args, fragments", [pytest.param(a, f, id=i) for i, a, f in ERRORS])
def test_user_errors(args, fragments, nopython_env, tmp_path, outdir):
    (tmp_path / "not-an-env").mkdir()
    (tmp_path / "not-an-env" / "file.txt").write_text("not an environment\n")
    args = _fill(args, tmp=tmp_path, out=outdir, env=nopython_env)
    if "-p" not in args and "-n" not in args:
        args = ["-p", str(nopython_env), *args]
    if "-o" not in args:
        args += ["-o", str(outdir / ("env.parcel" if "parcel" in args else "env.tar"))]
    assert_user_error(cp(*args, "-q", cwd=outdir), *fragments, outdir=outdir)


@pytest.mark.parametrize("fmt, level, allowed", LEVELS)
def test_compress_level_out_of_range(fmt, level, allowed, nopython_env, outdir):
    proc = cp("-p", nopython_env, "-o", outdir / "env.out", "--format", fmt,
              "--compress-level", str(level), "-q")  # fmt: skip
    message = assert_user_error(proc, "--compress-level %d" % level, allowed, outdir=outdir)
    assert fmt.replace("tgz", "tar.gz").replace("parcel", "tar.gz") in message


@pytest.mark.parametrize(
    "fmt, level",
    [("tar.gz", 0), ("tar.gz", 9), ("zip", 0), ("tar.bz2", 1), ("tar.zst", 22), ("tar", 99)],
)
def test_compress_level_in_range(fmt, level, nopython_env, outdir):
    out = outdir / "env.out"
    ok("-p", nopython_env, "-o", out, "--format", fmt, "--compress-level", str(level), "-q")
    assert kind(out) == KIND[fmt]
    assert "bin/cprog" in names(out)


def test_squashfs_without_mksquashfs(nopython_env, outdir, empty_path):
    proc = cp("-p", nopython_env, "-o", outdir / "env.squashfs", "-q", env=cli_env(empty_path))
    assert_user_error(proc, "mksquashfs", outdir=outdir)


# -- choosing the environment: -n, -p, the active one -----------------------------------------
@pytest.fixture
def cwd(tmp_path) -> Path:
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def test_prefix(nopython_env, outdir):
    out = outdir / "env.tar"
    proc = ok("-p", nopython_env, "-o", out, "-q")
    assert proc.stdout == ""
    got = names(out)
    for target in ("bin/cprog", "etc/cprog.conf", "lib/liblinks.so", *GENERATED):
        assert target in got
    assert any(n.startswith("conda-meta/cprog-1.0.0-") for n in got)


def test_prefix_relative_and_trailing_slash(nopython_env, cwd):
    """The default name comes from the normalised prefix, not from what was typed."""
    rel = os.path.relpath(nopython_env, cwd) + "/"
    ok("--prefix", rel, "-q", cwd=cwd)
    assert listing(cwd) == ["nopython.tar.gz"]


def test_name_from_conda_on_path(nopython_env, full_env, tmp_path, cwd):
    info = {
        "root_prefix": str(tmp_path / "miniconda3"),
        "default_prefix": str(full_env),
        "envs": [str(tmp_path / "miniconda3"), str(full_env), str(nopython_env)],
    }
    fake = fake_conda(tmp_path / "bin", info)
    ok("-n", "nopython", "-q", cwd=cwd, env=cli_env(fake.parent))
    assert listing(cwd) == ["nopython.tar.gz"]
    assert kind(cwd / "nopython.tar.gz") == "gz"


def test_name_base_is_the_root_prefix(nopython_env, full_env, tmp_path, cwd):
    info = {
        "root_prefix": str(nopython_env),
        "default_prefix": str(full_env),
        "envs": [str(nopython_env), str(full_env)],
    }
    fake = fake_conda(tmp_path / "bin", info)
    ok("--name", "base", "-q", cwd=cwd, env=cli_env(fake.parent))
    assert listing(cwd) == ["nopython.tar.gz"]


def test_name_from_conda_exe_with_spaces(nopython_env, tmp_path, cwd, empty_path):
    """$CONDA_EXE is a path (it may hold spaces) and wins over PATH."""
    info = {"root_prefix": "/nowhere", "default_prefix": "/nowhere", "envs": [str(nopython_env)]}
    exe = fake_conda(tmp_path / "my conda" / "bin", info)
    ok("-n", "nopython", "-q", cwd=cwd, env=cli_env(empty_path, CONDA_EXE=exe))
    assert listing(cwd) == ["nopython.tar.gz"]


def test_name_resolves_as_conda_activate_does(factory, tmp_path, cwd):
    """Two environments named alike: the one in the first of conda's envs_dirs, which is
    the one ``conda activate dup`` would pick, whatever the order of the envs list."""
    first = factory.install(tmp_path / "first" / "envs" / "dup", NO_PYTHON)
    second = factory.install(tmp_path / "second" / "envs" / "dup", NO_PYTHON)
    unlisted = factory.install(tmp_path / "second" / "envs" / "unlisted", NO_PYTHON)
    info = {
        "root_prefix": "/nowhere",
        "default_prefix": "/nowhere",
        "envs_dirs": [str(first.parent), str(second.parent)],
        "envs": [str(second), str(first)],
    }
    fake = fake_conda(tmp_path / "bin", info)
    for name, prefix in (("dup", first), ("unlisted", unlisted)):
        proc = cp("-n", name, "-o", cwd / (name + ".tar"), cwd=cwd, env=cli_env(fake.parent))
        assert proc.returncode == 0, proc.stderr
        assert "Packing environment at %r" % str(prefix) in proc.stdout


def test_unknown_name(nopython_env, tmp_path, cwd):
    info = {"root_prefix": str(nopython_env), "default_prefix": "/x", "envs": [str(nopython_env)]}
    fake = fake_conda(tmp_path / "bin", info)
    proc = cp("-n", "x", "-q", cwd=cwd, env=cli_env(fake.parent))
    assert_user_error(proc, "Environment name 'x' doesn't exist", outdir=cwd)


@pytest.mark.parametrize(
    "args, what",
    [(["-n", "myenv"], "environment: 'myenv'"), ([], "current environment")],
    ids=["by-name", "active"],
)
def test_conda_missing(args, what, cwd, empty_path):
    proc = cp(*args, "-q", cwd=cwd, env=cli_env(empty_path))
    message = assert_user_error(proc, "Failed to determine path to " + what, outdir=cwd)
    assert "PATH" in message


def test_conda_failing_shows_its_error(tmp_path, cwd):
    fake = fake_conda(tmp_path / "bin", stderr="CondaError: something broke", code=1)
    proc = cp("-n", "myenv", "-q", cwd=cwd, env=cli_env(fake.parent))
    assert_user_error(
        proc, "Failed to determine path to environment", "something broke", outdir=cwd
    )


@pytest.mark.parametrize(
    "info", ["not json at all", "[]", "{}"], ids=["garbage", "not-an-object", "no-fields"]
)
@pytest.mark.parametrize("args", [["-n", "base"], []], ids=["base", "active"])
def test_conda_info_unusable(info, args, tmp_path, cwd):
    fake = fake_conda(tmp_path / "bin", info)
    proc = cp(*args, "-q", cwd=cwd, env=cli_env(fake.parent))
    assert_user_error(proc, "Failed to determine path to", outdir=cwd)


def test_active_env_is_conda_prefix(nopython_env, cwd, empty_path):
    """No -n/-p: the activated environment, without asking conda."""
    ok("-q", cwd=cwd, env=cli_env(empty_path, CONDA_PREFIX=nopython_env))
    assert listing(cwd) == ["nopython.tar.gz"]


def test_active_env_from_conda_info(nopython_env, tmp_path, cwd):
    info = {"root_prefix": "/nowhere", "default_prefix": str(nopython_env), "envs": []}
    fake = fake_conda(tmp_path / "bin", info)
    ok("-q", cwd=cwd, env=cli_env(fake.parent))
    assert listing(cwd) == ["nopython.tar.gz"]


# -- --format and -o --------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_format_default_output_name(fmt, nopython_env, cwd):
    if fmt == "squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    before = datetime.date.today().strftime("%Y.%m.%d")
    ok("-p", nopython_env, "--format", fmt, "-q", cwd=cwd)
    after = datetime.date.today().strftime("%Y.%m.%d")
    (produced,) = listing(cwd)
    if fmt == "parcel":
        assert produced in {"nopython-%s-el7.parcel" % d for d in (before, after)}
    else:
        assert produced == "nopython." + fmt
    out = cwd / produced
    assert kind(out) == KIND[fmt]
    root = produced[: -len("-el7.parcel")] + "/" if fmt == "parcel" else ""
    assert root + "bin/cprog" in names(out)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_format_inferred_from_extension(suffix, nopython_env, outdir):
    if suffix == ".squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    out = outdir / ("packed" + suffix)
    ok("-p", nopython_env, "-o", out, "-q")
    assert listing(outdir) == [out.name]
    assert kind(out) == SUFFIXES[suffix]


def test_default_output_without_format_is_tar_gz(nopython_env, cwd):
    ok("-p", nopython_env, "-q", cwd=cwd)
    assert listing(cwd) == ["nopython.tar.gz"]
    with tarfile.open(cwd / "nopython.tar.gz", "r:gz") as t:
        assert "bin/cprog" in t.getnames()


def test_explicit_format_wins_over_extension(nopython_env, outdir):
    out = outdir / "env.tar.gz"
    ok("-p", nopython_env, "-o", out, "--format", "zip", "-q")
    assert kind(out) == "zip"


def test_parcel_extension_with_gzip_format(nopython_env, outdir):
    out = outdir / "custom.parcel"
    ok("-p", nopython_env, "-o", out, "--format", "tar.gz", "--parcel-version", "1.0", "-q")
    got = names(out)
    assert "nopython-1.0/meta/parcel.json" in got
    assert "nopython-1.0/bin/cprog" in got


# -- --arcroot --------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tar", "zip", "no-archive"])
def test_arcroot(fmt, nopython_env, outdir):
    out = outdir / ("env." + fmt)
    ok("-p", nopython_env, "-o", out, "--arcroot", "/some/root/", "-q")
    got = names(out)
    assert got and all(n.startswith("some/root/") for n in got), got
    assert "some/root/bin/cprog" in got
    for target in GENERATED:
        assert "some/root/" + target in got


# -- -d/--dest-prefix -------------------------------------------------------------------------
def path_of_length(base: Path, n: int) -> str:
    """An absolute path of exactly ``n`` characters under ``base``."""
    path = str(base)
    while len(path) < n:
        rest = n - len(path)
        take = min(rest - 1, 100)
        if rest - (take + 1) == 1:
            take -= 1
        path += "/" + "p" * take
    assert len(path) == n
    return path


def test_dest_prefix(nopython_env, tmp_path, outdir):
    """Prefixes are rewritten at pack time, so the archive runs where it is extracted to
    without conda-unpack (which is not generated)."""
    dest = tmp_path / "deployed" / "at" / "a-rather-longer-path-than-the-source" / "env"
    out = outdir / "env.tar"
    ok("-p", nopython_env, "-o", out, "--dest-prefix", dest, "-q")
    got = names(out)
    assert "bin/conda-unpack" not in got
    assert "bin/activate" in got and "bin/deactivate" in got
    assert b"data_dir = %s/share/cprog" % os.fsencode(dest) in member(out, "etc/cprog.conf")
    extract(out, dest, "tar")
    source = os.fsencode(str(nopython_env))
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert source not in path.read_bytes(), path
    d = str(dest)
    assert run([dest / "bin" / "cprog"]).stdout.split() == ["exe=" + d, "lib=" + d]
    assert run([dest / "bin" / "cprog-config"]).stdout.strip() == "prefix=" + d


def test_dest_prefix_of_the_maximum_length(nopython_env, tmp_path, outdir):
    dest = path_of_length(tmp_path / "max", len(PLACEHOLDER))
    out = outdir / "env.tar"
    ok("-p", nopython_env, "-o", out, "-d", dest, "-q")
    extract(out, Path(dest), "tar")
    assert run([Path(dest, "bin", "cprog")]).stdout.split() == ["exe=" + dest, "lib=" + dest]


def test_dest_prefix_one_too_long(nopython_env, tmp_path, outdir):
    dest = path_of_length(tmp_path / "max", len(PLACEHOLDER) + 1)
    proc = cp("-p", nopython_env, "-o", outdir / "env.tar", "-d", dest, "-q")
    message = assert_user_error(proc, "255", outdir=outdir)
    assert "bin/cprog" in message or "lib/libcprog.so" in message


def test_dest_prefix_too_long_fails_before_writing(nopython_env, outdir, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("the archive writer was started")

    from conda_pack import _core

    monkeypatch.setattr(_core, "ArchiveWriter", forbidden)
    with pytest.raises(SystemExit) as exc:
        cli.main(["-p", str(nopython_env), "-o", str(outdir / "env.tar"), "-d", LONG_DEST])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("CondaPackError: ") and "Traceback" not in err
    assert "at most 255 characters" in err and "lib/libcprog.so" in err
    assert listing(outdir) == []


# -- parcels ----------------------------------------------------------------------------------
def test_parcel_options(nopython_env, tmp_path, cwd):
    ok(
        "-p", nopython_env, "--format", "parcel", "--parcel-root", "/srv/parcels",
        "--parcel-name", "foo", "--parcel-version", "1.2.3", "--parcel-distro", "el9", "-q",
        cwd=cwd,
    )  # fmt: skip
    assert listing(cwd) == ["foo-1.2.3-el9.parcel"]
    out = cwd / "foo-1.2.3-el9.parcel"
    assert kind(out) == "gz"
    got = names(out)
    assert all(n.startswith("foo-1.2.3/") for n in got)
    assert "foo-1.2.3/meta/conda_env.sh" in got
    for target in GENERATED:
        assert "foo-1.2.3/" + target not in got
    meta = json.loads(member(out, "foo-1.2.3/meta/parcel.json"))
    assert meta["name"] == "foo" and meta["version"] == "1.2.3"
    assert meta["components"] == [{"name": "foo", "version": "1.2.3", "pkg_version": "1.2.3"}]
    assert meta["extraVersionInfo"]["fullVersion"] == "1.2.3-el9"
    assert meta["scripts"] == {"defines": "conda_env.sh"}
    assert meta["setActiveSymlink"] is True
    packages = {p["name"]: p["version"] for p in meta["packages"]}
    assert set(packages) == {"cprog", "cprog-data", "links", "activate-scripts"}
    assert packages["cprog"].startswith("1.0.0-")
    conf = member(out, "foo-1.2.3/etc/cprog.conf").decode()
    assert "data_dir = /srv/parcels/foo-1.2.3/share/cprog" in conf
    # Cloudera Manager sources meta/conda_env.sh with the parcel's location set.
    parcels = tmp_path / "parcels"
    extract(out, parcels, "tar.gz")
    script = (
        'PARCELS_ROOT="$1"; PARCEL_DIRNAME=foo-1.2.3; . "$1/foo-1.2.3/meta/conda_env.sh"; '
        'echo "$CDH_PYTHON"; echo "activated=$CONDAPACK_ACTIVATED"'
    )
    shown = run(["bash", "-c", script, "bash", parcels]).stdout.split()
    assert shown == ["%s/foo-1.2.3/bin/python" % parcels, "activated=1"]


def test_parcel_defaults(nopython_env, cwd):
    before = datetime.date.today().strftime("%Y.%m.%d")
    ok("-p", nopython_env, "--format", "parcel", "-q", cwd=cwd)
    after = datetime.date.today().strftime("%Y.%m.%d")
    (produced,) = listing(cwd)
    assert produced in {"nopython-%s-el7.parcel" % d for d in (before, after)}
    version = produced.split("-")[1]
    root = "nopython-%s/" % version
    meta = json.loads(member(cwd / produced, root + "meta/parcel.json"))
    assert meta["name"] == "nopython" and meta["version"] == version
    assert meta["extraVersionInfo"]["fullVersion"] == version + "-el7"
    conf = member(cwd / produced, root + "etc/cprog.conf").decode()
    assert "/opt/cloudera/parcels/nopython-%s/share/cprog" % version in conf


def test_parcel_version_may_have_dashes(nopython_env, cwd):
    """Cloudera parcel versions carry dashes (CDH-5.14.0-1.cdh5.14.0.p0.24-el7.parcel);
    0.9.2 only rejects them in the name and the distro."""
    ok("-p", nopython_env, "--format", "parcel", "--parcel-version", "1.0-1", "-q", cwd=cwd)
    assert listing(cwd) == ["nopython-1.0-1-el7.parcel"]
    meta = json.loads(member(cwd / "nopython-1.0-1-el7.parcel", "nopython-1.0-1/meta/parcel.json"))
    assert meta["version"] == "1.0-1"


# -- threads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tar.gz", "zip", "tar.zst", "tar.bz2", "tar.xz"])
def test_thread_count_does_not_change_the_archive(fmt, full_env, outdir):
    # ~9 MB of input: several compression blocks, but quick at level 1.
    common = ["-p", full_env, "--exclude", "lib/python3.11/*", "--compress-level", "1", "-q"]
    ok(*common, "-o", outdir / ("one." + fmt), "-j", "1")
    ok(*common, "-o", outdir / ("three." + fmt), "--n-threads", "3")
    one, three = (outdir / ("one." + fmt)).read_bytes(), (outdir / ("three." + fmt)).read_bytes()
    assert len(one) > 1_000_000
    assert one == three


def test_all_cores(nopython_env, outdir):
    ok("-p", nopython_env, "-o", outdir / "env.tar.gz", "-j", "-1", "-q")
    assert kind(outdir / "env.tar.gz") == "gz"


# -- zip options ------------------------------------------------------------------------------
def test_zip_symlinks(nopython_env, outdir):
    ok("-p", nopython_env, "-o", outdir / "copies.zip", "-q")
    ok("-p", nopython_env, "-o", outdir / "links.zip", "--zip-symlinks", "-q")
    with zipfile.ZipFile(outdir / "copies.zip") as z:
        info = z.getinfo("lib/liblinks.so")
        assert (info.external_attr >> 16) & 0o170000 != 0o120000
        assert z.read(info) == z.read("lib/liblinks.so.1")
        assert "share/links/current/a.txt" in z.namelist()
    with zipfile.ZipFile(outdir / "links.zip") as z:
        for name, target in (("lib/liblinks.so", b"liblinks.so.1"), ("share/links/current", b"v1")):
            info = z.getinfo(name)
            assert (info.external_attr >> 16) & 0o170000 == 0o120000, name
            assert z.read(info) == target
        assert "share/links/current/a.txt" not in z.namelist()


def test_zip_symlinks_ignored_for_tar(nopython_env, outdir):
    ok("-p", nopython_env, "-o", outdir / "env.tar", "--zip-symlinks", "-q")
    with tarfile.open(outdir / "env.tar") as t:
        assert t.getmember("lib/liblinks.so").issym()


def test_no_zip_64_small_env(nopython_env, outdir):
    ok("-p", nopython_env, "-o", outdir / "env.zip", "--no-zip-64", "-q")
    assert "bin/cprog" in names(outdir / "env.zip")


# -- --exclude/--include ----------------------------------------------------------------------
def test_exclude_then_include(nopython_env, outdir):
    out = outdir / "env.tar"
    ok("-p", nopython_env, "-o", out, "--exclude", "etc/*", "--include", "etc/cprog.conf",
       "--exclude", "share/links/*", "-q")  # fmt: skip
    got = names(out)
    assert [n for n in got if n.startswith("etc/")] == ["etc/cprog.conf"]
    assert not [n for n in got if n.startswith("share/links/")]
    assert "share/cprog/README.txt" in got and "bin/cprog" in got


def test_include_before_exclude_does_nothing(nopython_env, outdir):
    out = outdir / "env.tar"
    ok("-p", nopython_env, "-o", out, "--include", "etc/cprog.conf", "--exclude", "etc/*", "-q")
    assert not [n for n in names(out) if n.startswith("etc/")]


# -- -f/--force -------------------------------------------------------------------------------
def test_existing_output_needs_force(nopython_env, outdir):
    out = outdir / "env.tar"
    out.write_bytes(b"")
    proc = cp("-p", nopython_env, "-o", out, "-q")
    assert_user_error(proc, "already exists", "env.tar", outdir=outdir, before=["env.tar"])
    assert out.read_bytes() == b""
    ok("-p", nopython_env, "-o", out, "-f", "-q")
    assert listing(outdir) == ["env.tar"]
    assert "bin/cprog" in names(out)


def test_force_creates_output_directory(nopython_env, outdir):
    out = outdir / "a" / "b" / "env.tar"
    proc = cp("-p", nopython_env, "-o", out, "-q")
    assert_user_error(proc, "does not exist", outdir=outdir)
    ok("-p", nopython_env, "-o", out, "--force", "-q")
    assert "bin/cprog" in names(out)


def test_no_archive_over_a_foreign_directory_is_refused(nopython_env, outdir):
    target = outdir / "target"
    (target / "precious").mkdir(parents=True)
    (target / "precious" / "data.txt").write_text("keep me\n")
    proc = cp("-p", nopython_env, "-o", target, "--format", "no-archive", "-q")
    assert_user_error(proc, "already exists", outdir=outdir, before=["target"])
    proc = cp("-p", nopython_env, "-o", target, "--format", "no-archive", "-f", "-q")
    assert_user_error(proc, "target", outdir=outdir, before=["target"])
    assert listing(target) == ["precious"]
    assert (target / "precious" / "data.txt").read_text() == "keep me\n"


def test_no_archive_force_replaces_empty_dir_and_old_output(nopython_env, outdir):
    target = outdir / "target"
    target.mkdir()
    ok("-p", nopython_env, "-o", target, "--format", "no-archive", "-f", "-q")
    assert (target / "bin" / "cprog").is_file()
    (target / "stale-file").write_text("from an earlier run\n")
    ok("-p", nopython_env, "-o", target, "--format", "no-archive", "-f", "-q")
    assert not (target / "stale-file").exists()
    assert (target / "bin" / "cprog").is_file()
    assert listing(outdir) == ["target"]


def test_no_archive_force_replaces_old_output_with_arcroot(nopython_env, outdir):
    target = outdir / "target"
    args = ("-p", nopython_env, "-o", target, "--format", "no-archive", "--arcroot", "env")
    ok(*args, "-q")
    ok(*args, "-f", "-q")
    assert (target / "env" / "bin" / "cprog").is_file()


@pytest.mark.parametrize("slash", ["", "/"], ids=["dir", "dir-slash"])
def test_output_is_an_existing_directory(slash, nopython_env, outdir):
    target = outdir / "adir"
    target.mkdir()
    proc = cp("-p", nopython_env, "-o", str(target) + slash, "--format", "tar", "-f", "-q")
    assert_user_error(proc, "adir", outdir=outdir, before=["adir"])
    assert listing(target) == []


# -- -q and progress --------------------------------------------------------------------------
def test_quiet_prints_nothing(nopython_env, outdir):
    proc = cp("-p", nopython_env, "-o", outdir / "env.tar", "--quiet")
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == ""


def test_not_quiet_reports_progress(nopython_env, outdir):
    out = outdir / "env.tar"
    proc = cp("-p", nopython_env, "-o", out)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "Collecting packages..." in proc.stdout
    assert "Packing environment at %r to %r" % (str(nopython_env), str(out)) in proc.stdout


def _stderr_on_a_terminal(
    *args, tmp: Path, columns: int = 80, env_columns: str | None = None
) -> tuple[int, bytes, str]:
    """Run conda-pack with stderr on a pseudo-terminal ``columns`` wide (and $COLUMNS set
    to ``env_columns``, else unset) and stdout to a file; (exit code, what the terminal
    got, stdout)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = dict(os.environ)
    env.pop("COLUMNS", None)  # whatever width the test run itself was started with
    if env_columns is not None:
        env["COLUMNS"] = env_columns
    with open(tmp / "stdout", "w+") as out:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conda_pack", *map(str, args)],
                stdout=out,
                stderr=slave,
                env=env,
            )
        finally:
            os.close(slave)
        shown = b""
        try:
            while chunk := os.read(master, 65536):  # read as it comes: the pty buffer is small
                shown += chunk
        except OSError:  # EIO: the terminal has no writer left
            pass
        finally:
            os.close(master)
        code = proc.wait(timeout=120)
        out.seek(0)
        return code, shown, out.read()


def _frames(shown: bytes) -> list[str]:
    """The bar's successive states: what each carriage return starts (the terminal turns
    the final newline into CR LF)."""
    text = shown.decode().replace("\r\n", "\n")
    assert text.endswith("\n") and text.count("\n") == 1, text
    return [f for f in text[:-1].split("\r") if f]


@pytest.mark.parametrize("columns", [60, 132])
def test_progress_bar_on_stderr_as_wide_as_the_terminal(columns, nopython_env, tmp_path, outdir):
    out = outdir / "a.tar"
    code, shown, stdout = _stderr_on_a_terminal(
        "-p", nopython_env, "-o", out, tmp=tmp_path, columns=columns
    )
    assert code == 0
    frames = _frames(shown)
    # One cell short of the width, so that no terminal wraps.
    assert {len(f) for f in frames} == {columns - 1}, frames
    last = frames[-1]
    assert re.fullmatch(r"\[#+\] 100% \| +[0-9.]+ [kMG]?B/s \| +[0-9.]+s, ETA +-", last), last
    # stdout has the messages, as without a terminal, and nothing of the bar.
    assert stdout == "Collecting packages...\nPacking environment at %r to %r\n" % (
        str(nopython_env),
        str(out),
    )


def test_progress_bar_follows_columns(nopython_env, tmp_path, outdir):
    """$COLUMNS wins over the terminal's size, as for every program using Python's
    shutil.get_terminal_size; a terminal too narrow for a bar gets the figures alone."""
    code, shown, _ = _stderr_on_a_terminal(
        "-p", nopython_env, "-o", outdir / "a.tar", tmp=tmp_path, columns=132, env_columns="70"
    )
    assert code == 0
    frames = _frames(shown)
    assert {len(f) for f in frames} == {69}
    assert frames[-1].startswith("[#")
    code, shown, _ = _stderr_on_a_terminal(
        "-p", nopython_env, "-o", outdir / "b.tar", tmp=tmp_path, columns=132, env_columns="30"
    )
    assert code == 0
    frames = _frames(shown)
    assert {len(f) for f in frames} == {29}
    assert frames[-1].startswith("100% | ")


def test_progress_line_fits_any_width(monkeypatch):
    import io

    from conda_pack.progress import ProgressBar, terminal_columns

    bar = ProgressBar(10, 1000, stream=io.StringIO())
    for columns in range(1, 201):
        for done in (0, 1, 500, 1000):
            assert len(bar.line(3, done, columns)) == max(columns - 1, 1), (columns, done)
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_columns(io.StringIO()) == 80  # not a terminal: the usual default
    closed = io.StringIO()
    closed.close()
    assert not ProgressBar.wanted(True, closed)
    assert not ProgressBar.wanted(True, io.StringIO())


def test_quiet_on_a_terminal_shows_nothing(nopython_env, tmp_path, outdir):
    code, shown, stdout = _stderr_on_a_terminal(
        "-p", nopython_env, "-o", outdir / "a.tar", "-q", tmp=tmp_path
    )
    assert (code, shown, stdout) == (0, b"", "")


def test_no_progress_bar_when_stderr_is_not_a_terminal(nopython_env, tmp_path, outdir):
    """stdout on a terminal, stderr not: the messages only."""
    import pty

    master, slave = pty.openpty()
    with open(tmp_path / "stderr", "w+b") as err:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conda_pack", "-p", nopython_env, "-o", outdir / "a.tar"],
                stdout=slave,
                stderr=err,
            )
        finally:
            os.close(slave)
        shown = b""
        try:
            while chunk := os.read(master, 65536):
                shown += chunk
        except OSError:
            pass
        finally:
            os.close(master)
        assert proc.wait(timeout=120) == 0
        err.seek(0)
        assert err.read() == b""
    assert shown.decode() == "Collecting packages...\r\nPacking environment at %r to %r\r\n" % (
        str(nopython_env),
        str(outdir / "a.tar"),
    )


def test_parcel_options_ignored_for_other_formats(nopython_env, outdir):
    out = outdir / "env.tar"
    ok("-p", nopython_env, "-o", out, "--parcel-name", "x", "--parcel-version", "1", "-q")
    got = names(out)
    assert "bin/cprog" in got and "bin/conda-unpack" in got
    assert not [n for n in got if n.startswith(("meta/", "x-1/"))]


# -- Ctrl-C -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tar.gz", pytest.param("squashfs", marks=needs_squashfs)])
def test_ctrl_c(fmt, full_env, outdir):
    """Interrupted while writing (for squashfs: staging or running mksquashfs)."""
    proc = start_for_ctrl_c(
        [sys.executable, "-m", "conda_pack", "-p", full_env, "-o", outdir / ("env." + fmt),
         "-j", "1", "--compress-level", "9", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not os.listdir(outdir):  # the archive is being written
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "packing never started"
            time.sleep(0.01)
        time.sleep(0.3)
        assert proc.poll() is None, "packing finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert stdout == ""
    assert stderr.splitlines()[-1] == "Interrupted", stderr
    assert "Traceback" not in stderr
    assert listing(outdir) == []


def test_ctrl_c_while_the_packer_loads(nopython_env, outdir, monkeypatch, capsys):
    """The packer and its Rust core are imported inside the command's error handling, so a
    Ctrl-C while they load reads like one while packing (not a traceback)."""

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "conda_pack.packing":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "conda_pack.packing", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as exc:
        cli.main(["-p", str(nopython_env), "-o", str(outdir / "env.tar")])
    assert exc.value.code == 1
    assert capsys.readouterr().err == "Interrupted\n"
    assert listing(outdir) == []


# -- installed side by side with conda-pack 0.9.2 --------------------------------------------
PACKAGE_DIR = Path(conda_pack.__file__).resolve().parent
REINSTALL = "pip uninstall conda-pack conda-pack-rs && pip install conda-pack-rs"


def site_with(tmp: Path, metadata: dict[str, tuple[str, str]], installer: str = "pip") -> Path:
    """A site directory holding this conda_pack package (a link to it) beside metadata
    directories (``{directory: (project, version)}``), as pip leaves them when two
    distributions install the same package."""
    site = tmp / "site-packages"
    site.mkdir()
    (site / "conda_pack").symlink_to(PACKAGE_DIR, target_is_directory=True)
    for directory, (project, version) in metadata.items():
        d = site / directory
        d.mkdir()
        (d / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (project, version)
        )
        (d / "INSTALLER").write_text(installer + "\n")
    return site


def from_site(site: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(site))


@pytest.mark.parametrize(
    "metadata, installer, fix",
    [
        ("conda_pack-0.9.2.dist-info", "pip", REINSTALL),
        ("conda-pack-0.9.2.dist-info", "pip", REINSTALL),
        ("conda_pack-0.9.2-py3.11.egg-info", "pip", REINSTALL),
        (
            "conda_pack-0.9.2.dist-info",
            "conda",
            "conda remove conda-pack && pip install --force-reinstall conda-pack-rs",
        ),
    ],
)
def test_installed_over_conda_pack_0_9_2(metadata, installer, fix, nopython_env, tmp_path, outdir):
    site = site_with(tmp_path, {metadata: ("conda-pack", "0.9.2")}, installer=installer)
    proc = cp("-p", nopython_env, "-o", outdir / "env.tar", "-q", env=from_site(site))
    message = assert_user_error(proc, outdir=outdir)
    assert message == (
        "conda-pack 0.9.2 and conda-pack-rs %s are both installed in %s, and their "
        "conda_pack modules overwrite each other; keep only conda-pack-rs: %s"
        % (importlib.metadata.version("conda-pack-rs"), site, fix)
    )
    # Only packing checks: --help and --version stay as fast as they were.
    assert ok("--version", env=from_site(site)).stdout.startswith("conda-pack ")
    assert ok("--help", env=from_site(site)).stdout.startswith("usage: conda-pack ")


def test_other_distributions_beside_us_are_fine(nopython_env, tmp_path, outdir):
    site = site_with(
        tmp_path,
        {
            "conda_pack_rs-0.10.0.dist-info": ("conda-pack-rs", "0.10.0"),
            "conda_package_handling-2.6.0.dist-info": ("conda-package-handling", "2.6.0"),
        },
    )
    ok("-p", nopython_env, "-o", outdir / "env.tar", "-q", env=from_site(site))
    assert "bin/cprog" in names(outdir / "env.tar")


def test_the_plugin_reports_conda_pack_0_9_2_before_running_its_cli(tmp_path):
    """With 0.9.2 installed over us, ``conda_pack.cli`` is 0.9.2's: ``conda pack`` (our
    plugin module, which 0.9.2 lacks) must say so instead of running it."""
    site = tmp_path / "site-packages"
    package = site / "conda_pack"
    package.mkdir(parents=True)
    for entry in PACKAGE_DIR.iterdir():
        if entry.name not in ("cli.py", "__pycache__"):
            (package / entry.name).symlink_to(entry)
    (package / "cli.py").write_text("def main(*args, **kwargs):\n    print('their CLI ran')\n")
    (site / "conda_pack-0.9.2.dist-info").mkdir()
    (site / "conda_pack-0.9.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: conda-pack\nVersion: 0.9.2\n"
    )
    code = (
        "import sys, types\n"
        "for name in ('conda', 'conda.plugins', 'conda.plugins.types'):\n"
        "    sys.modules[name] = types.ModuleType(name)\n"
        "sys.modules['conda.plugins'].hookimpl = lambda f: f\n"
        "sys.modules['conda.plugins.types'].CondaSubcommand = dict\n"
        "from conda_pack.conda_plugin import run_conda_pack\n"
        "sys.exit(run_conda_pack(('--help',)))\n"
    )
    proc = run([sys.executable, "-c", code], check=False, env=from_site(site))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("CondaPackError: conda-pack 0.9.2 and conda-pack-rs ")
    assert proc.stderr.endswith(": %s\n" % REINSTALL) and proc.stderr.count("\n") == 1


def test_import_and_help_do_not_pay_for_the_check():
    """``import conda_pack.cli``, --help and --version load neither importlib.metadata nor
    the packer: the installation check runs only when packing."""
    code = (
        "import sys\n"
        "from conda_pack.cli import main\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('conda_pack'))\n"
        "for args in (['--version'], ['--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "late = sorted(m for m in sys.modules if m.startswith('conda_pack'))\n"
        "print(loaded == late, loaded, 'importlib.metadata' in sys.modules, file=sys.stderr)\n"
    )
    proc = run([sys.executable, "-c", code])
    expected = sorted(
        "conda_pack" + m for m in ("", ".cli", "._version", ".errors", ".formats", ".warn")
    )
    assert proc.stderr == "True %s False\n" % expected


# -- user mistakes and other installers -------------------------------------------------------
@pytest.fixture(scope="module")
def pip_env(factory, tmp_path_factory) -> Path:
    """A Python env where pip installed a wheel and an editable project and removed a conda
    package (condatest-lib). Read-only for the tests below."""
    base = tmp_path_factory.mktemp("pip-env")
    prefix = factory.install(base / "pipenv", FULL, pkgs_dir=base / "pkgs")
    variants.pip_install_wheel(prefix)
    variants.pip_install_editable(prefix, base / "editable-src")
    variants.pip_uninstall(prefix, "condatest-lib")
    return prefix


def test_editable_package_refused(pip_env, outdir):
    proc = cp("-p", pip_env, "-o", outdir / "env.tar", "-q")
    message = assert_user_error(proc, "editable", "--ignore-editable-packages", outdir=outdir)
    assert variants.EDITABLE_PROJECT.replace("-", "_") in message.replace("-", "_")


def test_pip_uninstalled_conda_package_is_missing_files(pip_env, outdir):
    proc = cp("-p", pip_env, "-o", outdir / "env.tar", "--ignore-editable-packages", "-q")
    message = assert_user_error(proc, "condatest-lib 1.0.0", "--ignore-missing-files")
    assert "bin/condatest-hello" in message
    assert listing(outdir) == []


def test_ignore_both_and_the_wheel_script_runs_after_unpack(pip_env, outdir, long_dest):
    out = outdir / "env.tar"
    ok("-p", pip_env, "-o", out, "--ignore-editable-packages", "--ignore-missing-files", "-q")
    got = names(out)
    assert "bin/condatest-hello" not in got
    assert any(n.startswith("conda-meta/condatest-lib-") for n in got)
    root = extract(out, long_dest, "tar")
    run([root / "bin" / "conda-unpack"])
    hello = run([root / "bin" / variants.WHEEL_SCRIPT]).stdout.strip()
    assert hello == "wheel hello from %s" % root
    assert run([root / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % root


def test_overwritten_file_is_reported_like_missing(make_env, outdir):
    env = make_env(NO_PYTHON)
    variants.overwrite_managed_file(env, "share/cprog/README.txt")
    proc = cp("-p", env, "-o", outdir / "env.tar", "-q")
    assert_user_error(
        proc, "cprog-data 1.0.0", "share/cprog/README.txt", "--ignore-missing-files", outdir=outdir
    )
    ok("-p", env, "-o", outdir / "env.tar", "--ignore-missing-files", "-q")
    assert b"edited after install" in member(outdir / "env.tar", "share/cprog/README.txt")


def test_same_size_edit_found_while_writing_leaves_nothing(make_env, outdir):
    """A file with a prefix edited in place (size kept) is only caught by its hash while the
    archive is written: the partial archive must go."""
    env = make_env(NO_PYTHON)
    variants.overwrite_managed_file(env, "etc/cprog.conf", same_size=True)
    proc = cp("-p", env, "-o", outdir / "env.tar.gz", "-q")
    assert_user_error(proc, "cprog-data 1.0.0", "etc/cprog.conf", outdir=outdir)
    ok("-p", env, "-o", outdir / "env.tar.gz", "--ignore-missing-files", "-q")


@pytest.mark.parametrize("variant", ["no-package-cache", "micromamba", "pixi"])
def test_other_installers_round_trip(variant, make_env, outdir, long_dest):
    env = make_env(NO_PYTHON)
    if variant == "no-package-cache":
        assert variants.remove_package_cache(env)
    elif variant == "micromamba":
        variants.make_micromamba_like(env)
    else:
        variants.make_pixi_like(env)
    out = outdir / "env.tar"
    proc = cp("-p", env, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "UserWarning" not in proc.stderr
    if variant == "no-package-cache":
        # A warning for people: printed as is, not through Python's warnings machinery.
        assert proc.stderr.startswith("\nConda-managed packages were found without entries")
    root = extract(out, long_dest, "tar")
    run([root / "bin" / "conda-unpack"])
    d = str(root)
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=" + d, "lib=" + d]
    assert run([root / "bin" / "cprog-config"]).stdout.strip() == "prefix=" + d
