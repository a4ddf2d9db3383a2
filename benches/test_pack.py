"""Packing: our ``conda-pack`` against conda-pack 0.9.2 and plain ``tar | compressor``
pipelines, per format, interleaved round by round in one session.

tar.gz and zip use both tools' defaults (level 4), tar.zst level 3. Each tool writes to the same
path in the scratch directory, which is removed before every run.
"""

from __future__ import annotations

import os
import shlex
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from measure import CommandFailed, interleaved, measure, remove, shell, warm_page_cache

FORMATS = ["tar.gz", "tar.zst", "tar", "zip"]
CPUS = len(os.sched_getaffinity(0))
#: The plain pipeline each format is held against (zip has none).
BASELINES = {"tar.gz": f"pigz -p{CPUS} -4", "tar.zst": f"zstd -T{CPUS} -3", "tar": "cat"}


def pack_tools(
    fmt: str, prefix: Path, ours: Path, cp092: Path
) -> dict[str, Callable[[Path], list[str]]]:
    """Command line per competitor, as a function of the output path; ``ours`` first."""
    level = ["--compress-level", "3"] if fmt == "tar.zst" else []

    def conda_pack(exe: str, *extra: str) -> Callable[[Path], list[str]]:
        base = [exe, "-p", str(prefix), "--format", fmt, "-q", *level, *extra]
        return lambda out: [*base, "-o", str(out)]

    tools = {"ours": conda_pack(str(ours))}
    if fmt == "tar.gz":
        tools["ours -j 1"] = conda_pack(str(ours), "-j", "1")
    tools["0.9.2"] = conda_pack(str(cp092 / "conda-pack"))
    if fmt in ("tar.gz", "tar.zst"):  # 0.9.2 ignores -j for tar and zip
        tools["0.9.2 -j -1"] = conda_pack(str(cp092 / "conda-pack"), "-j", "-1")
    if fmt in BASELINES:
        src = shlex.quote(str(prefix))
        pipe = f"tar -C {src} -cf - . | {BASELINES[fmt]}"
        tools[f"tar | {BASELINES[fmt]}"] = lambda out: shell(f"{pipe} > {shlex.quote(str(out))}")
    return tools


@pytest.mark.parametrize("fmt", FORMATS)
def test_pack(benchmark, scale_env, fmt, ours, cp092, workdir, results, rounds, system_state):
    tools = pack_tools(fmt, scale_env.prefix, ours, cp092)
    out = workdir / f"pack.{fmt}"
    record = {
        name: {"command": shlex.join(argv(Path("OUT"))), "runs": [], "error": None}
        for name, argv in tools.items()
    }

    def runner(name: str) -> Callable[[], None]:
        def run() -> None:
            if record[name]["error"]:
                return
            remove(out)
            try:
                result = measure(tools[name](out))
            except CommandFailed as exc:
                record[name]["error"] = str(exc)
                return
            result.size = out.stat().st_size
            record[name]["runs"].append(result.as_dict())

        return run

    warm_page_cache(scale_env.prefix)
    before = system_state()
    others = [runner(name) for name in tools if name != "ours"]
    interleaved(benchmark, runner("ours"), others, rounds)
    remove(out)
    baseline = f"tar | {BASELINES[fmt]}" if fmt in BASELINES else None
    entry = {"tools": record, "baseline": baseline, "before": before, "after": system_state()}
    results.record("pack", scale_env, fmt, entry)

    benchmark.extra_info.update(
        {
            name: statistics.median(r["wall"] for r in rec["runs"])
            for name, rec in record.items()
            if rec["runs"]
        }
    )
    errors = {name: rec["error"] for name, rec in record.items() if rec["error"]}
    assert not errors, errors
