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

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import conda_pack
from tests.sparkcluster import SparkCluster, find_java

HERE = Path(__file__).parent
DRIVER_TIMEOUT = 240
# The driver's two applications (see spark_job.py) and how many tasks each must report.
EXPECTED_TASKS = {"workers": 16, "pipe": 8}


@pytest.fixture(scope="module")
def java() -> str:
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
        out.append("bin/cprog: exit 127, its libraries were not found: %s" % cprog["stderr"].strip())
    elif cprog["rc"] != 0 or cprog["stdout"] != "exe=%s\nlib=%s\n" % (env, env):
        out.append(
            "bin/cprog: exit %s, printed %r %s"
            % (cprog["rc"], cprog["stdout"], cprog["stderr"].strip())
        )
    if task["cprog_conf"] != conf_template.replace("@ENV@", env):
        out.append("etc/cprog.conf: %r" % task["cprog_conf"])
    ssl_out = {k: v for k, v in task["ssl"].items() if not inside(v, env)}
    if ssl_out:
        out.append(
            "ssl.get_default_verify_paths(): %s (%s OpenSSL's compiled-in paths, not the copy's)"
            % (ssl_out, "the system" if all(v.startswith("/usr/") for v in ssl_out.values()) else
               "outside")
        )
    for kind in ("sysconfig_paths", "sysconfig_vars"):
        wrong = {k: v for k, v in task[kind].items() if not inside(v, env)}
        if wrong:
            call = "get_paths()" if kind == "sysconfig_paths" else "get_config_var()"
            out.append("sysconfig.%s: %s" % (call, wrong))
    return out


def report(apps: list[dict], failed: dict[str, list[str]], packed: Path) -> str:
    """The failures grouped by what was seen (each task's copy written as <copy>)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    copies = {}
    for app in apps:
        for task in app["tasks"]:
            if task["label"] in failed:
                copies[app["name"]] = task["env"]
                seen = tuple(f.replace(task["env"], "<copy>") for f in failed[task["label"]])
                groups.setdefault(seen, []).append("%s (pid %d)" % (task["label"], task["pid"]))
    total = sum(len(a["tasks"]) for a in apps)
    lines = [
        "%d of %d tasks saw an environment that was not relocated to their executor's copy "
        "(packed from %s; copies: %s):" % (len(failed), total, packed, copies)
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
    out = tmp_path / "tasks.json"
    with SparkCluster(java, tmp_path / "spark") as cluster:
        cluster.run_driver(
            [sys.executable, str(HERE / "spark_job.py"), cluster.url, str(archive), str(out)],
            {"PYSPARK_PYTHON": "./environment/bin/python"},
            DRIVER_TIMEOUT,
        )
        logs = cluster.logs()
    apps = json.loads(out.read_text())

    # The harness first: every application ran all its tasks, each in a fresh copy.
    for app in apps:
        assert app["error"] is None, "application %s failed:\n%s%s" % (
            app["name"],
            app["error"],
            logs,
        )
        stray = [t["line"] for t in app["tasks"] if "line" in t]
        assert not stray, "the environment's Python wrote to stdout in %s: %r" % (app["name"], stray)
        assert len(app["tasks"]) == EXPECTED_TASKS[app["name"]], app
        assert len({t["env"] for t in app["tasks"]}) == 1, "one executor, one copy: %s" % app
    copies = [app["tasks"][0]["env"] for app in apps]
    assert len(set(copies)) == len(apps), "each application must get its own copy: %s" % copies
    assert not any(inside(c, str(full_env)) for c in copies)
    pipe = next(app["tasks"] for app in apps if app["name"] == "pipe")
    assert overlapping_starts(pipe), (
        "the harness did not start two interpreters at once in the fresh copy: %s"
        % [(t["label"], t["process_started"], t["probe_began"]) for t in pipe]
    )

    # Then what every task saw.
    conf_template = (full_env / "etc" / "cprog.conf").read_text().replace(str(full_env), "@ENV@")
    assert "@ENV@" in conf_template
    failed = {}
    for app in apps:
        for task in app["tasks"]:
            wrong = findings(task, conf_template)
            if wrong:
                failed[task["label"]] = wrong
    assert not failed, report(apps, failed, full_env)
