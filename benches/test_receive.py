"""The receiving end: ``conda-pack unpack ARCHIVE DEST`` (extract and relocate in one pass)
vs ``tar -xf`` + ``bin/conda-unpack``, for our tar.gz, our tar.zst and a tar.gz of
conda-pack 0.9.2; and the installer ``sh env.sh -p DEST`` vs ``tar -xzf`` + conda-unpack on
a tar.gz of the same settings (the installer's payload).

Before every measured command, ``sync`` (untimed) writes out what came before it, so that
no tool pays for another's writeback; each round starts by removing both sides' trees and,
on disk, waits six minutes (``measure.settle``) so that neither pays for the removal either.
Destinations of equal length, so that both sides rewrite prefixes of the same length.
Only ours is timed by pytest-benchmark; both sides are recorded (wall, CPU, peak RSS) in
the results.

Our tar.gz and tar.zst cases run again with both sides extracting into a tmpfs
(``BENCH_RECEIVE_TMPFS``, see conftest.py): there the disk is out of the way, and what is
left is CPU. The gap between a case and its tmpfs twin is what the disk costs each side.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess

import pytest
from measure import CommandFailed, interleaved, measure, remove, settle

CASES = {
    # case: (packer, archive suffix, tar flags)
    "tar.gz": ("ours", "tar.gz", ["-xzf"]),
    "tar.zst": ("ours", "tar.zst", ["--zstd", "-xf"]),
    "0.9.2 tar.gz": ("0.9.2", "tar.gz", ["-xzf"]),
    "installer": ("ours", "sh", ["-xzf"]),
}
#: Cases also extracted into a tmpfs, named "CASE (tmpfs)".
TMPFS_CASES = ["tar.gz", "tar.zst"]
TMPFS = " (tmpfs)"


@pytest.mark.parametrize("case", list(CASES) + [c + TMPFS for c in TMPFS_CASES])
def test_receive(
    benchmark,
    case,
    scale_env,
    ours,
    cp092,
    workdir,
    receive_tmpfs,
    results,
    rounds,
    system_state,
):
    into = workdir
    if case.endswith(TMPFS):
        if receive_tmpfs is None:
            pytest.skip("no tmpfs to extract into (BENCH_RECEIVE_TMPFS)")
        # Both sides' trees are there at once, and the system needs memory besides.
        room = shutil.disk_usage(receive_tmpfs).free
        if room < 2.5 * scale_env.bytes:
            pytest.skip(f"{receive_tmpfs} has {room / 1e9:.1f} GB free, too little")
        into = receive_tmpfs
    packer, suffix, tar_flags = CASES[case.removesuffix(TMPFS)]
    exe = str(ours) if packer == "ours" else str(cp092 / "conda-pack")
    archive = workdir / f"receive.{suffix}"
    remove(archive)
    subprocess.run([exe, "-p", str(scale_env.prefix), "-o", str(archive), "-q"], check=True)
    # The installer's payload, for tar: our tar.gz of the same environment and settings.
    tarball = archive
    if suffix == "sh":
        tarball = workdir / "receive-payload.tar.gz"
        remove(tarball)
        subprocess.run([exe, "-p", str(scale_env.prefix), "-o", str(tarball), "-q"], check=True)
    record = {
        "archive_size": archive.stat().st_size,
        "into": "tmpfs" if into != workdir else "disk",
        "ours": [],
        "extract": [],
        "conda-unpack": [],
    }
    errors: list[str] = []
    dest_ours = into / "recv-a" / "env"
    dest_theirs = into / "recv-b" / "env"

    def sync() -> None:
        subprocess.run(["sync"], check=True)

    def baseline() -> None:
        # Each round starts here (see `interleaved`): both trees go, then the disk settles.
        remove(dest_theirs.parent)
        remove(dest_ours.parent)
        if into == workdir:
            settle()  # syncs first
        else:
            sync()
        dest_theirs.mkdir(parents=True)
        run = measure(["tar", *tar_flags, str(tarball), "-C", str(dest_theirs)])
        record["extract"].append(run.as_dict())
        sync()
        env = dict(os.environ, PATH=f"{dest_theirs / 'bin'}{os.pathsep}{os.environ['PATH']}")
        try:
            run = measure([str(dest_theirs / "bin" / "conda-unpack")], env=env)
        except CommandFailed as exc:
            errors.append(str(exc))
            return
        record["conda-unpack"].append(run.as_dict())

    def ours_run() -> None:
        remove(dest_ours.parent)
        dest_ours.parent.mkdir(parents=True)
        sync()
        if suffix == "sh":
            argv = ["sh", str(archive), "-p", str(dest_ours)]
        else:
            argv = [str(ours), "unpack", str(archive), str(dest_ours), "-q"]
        try:
            run = measure(argv)
        except CommandFailed as exc:
            errors.append(str(exc))
            return
        record["ours"].append(run.as_dict())

    before = system_state()
    interleaved(benchmark, ours_run, [baseline], rounds)
    for path in (dest_ours.parent, dest_theirs.parent, archive, tarball):
        remove(path)
    entry = {"case": case, "tools": record, "before": before, "after": system_state()}
    results.record("receive", scale_env, case, entry)

    def median(key: str, field: str = "wall") -> float:
        return statistics.median(r[field] for r in record[key]) if record[key] else 0.0

    theirs = median("extract") + median("conda-unpack")
    benchmark.extra_info.update(
        {
            "ours wall": median("ours"),
            "ours cpu": median("ours", "cpu"),
            "ours peak rss MB": max((r["rss_mb"] for r in record["ours"]), default=0),
            "tar + conda-unpack wall": theirs,
            "speedup": theirs / median("ours") if median("ours") else 0,
        }
    )
    assert not errors, errors
