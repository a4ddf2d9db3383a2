"""Unpacking: each tool's default tar.gz, extracted with ``tar -xzf`` into a fresh directory,
then that archive's own ``bin/conda-unpack`` run there (ours vs 0.9.2's), timed separately.
Before each conda-unpack, ``sync`` (untimed) writes out what came before it (the extracted
gigabytes, or the other tool's rewritten files): otherwise whichever conda-unpack runs next
pays for that writeback, and the times measure the disk, not the tool.

Each round starts by removing both trees, then lets the disk settle (``measure.settle``):
conda-unpack creates a few files (its lock, state and journals), and on the disk these ran
on each new file is slow while many recently freed inodes are around; 0.9.2's creates none.
The two conda-unpacks then run in alternating order from round to round: the first run
after extracting gigabytes tends to be the slower one.

``conda-unpack`` runs the way the docs say, with the unpacked env's ``bin`` first on ``PATH``
(as after ``source bin/activate``): both scripts then run on the env's own Python.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
from pathlib import Path

from measure import CommandFailed, measure, remove, settle

#: Unpack directories of equal length, so both rewrite prefixes of the same length.
DESTS = {"ours": "unpack-a", "0.9.2": "unpack-b"}


def test_unpack(benchmark, scale_env, ours, cp092, workdir, results, rounds, system_state):
    exes = {"ours": str(ours), "0.9.2": str(cp092 / "conda-pack")}
    archives = {name: workdir / f"{DESTS[name]}.tar.gz" for name in exes}
    for name, exe in exes.items():
        remove(archives[name])
        subprocess.run(
            [exe, "-p", str(scale_env.prefix), "-o", str(archives[name]), "-q"], check=True
        )
    record = {
        name: {"archive_size": archives[name].stat().st_size, "extract": [], "unpack": []}
        for name in exes
    }
    errors: dict[str, str] = {}

    def dest(name: str) -> Path:
        return workdir / DESTS[name] / "env"

    def extract(name: str) -> None:
        dest(name).mkdir(parents=True)
        run = measure(["tar", "-xzf", str(archives[name]), "-C", str(dest(name))])
        record[name]["extract"].append(run.as_dict())
        subprocess.run(["sync"], check=True)

    def unpack(name: str) -> None:
        env = dict(os.environ, PATH=f"{dest(name) / 'bin'}{os.pathsep}{os.environ['PATH']}")
        # Whatever ran just before (the other tool's conda-unpack, in half of the rounds)
        # may have left dirty pages; written back during this run, they would be timed.
        subprocess.run(["sync"], check=True)
        try:
            run = measure([str(dest(name) / "bin" / "conda-unpack")], env=env)
        except CommandFailed as exc:
            errors[name] = str(exc)
            return
        record[name]["unpack"].append(run.as_dict())

    later = []  # 0.9.2's conda-unpack, when it runs after ours in a round
    counter = itertools.count()

    def setup() -> None:
        # Untimed by pytest-benchmark: the extractions and 0.9.2's conda-unpack.
        while later:
            later.pop()()
        for name in exes:
            remove(dest(name).parent)
        settle()
        even = next(counter) % 2 == 0
        for name in ("ours", "0.9.2") if even else ("0.9.2", "ours"):
            extract(name)
        if even:
            unpack("0.9.2")
        else:
            later.append(lambda: unpack("0.9.2"))

    before = system_state()
    benchmark.pedantic(
        lambda: unpack("ours"), setup=setup, rounds=rounds, iterations=1, warmup_rounds=0
    )
    while later:
        later.pop()()
    for name in exes:
        remove(dest(name).parent)
        remove(archives[name])
    entry = {"tools": record, "before": before, "after": system_state()}
    results.record("unpack", scale_env, None, entry)

    benchmark.extra_info.update(
        {
            f"{n} conda-unpack": statistics.median(r["wall"] for r in rec["unpack"])
            for n, rec in record.items()
            if rec["unpack"]
        }
    )
    assert not errors, errors
