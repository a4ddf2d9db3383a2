"""Scan + plan: reading the environment (``CondaEnv.from_prefix``) and building the archive plan
(``conda_pack.plan.plan_entries``) in a fresh process, page cache warm. 0.9.2 has no separate
plan step: its ``from_prefix`` (which reads the package metadata and checks the files) is shown
alongside for scale. Each script reports its own phase times (after ``import conda_pack``)."""

from __future__ import annotations

import json
import statistics
import sys

from measure import CommandFailed, interleaved, measure, warm_page_cache

OURS = """
import json, sys, time
t0 = time.perf_counter()
import conda_pack
from conda_pack.plan import plan_entries
t1 = time.perf_counter()
env = conda_pack.CondaEnv.from_prefix(sys.argv[1])
t2 = time.perf_counter()
plan = plan_entries(env, None, set())
files = sum(len(chunk) for _, chunk in plan.chunks())
t3 = time.perf_counter()
phases = {"import": t1 - t0, "scan": t2 - t1, "plan": t3 - t2}
print(json.dumps({**phases, "files": files, "module": conda_pack.__file__}))
"""
THEIRS = """
import json, sys, time
t0 = time.perf_counter()
import conda_pack
t1 = time.perf_counter()
env = conda_pack.CondaEnv.from_prefix(sys.argv[1])
t2 = time.perf_counter()
phases = {"import": t1 - t0, "scan": t2 - t1, "plan": 0.0}
print(json.dumps({**phases, "files": len(env.files), "module": conda_pack.__file__}))
"""


def test_scan_plan(benchmark, scale_env, snapshot_env, cp092, results, rounds, system_state):
    scripts = {
        "ours": (sys.executable, OURS, snapshot_env),
        "0.9.2": (str(cp092 / "python"), THEIRS, None),
    }
    record = {name: {"runs": []} for name in scripts}
    errors: dict[str, str] = {}

    def runner(name: str):
        def run() -> None:
            python, script, env = scripts[name]
            try:
                result = measure([python, "-c", script, str(scale_env.prefix)], env=env)
            except CommandFailed as exc:
                errors[name] = str(exc)
                return
            phases = json.loads(result.stdout)
            if env and not phases["module"].startswith(env["PYTHONPATH"]):
                errors[name] = f"imported {phases['module']}, not the snapshot"
            result.stdout = ""
            record[name]["runs"].append({**result.as_dict(), **phases})

        return run

    warm_page_cache(scale_env.prefix)
    before = system_state()
    interleaved(benchmark, runner("ours"), [runner("0.9.2")], 2 * rounds)
    entry = {"tools": record, "before": before, "after": system_state()}
    results.record("scan", scale_env, None, entry)

    benchmark.extra_info.update(
        {
            f"{name} scan+plan": statistics.median(r["scan"] + r["plan"] for r in rec["runs"])
            for name, rec in record.items()
            if rec["runs"]
        }
    )
    assert not errors, errors
