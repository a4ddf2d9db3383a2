"""Faults on the packing side, each met as a user meets it: the real CLI on real
environments from the env factory, with the environment changed under the packer, the
disk filling up, a Ctrl-C or a SIGKILL mid-way, hostile names.

Whatever happens, the user sees one ``CondaPackError: ...`` line naming the file or
option (or ``Interrupted``), exit code 1, no traceback, nothing left in the output
directory and nothing outside the environment read or touched.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import conda_pack
import pytest
from conda_pack import CondaEnv

from tests.conftest import NO_PYTHON
from tests.envfactory import variants
from tests.helpers import extract, run, start_for_ctrl_c, tree, zip_names
from tests.test_cli import assert_user_error, cp, listing, member, names, ok


# -- --ignore-missing-files survives filters --------------------------------------------------
def test_ignore_missing_files_survives_exclude_and_include(make_env, tmp_path):
    env = make_env(NO_PYTHON)
    variants.overwrite_managed_file(env, "etc/cprog.conf", same_size=True)
    out = tmp_path / "out"
    out.mkdir()
    proc = cp("-p", env, "-o", out / "env.tar", "--exclude", "share/*", "-q")
    assert_user_error(proc, "etc/cprog.conf", "--ignore-missing-files", outdir=out)
    ok("-p", env, "-o", out / "env.tar", "--ignore-missing-files", "--exclude", "share/*", "-q")
    edited = (env / "etc" / "cprog.conf").read_bytes()
    assert member(out / "env.tar", "etc/cprog.conf") == edited
    ok(
        "-p", env, "-o", out / "env2.tar", "--ignore-missing-files",
        "--exclude", "share/*", "--include", "share/cprog/*", "-q",
    )  # fmt: skip

    # The API: the flag is the environment's, kept by every filter.
    base = CondaEnv.from_prefix(str(env), ignore_missing_files=True)
    filtered = base.exclude("share/*").include("share/cprog/*")
    assert filtered.ignore_missing_files
    filtered.pack(output=str(out / "api.tar"))
    assert member(out / "api.tar", "etc/cprog.conf") == edited
    conda_pack.pack(
        prefix=str(env),
        output=str(out / "api2.tar"),
        filters=[("exclude", "share/*")],
        ignore_missing_files=True,
    )
    strict = CondaEnv.from_prefix(str(env)).exclude("share/*")
    assert not strict.ignore_missing_files
    before = listing(out)
    try:
        strict.pack(output=str(out / "strict.tar"))
    except conda_pack.CondaPackException as e:
        assert "etc/cprog.conf" in str(e)
    else:
        raise AssertionError("a changed file was packed without --ignore-missing-files")
    assert listing(out) == before


# -- nothing from outside the environment -----------------------------------------------------
SECRET = b"bytes that live outside the environment\n"


def plant_outside_links(env: Path, outside: Path) -> None:
    """A file conda recorded as a regular file becomes a link to a file outside; a
    recorded directory moves outside and a link takes its place, with an unmanaged file
    beside the moved ones."""
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    readme = env / "share" / "cprog" / "README.txt"
    readme.unlink()
    readme.symlink_to(outside / "secret.txt")
    shutil.move(env / "share" / "links" / "v1", outside / "v1")
    (outside / "v1" / "unmanaged.txt").write_bytes(SECRET)
    (env / "share" / "links" / "v1").symlink_to(outside / "v1", target_is_directory=True)


def archived_bytes(path: Path, fmt: str) -> bytes:
    """Every byte a user gets out of the archive: member contents and link targets."""
    if fmt == "zip":
        with zipfile.ZipFile(path) as z:
            return b"".join(z.read(n) for n in z.namelist())
    with tarfile.open(path) as t:
        got = b""
        for m in t.getmembers():
            got += m.linkname.encode()
            if m.isfile():
                got += t.extractfile(m).read()
        return got


def test_links_to_outside_are_never_read_through(make_env, tmp_path):
    env = make_env(NO_PYTHON)
    plant_outside_links(env, tmp_path / "outside")
    out = tmp_path / "out"
    out.mkdir()
    # The moved directory's recorded files are gone from the environment.
    proc = cp("-p", env, "-o", out / "env.tar", "-q")
    assert_user_error(proc, "share/links/v1/a.txt", "--ignore-missing-files", outdir=out)

    for fmt in ("tar", "tar.gz", "zip"):
        extra = ["--zip-symlinks"] if fmt == "zip" else []
        archive = out / ("env." + fmt)
        ok("-p", env, "-o", archive, "--ignore-missing-files", "-q", *extra)
        got = archived_bytes(archive, fmt)
        assert SECRET not in got, fmt
        root = extract(archive, tmp_path / ("x-" + fmt), fmt)
        readme = root / "share" / "cprog" / "README.txt"
        assert os.readlink(readme) == str(tmp_path / "outside" / "secret.txt"), fmt
        assert os.readlink(root / "share" / "links" / "v1") == str(tmp_path / "outside" / "v1")

    # Without --zip-symlinks a zip would have to hold the outside file: refused.
    proc = cp("-p", env, "-o", out / "refused.zip", "--ignore-missing-files", "-q")
    message = assert_user_error(
        proc, "share/cprog/README.txt", "outside the environment", "--zip-symlinks"
    )
    assert "\n" not in message.strip()
    assert not (out / "refused.zip").exists()


def test_a_link_into_its_own_package_cache_is_packed_as_the_file(make_env, tmp_path):
    """Installed by linking into the package cache (conda's softlink mode): the file, the
    package's own pristine copy, is archived, not a link that is dangling elsewhere."""
    env = make_env(NO_PYTHON)
    record = json.loads(next((env / "conda-meta").glob("cprog-data-*.json")).read_text())
    cached = Path(record["link"]["source"]) / "share" / "cprog" / "README.txt"
    readme = env / "share" / "cprog" / "README.txt"
    readme.unlink()
    readme.symlink_to(cached)
    ok("-p", env, "-o", tmp_path / "env.tar", "-q")
    with tarfile.open(tmp_path / "env.tar") as t:
        m = t.getmember("share/cprog/README.txt")
        assert m.isfile()
        assert t.extractfile(m).read() == cached.read_bytes()


# -- zip without --zip-symlinks: copies of links relocate like their targets -----------------
def test_zip_copies_of_links_are_relocated(full_env, tmp_path, long_dest):
    out = tmp_path / "env.zip"
    ok("-p", full_env, "-o", out, "-q")
    root = extract(out, long_dest, "zip")
    run([root / "bin" / "conda-unpack"])
    old, new = os.fsencode(str(full_env)), os.fsencode(str(root))
    held = []
    for dirpath, _dirs, files in os.walk(full_env):
        for name in files:
            src = Path(dirpath, name)
            rel = src.relative_to(full_env)
            if rel.parts[0] == "conda-meta" or not src.is_file():
                continue
            if old in src.read_bytes():  # through links: what the zip holds a copy of
                held.append(rel)
                got = (root / rel).read_bytes()
                assert old not in got, "still holds the old prefix: %s" % rel
    copies = {Path(p) for p in ("bin/2to3", "bin/idle3", "bin/pydoc3", "bin/python3-config")}
    assert copies | {Path("lib/libpython3.11.so")} <= set(held)
    for rel in copies:
        assert not (root / rel).is_symlink()
        assert new in (root / rel).read_bytes(), rel
    d = str(root)
    assert run([root / "bin" / "python3-config", "--prefix"]).stdout.strip() == d
    assert "usage" in run([root / "bin" / "2to3", "--help"]).stdout.lower()
    code = "import sys, sysconfig; print(sys.prefix, sysconfig.get_config_var('prefix'))"
    assert run([root / "bin" / "python3", "-c", code]).stdout.split() == [d, d]
    # The copy of a binary holding the prefix is relocated like the file it copies.
    assert (root / "lib" / "libpython3.11.so").read_bytes() == (
        root / "lib" / "libpython3.11.so.1.0"
    ).read_bytes()


def test_zip_copies_of_linked_directories_are_relocated(make_env, tmp_path, long_dest):
    env = make_env(NO_PYTHON)
    (env / "etc2").symlink_to("etc", target_is_directory=True)
    (env / "lib64").symlink_to("lib", target_is_directory=True)
    (env / "share" / "links" / "v1" / "again").symlink_to(".", target_is_directory=True)
    (env / "share" / "empty").mkdir()
    (env / "share" / "empty-link").symlink_to("empty", target_is_directory=True)
    out = tmp_path / "env.zip"
    ok("-p", env, "-o", out, "-q")
    root = extract(out, long_dest, "zip")
    run([root / "bin" / "conda-unpack"])
    old, new = os.fsencode(str(env)), os.fsencode(str(root))
    for rel in ("etc2/cprog.conf", "lib64/libcprog.so", "lib64/pkgconfig/cprog.pc"):
        got = (root / rel).read_bytes()
        assert old not in got and new in got, rel
        assert got == (root / rel.replace("etc2", "etc").replace("lib64", "lib")).read_bytes()
    assert (root / "share" / "links" / "current" / "a.txt").read_bytes() == (
        env / "share" / "links" / "v1" / "a.txt"
    ).read_bytes()
    assert (root / "share" / "empty-link").is_dir()
    # A link back into its own directory is stored once, not followed forever.
    names = zip_names(out)
    assert "share/links/current/b.txt" in names
    assert not [n for n in names if n.count("again") > 1]
    assert len(names) == len(set(names))


# -- Ctrl-C -----------------------------------------------------------------------------------
#: Each format at its slowest level, where stopping used to take longest.
SLOWEST = {
    "tar": [],
    "tar.gz": ["--compress-level", "9"],
    "tar.bz2": ["--compress-level", "9"],
    "tar.xz": ["--compress-level", "9"],
    "tar.zst": ["--compress-level", "22"],
    "zip": ["--compress-level", "9"],
    "squashfs": ["--compress-level", "9"],
    "no-archive": [],
}
#: Formats that take seconds on the test env at that level: every point is reached.
SLOW = {"tar.gz", "tar.bz2", "tar.xz", "tar.zst", "zip", "squashfs"}


def start_pack(*args, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return start_for_ctrl_c(
        [sys.executable, "-m", "conda_pack", *args], text=True, env=env, **popen
    )


def interrupt(fmt: str, point: str, env: Path, outdir: Path) -> float | None:
    """Pack ``env`` to ``outdir`` and press Ctrl-C at ``point``: ``loading`` (the
    packer's first words), ``writing`` (the output appears) or ``busy`` (1.5 s later).
    Returns how long the packer took to stop, or None if it had finished first."""
    out = outdir / ("env." + fmt)
    proc = start_pack(
        "-p", env, "-o", out, *SLOWEST[fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        if point == "loading":
            assert proc.stdout.readline() == "Collecting packages...\n"
        else:
            deadline = time.monotonic() + 60
            while not os.listdir(outdir) and proc.poll() is None:
                assert time.monotonic() < deadline, "packing never started"
                time.sleep(0.002)
            if point == "busy":
                time.sleep(1.5)
        if proc.poll() is not None:
            proc.communicate()
            assert proc.returncode == 0
            shutil.rmtree(out) if out.is_dir() else out.unlink()
            return None
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, stderr) == (1, "Interrupted\n"), (fmt, point, stderr)
    assert listing(outdir) == [], (fmt, point)
    return took


def quickest_stop(fmt: str, point: str, env: Path, outdir: Path) -> float | None:
    """``interrupt``, tried again (at most three times in all) while it takes a second or
    more: on a loaded machine the scheduler alone can hold a process that long, while a
    compressor that does not look at the flag takes that long every time."""
    took = None
    for _ in range(3):
        took = interrupt(fmt, point, env, outdir)
        if took is None or took < 1.0:
            break
    return took


@pytest.mark.parametrize("fmt", sorted(SLOWEST))
def test_ctrl_c_stops_within_a_second(fmt, full_env, tmp_path):
    if fmt == "squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    outdir = tmp_path / "out"
    outdir.mkdir()
    took = {p: quickest_stop(fmt, p, full_env, outdir) for p in ("loading", "writing", "busy")}
    reached = {p: t for p, t in took.items() if t is not None}
    assert "loading" in reached and "writing" in reached, took
    if fmt in SLOW:
        assert "busy" in reached, took
    assert max(reached.values()) < 1.0, took


# -- SIGKILL mid-way --------------------------------------------------------------------------
def staged(outdir: Path) -> list[str]:
    return [n for n in listing(outdir) if n.endswith(".partial")]


def kill_mid_way(env: Path, out: Path, *args) -> None:
    """Start packing ``env`` to ``out`` and SIGKILL it once its staged output is there."""
    proc = start_pack("-p", env, "-o", out, "-q", *args)
    try:
        deadline = time.monotonic() + 60
        while not [n for n in staged(out.parent) if n.startswith("." + out.name + ".")]:
            assert proc.poll() is None, "finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("fmt", sorted(SLOWEST))
def test_after_sigkill_the_next_pack_removes_what_was_left(fmt, full_env, nopython_env, tmp_path):
    if fmt == "squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    outdir, refdir = tmp_path / "out", tmp_path / "ref"
    outdir.mkdir()
    refdir.mkdir()
    out = outdir / ("env." + fmt)
    kill_mid_way(full_env, out, *SLOWEST[fmt])
    left = staged(outdir)
    assert left and listing(outdir) == left, listing(outdir)
    # The same command again (on a small env, for time): it succeeds, nothing is left.
    ok("-p", nopython_env, "-o", out, "-q")
    assert listing(outdir) == [out.name]
    ok("-p", nopython_env, "-o", refdir / out.name, "-q")
    assert_same_output(out, refdir / out.name)


def assert_same_output(a: Path, b: Path) -> None:
    if a.is_dir():
        assert tree(a) == tree(b)
    else:
        assert a.read_bytes() == b.read_bytes()


def test_a_concurrent_pack_is_not_disturbed(full_env, nopython_env, tmp_path):
    """Packs into one directory at once: a new one clears what a killed one left, never
    what a live one is writing, and the live one completes."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    live_out = outdir / "live.tar.gz"
    live = start_pack("-p", full_env, "-o", live_out, "-q", "--compress-level", "9")
    try:
        deadline = time.monotonic() + 60
        while not staged(outdir):
            assert live.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        (mine,) = staged(outdir)
        kill_mid_way(full_env, outdir / "dead.tar.gz", "--compress-level", "9")
        assert len(staged(outdir)) == 2
        ok("-p", nopython_env, "-o", outdir / "next.tar", "-q")
        assert live.poll() is None, "the live pack ended too soon to tell"
        assert staged(outdir) == [mine]
        assert live.wait(timeout=120) == 0
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert listing(outdir) == ["live.tar.gz", "next.tar"]
    with tarfile.open(live_out) as t:
        assert sum(1 for m in t if m.isfile() and t.extractfile(m).read() is not None) > 1000


# -- files changing while they are packed -----------------------------------------------------
MIB = 1 << 20
#: Streamed by the archive writer, and read whole by a worker.
BIG, SMALL = 48 * MIB, 200 << 10


class Changer(threading.Thread):
    """Changes ``path`` over and over until stopped, each version a run of one byte value
    (its number), so that any mix of two versions shows."""

    def __init__(self, path: Path, how: str, size: int, spares: Path):
        super().__init__(daemon=True)
        self.path, self.how, self.size = path, how, size
        self.stop = threading.Event()
        self.versions = 0
        self.spares = []
        if how == "vanish":
            for v in (1, 2):
                spare = spares / ("spare-%d-%s" % (v, path.name))
                spare.write_bytes(bytes([v]) * size)
                self.spares.append(spare)

    def run(self) -> None:
        v = 1
        while not self.stop.is_set():
            v = v % 250 + 1
            if self.how == "rewrite":  # in place, same size, 64 KiB at a time
                with open(self.path, "r+b") as f:
                    for _ in range(0, self.size, 64 << 10):
                        f.write(bytes([v]) * (64 << 10))
            elif self.how == "grow":
                if self.path.stat().st_size > 4 * self.size:  # room on the test's disk
                    # Replaced whole (a truncation would be a real, empty, version).
                    fresh = self.path.with_name(self.path.name + ".new")
                    fresh.write_bytes(bytes([v]) * self.size)
                    os.replace(fresh, self.path)
                with open(self.path, "ab") as f:
                    f.write(bytes([v]) * MIB)
            elif self.how == "shrink":
                size = self.path.stat().st_size
                os.truncate(self.path, size - MIB)
                if size <= 2 * MIB:
                    self.path.write_bytes(bytes([v]) * self.size)
            else:  # vanish, then come back under the same name (a spare's hard link)
                self.path.unlink()
                time.sleep(0.001)
                os.link(self.spares[v % 2], self.path)
            self.versions += 1


def is_a_version(data: bytes, how: str, size: int) -> bool:
    """Whether ``data`` is what the file held at some moment: one value throughout, or
    for a growing file its first version followed by whole appended MiBs."""
    if how != "grow":
        return len(set(data)) == 1 and (len(data) == size or how == "shrink")
    first, rest = data[:size], data[size:]
    pieces = [rest[i : i + MIB] for i in range(0, len(rest), MIB)]
    return len(set(first)) == 1 and all(len(p) == MIB and len(set(p)) == 1 for p in pieces)


def packed_member(out: Path, fmt: str, name: str) -> bytes:
    if fmt == "no-archive":
        return (out / name).read_bytes()
    if fmt == "zip":
        with zipfile.ZipFile(out) as z:
            return z.read(name)
    with tarfile.open(out) as t:
        return t.extractfile(name).read()


@pytest.mark.parametrize("how", ["rewrite", "grow", "shrink", "vanish"])
def test_files_changing_while_packed_fail_clearly_or_arrive_whole(how, make_env, tmp_path):
    """A thread changes files while the real CLI packs them: the pack fails naming the
    file, or the archive holds one whole version of it, never a mix."""
    env = make_env(NO_PYTHON)
    sizes = {"share/big.bin": BIG, "share/small.bin": SMALL}
    outdir = tmp_path / "out"
    outdir.mkdir()
    outcomes = set()
    for fmt in ("tar", "zip", "no-archive"):
        for name, size in sizes.items():
            (env / name).write_bytes(b"\1" * size)
        changed = ["share/big.bin"] + (["share/small.bin"] if how == "rewrite" else [])
        changers = [Changer(env / n, how, sizes[n], tmp_path) for n in changed]
        for c in changers:
            c.start()
        while not all(c.versions for c in changers):
            time.sleep(0.001)
        try:
            out = outdir / ("env." + fmt)
            proc = cp("-p", env, "-o", out, "-q")
        finally:
            for c in changers:
                c.stop.set()
                c.join()
        assert all(c.versions > 1 for c in changers), "nothing changed while packing"
        if proc.returncode:
            message = assert_user_error(proc, outdir=outdir)
            assert "\n" not in message.strip(), message
            assert any(n in message for n in changed), message
            assert (
                "changed while it was being packed" in message
                or "No such file or directory" in message
            ), message
            outcomes.add("error")
            continue
        outcomes.add("whole")
        for name in changed:
            try:
                data = packed_member(out, fmt, name)
            except (KeyError, FileNotFoundError):
                assert how == "vanish", (fmt, name)
                continue  # gone when the environment was scanned: not in it
            assert is_a_version(data, how, sizes[name]), "%s %s: torn" % (fmt, name)
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    assert outcomes


# -- a full disk ------------------------------------------------------------------------------
#: Fast levels: the archives are still larger than the small disk below.
FAST = {"tar.xz": ["--compress-level", "0"], "tar.bz2": ["--compress-level", "1"]}


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB file system, smaller than any archive of the test envs."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt], check=False)
    if proc.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): %s" % proc.stderr.strip())
    try:
        yield mnt
    finally:
        run(["umount", mnt])


@pytest.mark.parametrize("fmt", sorted(SLOWEST))
def test_a_full_disk_fails_cleanly(fmt, full_env, small_disk):
    if fmt == "squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    out = small_disk / ("env." + fmt)
    proc = cp("-p", full_env, "-o", out, "-q", *FAST.get(fmt, []))
    message = assert_user_error(proc, "No space left on device", outdir=small_disk)
    assert "\n" not in message.strip(), message
    assert message.startswith(str(out)), message


# -- files the packer may not read ------------------------------------------------------------
def without_dac_override() -> None:
    """For a child run as root: file permissions apply to it as to the files' owner. Drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so the interpreter
    exec'd next has them nowhere (root's own home, which holds the interpreter here,
    stays readable, unlike with a switch to ``nobody``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_unprivileged(*args) -> subprocess.CompletedProcess:
    preexec = without_dac_override if os.geteuid() == 0 else None
    return subprocess.run(
        [sys.executable, "-m", "conda_pack", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
    )


@pytest.mark.parametrize(
    "what", ["managed file", "unmanaged file", "directory", "conda-meta record"]
)
def test_unreadable_files_are_named(what, make_env, tmp_path):
    env = make_env(NO_PYTHON)
    if what == "managed file":
        victim = env / "share" / "cprog" / "README.txt"
    elif what == "unmanaged file":
        victim = env / "share" / "notes.txt"
        victim.write_text("mine\n")
    elif what == "directory":
        victim = env / "share" / "private"
        victim.mkdir()
        (victim / "key.txt").write_text("mine\n")
    else:
        victim = next((env / "conda-meta").glob("cprog-data-*.json"))
    if os.geteuid() == 0:
        probe = subprocess.run(["true"], preexec_fn=without_dac_override, capture_output=True)
        if probe.returncode != 0:
            pytest.skip("cannot drop root's file-permission override here")
    outdir = tmp_path / "out"
    outdir.mkdir()
    before = tree(env)
    mode = victim.stat().st_mode
    rel = str(victim.relative_to(env))
    victim.chmod(0)
    try:
        proc = run_unprivileged("-p", env, "-o", outdir / "env.tar.gz", "-q")
        message = assert_user_error(proc, str(victim), "Permission denied", outdir=outdir)
        assert "\n" not in message.strip(), message
        if what.endswith("file"):
            assert "--exclude" in message
            excluded = run_unprivileged(
                "-p", env, "-o", outdir / "env.tar.gz", "-q", "--exclude", rel
            )
            assert excluded.returncode == 0, excluded.stderr
            assert rel not in names(outdir / "env.tar.gz")
    finally:
        victim.chmod(mode)
    assert tree(env) == before


# -- hostile names ----------------------------------------------------------------------------
HOSTILE = [
    b"new\nline.txt",
    b'it\'s "quoted" $HOME `x`.txt',
    b"bad-utf8-\xff\xfe.txt",
    b"n" * 255,
    "é".encode() * 127 + b"x",  # 255 bytes, multibyte
    b" leading and trailing space ",
    b"-dash-first",
    b"back\\slash",
]


def plant_hostile_names(env: Path) -> dict[bytes, bytes]:
    """Files (and a link) with hostile names; some hold the prefix, so conda-unpack has
    records for them. Returns ``relative path -> content`` (a link: b"-> target")."""
    share = os.fsencode(env / "share" / "hostile")
    os.mkdir(share)
    planted = {}
    for i, name in enumerate(HOSTILE):
        data = b"file %d\n" % i
        if i % 2:
            data += b"prefix=" + os.fsencode(env) + b"\n"
        with open(os.path.join(share, name), "wb") as f:
            f.write(data)
        planted[b"share/hostile/" + name] = data
    os.mkdir(os.path.join(share, b"dir\nwith-newline"))
    with open(os.path.join(share, b"dir\nwith-newline", b"inner\xff"), "wb") as f:
        f.write(b"inner\n")
    planted[b"share/hostile/dir\nwith-newline/inner\xff"] = b"inner\n"
    os.symlink(b"new\nline.txt", os.path.join(share, b"link'\n\xff"))
    planted[b"share/hostile/link'\n\xff"] = b"-> new\nline.txt"
    return planted


@pytest.mark.parametrize("fmt", sorted(SLOWEST))
def test_hostile_names_pack_and_extract(fmt, make_env, tmp_path, long_dest):
    if fmt == "squashfs" and shutil.which("mksquashfs") is None:
        pytest.skip("squashfs-tools not installed")
    env = make_env(NO_PYTHON)
    planted = plant_hostile_names(env)
    out = tmp_path / ("env." + fmt)
    extra = ["--zip-symlinks"] if fmt == "zip" else []
    ok("-p", env, "-o", out, "-q", *FAST.get(fmt, []), *extra)
    if fmt == "zip":
        # Info-ZIP drops control characters from names unless told not to.
        long_dest.mkdir(parents=True)
        run(["unzip", "-q", "-^", out, "-d", long_dest])
        root = long_dest
        with zipfile.ZipFile(out) as z:  # Python's reader too (pip, conda's tools)
            assert len([n for n in z.namelist() if "/hostile/" in n]) == len(planted)
    else:
        root = extract(out, long_dest, fmt)
    if fmt.startswith("tar") and fmt != "tar.zst":  # Python's tarfile, as a second reader
        with tarfile.open(out) as t:
            got = {os.fsencode(n) for n in t.getnames()}
            assert {b"share/hostile/" + n for n in HOSTILE} <= got
    run([root / "bin" / "conda-unpack"])
    old, new = os.fsencode(env), os.fsencode(root)
    for rel, data in planted.items():
        path = os.path.join(os.fsencode(root), rel)
        if data.startswith(b"-> "):
            assert os.readlink(path) == data[3:], rel
            continue
        with open(path, "rb") as f:
            assert f.read() == data.replace(old, new), rel


def test_an_output_name_of_255_bytes(nopython_env, tmp_path):
    """The staged output's name is longer than the output's: it must still fit."""
    for name in ("o" * 251 + ".tar", "é" * 125 + "o.zip"):
        out = tmp_path / name
        assert len(os.fsencode(out.name)) == 255
        ok("-p", nopython_env, "-o", out, "-q")
        assert "bin/conda-unpack" in names(out)
        assert listing(tmp_path) == [out.name]
        out.unlink()
