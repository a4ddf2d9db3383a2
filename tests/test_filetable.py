"""An environment's files held compactly (``FileTable``) behave as the list of ``File``
objects conda-pack 0.9.2 kept: same files, same facts, same archives; and the list, once
asked for, is what gets packed."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

from conda_pack import CondaEnv, File
from conda_pack.core import load_environment
from conda_pack.files import FileTable

from tests.conftest import FULL


def facts(files) -> list[tuple]:
    return [
        (
            f.target,
            f.source,
            f.is_conda,
            f.file_mode,
            f.prefix_placeholder,
            f._size,
            f._check_size,
            f._record,
            f._package.filename if f._package else None,
        )
        for f in files
    ]


def test_filters_on_the_table_match_filters_on_the_list(full_env):
    compact = CondaEnv.from_prefix(str(full_env))
    listed = CondaEnv.from_prefix(str(full_env))
    assert facts(listed.files) == facts(compact._files)  # materialised: same facts
    steps = [("exclude", "lib/*"), ("include", "lib/python3.11/os.py"), ("exclude", "*.txt")]
    steps += [("include", "share/links/*"), ("exclude", "bin/cprog")]
    for kind, pattern in steps:
        compact = getattr(compact, kind)(pattern)
        listed = getattr(listed, kind)(pattern)
        assert isinstance(compact._files, FileTable)  # filtering never built the list
        assert facts(compact._files) == facts(listed._files), (kind, pattern)
        assert facts(compact._excluded_files) == facts(listed._excluded_files)
        assert len(compact) == len(listed)
    targets = [f.target for f in compact._files]
    assert targets == sorted(targets)


def test_the_files_list_once_asked_for_is_what_gets_packed(nopython_env, tmp_path):
    env = CondaEnv.from_prefix(str(nopython_env))
    files = env.files
    assert isinstance(files, list) and env.files is files  # made once, then kept
    extra = tmp_path / "extra.txt"
    extra.write_text("mine\n")
    files.append(File(str(extra), "share/extra.txt", is_conda=False))
    files[:] = [f for f in files if f.target != "etc/cprog.conf"]
    out = env.pack(output=str(tmp_path / "env.tar"))
    with tarfile.open(out) as t:
        names = t.getnames()
        assert t.extractfile("share/extra.txt").read() == b"mine\n"
    assert "etc/cprog.conf" not in names and "bin/cprog" in names


def test_load_environment_returns_a_list_of_files_as_092_did(nopython_env):
    files = load_environment(str(nopython_env))
    assert isinstance(files, list) and all(isinstance(f, File) for f in files)
    assert {f.target for f in files} == {f.target for f in CondaEnv.from_prefix(str(nopython_env))}


def recorded_paths(env: Path) -> set[str]:
    out: set[str] = set()
    for record in (env / "conda-meta").glob("*.json"):
        out.update(json.loads(record.read_text()).get("files", []))
    return out


def test_bytecode_of_conda_sources_is_left_out(make_env):
    env = make_env(FULL)
    recorded = recorded_paths(env)
    source = next(
        p
        for p in sorted(recorded)
        if p.endswith(".py")
        and "/" in p
        and "%s/__pycache__/%s.cpython-311.pyc" % tuple(p[:-3].rsplit("/", 1)) not in recorded
    )
    folder, stem = source[:-3].rsplit("/", 1)
    stray = env / folder / "__pycache__" / (stem + ".cpython-311.opt-1.pyc")
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"\0" * 16)  # bytecode of conda's file: regenerated where it lands
    mine = env / "lib" / "python3.11" / "site-packages" / "mine.py"
    mine.write_text("x = 1\n")
    mine_pyc = mine.parent / "__pycache__" / "mine.cpython-311.pyc"  # its source is not
    mine_pyc.parent.mkdir(exist_ok=True)
    mine_pyc.write_bytes(b"\0" * 16)
    targets = {f.target for f in CondaEnv.from_prefix(str(env))}
    rel = lambda p: str(p.relative_to(env))  # noqa: E731
    assert rel(stray) not in targets
    assert {rel(mine), rel(mine_pyc), source} <= targets


def test_only_names_sharing_an_inode_inside_the_env_become_links(full_env, tmp_path):
    """Installed files are hard links into the package cache, so nearly all have several
    links; only pairs inside the environment are archive links, for a compact table and
    for a list of files alike."""
    by_inode: dict[int, list[str]] = {}
    linked_out = 0
    for root, _, names in os.walk(full_env):
        for n in names:
            p = Path(root, n)
            st = p.lstat()
            if p.is_file() and not p.is_symlink():
                by_inode.setdefault(st.st_ino, []).append(str(p.relative_to(full_env)))
                linked_out += st.st_nlink > 1
    pairs = {n for names in by_inode.values() if len(names) > 1 for n in sorted(names)[1:]}
    assert pairs and linked_out > len(pairs) * 2
    env = CondaEnv.from_prefix(str(full_env))
    for name, files in [("table", env), ("list", CondaEnv(env.prefix, list(env.files)))]:
        out = files.pack(output=str(tmp_path / (name + ".tar")))
        with tarfile.open(out) as t:
            links = {m.name for m in t.getmembers() if m.islnk()}
        assert links == pairs, name


def test_without_drops_exactly_the_named_targets(full_env):
    table = CondaEnv.from_prefix(str(full_env))._files
    targets = [table.target(i) for i in range(len(table))]
    picks = [
        set(),
        {targets[0]},  # the first path: no NUL before it in the column
        {targets[-1], targets[len(targets) // 2]},
        {"bin/not-there", targets[1][:-1]},  # absent, and a prefix of a real path
        {targets[2] + "x", "/" + targets[3]},  # longer, and rooted: no match either
    ]
    for named in picks:
        kept = table.without(named)
        assert [kept.target(i) for i in range(len(kept))] == [
            t for t in targets if t not in named
        ], named
    assert table.without({"bin/not-there"}) is table


def test_entries_made_from_the_columns_match_entries_made_from_files(full_env):
    from conda_pack.plan import Plan

    env = CondaEnv.from_prefix(str(full_env))
    env = env.exclude("share/links/*")  # rows no longer consecutive entries
    plan = Plan(env, None, env._files)
    plan.overrides[3] = ("bin/override", b"generated", None, 0o644, 0, 9)
    fast = [e for _, chunk in plan.chunks() for e in chunk]
    slow = [plan.entry(i) for i in range(len(plan))]

    def as_str(e: tuple) -> tuple:
        return (os.fsdecode(e[0]), *e[1:])

    assert [as_str(e) for e in fast] == slow
    # Nearly every file took the fast path, a target straight from the paths column.
    assert sum(isinstance(e[0], bytes) for e in fast) > len(fast) // 2


def test_chunks_end_at_the_file_or_the_rewrite_limit(full_env, monkeypatch):
    """A chunk holds at most ``CHUNK`` files and at most ``REWRITES`` rewritten ones (a
    content spec each), with no entry lost or repeated, from the columns or from Files."""
    from conda_pack.plan import Plan

    monkeypatch.setattr(Plan, "CHUNK", 50)
    monkeypatch.setattr(Plan, "REWRITES", 3)
    env = CondaEnv.from_prefix(str(full_env))
    for files in (env._files, list(env._files)):
        plan = Plan(env, None, files)
        chunks = list(plan.chunks())
        expected = [plan.entry(i) for i in range(len(plan))]
        got = [e for _, chunk in chunks for e in chunk]
        assert [(os.fsdecode(e[0]), *e[1:]) for e in got] == expected
        starts = [start for start, _ in chunks]
        assert starts == [sum(len(c) for _, c in chunks[:k]) for k in range(len(chunks))]
        rewritten = [sum(isinstance(e[2], tuple) for e in c) for _, c in chunks]
        assert max(rewritten) == 3 and all(len(c) <= 50 for _, c in chunks)
        # A chunk ends early only at its third rewrite.
        for (_, c), n in zip(chunks[:-1], rewritten[:-1]):
            assert len(c) == 50 or (n == 3 and isinstance(c[-1][2], tuple))


def test_targets_decoded_a_block_at_a_time_are_every_entrys_path(full_env):
    cols = CondaEnv.from_prefix(str(full_env))._files._cols
    every = [cols.target(e) for e in range(len(cols.ends))]
    for block in (1, 2, 7, 4096):
        assert list(cols.targets(block)) == every
