"""The receiving end: ``conda-pack unpack ARCHIVE DEST`` (extract and relocate in one pass)
vs ``tar -xf`` + ``bin/conda-unpack``, for our tar.gz, our tar.zst and a tar.gz of
conda-pack 0.9.2; and the installer ``sh env.sh -p DEST`` vs ``tar -xzf`` + conda-unpack on
a tar.gz of the same settings (the installer's payload).

Before every measured command, ``sync`` (untimed) writes out what came before it, so that
no tool pays for another's writeback. Destinations of equal length, so that both sides
rewrite prefixes of the same length. Only ours is timed by pytest-benchmark; both sides
are recorded (wall, CPU, peak RSS) in the results.
"""

from __future__ import annotations

import os
import statistics
import subprocess

import pytest
from measure import CommandFailed, interleaved, measure, remove

CASES = {
    # case: (packer, archive suffix, tar flags)
    "tar.gz": ("ours", "tar.gz", ["-xzf"]),
    "tar.zst": ("ours", "tar.zst", ["--zstd", "-xf"]),
    "0.9.2 tar.gz": ("0.9.2", "tar.gz", ["-xzf"]),
    "installer": ("ours", "sh", ["-xzf"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_receive(benchmark, case, scale_env, ours, cp092, workdir, results, rounds, system_state):
    packer, suffix, tar_flags = CASES[case]
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
        "ours": [],
        "extract": [],
        "conda-unpack": [],
    }
    errors: list[str] = []
    dest_ours = workdir / "recv-a" / "env"
    dest_theirs = workdir / "recv-b" / "env"

    def sync() -> None:
        subprocess.run(["sync"], check=True)

    def baseline() -> None:
        remove(dest_theirs.parent)
        dest_theirs.mkdir(parents=True)
        sync()
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
