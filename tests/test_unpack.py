"""conda-unpack on extracted archives: interpreter choice, safety, atomicity, limits."""

from __future__ import annotations

import os
import runpy
import shutil
import stat
from pathlib import Path

import pytest

from tests.envfactory import PLACEHOLDER
from tests.helpers import conda_pack, extract, run, tree


@pytest.fixture(scope="module")
def archive(full_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unpack") / "env.tar.gz"
    conda_pack("-p", full_env, "-o", out, "-q")
    return out


def records(root: Path) -> dict:
    return runpy.run_path(str(root / "bin" / "conda-unpack"), run_name="records")["_DATA"]


def test_help_and_version(archive, tmp_path):
    root = extract(archive, tmp_path / "env", "tar.gz")
    assert run([root / "bin" / "conda-unpack", "--help"]).stdout.startswith("usage: conda-unpack")
    assert run([root / "bin" / "conda-unpack", "--version"]).stdout.startswith("conda-unpack ")


def test_runs_with_the_envs_own_python_and_nothing_on_path(archive, tmp_path):
    """No python3, no dirname, not even a PATH: the environment's interpreter is enough."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    run([root / "bin" / "conda-unpack", "-v"], env={"PATH": "/nonexistent"})
    assert run([root / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % root


def test_never_skips_python_files(archive, tmp_path):
    """0.9.2 skipped every bin/python* record to avoid writing a running file; replacing
    files by rename makes that unnecessary, and python3.11-config must be fixed."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    paths = {r[0] for r in records(root)["prefix"]}
    assert "bin/python3.11-config" in paths
    assert any(p.startswith("lib/libpython3.11") for p in paths)
    run([root / "bin" / "conda-unpack"])
    assert str(root) in (root / "bin" / "python3.11-config").read_text()


def test_too_long_a_path_fails_before_changing_anything(archive, tmp_path):
    deep = tmp_path
    while len(str(deep)) < 300:
        deep = deep / ("z" * 40)
    root = extract(archive, deep / "env", "tar.gz")
    before = tree(root)
    proc = run([root / "bin" / "conda-unpack"], check=False)
    assert proc.returncode != 0
    assert "cannot move the environment to %s" % root in proc.stderr
    assert "bin/cprog" in proc.stderr
    assert "at most %d characters" % len(PLACEHOLDER) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree(root) == before


def test_links_out_of_the_env_are_never_followed(archive, tmp_path):
    root = extract(archive, tmp_path / "env", "tar.gz")
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "cprog.conf"
    victim.write_bytes((root / "etc" / "cprog.conf").read_bytes())
    (root / "etc" / "cprog.conf").unlink()
    os.symlink(victim, root / "etc" / "cprog.conf")
    pc_dir = outside / "pkgconfig"
    (root / "lib" / "pkgconfig").rename(pc_dir)
    os.symlink(pc_dir, root / "lib" / "pkgconfig")
    saved = {p: p.read_bytes() for p in [victim, *pc_dir.iterdir()]}
    recs = records(root)
    olds = {recs["placeholders"][r[1]].encode() for r in recs["prefix"] if r[0] == "etc/cprog.conf"}
    assert olds and any(old in data for data in saved.values() for old in olds)
    run([root / "bin" / "conda-unpack"])
    for p, data in saved.items():
        assert p.read_bytes() == data, p


def test_read_only_files_are_rewritten_keeping_their_mode(archive, tmp_path):
    root = extract(archive, tmp_path / "env", "tar.gz")
    conf = root / "etc" / "cprog.conf"
    conf.chmod(0o444)
    run([root / "bin" / "conda-unpack"])
    assert stat.S_IMODE(conf.stat().st_mode) == 0o444
    assert str(root) in conf.read_text()


def test_verbose_reports_progress(archive, tmp_path):
    root = extract(archive, tmp_path / "env", "tar.gz")
    out = run([root / "bin" / "conda-unpack", "--verbose"]).stdout
    assert "Unpacking environment" in out and "100%" in out


def test_files_are_rewritten_in_place_except_loaded_libraries(archive, tmp_path):
    """Files are rewritten where they are (several times cheaper than new files: binaries
    only at their recorded strings); the library of the interpreter running conda-unpack
    is replaced by rename instead, never patched under it."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    recs = {r[0]: r for r in records(root)["prefix"]}
    assert len(recs["bin/cprog"]) == 4 and recs["bin/cprog"][3], "binary records carry offsets"
    libpython = next(p for p in recs if p.startswith("lib/libpython3.11.so"))
    inode = {p: os.lstat(root / p).st_ino for p in ("bin/cprog", "etc/cprog.conf", libpython)}
    run([root / "bin" / "conda-unpack"])
    assert os.lstat(root / "bin" / "cprog").st_ino == inode["bin/cprog"]
    assert os.lstat(root / "etc" / "cprog.conf").st_ino == inode["etc/cprog.conf"]
    assert os.lstat(root / libpython).st_ino != inode[libpython]
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=%s" % root, "lib=%s" % root]


def test_binary_changed_since_packing_is_rewritten_whole(archive, tmp_path):
    """If a recorded string is no longer where packing found it, nothing is patched in
    place: the file is read whole and every prefix still in it is relocated."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    binaries = [r for r in records(root)["prefix"] if len(r) > 3]
    rel, _, _, offsets = max(binaries, key=lambda r: len(r[3]))
    assert len(offsets) >= 2
    path = root / rel
    data = bytearray(path.read_bytes())
    data[offsets[0]] = ord("X")  # no longer the placeholder at the first recorded offset
    path.write_bytes(bytes(data))
    run([root / "bin" / "conda-unpack"])
    out = path.read_bytes()
    assert len(out) == len(data)
    assert out.count(str(root).encode()) >= len(offsets) - 1


def _unpack_with(root: Path, workers: int, verbose: bool = False) -> str:
    """Run the real script's ``unpack`` with ``workers`` processes; returns its stdout. The
    interpreter runs with -S, as conda-unpack does: its startup hook would relocate first."""
    code = (
        "import runpy, sys; g = runpy.run_path(sys.argv[1], run_name='x')['unpack'].__globals__;"
        "print('changed', g['unpack'](sys.argv[2], verbose=%r, workers=%d))" % (verbose, workers)
    )
    cmd = [root / "bin" / "python", "-S", "-c", code, root / "bin" / "conda-unpack", root]
    return run(cmd).stdout


def test_worker_processes_give_the_same_result_as_one(archive, tmp_path):
    """Large environments are shared among worker processes (more than 256 records per
    core); the result must not depend on how the files were shared."""
    root = extract(archive, tmp_path / "env", "tar.gz")
    out = _unpack_with(root, workers=3, verbose=True)
    assert "100%" in out
    forked = tree(root)
    changed = out.split()[-1]
    assert run([root / "bin" / "cprog"]).stdout.split() == ["exe=%s" % root, "lib=%s" % root]
    shutil.rmtree(root)
    root = extract(archive, tmp_path / "env", "tar.gz")
    assert _unpack_with(root, workers=1).split()[-1] == changed
    assert tree(root) == forked


def test_a_worker_process_failure_is_one_line_and_exit_1(archive, tmp_path):
    root = extract(archive, tmp_path / "env", "tar.gz")
    conf = root / "etc" / "cprog.conf"
    conf.unlink()
    conf.mkdir()  # a recorded file that cannot be read, whoever runs the test
    proc = run([root / "bin" / "conda-unpack", "--workers", "2"], check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["conda-unpack: etc/cprog.conf: not a regular file"]


def test_records_are_written_in_path_order_however_they_come(tmp_path):
    """conda-unpack's data: rows in path order whatever order the records come in, in
    batches (as packing hands them over) or not, placeholders numbered in order of first
    use."""
    import json
    import random
    import re

    from conda_pack.unpack import (
        PrefixRecord,
        PrefixRows,
        ShebangRecord,
        conda_unpack_program,
        conda_unpack_script,
    )

    ordered = [
        PrefixRecord("bin/a", "/ph/two", "text"),
        PrefixRecord("lib/b.so", "/ph/one", "binary", (0, 17)),
        PrefixRecord("lib/c.so", "/ph/one", "binary", (5,)),
        PrefixRecord("lib/c.so", "/ph/two", "binary", (5,)),
        PrefixRecord("share/\u00e9", "/ph/one", "text"),
    ]
    shebang = [ShebangRecord("bin/z", "bin/python", "-E"), ShebangRecord("bin/y", "bin/python", "")]
    shuffled = ordered[:]
    random.Random(1).shuffle(shuffled)
    assert shuffled != ordered

    def data(records) -> dict:
        if isinstance(records, PrefixRows):
            script = conda_unpack_program(records, shebang, "1.0").decode()
        else:
            script = conda_unpack_script(records, shebang, "1.0").decode()
        return json.loads(eval(re.search(r"^_DATA = json.loads\((.*)\)$", script, re.M)[1]))

    def in_batches(records) -> PrefixRows:
        rows = PrefixRows()
        for batch in (records[:1], [], records[1:3], records[3:]):
            rows.add(batch)
        return rows

    def resolved(d: dict) -> list:
        return [[r[0], d["placeholders"][r[1]], *r[2:]] for r in d["prefix"]]

    expected = {
        "placeholders": ["/ph/two", "/ph/one"],
        "prefix": [
            ["bin/a", 0, "text"],
            ["lib/b.so", 1, "binary", [0, 17]],
            ["lib/c.so", 1, "binary", [5]],
            ["lib/c.so", 0, "binary", [5]],
            ["share/\u00e9", 1, "text"],
        ],
        "shebang": [["bin/y", "bin/python", ""], ["bin/z", "bin/python", "-E"]],
        "windows": False,
    }
    assert in_batches(ordered).ordered and not in_batches(shuffled).ordered
    assert len(in_batches(shuffled)) == 5
    assert data(ordered) == data(in_batches(ordered)) == data(iter(ordered)) == expected
    for unordered in (shuffled, iter(shuffled), in_batches(shuffled)):
        got = data(unordered)
        assert resolved(got) == resolved(expected)
        assert sorted(got["placeholders"]) == ["/ph/one", "/ph/two"]
        assert got["shebang"] == expected["shebang"]


def test_packing_encodes_the_records_in_order_as_they_come(
    full_env, archive, tmp_path, monkeypatch
):
    """Packing's records reach conda-unpack's rows in path order, encoded chunk by chunk
    while the core writes (no sorting at the end), and the data is what the command line
    wrote."""
    import conda_pack
    from conda_pack.unpack import PrefixRows

    def set_ordered(rows, ordered: bool) -> None:
        if not ordered:
            raise AssertionError("records came out of order")

    ordered = property(lambda rows: True, set_ordered)
    monkeypatch.setattr(PrefixRows, "ordered", ordered, raising=False)
    out = tmp_path / "env.tar"
    conda_pack.pack(prefix=str(full_env), output=str(out))
    ours = records(extract(out, tmp_path / "api", "tar"))
    assert ours == records(extract(archive, tmp_path / "cli", "tar.gz"))
    assert len(ours["prefix"]) > 10 and len(ours["placeholders"]) >= 2


def test_generated_programs_parse_as_python_3_6(archive, tmp_path):
    """conda-unpack runs on whatever python3 the target has, and the hook on the
    environment's own Python: both must be Python 3.6 code."""
    import ast

    root = extract(archive, tmp_path / "env", "tar.gz")
    hook = root / "lib" / "python3.11" / "site-packages" / "_conda_pack_relocate.py"
    for program in (root / "bin" / "conda-unpack", hook):
        ast.parse(program.read_bytes(), str(program), feature_version=(3, 6))
    with pytest.raises(SyntaxError):  # the check itself can fail
        ast.parse("if (x := 1): pass", feature_version=(3, 6))


def test_conda_unpack_keeps_the_cores_values():
    """conda-unpack runs without conda_pack, so it holds literal copies of the values it
    shares with the packer: they must be the core's (and the planner's)."""
    from conda_pack import _core, plan
    from conda_pack.unpack import conda_unpack

    assert conda_unpack.SHEBANG_LIMIT == _core.SHEBANG_LIMIT
    assert conda_unpack.UNSAFE_CHARACTERS == plan.UNQUOTABLE
