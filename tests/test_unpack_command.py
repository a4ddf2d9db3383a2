"""``conda-pack unpack ARCHIVE DEST``: every format, relocated in the same pass, the same
result as ``tar -x`` + ``bin/conda-unpack``, nothing left behind on failure."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import LONG_SUFFIX, TAR_FORMATS, conda_pack, extract, run, tree

STATE = "conda-meta/.conda-unpack-prefix"
#: conda-unpack's own files, which differ by when they were written.
VOLATILE = {"conda-meta/.conda-unpack.lock"}


@pytest.fixture(scope="module")
def archives(full_env, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("unpack-cmd")
    made = {}
    for fmt in TAR_FORMATS + ("zip",):
        path = out / ("env." + fmt)
        conda_pack("-p", full_env, "-o", path, "-q")
        made[fmt] = path
    return made


def unpack(archive, dest, *args, check=True):
    return conda_pack("unpack", archive, dest, *args, check=check)


def settled(root: Path) -> dict:
    t = tree(root)
    for v in VOLATILE:
        t.pop(v, None)
    return t


def test_help_is_reachable_and_packing_is_unchanged():
    out = conda_pack("unpack", "--help").stdout
    assert "ARCHIVE" in out and "DEST" in out
    assert "conda-pack unpack ARCHIVE DEST" in " ".join(conda_pack("--help").stdout.split())
    # Every other command line is still the packer's.
    bad = conda_pack("-n", "no-such-env-here", check=False)
    assert bad.returncode == 1 and "CondaPackError" in bad.stderr


@pytest.mark.parametrize("fmt", TAR_FORMATS + ("zip",))
def test_same_result_as_extract_then_conda_unpack(archives, tmp_path, fmt):
    # Two paths of the same length: the relocated files hold their own.
    ours = tmp_path / ("a" + LONG_SUFFIX) / "env"
    theirs = tmp_path / ("b" + LONG_SUFFIX) / "env"
    ours.parent.mkdir()
    proc = unpack(archives[fmt], ours, "-q")
    assert proc.stdout == proc.stderr == ""
    extract(archives[fmt], theirs, fmt)
    run([theirs / "bin" / "conda-unpack"])
    # The state file names each one's own place; everything else is byte for byte equal
    # once the names are swapped.
    assert (ours / STATE).read_text() == "%s\n" % ours
    a, b = settled(ours), settled(theirs)
    a.pop(STATE)
    b.pop(STATE)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k] and not (a[k][0] == "l")]
    # Files holding the prefix differ by it: compare them with the name swapped.
    for rel in differ:
        data = (ours / rel).read_bytes().replace(str(ours).encode(), str(theirs).encode())
        assert data == (theirs / rel).read_bytes(), rel
    # conda-unpack finds nothing to do; the programs run from their new place.
    before = settled(ours)
    run([ours / "bin" / "conda-unpack"])
    assert settled(ours) == before
    assert run([ours / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % ours
    assert run(
        [ours / "bin" / "python", "-c", "import sys; print(sys.prefix)"]
    ).stdout.strip() == str(ours)
    # Nothing was left beside DEST.
    assert os.listdir(ours.parent) == ["env"]


def test_progress_and_summary_unless_quiet(archives, tmp_path):
    proc = unpack(archives["tar.gz"], tmp_path / "env")
    assert "Unpacked" in proc.stderr and "relocated" in proc.stderr


def test_our_gzip_is_indexed_and_standard_readers_ignore_the_index(archives, tmp_path):
    from conda_pack import _core

    path = archives["tar.gz"]
    assert _core.Unpacker(str(path)).indexed
    run(["gzip", "-t", path])
    assert run(["gzip", "-l", path]).returncode == 0
    with tarfile.open(path) as t:
        names = t.getnames()
    with gzip.open(path) as g:
        raw = g.read()
    assert len(raw) % 512 == 0
    listed = run(["tar", "-tzf", path]).stdout.split("\n")
    assert sorted(n for n in listed if n) == sorted(names)
    assert "bin/conda-unpack" in names


def zstd_frames(path) -> tuple[int, int]:
    """``(zstd frames, skippable frames)`` in ``path``, as ``zstd -lv`` counts them."""
    out = run(["zstd", "-lv", path]).stdout

    def count(what: str) -> int:  # the line is left out when there are none
        m = re.search(r"# %s Frames: (\d+)" % what, out)
        return int(m.group(1)) if m else 0

    return count("Zstandard"), count("Skippable")


def test_our_zstd_has_a_seek_table_and_standard_readers_ignore_it(archives, tmp_path):
    import zstandard
    from conda_pack import _core

    path = archives["tar.zst"]
    unpacker = _core.Unpacker(str(path))
    assert unpacker.format == "tar.zst" and unpacker.indexed
    # Several frames, then two skippable frames: ours and the seek table.
    frames, skippable = zstd_frames(path)
    assert frames > 2 and skippable == 2
    run(["zstd", "-t", path])
    raw = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    assert len(raw) % 512 == 0
    # Python's zstandard reads every frame, and tarfile the tar in it.
    with open(path, "rb") as f:
        assert zstandard.ZstdDecompressor().stream_reader(f).read() == raw
    copied = io.BytesIO()
    with open(path, "rb") as f:
        zstandard.ZstdDecompressor().copy_stream(f, copied)
    assert copied.getvalue() == raw
    with open(path, "rb") as f, zstandard.open(f) as z, tarfile.open(fileobj=z, mode="r|") as t:
        names = [m.name for m in t]
    listed = run(["tar", "--zstd", "-tf", path]).stdout.split("\n")
    assert sorted(n for n in listed if n) == sorted(names)
    assert "bin/conda-unpack" in names
    # conda-unpack's records are read from the last frames, before the rest.
    ahead = unpacker.read_ahead()
    assert ahead is not None and [p for p, _ in ahead] == [b"bin/conda-unpack"]
    # And Python 3.14's compression.zstd (backports.zstd before it), where there is one.
    try:
        from compression import zstd as stdlib_zstd
    except ImportError:
        stdlib_zstd = pytest.importorskip("backports.zstd")
    assert stdlib_zstd.decompress(path.read_bytes()) == raw


def seek_table_at(data: bytes) -> int:
    """Where the entries of the seek table at the end of ``data`` start."""
    return len(data) - 9 - 12 * int.from_bytes(data[-9:-5], "little")


def _flip_in_frame_2(data: bytearray) -> None:
    entries = seek_table_at(data)
    first = int.from_bytes(data[entries : entries + 4], "little")
    second = int.from_bytes(data[entries + 12 : entries + 16], "little")
    data[first + second // 2] ^= 0x10


def _grow_frame_1(data: bytearray) -> None:
    # The first frame 1 byte longer, the second 1 shorter: the sizes still add up.
    at = seek_table_at(data)
    for entry, delta in ((at, 1), (at + 12, -1)):
        size = int.from_bytes(data[entry : entry + 4], "little") + delta
        data[entry : entry + 4] = size.to_bytes(4, "little")


def _frame_count(data: bytearray) -> None:
    data[-9] ^= 0x01


def _tail_past_the_end(data: bytearray) -> None:
    ours = seek_table_at(data) - 8 - 24
    data[ours + 16 : ours + 24] = (1 << 40).to_bytes(8, "little")


DAMAGED_ZSTD = {
    # case: (damage, what the one-line error says)
    "a byte of a frame": (_flip_in_frame_2, "zstd frame 2"),
    "frame sizes that add up": (_grow_frame_1, "zstd frame 1"),
    "the frame count": (_frame_count, "seek table"),
    "a tail past the end": (_tail_past_the_end, "seek table"),
}


@pytest.mark.parametrize("case", list(DAMAGED_ZSTD))
def test_a_damaged_zstd_frame_or_seek_table_fails_clearly_and_leaves_nothing(
    archives, tmp_path, case
):
    damage, message = DAMAGED_ZSTD[case]
    data = bytearray(archives["tar.zst"].read_bytes())
    damage(data)
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    proc = run(
        [sys.executable, "-m", "conda_pack", "unpack", bad, tmp_path / "out", "-q"],
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("CondaPackError: %s: " % bad), proc.stderr
    assert message in proc.stderr and "damaged" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert os.listdir(tmp_path) == [bad.name]


def test_a_wrong_tail_in_our_frame_only_costs_the_read_ahead(archives, tmp_path):
    """A tail offset that points into the middle of a file finds no records ahead: the
    files are relocated after they are written, with the same result."""
    from conda_pack import _core

    good = archives["tar.zst"]
    data = bytearray(good.read_bytes())
    ours = seek_table_at(data) - 8 - 24
    tail = int.from_bytes(data[ours + 16 : ours + 24], "little")
    data[ours + 16 : ours + 24] = (tail - 700).to_bytes(8, "little")
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(bytes(data))
    assert _core.Unpacker(str(bad)).read_ahead() == []
    dest = tmp_path / ("x" + LONG_SUFFIX) / "env"
    unpack(good, dest, "-q")
    expected = settled(dest)
    shutil.rmtree(dest.parent)
    unpack(bad, dest, "-q")
    assert settled(dest) == expected


def test_a_zstd_cut_before_its_seek_table_fails_clearly(archives, tmp_path):
    """Without the table's footer the file is read as one stream, which ends inside the
    table's frame: the decoder says so."""
    data = archives["tar.zst"].read_bytes()
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(data[:-5])
    proc = unpack(bad, tmp_path / "out", "-q", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("CondaPackError: %s: " % bad), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert os.listdir(tmp_path) == [bad.name]


def test_a_single_frame_tar_zst_is_read_as_one_stream(archives, tmp_path):
    """A tar.zst other tools write (one frame, no seek table) unpacks the same."""
    from conda_pack import _core

    src = extract(archives["tar.zst"], tmp_path / "src", "tar.zst")
    foreign = tmp_path / "foreign.tar.zst"
    run(["tar", "--zstd", "-cf", foreign, "-C", src, *sorted(os.listdir(src))])
    assert zstd_frames(foreign) == (1, 0)
    unpacker = _core.Unpacker(str(foreign))
    assert unpacker.format == "tar.zst" and not unpacker.indexed
    assert unpacker.read_ahead() is None
    dest = tmp_path / ("x" + LONG_SUFFIX) / "env"
    unpack(archives["tar.zst"], dest, "-q")
    expected = settled(dest)
    shutil.rmtree(dest.parent)
    unpack(foreign, dest, "-q")
    assert settled(dest) == expected
    assert run([dest / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % dest


def test_plain_tar_without_records_is_just_extracted(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("hello")
    os.symlink("sub/f", src / "link")
    arc = tmp_path / "plain.tar"
    run(["tar", "-cf", arc, "-C", src, "."])
    unpack(arc, tmp_path / "out", "-q")
    assert tree(tmp_path / "out") == tree(src)
    assert not (tmp_path / "out" / STATE).exists()


def test_dest_must_be_new_or_empty(archives, tmp_path):
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep").write_text("x")
    proc = unpack(archives["tar"], dest, "-q", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("CondaPackError: ") and len(proc.stderr.splitlines()) == 1
    assert os.listdir(dest) == ["keep"]
    empty = tmp_path / "empty"
    empty.mkdir()
    unpack(archives["tar"], empty, "-q")
    assert (empty / "bin" / "conda-unpack").exists()


def test_squashfs_is_refused_clearly(tmp_path):
    img = tmp_path / "env.squashfs"
    img.write_bytes(b"hsqs" + bytes(4096))
    proc = unpack(img, tmp_path / "out", check=False)
    assert proc.returncode == 1 and "squashfs" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["tar.gz", "tar.zst", "zip"])
def test_truncated_archive_fails_and_leaves_nothing(archives, tmp_path, fmt):
    data = archives[fmt].read_bytes()
    bad = tmp_path / ("bad." + fmt)
    bad.write_bytes(data[: len(data) * 2 // 3])
    proc = unpack(bad, tmp_path / "out", "-q", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("CondaPackError: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert os.listdir(tmp_path) == [bad.name]


@pytest.mark.parametrize("fmt", ["tar.xz", "tar.zst"])
def test_interrupt_leaves_nothing(archives, tmp_path, fmt):
    import signal
    import time

    dest = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "conda_pack", "unpack", archives[fmt], dest, "-j", "1"],
        stderr=subprocess.PIPE,
        text=True,
        # The child must see SIGINT even if our own disposition ignores it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Wait until the staging directory has content, then interrupt.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
        if staged and any(staged[0].iterdir()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("finished before the interrupt came")
    assert proc.returncode == 1 and "Interrupted" in err
    assert os.listdir(tmp_path) == []


def test_archive_of_0_9_2_layout_is_relocated(full_env, tmp_path):
    """A conda-pack 0.9.2 archive: its conda-unpack holds ``_prefix_records``; the files
    those name are relocated, and no state file is written (0.9.2 keeps none)."""
    ours = tmp_path / "ours.tar"
    conda_pack("-p", full_env, "-o", ours, "-q")
    src = tmp_path / "src"
    extract(ours, src, "tar")
    import runpy

    data = runpy.run_path(str(src / "bin" / "conda-unpack"), run_name="records")["_DATA"]
    rows = [(p, data["placeholders"][i], mode) for p, i, mode, *_ in data["prefix"]]
    legacy = (
        "#!/usr/bin/env python\n_prefix_records = [\n"
        + ",\n".join(repr(r) for r in rows)
        + "\n]\n\nif __name__ == '__main__':\n    pass\n"
    )
    (src / "bin" / "conda-unpack").write_text(legacy)
    arc = tmp_path / "legacy.tar.gz"
    run(["tar", "-czf", arc, "-C", src, "."])
    dest = tmp_path / ("x" + LONG_SUFFIX) / "env"
    dest.parent.mkdir()
    unpack(arc, dest, "-q")
    assert not (dest / STATE).exists()
    assert run([dest / "bin" / "cprog"]).stdout.split()[0] == "exe=%s" % dest
    placeholder = data["placeholders"][0].encode()
    for p, *_ in rows:
        assert placeholder not in (dest / p).read_bytes(), p
    shutil.rmtree(src)


def test_conda_plugin_prog_names_the_subcommand(capsys):
    from conda_pack import cli

    with pytest.raises(SystemExit) as e:
        cli.main(["unpack", "--help"], prog="conda pack")
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: conda pack unpack ")


def test_too_long_or_unquotable_dest_is_refused_before_extracting(archives, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for dest, message in [
        (work / ("x" * 200) / ("y" * 100), "room for at most"),
        (work / "it's", "quoting"),
    ]:
        proc = unpack(archives["tar.gz"], dest, "-q", check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not dest.exists()
        assert not any(p.name.startswith(".") for p in dest.parent.iterdir())


def test_a_state_file_in_the_archive_is_replaced_not_followed(full_env, tmp_path):
    src = tmp_path / "src"
    tarball = tmp_path / "ours.tar"
    conda_pack("-p", full_env, "-o", tarball, "-q")
    extract(tarball, src, "tar")
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    os.symlink(outside, src / STATE)
    arc = tmp_path / "with-state.tar"
    run(["tar", "-cf", arc, "-C", src, "."])
    proc = unpack(arc, tmp_path / "dest", "-q", check=False)
    # A link leading out of DEST is refused outright; either way, nothing outside changes.
    assert outside.read_text() == "untouched"
    if proc.returncode == 0:
        assert not (tmp_path / "dest" / STATE).is_symlink()
