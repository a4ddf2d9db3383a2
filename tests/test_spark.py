"""A default archive on a real Spark cluster, where nobody runs ``bin/conda-unpack``.

Spark extracts the archive into each executor's own directory (a path nobody can know when
packing) and starts the environment's Python there. Pure-Python imports work anyway, but the
environment's compiled programs, text files, OpenSSL's compiled-in paths and ``sysconfig`` keep
the packing machine's prefix unless the archive relocates itself on first use. A standalone
master and a two-core worker run on 127.0.0.1 (``tests/sparkcluster.py``); the driver
(``tests/spark_job.py``) runs probe tasks (``tests/spark_probe.py``) from PySpark's own Python
workers and from interpreters that Spark's JVM starts two at a time in a fresh copy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import conda_pack
from tests.sparkcluster import SparkCluster, find_java

HERE = Path(__file__).parent
# A normal run takes 30-60 s on two busy cores; a hook that deadlocks must not hang the suite.
DRIVER_TIMEOUT = 180
# What spark_job.py runs: how many tasks of each kind (label prefix) must report.
EXPECTED_TASKS = {"worker": 16, "pipe": 8}


@pytest.fixture(scope="module")
def java() -> str:
    if importlib.util.find_spec("pyspark") is None:
        pytest.fail("pyspark is not installed: `make test` installs it (pip install -e '.[spark]')")
    found, why_not = find_java()
    if found is None:
        pytest.skip("Spark needs Java: %s" % why_not)
    return found


def inside(path, root: str) -> bool:
    return isinstance(path, str) and (path == root or path.startswith(root + "/"))


def findings(task: dict, conf_template: str) -> list[str]:
    """What is wrong with what one task saw; empty when its copy is fully relocated."""
    env = task["env"]
    out = []
    if task["sys_prefix"] != env:
        out.append("sys.prefix is %s: not the executor's copy" % task["sys_prefix"])
    cprog = task["cprog"]
    if cprog["rc"] == 127:
        out.append(
            "bin/cprog: exit 127, its libraries were not found: %s" % cprog["stderr"].strip()
        )
    elif cprog["rc"] != 0 or cprog["stdout"] != "exe=%s\nlib=%s\n" % (env, env):
        out.append(
            "bin/cprog: exit %s, printed %r %s"
            % (cprog["rc"], cprog["stdout"], cprog["stderr"].strip())
        )
    if task["cprog_conf"] != conf_template.replace("@ENV@", env):
        out.append("etc/cprog.conf: %r" % task["cprog_conf"])
    ssl_out = {k: v for k, v in task["ssl"].items() if not inside(v, env)}
    if ssl_out:
        whose = "outside the copy"
        if all(v.startswith("/usr/") for v in ssl_out.values()):
            whose = "the system's: this Python's ssl module links the system libssl"
        out.append("ssl.get_default_verify_paths(): %s (%s)" % (ssl_out, whose))
    for kind in ("sysconfig_paths", "sysconfig_vars"):
        wrong = {k: v for k, v in task[kind].items() if not inside(v, env)}
        if wrong:
            call = "get_paths()" if kind == "sysconfig_paths" else "get_config_var()"
            out.append("sysconfig.%s: %s" % (call, wrong))
    return out


def report(tasks: list[dict], failed: dict[str, list[str]], packed: Path) -> str:
    """The failures grouped by what was seen (each task's copy written as <copy>)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for task in tasks:
        if task["label"] in failed:
            seen = tuple(f.replace(task["env"], "<copy>") for f in failed[task["label"]])
            groups.setdefault(seen, []).append("%s (pid %d)" % (task["label"], task["pid"]))
    copies = sorted({t["env"] for t in tasks})
    lines = [
        "%d of %d tasks saw an environment that was not relocated to their executor's copy "
        "(packed from %s; copies: %s):" % (len(failed), len(tasks), packed, ", ".join(copies))
    ]
    for seen, labels in groups.items():
        lines.append("* %d task(s): %s" % (len(labels), ", ".join(labels)))
        lines += ["    " + f for f in seen]
    return "\n".join(lines)


def overlapping_starts(tasks: list[dict]) -> bool:
    """Whether the two interpreters that started first were starting up at the same time
    (each started before the other had reached the probe, its start-up hooks done)."""
    a, b = sorted(tasks, key=lambda t: t["process_started"])[:2]
    return b["process_started"] < a["probe_began"] and a["process_started"] < b["probe_began"]


def test_default_archive_relocates_itself_on_spark_executors(full_env, java, tmp_path):
    archive = tmp_path / "env.tar.gz"
    conda_pack("-p", full_env, "-o", archive)
    # Spark keeps one copy per archive name: a second name gives the executor a second copy.
    second = tmp_path / "env2.tar.gz"
    os.link(archive, second)
    out = tmp_path / "tasks.json"
    with SparkCluster(java, tmp_path / "spark") as cluster:
        job = [sys.executable, str(HERE / "spark_job.py"), cluster.url, archive, second, out]
        cluster.run_driver(
            [str(a) for a in job], {"PYSPARK_PYTHON": "./environment/bin/python"}, DRIVER_TIMEOUT
        )
        logs = cluster.logs()
    run = json.loads(out.read_text())

    # The harness first: every task ran, each kind in its own fresh copy, the pipe's first two
    # interpreters side by side.
    assert run["error"] is None, "the Spark application failed:\n%s%s" % (run["error"], logs)
    tasks = run["tasks"]
    stray = [t["line"] for t in tasks if "line" in t]
    assert not stray, "the environment's Python wrote to stdout under JavaRDD.pipe: %r" % stray
    kinds = {k: [t for t in tasks if t["label"].startswith(k + "/")] for k in EXPECTED_TASKS}
    assert {k: len(v) for k, v in kinds.items()} == EXPECTED_TASKS, [t["label"] for t in tasks]
    copies = {k: {t["env"] for t in v} for k, v in kinds.items()}
    assert all(len(c) == 1 for c in copies.values()), "one executor, one copy each: %s" % copies
    daemon = [t["label"] for t in kinds["worker"] if "pyspark.daemon" not in t["argv"]]
    assert not daemon, "tasks not forked by PySpark's daemon: %s" % daemon
    assert len(set.union(*copies.values())) == len(copies), copies
    assert not any(inside(c, str(full_env)) for c in set.union(*copies.values())), copies
    assert overlapping_starts(kinds["pipe"]), (
        "the harness did not start two interpreters at once in the fresh copy: %s"
        % [(t["label"], t["process_started"], t["probe_began"]) for t in kinds["pipe"]]
    )

    # Then what every task saw.
    conf_template = (full_env / "etc" / "cprog.conf").read_text().replace(str(full_env), "@ENV@")
    assert "@ENV@" in conf_template
    failed = {t["label"]: findings(t, conf_template) for t in tasks}
    failed = {label: wrong for label, wrong in failed.items() if wrong}
    if failed:
        pytest.fail(report(tasks, failed, full_env), pytrace=False)
