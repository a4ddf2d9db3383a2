"""The relocation hook's cost: Python's start-up where nothing moved, with the hook and
without it, and the first start after moving the environment against ``conda-unpack``.

- Where nothing moved, the hook reads one small file. Both copies come from archives of the
  same environment (the default one, and one packed with ``--no-auto-relocate``), extracted
  and relocated by ``conda-unpack``; ``python -c pass`` runs in each in turn, many times.
- After moving, the first ``python -c pass`` relocates the whole environment. The default
  archive is extracted twice, into directories of equal length; one copy is relocated by its
  first Python start, the other by its ``bin/conda-unpack`` (run as in ``test_unpack.py``),
  in alternating order, with ``sync`` before each (untimed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from measure import interleaved, measure, remove

#: ``python -c pass`` runs per copy where nothing moved (alternating between the copies).
STARTS = int(os.environ.get("BENCH_STARTS", "300"))


def _extract(archive: Path, dest: Path) -> Path:
    remove(dest)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    return dest


def _pack(ours: Path, prefix: Path, out: Path, *args: str) -> Path:
    remove(out)
    subprocess.run([str(ours), "-p", str(prefix), "-o", str(out), "-q", *args], check=True)
    return out


#: As users start Python: bytecode caches written (some shells here set this variable).
START_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _start(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True, env=START_ENV)
    return time.perf_counter() - start


def test_startup(benchmark, scale_env, ours, workdir, results, rounds, system_state):
    hooked = _pack(ours, scale_env.prefix, workdir / "hook-a.tar.gz")
    plain = _pack(ours, scale_env.prefix, workdir / "hook-b.tar.gz", "--no-auto-relocate")
    before = system_state()
    copies = {"hook": _extract(hooked, workdir / "hook-a" / "env")}
    copies["no hook"] = _extract(plain, workdir / "hook-b" / "env")
    for root in copies.values():
        subprocess.run([str(root / "bin" / "conda-unpack")], check=True)
    starts: dict[str, list[float]] = {name: [] for name in copies}
    for root in copies.values():  # warm the page cache and the bytecode caches
        for _ in range(5):
            _start(root / "bin" / "python")
    for i in range(STARTS):
        order = list(copies) if i % 2 == 0 else list(copies)[::-1]
        for name in order:
            starts[name].append(_start(copies[name] / "bin" / "python"))
    for root in copies.values():
        remove(root.parent)

    # First start after moving, against conda-unpack: both copies of the default archive.
    record = {"python -c pass (hook)": [], "conda-unpack": []}
    dests = {
        "python -c pass (hook)": workdir / "move-a" / "env",
        "conda-unpack": workdir / "move-b" / "env",
    }

    def relocate(name: str) -> None:
        root = _extract(hooked, dests[name])
        subprocess.run(["sync"], check=True)
        cmd = (
            [str(root / "bin" / "python"), "-c", "pass"]
            if "hook" in name
            else [str(root / "bin" / "conda-unpack")]
        )
        record[name].append(measure(cmd, env=START_ENV).as_dict())
        state = (root / "conda-meta" / ".conda-unpack-prefix").read_text()
        assert state == f"{root}\n", state

    interleaved(
        benchmark,
        lambda: relocate("python -c pass (hook)"),
        [lambda: relocate("conda-unpack")],
        rounds,
    )
    for dest in dests.values():
        remove(dest.parent)
    entry = {
        "starts": starts,
        "first_start": record,
        "before": before,
        "after": system_state(),
    }
    results.record("startup", scale_env, None, entry)
    benchmark.extra_info.update(
        {
            f"start-up median ms ({name})": 1000 * statistics.median(runs)
            for name, runs in starts.items()
        }
    )
