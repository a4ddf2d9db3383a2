"""Spark driver for tests/test_spark.py: probe a packed environment from tasks on a cluster.

Usage: python spark_job.py MASTER_URL ARCHIVE OUT_JSON  (PYSPARK_PYTHON set by the caller)

It runs as a process of its own so that the gateway JVM pyspark starts dies with it. Two
applications run one after the other, each with its own fresh copy of the archive (one
executor, two cores):

* ``workers``: what users run. PySpark's Python workers (``PYSPARK_PYTHON``, default daemon:
  one interpreter per executor, tasks are forks of it) run the probe in two jobs, so the
  first use of the copy is the daemon's start-up.
* ``pipe``: Spark starts Python workers one at a time per executor (it waits for each to
  connect back), so interpreters starting side by side in one copy come from programs the
  JVM runs itself: ``JavaRDD.pipe`` starts ``./environment/bin/python`` from two task threads
  at once, the first use of that copy.

Every task reports what it saw (``spark_probe.probe``); the test judges. An application that
fails is recorded with its error and the next one still runs.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

PARTITIONS = 8
WORKER_JOBS = 2
#: Keeps each task's process alive a little, so the two tasks of a wave are seen side by side.
HOLD_SECONDS = 0.3
PROBE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spark_probe.py")


def _session(master, archive, name):
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master(master)
        .appName("conda-pack-%s" % name)
        .config("spark.archives", "%s#environment" % archive)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.cores", "2")
        .config("spark.cores.max", "2")
        .config("spark.executor.memory", "512m")
        # Every task must run, once, on the one executor: no waiting for locality, no retry
        # that could hide a task that failed.
        .config("spark.locality.wait", "0")
        .config("spark.task.maxFailures", "1")
        .getOrCreate()
    )


def _in_python_workers(sc, source):
    def task(job):
        def run(index, _rows):
            namespace = {"__name__": "spark_probe"}
            exec(compile(source, "spark_probe.py", "exec"), namespace)
            yield namespace["probe"]("worker/job%d/%d" % (job, index), HOLD_SECONDS)

        return run

    seen = []
    for job in range(WORKER_JOBS):
        rdd = sc.parallelize(range(PARTITIONS), PARTITIONS)
        seen += rdd.mapPartitionsWithIndex(task(job)).collect()
    return seen


def _in_piped_programs(sc, source):
    labels = ["pipe/%d" % i for i in range(PARTITIONS)]
    jrdd = sc._jsc.parallelize(labels, PARTITIONS)
    command = ["./environment/bin/python", "-c", source, str(HOLD_SECONDS)]
    seen = []
    for line in jrdd.pipe(command).collect():
        try:
            seen.append(json.loads(line))
        except ValueError:  # anything else on stdout would corrupt a piped program's output
            seen.append({"label": "stray stdout", "line": line})
    return seen


def main(master, archive, out):
    with open(PROBE_SOURCE) as f:
        source = f.read()
    apps = []
    for name, run in (("workers", _in_python_workers), ("pipe", _in_piped_programs)):
        app = {"name": name, "id": None, "error": None, "tasks": []}
        apps.append(app)
        spark = None
        try:
            spark = _session(master, archive, name)
            app["id"] = spark.sparkContext.applicationId
            app["tasks"] = run(spark.sparkContext, source)
        except Exception:
            app["error"] = traceback.format_exc()
        finally:
            if spark is not None:
                spark.stop()
    with open(out, "w") as f:
        json.dump(apps, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
