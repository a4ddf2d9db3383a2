"""The Python API of conda-pack 0.9.2, as programs use it: ``conda_pack.pack``,
``CondaEnv``, ``File`` and ``CondaPackException``, on real environments from the factory."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import tarfile
import warnings
import zipfile
from pathlib import Path

import conda_pack
import pytest
from conda_pack import CondaEnv, CondaPackException, File, pack

from tests.conftest import FULL, NO_PYTHON
from tests.envfactory import PLACEHOLDER, variants
from tests.helpers import extract, run


def fake_conda_on_path(monkeypatch, directory: Path, info: dict) -> None:
    """PATH holds only an executable ``conda`` answering ``conda info --json``."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "conda"
    exe.write_text("#!/bin/sh\nprintf '%%s\\n' %s\n" % shlex.quote(json.dumps(info)))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.delenv("CONDA_EXE", raising=False)


def tar_names(path) -> list[str]:
    with tarfile.open(path) as t:
        return t.getnames()


def assert_runs_at(root: Path) -> None:
    d = str(root)
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=" + d, "lib=" + d]
    assert run([root / "bin" / "cprog-config"]).stdout.strip() == "prefix=" + d


@pytest.fixture
def outdir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


# -- what the package exports -----------------------------------------------------------------
def test_exports():
    assert {"CondaEnv", "CondaPackException", "File", "pack"} <= set(conda_pack.__all__)
    assert conda_pack.pack is pack and conda_pack.CondaEnv is CondaEnv
    assert issubclass(CondaPackException, Exception)
    assert isinstance(conda_pack.__version__, str) and conda_pack.__version__


def test_version_is_the_one_the_package_is_built_with():
    import re
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text()
    cargo = (root / "Cargo.toml").read_text()
    declared = re.search(r'(?m)^version = "([^"]+)"', pyproject).group(1)
    assert conda_pack.__version__ == declared
    assert re.search(r'(?m)^version = "([^"]+)"', cargo).group(1) == declared
    assert version("conda-pack-rs") == declared  # the installed distribution


def test_core_module_names():
    """``from conda_pack.core import File`` (or CondaEnv, name_to_prefix, ...) is common in
    scripts written against conda-pack 0.9.2."""
    core = importlib.import_module("conda_pack.core")
    assert core.CondaEnv is CondaEnv and core.File is File
    assert core.CondaPackException is CondaPackException and core.pack is pack
    assert callable(core.name_to_prefix)


# -- File -------------------------------------------------------------------------------------
def test_file_defaults_and_repr():
    f = File("/abs/lib/libfoo.so", "lib/libfoo.so")
    assert (f.source, f.target) == ("/abs/lib/libfoo.so", "lib/libfoo.so")
    assert f.is_conda is True and f.file_mode is None and f.prefix_placeholder is None
    assert repr(f) == "File<'lib/libfoo.so', is_conda=True>"


def test_file_all_arguments():
    f = File("/src/etc/x.conf", "etc/x.conf", False, "text", "/old/prefix")
    assert (f.is_conda, f.file_mode, f.prefix_placeholder) == (False, "text", "/old/prefix")
    assert repr(f) == "File<'etc/x.conf', is_conda=False>"
    g = File(source="/s", target="t", is_conda=True, file_mode="binary", prefix_placeholder="/p")
    assert (g.source, g.target, g.file_mode, g.prefix_placeholder) == ("/s", "t", "binary", "/p")


# -- CondaEnv ---------------------------------------------------------------------------------
def test_from_prefix(nopython_env):
    env = CondaEnv.from_prefix(str(nopython_env))
    assert env.prefix == str(nopython_env)
    assert env.name == "nopython"
    assert len(env) == len(env.files) > 20
    assert repr(env) == "CondaEnv<%r, %d files>" % (str(nopython_env), len(env))
    files = list(env)
    assert all(isinstance(f, File) for f in files)
    assert [f.target for f in files] == sorted(f.target for f in files)
    assert all(os.path.isabs(f.source) and not os.path.isabs(f.target) for f in files)
    by_target = {f.target: f for f in files}
    cprog = by_target["bin/cprog"]
    assert cprog.is_conda and cprog.file_mode == "binary"
    assert cprog.prefix_placeholder == PLACEHOLDER
    conf = by_target["etc/cprog.conf"]
    assert conf.is_conda and conf.file_mode == "text" and conf.prefix_placeholder == PLACEHOLDER
    readme = by_target["share/cprog/README.txt"]
    assert readme.is_conda and readme.file_mode is None and readme.prefix_placeholder is None
    assert by_target["lib/liblinks.so"].is_conda
    meta = [f for f in files if f.target.startswith("conda-meta/")]
    assert {f.target for f in meta} >= {"conda-meta/history"}
    assert all(f.is_conda and f.file_mode is None for f in meta)
    unmanaged = [f for f in files if not f.is_conda]
    assert unmanaged and all(f.file_mode == "unknown" for f in unmanaged)


def test_from_prefix_normalises_relative_paths(nopython_env, monkeypatch):
    monkeypatch.chdir(nopython_env.parent)
    assert CondaEnv.from_prefix("nopython").prefix == str(nopython_env)
    assert CondaEnv.from_prefix("./nopython/../nopython/").prefix == str(nopython_env)
    monkeypatch.chdir(nopython_env / "bin")
    env = CondaEnv.from_prefix("..")
    assert env.prefix == str(nopython_env) and env.name == "nopython"


def test_from_prefix_errors(tmp_path):
    with pytest.raises(CondaPackException, match="Environment path .* doesn't exist"):
        CondaEnv.from_prefix(str(tmp_path / "missing"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(CondaPackException, match="is not a conda environment"):
        CondaEnv.from_prefix(str(tmp_path / "plain"))


def test_from_name(nopython_env, full_env, tmp_path, monkeypatch):
    info = {
        "root_prefix": str(full_env),
        "default_prefix": str(full_env),
        "envs": [str(full_env), str(nopython_env)],
    }
    fake_conda_on_path(monkeypatch, tmp_path / "bin", info)
    assert CondaEnv.from_name("nopython").prefix == str(nopython_env)
    with pytest.raises(CondaPackException, match="Environment name 'nope' doesn't exist"):
        CondaEnv.from_name("nope")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(CondaPackException, match="Failed to determine path to environment"):
        CondaEnv.from_name("nopython")


def test_from_default(nopython_env, tmp_path, monkeypatch):
    monkeypatch.setenv("CONDA_PREFIX", str(nopython_env))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert CondaEnv.from_default().prefix == str(nopython_env)
    monkeypatch.delenv("CONDA_PREFIX")
    with pytest.raises(CondaPackException, match="Failed to determine path to current"):
        CondaEnv.from_default()
    info = {"root_prefix": "/nowhere", "default_prefix": str(nopython_env), "envs": []}
    fake_conda_on_path(monkeypatch, tmp_path / "bin", info)
    assert CondaEnv.from_default().prefix == str(nopython_env)


def test_exclude_include_return_new_envs(nopython_env):
    env = CondaEnv.from_prefix(str(nopython_env))
    targets = [f.target for f in env]
    no_etc = env.exclude("etc/*")
    assert isinstance(no_etc, CondaEnv) and no_etc is not env
    assert [f.target for f in env] == targets  # not mutated
    assert not [f for f in no_etc if f.target.startswith("etc/")]
    assert len(no_etc) == len(env) - len([t for t in targets if t.startswith("etc/")])
    back = no_etc.include("etc/cprog.conf")
    assert [f.target for f in back if f.target.startswith("etc/")] == ["etc/cprog.conf"]
    assert len(no_etc) == len(back) - 1  # not mutated either
    composed = back.exclude("share/*").include("share/links/*").include("etc/conda/*")
    got = {f.target for f in composed}
    assert "share/cprog/README.txt" not in got and "share/links/v1/a.txt" in got
    assert {t for t in targets if t.startswith("etc/")} <= got
    assert [f.target for f in composed] == sorted(got)
    assert [f.target for f in env.include("*")] == targets  # nothing was excluded
    assert composed.prefix == env.prefix and composed.name == env.name


def test_filtered_env_packs_and_runs(nopython_env, outdir, long_dest):
    env = CondaEnv.from_prefix(str(nopython_env)).exclude("etc/conda/*").exclude("share/*")
    out = env.pack(output=str(outdir / "env.tar"))
    assert out == str(outdir / "env.tar")
    got = tar_names(out)
    assert not [n for n in got if n.startswith(("etc/conda/", "share/"))]
    root = extract(Path(out), long_dest, "tar")
    run([root / "bin" / "conda-unpack"])
    assert_runs_at(root)


def test_user_built_env(nopython_env, tmp_path, outdir, long_dest):
    """CondaEnv(prefix, files) with files of the user's own, as conda-pack documents."""
    custom = tmp_path / "custom.conf"
    custom.write_text("root=/my/build/prefix/data\n")
    env = CondaEnv.from_prefix(str(nopython_env))
    extra = File(str(custom), "etc/custom.conf", False, "text", "/my/build/prefix")
    mine = CondaEnv(env.prefix, [f for f in env if f.target != "etc/cprog.conf"] + [extra])
    assert len(mine) == len(env) and mine.name == "nopython"
    out = mine.pack(output=str(outdir / "env.tar.gz"), compress_level=1)
    root = extract(Path(out), long_dest, "tar.gz")
    assert not (root / "etc" / "cprog.conf").exists()
    run([root / "bin" / "conda-unpack"])
    assert (root / "etc" / "custom.conf").read_text() == "root=%s/data\n" % root
    assert_runs_at(root)


# -- pack() -----------------------------------------------------------------------------------
def test_pack_defaults(nopython_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert pack(prefix=str(nopython_env)) == "nopython.tar.gz"
    assert tarfile.open(tmp_path / "nopython.tar.gz", "r:gz").getmember("bin/cprog")
    assert capsys.readouterr().out == ""  # not verbose by default
    env = CondaEnv.from_prefix(str(nopython_env))
    assert env.pack(format="zip") == "nopython.zip"
    assert zipfile.is_zipfile(tmp_path / "nopython.zip")


def test_pack_every_archive_parameter(nopython_env, outdir, capsys):
    out = outdir / "env.zip"
    out.write_bytes(b"an old archive")
    result = pack(
        name=None,
        prefix=str(nopython_env),
        output=str(out),
        format="zip",
        arcroot="root/dir",
        dest_prefix=None,
        parcel_root=None,
        parcel_name=None,
        parcel_version=None,
        parcel_distro=None,
        verbose=True,
        force=True,
        compress_level=0,
        n_threads=2,
        zip_symlinks=True,
        zip_64=False,
        filters=[("exclude", "etc/*"), ("include", "etc/cprog.conf")],
        ignore_editable_packages=False,
        ignore_missing_files=False,
    )
    assert result == str(out)
    stdout = capsys.readouterr().out
    assert "Collecting packages..." in stdout and "Packing environment at" in stdout
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        got = z.namelist()
        assert all(n.startswith("root/dir/") for n in got)
        assert [n for n in got if n.startswith("root/dir/etc/")] == ["root/dir/etc/cprog.conf"]
        link = z.getinfo("root/dir/lib/liblinks.so")
        assert (link.external_attr >> 16) & 0o170000 == 0o120000
        assert "root/dir/bin/conda-unpack" in got


def test_pack_dest_prefix(nopython_env, outdir, long_dest):
    out = pack(prefix=str(nopython_env), output=str(outdir / "env.tar"), dest_prefix=str(long_dest))
    got = tar_names(out)
    assert "bin/conda-unpack" not in got and "bin/activate" in got
    assert_runs_at(extract(Path(out), long_dest, "tar"))


def test_pack_parcel(nopython_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = pack(
        prefix=str(nopython_env),
        format="parcel",
        parcel_root="/data/parcels",
        parcel_name="mine",
        parcel_version="2.0",
        parcel_distro="el8",
    )
    assert out == "mine-2.0-el8.parcel"
    with tarfile.open(tmp_path / out, "r:gz") as t:
        meta = json.load(t.extractfile("mine-2.0/meta/parcel.json"))
        conf = t.extractfile("mine-2.0/etc/cprog.conf").read().decode()
    assert meta["name"] == "mine" and meta["version"] == "2.0"
    assert "/data/parcels/mine-2.0/share/cprog" in conf


def test_pack_by_name(nopython_env, tmp_path, outdir, monkeypatch):
    info = {"root_prefix": "/x", "default_prefix": "/x", "envs": [str(nopython_env)]}
    fake_conda_on_path(monkeypatch, tmp_path / "bin", info)
    out = str(outdir / "env.tar")
    assert pack(name="nopython", output=out) == out
    assert "bin/cprog" in tar_names(out)


def test_pack_active_env(nopython_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONDA_PREFIX", str(nopython_env))
    assert pack(format="tar") == "nopython.tar"


@pytest.fixture
def damaged_env(make_env) -> Path:
    """pip installed an editable project, and a conda file was edited after install."""
    env = make_env(FULL)
    variants.pip_install_editable(env, env.parent / "editable-src")
    variants.overwrite_managed_file(env, "share/cprog/README.txt")
    return env


def test_pack_ignore_flags(damaged_env, outdir):
    out = str(outdir / "env.tar")
    with pytest.raises(CondaPackException, match="editable"):
        pack(prefix=str(damaged_env), output=out)
    with pytest.raises(CondaPackException, match="share/cprog/README.txt"):
        pack(prefix=str(damaged_env), output=out, ignore_editable_packages=True)
    with pytest.raises(CondaPackException, match="editable"):
        CondaEnv.from_prefix(str(damaged_env), ignore_missing_files=True)
    assert os.listdir(outdir) == []
    result = pack(
        prefix=str(damaged_env),
        output=out,
        ignore_editable_packages=True,
        ignore_missing_files=True,
    )
    assert result == out and "share/cprog/README.txt" in tar_names(out)


API_ERRORS = [
    ("both", dict(name="x"), "Cannot specify both 'name' and 'prefix'"),
    ("filter-kind", dict(filters=[("exclude", "etc/*"), ("foo", "*")]), "Unknown filter"),
    ("format", dict(format="rar"), "Unknown format 'rar'"),
    ("extension", dict(output="{out}/env.rar"), "Unknown file extension"),
    ("level", dict(format="tar.gz", compress_level=10), "out of range"),
    ("threads", dict(n_threads=0), "n-threads"),
    ("dest", dict(dest_prefix="relative"), "absolute"),
    ("dest-long", dict(dest_prefix="/" + "x" * 300), "255"),
    ("arcroot", dict(arcroot="../up"), "arcroot"),
    ("parcel-name", dict(format="parcel", parcel_name="a-b"), "dashes"),
    ("parcel-arcroot", dict(format="parcel", arcroot="x"), "parcels"),
    ("parcel-zip", dict(output="{out}/x.parcel", format="zip"), "Invalid format for parcel"),
    ("no-dir", dict(output="{out}/missing/env.tar"), "does not exist"),
]


@pytest.mark.parametrize("kwargs, fragment", [pytest.param(k, f, id=i) for i, k, f in API_ERRORS])
def test_pack_errors_are_conda_pack_exceptions(kwargs, fragment, nopython_env, outdir):
    kwargs = {k: v.format(out=outdir) if isinstance(v, str) else v for k, v in kwargs.items()}
    kwargs.setdefault("output", str(outdir / "env.tar"))
    with pytest.raises(CondaPackException) as exc:
        pack(prefix=str(nopython_env), **kwargs)
    assert fragment in str(exc.value)
    assert os.listdir(outdir) == []


def test_existing_output(nopython_env, outdir):
    out = outdir / "env.tar"
    out.write_bytes(b"")
    with pytest.raises(CondaPackException, match="already exists"):
        pack(prefix=str(nopython_env), output=str(out))
    assert out.read_bytes() == b""
    assert pack(prefix=str(nopython_env), output=str(out), force=True) == str(out)
    assert "bin/cprog" in tar_names(out)


def test_zip64(tmp_path, outdir):
    """More than 65535 entries need ZIP64: refused cleanly when it is disabled."""
    source = tmp_path / "one-byte.txt"
    source.write_bytes(b"0")
    large = CondaEnv("large", [File(str(source), "f%05d" % i) for i in range(1 << 16)])
    out = outdir / "large.zip"
    with pytest.raises(CondaPackException, match="ZIP64"):
        large.pack(output=str(out), zip_64=False, compress_level=0)
    assert os.listdir(outdir) == []
    assert large.pack(output=str(out), compress_level=0) == str(out)
    with zipfile.ZipFile(out) as z:
        assert len(z.infolist()) > 65535


# -- warnings ---------------------------------------------------------------------------------
def test_warnings_are_user_warnings(make_env, outdir, capsys):
    env = make_env(NO_PYTHON)
    assert variants.remove_package_cache(env)
    with pytest.warns(UserWarning, match="without entries in the package cache"):
        loaded = CondaEnv.from_prefix(str(env))
    assert capsys.readouterr().err == ""  # warned, not printed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(CondaEnv.from_prefix(str(env), on_missing_cache="ignore")) == len(loaded)
    with pytest.raises(CondaPackException, match="without entries in the package cache"):
        CondaEnv.from_prefix(str(env), on_missing_cache="raise")
    shutil_copy = env / "bin" / "cprog-copy"  # an unmanaged binary holding the prefix
    shutil_copy.write_bytes((env / "bin" / "cprog").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pack(prefix=str(env), output=str(outdir / "env.tar"))
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("package cache" in m for m in messages)
    assert any("bin/cprog-copy" in m for m in messages)
    assert capsys.readouterr().err == ""
    assert len(loaded) > 0


def test_thread_count_is_capped_at_the_cores():
    from conda_pack.plan import available_cores, parse_n_threads

    cores = available_cores()
    assert parse_n_threads(None) == parse_n_threads(-1) == cores
    assert parse_n_threads(1) == 1
    assert parse_n_threads(cores * 8) == cores


def test_plan_is_written_in_chunks(full_env, outdir, monkeypatch):
    """Big plans reach the core a chunk at a time; chunk borders must not show in the
    archive, the reports (prefix records for conda-unpack) or the progress counts."""
    from conda_pack import packing
    from conda_pack.plan import Plan

    pack(prefix=str(full_env), output=str(outdir / "whole.tar.gz"), n_threads=2)
    seen = []

    class Bar:
        def __init__(self, files, nbytes, stream=None):
            self.total = (files, nbytes)

        @staticmethod
        def wanted(verbose, stream=None):
            return True

        def __call__(self, files, nbytes):
            seen.append((files, nbytes))

        def close(self, completed=True):
            seen.append(self.total)

    monkeypatch.setattr(Plan, "CHUNK", 37)
    monkeypatch.setattr(packing, "ProgressBar", Bar)
    pack(prefix=str(full_env), output=str(outdir / "chunked.tar.gz"), n_threads=2)
    whole = (outdir / "whole.tar.gz").read_bytes()
    assert (outdir / "chunked.tar.gz").read_bytes() == whole
    counts = seen[:-1]
    assert counts == sorted(counts), "progress went backwards"
    files_total = seen[-1][0]
    assert files_total > 37 * 3
    assert counts[-1][0] == files_total


def test_a_late_chunk_that_cannot_be_planned_fails_the_pack_and_leaves_nothing(
    nopython_env, tmp_path, outdir, monkeypatch
):
    """Chunks are planned while the core writes the one before: an error planning the
    last one still ends the pack with the error and no archive."""
    from conda_pack.plan import Plan

    monkeypatch.setattr(Plan, "CHUNK", 3)
    env = CondaEnv.from_prefix(str(nopython_env))
    odd = tmp_path / "odd.conf"
    odd.write_text("x\n")
    bad = File(str(odd), "zz/odd.conf", False, "sideways", "/p")
    mine = CondaEnv(env.prefix, [*env, bad])
    with pytest.raises(CondaPackException, match="unknown file_mode 'sideways' for zz/odd.conf"):
        mine.pack(output=str(outdir / "env.tar"))
    assert list(outdir.iterdir()) == []
