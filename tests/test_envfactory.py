"""Self-checks of the test environment factory: the environments it makes must be real.

Everything packer tests rely on is asserted here once: relocated binaries and interpreter work,
conda-meta carries what installers write, and each variant has its defining property.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tests.envfactory
from tests.envfactory import PLACEHOLDER, EnvFactory, cpython
from tests.envfactory import variants as v
from tests.envfactory.channel import SHARED_CACHE_MARKER
from tests.envfactory.pkgbuild import classify
from tests.envfactory.recipes import RECIPES

FULL = [
    "cprog",
    "cprog-data",
    "links",
    "activate-scripts",
    "python",
    "pip",
    "setuptools",
    "condatest-lib",
    "pyscripts",
]
NO_PYTHON = ["cprog", "cprog-data", "links"]
#: Installed without being asked for: python's dependencies.
PYTHON_DEPS = {"openssl"}


def run(*cmd: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=True, env=env, **kwargs
    )  # type: ignore[call-overload]


def records(prefix: Path) -> dict[str, dict]:
    """conda-meta records by package name."""
    out = {}
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        out[record["name"]] = record
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> EnvFactory:
    return EnvFactory(tmp_path_factory.mktemp("envfactory"))


@pytest.fixture(scope="session")
def envs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envs")


@pytest.fixture(scope="session")
def full_env(factory: EnvFactory, envs: Path) -> Path:
    return factory.install(envs / "full", FULL)


# -- building blocks ---------------------------------------------------------------------------
def test_placeholder_shape() -> None:
    assert len(PLACEHOLDER) == 255
    assert PLACEHOLDER.startswith("/opt/conda/conda-bld/")
    assert "_h_env_placehold" in PLACEHOLDER


def test_classify_follows_conda_build() -> None:
    ph = PLACEHOLDER.encode()
    assert classify(b"prefix=" + ph, "etc/x.conf") == "text"
    assert classify(b"\x7fELF\x00" + ph, "lib/x.so") == "binary"
    assert classify(b"\x00" + ph, "lib/x.pyc") is None
    assert classify(b"no prefix here", "x.txt") is None


def test_public_api_exports_variants() -> None:
    for name in (
        "pip_install_wheel",
        "pip_install_editable",
        "pip_uninstall",
        "overwrite_managed_file",
        "remove_package_cache",
        "make_micromamba_like",
        "make_pixi_like",
    ):
        assert getattr(tests.envfactory, name) is getattr(v, name)


def test_missing_build_dependency_names_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpython, "BUILD_HEADERS", {"envfactory/no_such_header.h": "libnope-dev"})
    with pytest.raises(cpython.BuildDependencyError, match="apt-get install libnope-dev"):
        cpython.check_build_dependencies()


def test_cache_key_follows_recipe(factory: EnvFactory) -> None:
    recipe = RECIPES["cprog-data"]
    changed = dataclasses.replace(recipe, depends=("cprog",))
    assert factory.store.key(recipe) != factory.store.key(changed)
    assert factory.store.key(recipe) == factory.store.key(RECIPES["cprog-data"])


def test_packages_are_reused_across_factories(
    factory: EnvFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = factory.store.package("links")
    mtime = first.stat().st_mtime_ns
    other = EnvFactory(tmp_path_factory.mktemp("other"), cache=factory.cache_dir)
    assert other.store.package("links") == first
    assert first.stat().st_mtime_ns == mtime


def test_built_package_metadata(factory: EnvFactory, full_env: Path) -> None:
    recs = records(full_env)
    pip_info = Path(recs["pip"]["link"]["source"]) / "info"
    link = json.loads((pip_info / "link.json").read_text())
    assert link["noarch"]["type"] == "python"
    assert sorted(e.split("=")[0].strip() for e in link["noarch"]["entry_points"]) == [
        "pip",
        "pip3",
    ]
    cprog_info = Path(recs["cprog"]["link"]["source"]) / "info"
    index = json.loads((cprog_info / "index.json").read_text())
    assert index["subdir"] == "linux-64" and index["name"] == "cprog"
    has_prefix = (cprog_info / "has_prefix").read_text().splitlines()
    assert sorted(line.split()[1:] for line in has_prefix) == [
        ["binary", "bin/cprog"],
        ["binary", "lib/libcprog.so"],
    ]
    assert (cprog_info / "files").read_text().split() == ["bin/cprog", "lib/libcprog.so"]
    assert factory.python_version == "3.11"
    assert factory.channel.is_dir()
    assert (factory.channel / "linux-64" / "repodata.json").exists()


# -- the full environment --------------------------------------------------------------------
def test_cprog_prints_install_prefix(full_env: Path) -> None:
    out = run(full_env / "bin" / "cprog").stdout
    assert out == f"exe={full_env}\nlib={full_env}\n"


def test_text_prefix_files_replaced(full_env: Path) -> None:
    assert run(full_env / "bin" / "cprog-config").stdout == f"prefix={full_env}\n"
    assert f"prefix={full_env}\n" in (full_env / "lib" / "pkgconfig" / "cprog.pc").read_text()
    assert f"{full_env}/share/cprog" in (full_env / "etc" / "cprog.conf").read_text()


def test_interpreter_is_relocated(full_env: Path) -> None:
    code = "import sys, sysconfig; print(sys.prefix); print(sysconfig.get_config_var('prefix'))"
    out = run(full_env / "bin" / "python", "-c", code).stdout.split()
    assert out == [str(full_env), str(full_env)]
    ldd = run("ldd", full_env / "bin" / "python3.11").stdout
    (line,) = [ln for ln in ldd.splitlines() if "libpython" in ln]
    resolved = Path(line.split("=>")[1].split("(")[0].strip()).resolve()
    assert resolved == (full_env / "lib" / "libpython3.11.so.1.0").resolve()
    assert os.readlink(full_env / "bin" / "python") == "python3.11"
    assert os.readlink(full_env / "bin" / "python3") == "python3.11"


def test_pip_and_entry_points(full_env: Path) -> None:
    assert "pip 22" in run(full_env / "bin" / "python", "-m", "pip", "--version").stdout
    assert str(full_env) in run(full_env / "bin" / "pip", "--version").stdout
    assert run(full_env / "bin" / "condatest-hello").stdout == f"hello from {full_env}\n"
    paths = records(full_env)["pip"]["paths_data"]["paths"]
    assert {"bin/pip", "bin/pip3"} <= {
        p["_path"] for p in paths if p["path_type"] == "unix_python_entry_point"
    }


def test_pyscripts_shebangs(full_env: Path) -> None:
    bin_dir = full_env / "bin"
    assert run(bin_dir / "cp-hello").stdout == f"{full_env}\n"
    first = (bin_dir / "cp-hello-opts").read_text().splitlines()[0]
    assert first == f"#!{full_env}/bin/python3.11 -E -s"
    out = run(bin_dir / "python3.11", "-E", "-s", bin_dir / "cp-hello-opts").stdout
    assert out == f"{full_env}\nE=1 s=1\n"
    assert run(bin_dir / "cp-hello-E").stdout == f"{full_env}\nE=1 s=0\n"


def test_links_package(full_env: Path) -> None:
    lib = full_env / "lib"
    assert os.readlink(lib / "liblinks.so") == "liblinks.so.1"
    current = full_env / "share" / "links" / "current"
    assert os.readlink(current) == "v1" and current.is_dir()
    v1 = full_env / "share" / "links" / "v1"
    assert (v1 / "a.txt").stat().st_ino == (v1 / "b.txt").stat().st_ino
    types = {p["_path"]: p["path_type"] for p in records(full_env)["links"]["paths_data"]["paths"]}
    assert types == {
        "lib/liblinks.so": "softlink",
        "lib/liblinks.so.1": "hardlink",
        "share/links/current": "softlink",
        "share/links/v1/a.txt": "hardlink",
        "share/links/v1/b.txt": "hardlink",
    }


def test_activate_scripts(full_env: Path) -> None:
    etc = full_env / "etc" / "conda"
    for phase in ("activate.d", "deactivate.d"):
        names = sorted(p.name for p in (etc / phase).iterdir())
        assert names == [f"condapack-test.{e}" for e in ("bat", "csh", "fish", "ps1", "sh")]
    script = (
        f". {etc}/activate.d/condapack-test.sh; echo a=$CONDAPACK_ACTIVATED; "
        f". {etc}/deactivate.d/condapack-test.sh; echo d=${{CONDAPACK_ACTIVATED-unset}}"
    )
    assert run("sh", "-c", script).stdout == "a=1\nd=unset\n"


def test_conda_meta_records(factory: EnvFactory, full_env: Path) -> None:
    recs = records(full_env)
    assert set(recs) == set(FULL) | PYTHON_DEPS
    assert (full_env / "conda-meta" / "history").exists()
    for name, rec in recs.items():
        source = Path(rec["link"]["source"])
        assert source.parent == factory.default_pkgs_dir and source.is_dir(), name
        for entry in rec["paths_data"]["paths"]:
            if "prefix_placeholder" in entry:
                assert entry["prefix_placeholder"] == PLACEHOLDER
                assert entry["file_mode"] in ("text", "binary")
    modes = {
        (name, e["_path"]): e.get("file_mode")
        for name, rec in recs.items()
        for e in rec["paths_data"]["paths"]
    }
    assert modes["cprog", "bin/cprog"] == modes["cprog", "lib/libcprog.so"] == "binary"
    assert modes["cprog-data", "bin/cprog-config"] == "text"
    assert modes["cprog-data", "share/cprog/README.txt"] is None
    assert modes["python", "lib/libpython3.11.so.1.0"] == "binary"
    assert modes["pyscripts", "bin/cp-hello-opts"] == "text"
    sysconfigdata = [
        p for n, p in modes if n == "python" and p.endswith(".py") and "_sysconfigdata_" in p
    ]
    assert sysconfigdata and all(modes["python", p] == "text" for p in sysconfigdata)


def test_both_archive_formats_used(full_env: Path) -> None:
    fns = {name: rec["fn"] for name, rec in records(full_env).items()}
    assert fns["cprog"].endswith(".conda") and fns["python"].endswith(".conda")
    assert fns["cprog-data"].endswith(".tar.bz2") and fns["links"].endswith(".tar.bz2")


def test_no_placeholder_left(full_env: Path) -> None:
    needle = PLACEHOLDER.encode()
    offenders = []
    for root, dirs, files in os.walk(full_env):
        if Path(root) == full_env:
            dirs.remove("conda-meta")
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or name.endswith(".pyc"):
                continue
            if needle in path.read_bytes():
                offenders.append(path)
    assert offenders == []


def test_env_without_python(factory: EnvFactory, envs: Path) -> None:
    prefix = factory.install(envs / "nopy", NO_PYTHON)
    assert set(records(prefix)) == set(NO_PYTHON)
    assert not (prefix / "bin" / "python").exists()
    assert run(prefix / "bin" / "cprog").stdout.startswith(f"exe={prefix}\n")


def test_install_refuses_existing_prefix(factory: EnvFactory, envs: Path) -> None:
    with pytest.raises(FileExistsError):
        factory.install(envs, ["links"])


# -- variants ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pip_env(factory: EnvFactory, envs: Path) -> tuple[Path, str, str]:
    """One env (private package cache) that went through all three pip actions."""
    prefix = factory.install(
        envs / "pip", ["python", "pip", "setuptools", "condatest-lib"], pkgs_dir=envs / "pip-pkgs"
    )
    script = v.pip_install_wheel(prefix)
    project = v.pip_install_editable(prefix, envs / "editable-src")
    v.pip_uninstall(prefix, "condatest-lib")
    return prefix, script, project


def test_pip_install_wheel(pip_env: tuple[Path, str, str]) -> None:
    prefix, script, _ = pip_env
    exe = prefix / "bin" / script
    assert exe.read_text().splitlines()[0].startswith(f"#!{prefix}/bin/python")
    assert run(exe).stdout == f"wheel hello from {prefix}\n"
    managed = {p for rec in records(prefix).values() for p in rec["files"]}
    assert f"bin/{script}" not in managed
    installer = next(
        (prefix / "lib" / "python3.11" / "site-packages").glob(
            "cp_wheel_demo-*.dist-info/INSTALLER"
        )
    )
    assert installer.read_text().strip() == "pip"


def test_pip_install_editable(pip_env: tuple[Path, str, str], envs: Path) -> None:
    prefix, _, project = pip_env
    site = prefix / "lib" / "python3.11" / "site-packages"
    (direct_url,) = site.glob(f"{project.replace('-', '_')}-*.dist-info/direct_url.json")
    data = json.loads(direct_url.read_text())
    assert data["dir_info"] == {"editable": True}
    assert data["url"] == (envs / "editable-src").as_uri()
    where = run(
        prefix / "bin" / "python", "-c", "import cp_editable_demo as m; print(m.__file__)"
    ).stdout.strip()
    assert Path(where).is_relative_to(envs / "editable-src")


def test_pip_uninstall_managed_package(pip_env: tuple[Path, str, str]) -> None:
    prefix, _, _ = pip_env
    rec = records(prefix)["condatest-lib"]
    missing = [p for p in rec["files"] if not (prefix / p).exists()]
    assert "lib/python3.11/site-packages/condatest_lib/__init__.py" in missing
    assert "bin/condatest-hello" in missing


@pytest.fixture()
def private_env(factory: EnvFactory, tmp_path: Path) -> Path:
    return factory.install(tmp_path / "env", NO_PYTHON, pkgs_dir=tmp_path / "pkgs")


@pytest.mark.parametrize("same_size", [False, True])
def test_overwrite_managed_file(private_env: Path, same_size: bool) -> None:
    rel = "share/cprog/README.txt"
    entry = next(
        e for e in records(private_env)["cprog-data"]["paths_data"]["paths"] if e["_path"] == rel
    )
    cached = Path(records(private_env)["cprog-data"]["link"]["source"]) / rel
    assert (private_env / rel).stat().st_ino == cached.stat().st_ino  # hard-linked before
    v.overwrite_managed_file(private_env, rel, same_size=same_size)
    path = private_env / rel
    assert (path.stat().st_size == entry["size_in_bytes"]) is same_size
    assert sha256(path) != entry["sha256"]
    assert sha256(cached) == entry["sha256"]  # the package cache stays pristine


def test_remove_package_cache(private_env: Path) -> None:
    sources = [Path(r["link"]["source"]) for r in records(private_env).values()]
    removed = v.remove_package_cache(private_env)
    assert removed == [sources[0].parent]
    assert not any(s.exists() for s in sources)
    assert run(private_env / "bin" / "cprog").stdout.startswith(f"exe={private_env}\n")


def test_remove_shared_package_cache_refused(factory: EnvFactory, envs: Path) -> None:
    prefix = factory.install(envs / "shared-cache", ["links"])
    assert (factory.default_pkgs_dir / SHARED_CACHE_MARKER).exists()
    with pytest.raises(ValueError, match="shared"):
        v.remove_package_cache(prefix)


def test_make_micromamba_like(factory: EnvFactory, envs: Path) -> None:
    prefix = factory.install(envs / "micromamba", NO_PYTHON)
    v.make_micromamba_like(prefix)
    for rec in records(prefix).values():
        for entry in rec["paths_data"]["paths"]:
            assert "prefix_placeholder" not in entry and "file_mode" not in entry
    rec = records(prefix)["cprog"]
    paths_json = json.loads((Path(rec["link"]["source"]) / "info" / "paths.json").read_text())
    assert {p["file_mode"] for p in paths_json["paths"]} == {"binary"}


def test_make_pixi_like(factory: EnvFactory, envs: Path) -> None:
    prefix = factory.install(envs / "pixi", NO_PYTHON)
    v.make_pixi_like(prefix)
    assert all(rec["link"] is None for rec in records(prefix).values())
    meta = prefix / "conda-meta"
    assert not (meta / "history").exists()
    assert (meta / "pixi").exists()
    assert (meta / "pixi_env_prefix").read_text() == str(prefix)


# -- command line ------------------------------------------------------------------------------
def test_cli_demo_env(factory: EnvFactory, envs: Path) -> None:
    env = {**os.environ, "CONDA_PACK_TESTBED_CACHE": str(factory.cache_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.envfactory",
            "--workdir",
            str(envs / "cli-work"),
            "demo-env",
            str(envs / "demo"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    asked = {
        "cprog",
        "cprog-data",
        "links",
        "python",
        "pip",
        "setuptools",
        "condatest-lib",
        "pyscripts",
    }
    assert set(records(envs / "demo")) == asked | PYTHON_DEPS


# -- benchmark scale ---------------------------------------------------------------------------
@pytest.mark.slow
def test_scale_env_proportions(factory: EnvFactory, envs: Path) -> None:
    prefix = factory.build_scale_env(envs / "scale", size_gb=0.1, seed=0)
    recs = {n: r for n, r in records(prefix).items() if n.startswith("scale-")}
    assert {"python", "pip"} <= set(records(prefix))
    by_kind = {"elf": 0, "ptext": 0, "bin": 0, "text": 0}
    files = 0
    for rec in recs.values():
        entries = rec["paths_data"]["paths"]
        assert sum(e["path_type"] == "softlink" for e in entries) == 1
        for e in entries:
            if e["path_type"] != "hardlink":
                continue
            files += 1
            size = e["size_in_bytes"]
            if e.get("file_mode") == "binary":
                by_kind["elf"] += size
            elif e.get("file_mode") == "text":
                by_kind["ptext"] += size
            elif e["_path"].endswith((".dat", ".bin")):
                by_kind["bin"] += size
            else:
                by_kind["text"] += size
    total = sum(by_kind.values())
    shares = {k: b / total for k, b in by_kind.items()}
    assert 0.18 < shares["elf"] < 0.32 and 0.32 < shares["bin"] < 0.48
    assert 0.015 < shares["ptext"] < 0.05 and 0.25 < shares["text"] < 0.40
    assert 15_000 < total / files < 50_000
    noarch = [r for r in recs.values() if r.get("noarch") == "python"]
    assert abs(len(noarch) / len(recs) - 0.25) < 0.05
    elf = next(p for p in (prefix / "lib").glob("libscale_*.so.1"))
    assert elf.read_bytes()[:4] == b"\x7fELF"
    assert PLACEHOLDER.encode() not in elf.read_bytes()
