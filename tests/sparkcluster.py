"""A real Spark standalone cluster on 127.0.0.1 (a master and one worker), for tests.

Spark's JVMs outlive a killed parent (the launch scripts ``exec`` into java, which ignores
the death of whoever started it), so each daemon runs in a session of its own and is stopped
by signalling its whole process group; the executors the worker starts join the worker's group.
Readiness is read from the master's JSON status page (on a free port), not from log wording.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

#: Spark 4 is built for Java 17 and refuses older runtimes.
MIN_JAVA = 17
#: For every JVM of the test (master, worker, driver, executor): they live for a minute, in
#: which C2 compilation only costs start-up time (this halves a daemon's start-up CPU).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
LOG_TAIL = 4000


def find_java() -> tuple[str | None, str]:
    """``(java, why_not)``: a Java >= MIN_JAVA runtime, or None and the reason."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        where = "JAVA_HOME=%s" % home if home else "PATH"
        return None, "no Java runtime on %s (`make test` installs openjdk-17-jre-headless)" % where
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "%s -version failed: %s" % (java, e)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None, "cannot read the version of %s: %r" % (java, out.stderr[-300:])
    major = int(m.group(1)) if m.group(1) != "1" else int(m.group(2) or 0)
    if major < MIN_JAVA:
        return None, "%s is Java %d; Spark 4 needs Java %d+" % (java, major, MIN_JAVA)
    return java, ""


def spark_home() -> Path:
    """The Spark distribution that the ``pyspark`` wheel carries."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, limit: int = LOG_TAIL) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return "<%s: %s>" % (path, e)
    return data[-limit:].decode("utf-8", "replace")


def processes_under(root: Path) -> list[int]:
    """Pids of the processes whose working directory is inside ``root``."""
    root_s = os.path.realpath(root) + os.sep
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if (cwd + os.sep).startswith(root_s):
            found.append(int(entry))
    return found


def scrubbed_environ(java: str) -> dict[str, str]:
    """The caller's environment without the Spark/PySpark settings a developer's shell may
    carry (a stray SPARK_CONF_DIR or PYSPARK_PYTHON would change what the test measures)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SPARK_", "PYSPARK_")) and k not in ("PYTHONPATH", "JAVA_HOME")
    }
    env["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    env["SPARK_HOME"] = str(spark_home())
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["SPARK_LOCAL_HOSTNAME"] = "localhost"
    return env


class Daemon:
    """One process tree in a session of its own, its output in ``log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group (Spark's shutdown hooks clean up), then SIGKILL what is left."""
        pgid = self.proc.pid  # leader of its own session, so its pid is the group id
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.proc.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
        self.proc.poll()


class SparkCluster:
    """``with SparkCluster(java, workdir) as c:`` -> ``c.url`` is ``spark://127.0.0.1:P``."""

    def __init__(self, java: str, workdir: Path, cores: int = 2, memory: str = "1g"):
        self.workdir = Path(workdir)
        self.env = scrubbed_environ(java)
        self.cores = cores
        self.memory = memory
        self.port = free_port()
        self.ui_port = free_port()
        self.url = "spark://127.0.0.1:%d" % self.port
        self.work_dir = self.workdir / "work"
        # Spark's scratch space (fetched files, archives before extraction, shuffle): in /tmp
        # it would outlive a run that was killed.
        self.local_dir = self.workdir / "local"
        self.env["SPARK_LOCAL_DIRS"] = str(self.local_dir)
        # The daemons' JVM options; the driver gives them to its own JVM and the executors'.
        tmpdir = "-Djava.io.tmpdir=%s" % self.local_dir
        self.env["SPARK_DAEMON_JAVA_OPTS"] = "%s %s" % (JVM_OPTIONS, tmpdir)
        self.daemons: list[Daemon] = []

    def _spark_class(self, *args: str) -> list[str]:
        return [str(spark_home() / "bin" / "spark-class"), *args]

    def logs(self) -> str:
        """Tails of the master's, the worker's and every executor's log, for failure messages."""
        named = [(d.name, d.log) for d in self.daemons]
        named += [("executor", p) for p in sorted(self.work_dir.glob("app-*/*/stderr"))]
        return "".join("\n--- tail of the %s log (%s)\n%s" % (n, p, tail(p)) for n, p in named)

    def status(self) -> dict:
        url = "http://127.0.0.1:%d/json/" % self.ui_port
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for d in self.daemons:
                if not d.alive():
                    raise RuntimeError(
                        "Spark %s exited (%s) while waiting for %s%s"
                        % (d.name, d.proc.returncode, what, self.logs())
                    )
            try:
                if ready(self.status()):
                    return
            except (OSError, ValueError) as e:  # not listening yet, or a partial page
                last = e
            time.sleep(0.25)
        raise RuntimeError(
            "Spark cluster: no %s within %.0f s (last error: %s)%s"
            % (what, timeout, last, self.logs())
        )

    def start(self, timeout: float = 60.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        host = ["--host", "127.0.0.1"]
        master = self._spark_class(
            "org.apache.spark.deploy.master.Master",
            *host,
            "--port",
            str(self.port),
            "--webui-port",
            str(self.ui_port),
        )
        self.daemons.append(Daemon("master", master, self.env, self.workdir / "master.log"))
        self._wait("master ALIVE", lambda s: s.get("status") == "ALIVE", timeout)
        worker = self._spark_class(
            "org.apache.spark.deploy.worker.Worker",
            *host,
            "--port",
            str(free_port()),
            "--webui-port",
            str(free_port()),
            "--cores",
            str(self.cores),
            "--memory",
            self.memory,
            "--work-dir",
            str(self.work_dir),
            self.url,
        )
        self.daemons.append(Daemon("worker", worker, self.env, self.workdir / "worker.log"))
        self._wait(
            "worker with %d cores registered" % self.cores,
            lambda s: any(
                w.get("state") == "ALIVE" and w.get("cores") == self.cores
                for w in s.get("workers", [])
            ),
            timeout,
        )

    def stop(self) -> None:
        # The worker first: it takes its executors down with it.
        for d in reversed(self.daemons):
            d.stop()
        # PySpark's daemon moves itself into a process group of its own; it exits when its
        # executor goes, but one still running in the work directory must not outlive the test.
        for pid in processes_under(self.work_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run_driver(self, argv: list[str], env: dict[str, str], timeout: float) -> None:
        """Run a driver program to completion in a session of its own (its gateway JVM is then
        stopped with it); raise with its output and the cluster's logs if it fails."""
        driver = Daemon("driver", argv, {**self.env, **env}, self.workdir / "driver.log")
        self.daemons.append(driver)
        try:
            rc = driver.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                "Spark driver did not finish within %.0f s%s" % (timeout, self.logs())
            ) from None
        finally:
            driver.stop()  # its gateway JVM, if still there
        if rc != 0:
            raise RuntimeError("Spark driver exited with %d%s" % (rc, self.logs()))

    def __enter__(self) -> SparkCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
