"""The promise, per format: pack a real environment, extract it with the real tool at a
longer path, run conda-unpack, and everything runs there and is byte-for-byte what the
source environment holds, except the recorded prefix rewrites."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import runpy
import stat
from pathlib import Path

import pytest
from conda_pack.unpack import activation_scripts, relocation_hook

from tests.helpers import ALL_FORMATS, conda_pack, extract, run, sha256

cu = importlib.import_module("conda_pack.unpack.conda_unpack")

# Keep the slow codecs quick in tests; their levels are covered elsewhere.
EXTRA = {"tar.xz": ["--compress-level", "1"], "tar.bz2": ["--compress-level", "1"]}
GENERATED = {g.target for g in activation_scripts(False)} | {
    "bin/conda-unpack",
    "conda-meta/.conda-unpack-prefix",
}
GENERATED |= {g.target for g in relocation_hook("lib/python3.11/site-packages", False)}


def pack_and_unpack(env: Path, fmt: str, tmp_path: Path, dest: Path, *args: str):
    out = tmp_path / ("env." + fmt)
    conda_pack("-p", env, "-o", out, "--format", fmt, "-q", *EXTRA.get(fmt, []), *args)
    root = extract(out, dest, fmt)
    records = runpy.run_path(str(root / "bin" / "conda-unpack"), run_name="records")["_DATA"]
    run([root / "bin" / "conda-unpack"])
    return root, records


def assert_runs_at(root: Path, python: bool = True) -> None:
    d = str(root)
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=" + d, "lib=" + d]
    assert run([root / "bin" / "cprog-config"]).stdout.strip() == "prefix=" + d
    if not python:
        return
    code = (
        "import ssl, sqlite3, sys, sysconfig;"
        "print(sys.prefix); print(sysconfig.get_config_var('prefix'))"
    )
    assert run([root / "bin" / "python", "-c", code]).stdout.split() == [d, d]
    assert d in run([root / "bin" / "python", "-m", "pip", "--version"]).stdout
    assert d in run([root / "bin" / "pip", "--version"]).stdout
    assert run([root / "bin" / "condatest-hello"]).stdout.strip() == "hello from " + d
    assert run([root / "bin" / "cp-hello"]).stdout.strip() == d
    assert "E=1 s=1" in run([root / "bin" / "cp-hello-opts"]).stdout


def assert_activates(root: Path) -> None:
    """bin/activate in sh and bin/activate.fish in fish put the env first on PATH, run
    its activate.d scripts, and deactivate restores both."""
    d, path = str(root), "/usr/bin:/bin"
    sh = (
        f'. "{d}/bin/activate" && echo "$CONDA_PREFIX|$CONDAPACK_ACTIVATED|$(command -v cprog)"'
        f' && . "{d}/bin/deactivate"'
        ' && echo "${CONDA_PREFIX-unset}|${CONDAPACK_ACTIVATED-unset}|$PATH"'
    )
    fish = (
        f'source "{d}/bin/activate.fish"; and echo "$CONDA_PREFIX|$CONDAPACK_ACTIVATED|"'
        "(command -v cprog); and deactivate; and echo (set -q CONDA_PREFIX; and echo set;"
        ' or echo unset)"|"(set -q CONDAPACK_ACTIVATED; and echo set; or echo unset)"|"'
        "(string join : $PATH)"
    )
    want = [f"{d}|1|{d}/bin/cprog", f"unset|unset|{path}"]
    env = {"PATH": path, "HOME": d}
    assert run(["sh", "-c", sh], env=env).stdout.split() == want
    assert run(["fish", "--no-config", "-c", fish], env=env).stdout.split() == want


def expected_bytes(src: bytes, rel: str, records: dict, old: bytes, new: bytes) -> bytes:
    prefix = {r[0]: r[2] for r in records["prefix"]}
    shebang = {p: (exe, opts) for p, exe, opts in records["shebang"]}
    data = src
    if rel in prefix:
        data = cu.replace_prefix(data, prefix[rel], old, new)
    if rel in shebang:
        exe, opts = shebang[rel]
        data = cu.fix_shebang(data, new, os.fsencode(exe), os.fsencode(opts))
    return data


def assert_manifest(env: Path, root: Path, records: dict, links_followed: bool = False) -> None:
    """Every source file arrives unchanged but for its recorded rewrites; nothing else."""
    old, new = os.fsencode(str(env)), os.fsencode(str(root))
    seen = set()
    for dirpath, dirnames, filenames in os.walk(env):
        for name in filenames + dirnames:
            src = Path(dirpath, name)
            rel = str(src.relative_to(env))
            dst = root / rel
            if src.is_dir() and not src.is_symlink():
                continue
            seen.add(rel)
            if rel.endswith(".pyc") and not dst.exists():
                continue  # runtime bytecode of conda's own files is left behind on purpose
            assert os.path.lexists(dst), "missing in the unpacked env: " + rel
            if src.is_symlink() and not links_followed:
                assert os.readlink(dst) == os.readlink(src), rel
                continue
            if rel.startswith("conda-meta/") and rel.endswith(".json"):
                a, b = json.loads(src.read_bytes()), json.loads(dst.read_bytes())
                if b.get("link"):
                    assert b["link"]["source"] == ""
                    b["link"]["source"] = a["link"]["source"]
                for field in ("extracted_package_dir", "package_tarball_full_path"):
                    if field in b:
                        assert b[field] == ""
                        b[field] = a[field]
                assert a == b, rel
                continue
            if rel in GENERATED or src.is_dir():
                continue
            want = expected_bytes(src.read_bytes(), rel, records, old, new)
            got = dst.read_bytes()
            assert got == want, "unexpected content: " + rel
            if not src.is_symlink():
                assert stat.S_IMODE(dst.stat().st_mode) == stat.S_IMODE(src.stat().st_mode), rel
    extra = set()
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            rel = str(Path(dirpath, name).relative_to(root))
            runtime_bytecode = rel.endswith(".pyc")  # written by the runs above
            if rel not in seen and rel not in GENERATED and not links_followed:
                if not runtime_bytecode:
                    extra.add(rel)
    assert not extra, "files that are not in the source env: %s" % sorted(extra)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_roundtrip(full_env, tmp_path, long_dest, fmt):
    root, records = pack_and_unpack(full_env, fmt, tmp_path, long_dest)
    assert_runs_at(root)
    assert_activates(root)
    assert_manifest(full_env, root, records, links_followed=fmt == "zip")


def test_roundtrip_zip_symlinks(full_env, tmp_path, long_dest):
    root, records = pack_and_unpack(full_env, "zip", tmp_path, long_dest, "--zip-symlinks")
    assert os.path.islink(root / "lib" / "liblinks.so")
    assert_runs_at(root)
    assert_manifest(full_env, root, records)


def test_roundtrip_without_python(nopython_env, tmp_path, long_dest):
    """An environment with no interpreter: conda-unpack runs on the system's python3."""
    root, records = pack_and_unpack(nopython_env, "tar.gz", tmp_path, long_dest)
    assert_runs_at(root, python=False)
    assert_manifest(nopython_env, root, records)


def test_unpack_again_after_moving(full_env, tmp_path, long_dest):
    root, _ = pack_and_unpack(full_env, "tar.gz", tmp_path, long_dest)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    # A second run at the same place changes nothing, and says so.
    again = run([root / "bin" / "conda-unpack", "--verbose"])
    assert again.stdout.splitlines()[-1] == "Nothing to do: the files already name %s" % root
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert after == before
    moved = tmp_path / "moved" / "somewhere-else-entirely-with-a-longer-name" / "env"
    moved.parent.mkdir(parents=True)
    root.rename(moved)
    run([moved / "bin" / "conda-unpack"])
    assert_runs_at(moved)


def test_archived_files_hold_the_placeholder(full_env, tmp_path):
    """Binary files with a prefix are packed as the package shipped them: placeholder
    restored and verified by sha256, so they relocate to any path the placeholder had room
    for. Text files are verified the same way but archived as installed: conda-unpack then
    rewrites them only where the environment moved, and grows rather than shrinks them."""
    out = tmp_path / "env.tar"
    conda_pack("-p", full_env, "-o", out, "-q")
    root = extract(out, tmp_path / "x", "tar")
    checked = {"binary": 0, "text": 0}
    for record in (full_env / "conda-meta").glob("*.json"):
        for p in json.loads(record.read_text())["paths_data"]["paths"]:
            if not p.get("prefix_placeholder") or p["_path"].startswith("bin/"):
                continue
            mode = p.get("file_mode", "text")
            archived = (root / p["_path"]).read_bytes()
            if mode == "binary":
                assert sha256(root / p["_path"]) == p["sha256"], p["_path"]
            else:
                assert archived == (full_env / p["_path"]).read_bytes(), p["_path"]
                restored = archived.replace(
                    os.fsencode(str(full_env)), p["prefix_placeholder"].encode()
                )
                assert hashlib.sha256(restored).hexdigest() == p["sha256"], p["_path"]
            checked[mode] += 1
    assert checked["binary"] >= 2 and checked["text"] >= 2, checked
    assert os.fsencode(str(full_env)) not in (root / "bin" / "cprog").read_bytes()
