"""``conda-pack unpack`` on hand-made hostile archives: each rule refuses the archive with
one line, writes nothing outside DEST, and leaves no DEST."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import conda_pack


def member(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tar(path: Path, members, compression="") -> Path:
    # GNU format: long names and odd types are stored as they are given.
    with tarfile.open(path, "w:" + compression, format=tarfile.GNU_FORMAT) as t:
        for info, data in members:
            t.addfile(info, data)
    return path


F = tarfile.REGTYPE
SYM = tarfile.SYMTYPE
HARD = tarfile.LNKTYPE

#: name -> members; OUTSIDE is replaced by a directory beside DEST that must stay empty.
HOSTILE = {
    "absolute name": [member("OUTSIDE/evil", data=b"x")],
    "dot-dot name": [member("ok/../../outside/evil", data=b"x")],
    "leading dot-dot": [member("../outside/evil", data=b"x")],
    "symlink to an absolute path": [member("link", SYM, link="OUTSIDE")],
    "symlink climbing out": [member("a/link", SYM, link="../../outside")],
    "file through a symlink leading out": [
        member("link", SYM, link="OUTSIDE"),
        member("link/evil", data=b"x"),
    ],
    "file through a symlink chain leading out": [
        member("d", tarfile.DIRTYPE, mode=0o755),
        member("d/up", SYM, link=".."),
        member("d/up2", SYM, link="up/.."),
        member("d/up2/outside/evil", data=b"x"),
    ],
    "hard link to an absolute path": [member("hard", HARD, link="OUTSIDE/target")],
    "hard link climbing out": [member("hard", HARD, link="../outside/target")],
    "hard link through a symlink leading out": [
        member("link", SYM, link="OUTSIDE"),
        member("hard", HARD, link="link/target"),
    ],
    "character device": [member("dev", tarfile.CHRTYPE)],
    "block device": [member("blk", tarfile.BLKTYPE)],
    "fifo": [member("fifo", tarfile.FIFOTYPE)],
    "file replacing a symlink": [
        member("link", SYM, link="inside"),
        member("link", data=b"x"),
    ],
    "file written through a replaced link": [
        member("x", SYM, link="OUTSIDE/evil"),
        member("x", data=b"payload"),
    ],
}


def _materialize(members, outside: Path):
    out = []
    for info, data in members:
        info = tarfile.TarInfo.frombuf(info.tobuf(tarfile.GNU_FORMAT), "utf-8", "strict")
        info.name = info.name.replace("OUTSIDE", str(outside).lstrip("/"))
        if info.name.startswith(str(outside).lstrip("/")):
            info.name = "/" + info.name
        info.linkname = info.linkname.replace("OUTSIDE", str(outside))
        if data is not None:
            data.seek(0)
        out.append((info, data))
    return out


@pytest.mark.parametrize("compression", ["", "gz"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_is_refused(tmp_path, case, compression):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_text("secret")
    work = tmp_path / "work"
    work.mkdir()
    arc = make_tar(
        tmp_path / ("hostile.tar" + (".gz" if compression else "")),
        _materialize(HOSTILE[case], outside),
        compression,
    )
    dest = work / "dest"
    proc = conda_pack("unpack", arc, dest, "-q", check=False)
    assert proc.returncode == 1, (case, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("CondaPackError: "), proc.stderr
    # Nothing outside DEST changed, and no DEST (nor staging directory) is left.
    assert sorted(os.listdir(outside)) == ["target"]
    assert (outside / "target").read_text() == "secret"
    assert os.listdir(work) == []


@pytest.mark.parametrize("name", ["/abs/evil", "../evil", "a/../../evil"])
def test_hostile_zip_names_are_refused(tmp_path, name):
    arc = tmp_path / "hostile.zip"
    with zipfile.ZipFile(arc, "w") as z:
        z.writestr("ok", b"fine")
        z.writestr(name, b"x")
    work = tmp_path / "work"
    work.mkdir()
    proc = conda_pack("unpack", arc, work / "dest", "-q", check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("CondaPackError: "), proc.stderr
    assert os.listdir(work) == []
    assert not (tmp_path / "evil").exists()


def test_links_that_stay_inside_are_kept(tmp_path):
    """The rules are not blanket refusals: links within DEST are what environments hold."""
    arc = make_tar(
        tmp_path / "fine.tar",
        [
            member("lib", tarfile.DIRTYPE, mode=0o755),
            member("lib/libx.so.1", data=b"lib"),
            member("lib/libx.so", SYM, link="libx.so.1"),
            member("bin", tarfile.DIRTYPE, mode=0o755),
            member("bin/up", SYM, link="../lib/libx.so"),
            member("bin/hard", HARD, link="lib/libx.so.1"),
            member("dangling", SYM, link="nowhere/inside"),
        ],
    )
    dest = tmp_path / "dest"
    conda_pack("unpack", arc, dest, "-q")
    assert (dest / "bin" / "up").read_bytes() == b"lib"
    assert os.readlink(dest / "lib" / "libx.so") == "libx.so.1"
    assert (dest / "bin" / "hard").stat().st_ino == (dest / "lib" / "libx.so.1").stat().st_ino
    assert os.readlink(dest / "dangling") == "nowhere/inside"
