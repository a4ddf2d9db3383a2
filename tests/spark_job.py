"""Spark driver for tests/test_spark.py: probe a packed environment from tasks on a cluster.

Usage: python spark_job.py MASTER_URL ARCHIVE SECOND_ARCHIVE OUT_JSON
(``PYSPARK_PYTHON=./environment/bin/python`` set by the caller)

It runs as a process of its own so that the gateway JVM pyspark starts dies with it. One
application, one executor with two cores; the executor extracts both archives (two names for
the same bytes) into its own directory before its first task, as ``environment`` and
``environment2``, and each copy sees one kind of first use:

* ``environment``: what users run. PySpark's Python workers (``PYSPARK_PYTHON``, by default
  one daemon interpreter per executor whose forks run the tasks) run the probe in two jobs, so
  the first use of this copy is the daemon's start-up.
* ``environment2``: Spark starts its Python workers one at a time per executor (it waits for
  each to connect back), so interpreters starting side by side come from programs the JVM runs
  itself: ``JavaRDD.pipe`` starts ``./environment2/bin/python`` from both task threads at once,
  the first use of this copy.

Every task reports what it saw (``spark_probe.probe``); the test judges.
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
WORKERS_COPY = "environment"
PIPE_COPY = "environment2"


def _session(master, archives):
    from pyspark.sql import SparkSession

    # The cluster's JVM options (fast start, scratch space in the test's directory).
    jvm_options = os.environ.get("SPARK_DAEMON_JAVA_OPTS", "")

    return (
        SparkSession.builder.master(master)
        .appName("conda-pack-relocation")
        .config("spark.archives", ",".join(archives))
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.cores", "2")
        .config("spark.cores.max", "2")
        .config("spark.executor.memory", "512m")
        .config("spark.driver.extraJavaOptions", jvm_options)
        .config("spark.executor.extraJavaOptions", jvm_options)
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
            label = "worker/job%d/%d" % (job, index)
            yield namespace["probe"](label, WORKERS_COPY, HOLD_SECONDS)

        return run

    seen = []
    for job in range(WORKER_JOBS):
        rdd = sc.parallelize(range(PARTITIONS), PARTITIONS)
        seen += rdd.mapPartitionsWithIndex(task(job)).collect()
    return seen


def _in_piped_programs(sc, source):
    labels = ["pipe/%d" % i for i in range(PARTITIONS)]
    jrdd = sc._jsc.parallelize(labels, PARTITIONS)
    python = "./%s/bin/python" % PIPE_COPY
    seen = []
    for line in jrdd.pipe([python, "-c", source, PIPE_COPY, str(HOLD_SECONDS)]).collect():
        try:
            seen.append(json.loads(line))
        except ValueError:  # anything else on stdout would corrupt a piped program's output
            seen.append({"label": "stray stdout", "line": line})
    return seen


def main(master, archive, second_archive, out):
    with open(PROBE_SOURCE) as f:
        source = f.read()
    run = {"app": None, "error": None, "tasks": []}
    archives = ["%s#%s" % (archive, WORKERS_COPY), "%s#%s" % (second_archive, PIPE_COPY)]
    spark = None
    try:
        spark = _session(master, archives)
        run["app"] = spark.sparkContext.applicationId
        run["tasks"] += _in_python_workers(spark.sparkContext, source)
        run["tasks"] += _in_piped_programs(spark.sparkContext, source)
    except Exception:
        run["error"] = traceback.format_exc()
    finally:
        if spark is not None:
            spark.stop()
    with open(out, "w") as f:
        json.dump(run, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:5])
