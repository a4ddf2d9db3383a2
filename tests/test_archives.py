"""Archive mechanics on real environments: reproducible bytes, modes, owners, hard links,
long names, zip rules, compression settings, and failure without leftovers."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.helpers import TAR_FORMATS, conda_pack, extract, run, tree

FAST = {"tar.xz": ["--compress-level", "0"], "tar.bz2": ["--compress-level", "1"]}


def pack(env: Path, out: Path, *args: str) -> Path:
    fmt = next((f for f in TAR_FORMATS + ("zip", "squashfs") if str(out).endswith(f)), None)
    conda_pack("-p", env, "-o", out, "-q", *FAST.get(fmt, []), *args)
    return out


@pytest.mark.parametrize("fmt", TAR_FORMATS + ("zip", "squashfs"))
def test_reproducible_whatever_the_thread_count(nopython_env, tmp_path, fmt):
    a = pack(nopython_env, tmp_path / ("a." + fmt), "-j", "1")
    b = pack(nopython_env, tmp_path / ("b." + fmt), "-j", "3")
    assert a.read_bytes() == b.read_bytes()


def test_reproducible_directory(nopython_env, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    conda_pack("-p", nopython_env, "-o", a, "--format", "no-archive", "-q")
    conda_pack("-p", nopython_env, "-o", b, "--format", "no-archive", "-q", "-j", "1")
    assert tree(a) == tree(b)


def test_tar_members(full_env, tmp_path):
    """Owners fixed, mtimes kept (Python's .pyc checks them), generated files 0644/0755,
    hard links stored as links to a member that precedes them."""
    out = pack(full_env, tmp_path / "env.tar")
    with tarfile.open(out) as t:
        members = t.getmembers()
    names = [m.name for m in members]
    assert names.index("bin/conda-unpack") > names.index("bin/cprog")  # generated last
    by_name = {m.name: m for m in members}
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), m.name
    assert stat.S_IMODE(by_name["bin/conda-unpack"].mode) == 0o755
    for name in ("bin/activate", "bin/deactivate", "bin/activate.fish"):
        assert stat.S_IMODE(by_name[name].mode) == 0o644
    for m in members:
        if m.name.startswith("conda-meta/") and m.name.endswith(".json"):
            assert stat.S_IMODE(m.mode) == 0o644, m.name  # rattler writes them 0600
    src = full_env / "lib" / "python3.11" / "os.py"
    assert by_name["lib/python3.11/os.py"].mtime == int(src.stat().st_mtime)
    links = [m for m in members if m.islnk()]
    assert links, "the links package holds a hard-link pair"
    for m in links:
        assert names.index(m.linkname) < names.index(m.name)
    dest = tmp_path / "x"
    dest.mkdir()
    run(["tar", "-xf", out, "-C", dest])  # GNU tar: exit 0, links resolved
    a, b = dest / "share/links/v1/a.txt", dest / "share/links/v1/b.txt"
    assert a.stat().st_ino == b.stat().st_ino


def test_gzip_data_is_one_member_then_an_empty_index_member(nopython_env, tmp_path):
    """All the data is in the first member (readers that stop there lose nothing); the
    block index for ``conda-pack unpack`` follows as a member that decompresses to
    nothing, its index in the header's extra field, which every reader skips."""
    data = pack(nopython_env, tmp_path / "env.tar.gz").read_bytes()
    d = zlib.decompressobj(wbits=31)
    tar = d.decompress(data)
    assert d.eof and len(tar) % 512 == 0 and tar.endswith(bytes(1024))
    index = d.unused_data
    assert index[:4] == b"\x1f\x8b\x08\x04"  # FEXTRA set
    e = zlib.decompressobj(wbits=31)
    assert e.decompress(index) == b"" and e.eof and e.unused_data == b""


def zstd_seek_table(data: bytes) -> list[tuple[int, int, int, int]]:
    """``(offset, compressed size, decompressed size, checksum)`` of every frame the seek
    table at the end of ``data`` lists (zstd's seekable format, read here on its own)."""
    assert data[-4:] == (0x8F92EAB1).to_bytes(4, "little"), "no seek table"
    count, descriptor = int.from_bytes(data[-9:-5], "little"), data[-5]
    assert descriptor == 0x80  # checksums, no reserved bits
    start = len(data) - 9 - 12 * count
    head = data[start - 8 : start]
    assert head == (0x184D2A5E).to_bytes(4, "little") + (12 * count + 9).to_bytes(4, "little")
    frames, at = [], 0
    for i in range(count):
        c, d, sum_ = (
            int.from_bytes(data[start + 12 * i + k : start + 12 * i + k + 4], "little")
            for k in (0, 4, 8)
        )
        frames.append((at, c, d, sum_))
        at += c
    assert at == start - 8  # the frames cover the file up to the table
    return frames


def test_zstd_is_independent_frames_then_a_seek_table(full_env, tmp_path):
    """Each frame decompresses on its own (no reference into another); the last is a
    skippable frame of ours saying where the generated files begin, then the seek table,
    which every reader skips. The same bytes whatever the thread count."""
    import zstandard

    data = pack(full_env, tmp_path / "a.tar.zst", "-j", "1").read_bytes()
    assert pack(full_env, tmp_path / "b.tar.zst", "-j", "2").read_bytes() == data
    frames = zstd_seek_table(data)
    assert len(frames) > 2, "the test env should fill several frames"
    tar = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True).read()
    assert len(tar) % 512 == 0 and tar.endswith(bytes(1024))
    out = 0
    for at, c, d, sum_ in frames[:-1]:
        # One whole frame, its size and checksum in its header and trailer, alone.
        frame = data[at : at + c]
        assert zstandard.frame_content_size(frame) == d
        assert frame[-4:] == sum_.to_bytes(4, "little")
        assert zstandard.ZstdDecompressor().decompress(frame) == tar[out : out + d]
        out += d
    assert out == len(tar)
    # Ours: a skippable frame that decompresses to nothing, with the tail offset.
    at, c, d, _ = frames[-1]
    ours = data[at : at + c]
    assert (c, d) == (24, 0) and ours[:4] == (0x184D2A5C).to_bytes(4, "little")
    assert ours[8:12] == b"CPZS" and ours[12:14] == b"\x01\x01"
    tail = int.from_bytes(ours[16:24], "little")
    # The generated files (conda-unpack among them) start there, at a member's header.
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        members = t.getmembers()
    generated = [m.name for m in members if m.offset >= tail]
    assert [m.offset for m in members if m.offset >= tail][0] == tail
    assert "bin/conda-unpack" in generated and "lib/python3.11/os.py" not in generated


def test_zip_entries_all_deflated(full_env, tmp_path):
    out = pack(full_env, tmp_path / "env.zip")
    with zipfile.ZipFile(out) as z:
        assert z.testzip() is None
        for info in z.infolist():
            if not info.is_dir():
                assert info.compress_type == zipfile.ZIP_DEFLATED, info.filename
        mode = z.getinfo("bin/conda-unpack").external_attr >> 16
        assert stat.S_IMODE(mode) == 0o755


def test_zip_refuses_links_out_of_the_env(make_env, tmp_path):
    env = make_env(["cprog"])
    os.symlink("/etc/hostname", env / "share-outside")
    proc = conda_pack("-p", env, "-o", tmp_path / "o.zip", check=False)
    assert proc.returncode == 1
    assert "CondaPackError: share-outside is a symbolic link to /etc/hostname" in proc.stderr
    assert "--zip-symlinks" in proc.stderr
    assert os.listdir(tmp_path) == [env.name, "pkgs0"] or not (tmp_path / "o.zip").exists()
    conda_pack("-p", env, "-o", tmp_path / "o.zip", "--zip-symlinks", "-q")
    with zipfile.ZipFile(tmp_path / "o.zip") as z:
        info = z.getinfo("share-outside")
        assert stat.S_ISLNK(info.external_attr >> 16)
        assert z.read(info) == b"/etc/hostname"


def test_long_and_unicode_names_roundtrip(make_env, tmp_path):
    env = make_env(["cprog"])
    deep = env / "share" / ("d" * 90) / ("e" * 90) / ("f" * 90)
    deep.mkdir(parents=True)
    (deep / ("g" * 120 + ".txt")).write_text("deep\n")
    (env / "share" / "ünïcode-名前.txt").write_text("hi\n")
    os.symlink("../" + "x" * 150, env / "share" / "long-link")
    for fmt in ("tar", "tar.gz", "zip"):
        out = pack(env, tmp_path / ("o." + fmt), "--zip-symlinks")
        root = extract(out, tmp_path / ("x-" + fmt), fmt)
        assert (root / deep.relative_to(env) / ("g" * 120 + ".txt")).read_text() == "deep\n"
        assert (root / "share" / "ünïcode-名前.txt").read_text() == "hi\n"
        assert os.readlink(root / "share" / "long-link") == "../" + "x" * 150


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_already_compressed_files_roundtrip_without_growing(make_env, tmp_path, fmt):
    """Deflate stores blocks of compressed data (jars, wheels) instead of compressing them
    again; the bytes still come back, and text around them is still compressed."""
    env = make_env(["cprog"])
    jar = zlib.compress(os.urandom(3 << 20), 1)
    (env / "share").mkdir(exist_ok=True)
    (env / "share" / "lib.jar").write_bytes(jar)
    text = b"".join(b"line %d of a conda environment\n" % i for i in range(100_000))
    (env / "share" / "notes.txt").write_bytes(text)
    out = pack(env, tmp_path / ("o." + fmt))
    root = extract(out, tmp_path / "x", fmt)
    assert (root / "share" / "lib.jar").read_bytes() == jar
    assert (root / "share" / "notes.txt").read_bytes() == text
    # Stored, the jar costs its size plus framing; the text shrinks at least 4x.
    assert out.stat().st_size < len(jar) * 1.01 + len(text) / 4 + (1 << 20)


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.xz", "tar.gz", "tar.bz2"])
def test_compress_level_is_honoured(nopython_env, full_env, tmp_path, fmt):
    # bzip2's level is its block size: only data larger than 100 kB shows it.
    env = full_env if fmt == "tar.bz2" else nopython_env
    low = pack(env, tmp_path / ("low." + fmt), "--compress-level", "1")
    high = pack(env, tmp_path / ("high." + fmt), "--compress-level", "9")
    assert high.stat().st_size < low.stat().st_size


@pytest.mark.parametrize("fmt", ["tar.zst", "tar.gz", "zip", "tar"])
def test_write_failure_fails_the_run_and_leaves_nothing(full_env, tmp_path, fmt):
    """A compression/write error anywhere fails the run (0.9.2 could exit 0 with an empty
    archive), with the system's reason and the output's name, whichever thread met it. Here
    the file-size limit makes every write past 1 MB fail."""
    out = tmp_path / "out" / f"env.{fmt}"
    out.parent.mkdir()
    code = (
        "import resource, signal, sys;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20));"
        "from conda_pack.cli import main; main(sys.argv[1:])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "-p", str(full_env), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == f"CondaPackError: {out}: File too large (os error 27)\n"
    assert os.listdir(out.parent) == []


@pytest.mark.slow
def test_staging_name_in_an_error_becomes_the_output_keeping_class_and_cause(tmp_path):
    from conda_pack.errors import PackIOError
    from conda_pack.packing import staged_output

    out = str(tmp_path / "env.tar")
    cause = OSError(27, "File too large")
    with pytest.raises(PackIOError) as info:
        with staged_output(out, directory=False) as tmp:
            raise PackIOError(f"{tmp}: File too large (os error 27)") from cause
    assert str(info.value) == f"{out}: File too large (os error 27)"
    assert info.value.__cause__ is cause
    assert os.listdir(tmp_path) == []


def test_file_over_8_gib_in_tar(make_env, tmp_path):
    env = make_env(["cprog"])
    big = env / "share" / "big.bin"
    big.parent.mkdir(exist_ok=True)
    with open(big, "wb") as f:
        f.truncate((8 << 30) + 4097)  # sparse: costs no disk in the env
    out = pack(env, tmp_path / "o.tar")
    with tarfile.open(out) as t:
        assert t.getmember("share/big.bin").size == (8 << 30) + 4097
    out.unlink()


@pytest.mark.parametrize("limit", [("CHUNK", 3), ("REWRITES", 1)], ids=["files", "rewrites"])
def test_same_archive_whatever_the_chunk_size(full_env, tmp_path, monkeypatch, limit):
    """The plan goes to the core in chunks (ending at ``CHUNK`` files or ``REWRITES``
    rewritten ones) and each chunk's reports are read on a helper thread as they come:
    conda-unpack's records must come out whole and in order."""
    import conda_pack as api
    from conda_pack.plan import Plan

    whole = tmp_path / "whole.tar"
    api.pack(prefix=str(full_env), output=str(whole), verbose=False)
    monkeypatch.setattr(Plan, *limit)
    chunked = tmp_path / "chunked.tar"
    api.pack(prefix=str(full_env), output=str(chunked), verbose=False)
    assert chunked.read_bytes() == whole.read_bytes()


def test_reports_helper_raises_its_error_in_the_caller_and_stops_on_the_callers():
    from conda_pack.packing import _in_background

    seen = []
    with _in_background(seen.append) as hand_over:
        for i in range(5):
            hand_over(i)
    assert seen == [0, 1, 2, 3, 4]

    def fail(item):
        raise ValueError(f"bad {item}")

    with pytest.raises(ValueError, match="bad 0"):
        with _in_background(fail) as hand_over:
            hand_over(0)

    seen.clear()
    with pytest.raises(KeyError):
        with _in_background(seen.append) as hand_over:
            hand_over(1)
            raise KeyError("the core failed")
    assert seen in ([], [1])


def test_core_errors_are_the_packages_exceptions_with_their_cause(tmp_path):
    """The core raises conda_pack.errors' classes (one conversion in src/lib.rs), an I/O
    failure with the OS error as ``__cause__``."""
    import errno

    from conda_pack import _core
    from conda_pack.errors import CondaPackException, PackIOError, PrefixError

    missing = tmp_path / "no" / "such" / "dir" / "env.tar"
    with pytest.raises(PackIOError) as info:
        _core.ArchiveWriter(str(missing), "tar", 0, 1, "", str(tmp_path))
    assert isinstance(info.value, CondaPackException) and str(missing) in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, FileNotFoundError) and cause.errno == errno.ENOENT
    assert cause.filename == str(missing)
    with pytest.raises(PrefixError):  # no room for a longer prefix in a C string
        _core.replace_prefix(b"x/old/y\0", "binary", b"/old", b"/much-longer")
