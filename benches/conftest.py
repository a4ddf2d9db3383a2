"""Fixtures of the benchmark suite: scale environments, conda-pack 0.9.2 in its own venv, a
scratch directory for outputs, and the collector that writes ``results.json`` and
``RESULTS.md``.

The default ``pytest`` run never collects this directory (``testpaths = ["tests"]``). Run it
with ``make bench``, i.e. ``python -m pytest benches -q --benchmark-only``. Settings, all
optional, from the environment:

- ``BENCH_SIZES``: env sizes in GB, comma-separated (default ``1,3``; ``1`` for a quick run)
- ``BENCH_ROUNDS``: interleaved rounds per comparison (default 3; scan + plan runs 2x as many)
- ``BENCH_CACHE``: where the envs, the 0.9.2 venv and scratch outputs live
  (default ``~/.cache/conda-pack-rs/bench``)
- ``BENCH_ENV_<N>G``: an existing scale env to use for size N instead of building one
- ``BENCH_RESULTS``: the results JSON (default ``benches/results.json``); ``RESULTS.md`` and
  the plot ``pack-time.svg`` are written next to it when the session ends. Each run replaces
  them: one run, one machine; earlier runs are in git's history
- ``BENCH_ADD=1``: add this run to the results JSON instead of replacing it. What this run
  measures (a benchmark, env size and case) replaces that record; the rest stay, and each
  record, table and target in ``RESULTS.md`` names the run it comes from, whose machine,
  date, load and commit are listed at the top. For a part too long to run with the rest
  (``BENCH_ADD=1 BENCH_SIZES=3 make bench BENCH_ARGS=benches/test_receive.py``)
- ``BENCH_SETTLE``: seconds the receiving end and unpacking wait after removing a round's
  trees (default 365; see ``SETTLE`` in measure.py for why)
- ``BENCH_ALLOW_DEBUG=1``: run even if the installed extension is a debug build
- ``BENCH_RECEIVE_TMPFS``: a directory on a tmpfs into which the receiving end's tar.gz and
  tar.zst cases also extract, so that the results show what the disk costs (default
  ``/dev/shm``; empty for none). Skipped where it is not a tmpfs or lacks room for two
  copies of the env

"Ours" is a snapshot of the installed ``conda_pack`` package (Python modules and extension),
copied when the session starts and run through a launcher like the ``conda-pack`` console
script: the editable install may be rebuilt while the benchmarks run, and every round must
measure the same build.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from measure import command_output, file_digest, loadavg, remove, tree_stats

from tests.envfactory.cache import locked

REPO = Path(__file__).resolve().parent.parent
SIZES = [float(s) for s in os.environ.get("BENCH_SIZES", "1,3").split(",") if s.strip()]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
#: Recorded in the results when set; measure.py reads it.
SETTLE = os.environ.get("BENCH_SETTLE")
CACHE = Path(os.environ.get("BENCH_CACHE", "~/.cache/conda-pack-rs/bench")).expanduser()
RESULTS = Path(os.environ.get("BENCH_RESULTS", REPO / "benches" / "results.json")).absolute()
RECEIVE_TMPFS = os.environ.get("BENCH_RECEIVE_TMPFS", "/dev/shm")
ADD = os.environ.get("BENCH_ADD") == "1"
#: conda-pack 0.9.2 and what its tar.zst support imports (not one of its pip dependencies).
CP092_REQUIREMENTS = ["conda-pack==0.9.2", "zstandard==0.25.0"]
#: The snapshot of our package and its launcher (see the module docstring).
SNAPSHOT = CACHE / "ours"
LAUNCHER = SNAPSHOT / "bin" / "conda-pack"


def extension_state(package: Path) -> str | None:
    """Digest of the package's extension module, and "debug" when it carries debug info (the
    release profile has none, a ``maturin develop`` build does)."""
    so = next(package.glob("_core*.so"), None)
    digest = file_digest(so) if so else None
    if digest is None:
        return None
    sections = command_output(["sh", "-c", f"readelf -S -W {so} | grep -c debug_info"])
    return f"{digest} ({'debug' if sections not in ('', '0') else 'release'} build)"


def snapshot_ours() -> str:
    """Copy the installed ``conda_pack`` into ``SNAPSHOT`` and write its launcher; return the
    extension's state. Copies again if the extension changed while being copied."""
    installed = Path(importlib.util.find_spec("conda_pack").origin).parent
    for _ in range(5):
        state = extension_state(installed)
        remove(SNAPSHOT)
        shutil.copytree(installed, SNAPSHOT / "conda_pack", ignore=shutil.ignore_patterns("__py*"))
        if state is not None and extension_state(SNAPSHOT / "conda_pack") == state:
            break
    else:
        pytest.exit(f"could not snapshot {installed}: its extension keeps changing", returncode=1)
    LAUNCHER.parent.mkdir()
    LAUNCHER.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(SNAPSHOT)!r})\n"
        "from conda_pack.cli import main\n"
        "sys.exit(main())\n"
    )
    LAUNCHER.chmod(0o755)
    return state


def size_key(size_gb: float) -> str:
    return f"{size_gb:g}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size_gb" in metafunc.fixturenames:
        ids = [f"{size_key(s)}GB" for s in SIZES]
        metafunc.parametrize("size_gb", SIZES, ids=ids, scope="session")


# -- environments ----------------------------------------------------------------------------
class ScaleEnv:
    def __init__(self, prefix: Path, size_gb: float) -> None:
        self.prefix = prefix
        self.size_gb = size_gb
        self.key = size_key(size_gb)
        self.bytes, self.entries = tree_stats(prefix)


def build_scale_env(size_gb: float) -> Path:
    """The scale env of ``size_gb`` under ``CACHE``, installed by the env factory unless a
    finished one is there (the factory caches the packages; a reinstall takes 10-60 s)."""
    name = f"env{size_key(size_gb)}g"
    prefix, done = CACHE / name, CACHE / f"{name}.done"
    with locked(CACHE / f"{name}.lock"):
        if done.exists() and prefix.is_dir():
            return prefix
        remove(prefix)
        log = CACHE / f"{name}.log"
        with open(log, "w") as out:
            cmd = [sys.executable, "-m", "tests.envfactory", "--workdir", str(CACHE / "factory")]
            cmd += ["scale-env", str(prefix), "--size-gb", str(size_gb)]
            proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            pytest.fail(f"building the {size_gb:g} GB env failed; see {log}")
        done.touch()
    return prefix


@pytest.fixture(scope="session")
def scale_env(size_gb: float) -> ScaleEnv:
    override = os.environ.get(f"BENCH_ENV_{size_key(size_gb)}G")
    prefix = Path(override).absolute() if override else build_scale_env(size_gb)
    return ScaleEnv(prefix, size_gb)


# -- conda-pack 0.9.2 ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cp092() -> Path:
    """``bin/`` of a venv holding conda-pack 0.9.2 (created under ``CACHE`` when missing)."""
    venv = CACHE / "conda-pack-0.9.2"
    stamp = venv / ".complete"
    with locked(CACHE / "venv.lock"):
        if not stamp.exists():
            remove(venv)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, *CP092_REQUIREMENTS], check=True)
            stamp.write_text("\n".join(CP092_REQUIREMENTS) + "\n")
    return venv / "bin"


@pytest.fixture(scope="session")
def rounds() -> int:
    return ROUNDS


def is_tmpfs(path: Path) -> bool:
    """Whether ``path`` is on a tmpfs (the longest mount point of /proc/mounts above it)."""
    real = os.path.realpath(path)
    best, fstype = "", ""
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, fstype = point, fields[2]
    return fstype == "tmpfs"


@pytest.fixture(scope="session")
def receive_tmpfs() -> Path | None:
    """Scratch space on a tmpfs for the receiving end (``BENCH_RECEIVE_TMPFS``), or None."""
    base = Path(RECEIVE_TMPFS) if RECEIVE_TMPFS else None
    if base is None or not base.is_dir() or not is_tmpfs(base):
        yield None
        return
    path = base / f"conda-pack-bench-{os.getpid()}"
    remove(path)
    path.mkdir()
    yield path
    remove(path)


@pytest.fixture(scope="session")
def ours() -> Path:
    """Our ``conda-pack``: the launcher of the snapshot taken at session start."""
    return LAUNCHER


@pytest.fixture(scope="session")
def snapshot_env() -> dict[str, str]:
    """Environment in which ``python -c 'import conda_pack'`` imports the snapshot."""
    return dict(os.environ, PYTHONPATH=str(SNAPSHOT))


@pytest.fixture(scope="session")
def system_state():
    """A function returning the load average, recorded around each benchmark."""
    return lambda: {"loadavg": loadavg()}


@pytest.fixture(scope="session")
def workdir() -> Path:
    """Scratch space for outputs, on the same filesystem for every tool; emptied at both ends."""
    path = CACHE / "work"
    remove(path)
    path.mkdir(parents=True)
    yield path
    remove(path)


# -- results ---------------------------------------------------------------------------------
class Results:
    """Everything measured in this session, saved to ``RESULTS`` after every benchmark. With
    ``BENCH_ADD=1``, on top of what the file holds: ``meta`` stays the first run's, later
    runs go to ``added_runs``, and records measured by one of them carry its number in
    ``run`` (records without it are run 1's)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = machine_info()
        self.meta["started"] = now()
        self.meta["loadavg_start"] = loadavg()
        self.run = 1
        self.data: dict = {"meta": self.meta, "envs": {}}
        if ADD and path.exists():
            self.data = json.loads(path.read_text())
            added = self.data.setdefault("added_runs", [])
            added.append(self.meta)
            self.run = 1 + len(added)
        for section in ("pack", "unpack", "scan", "startup", "receive"):
            self.data.setdefault(section, {})

    def add_env(self, env: ScaleEnv) -> None:
        self.data["envs"][env.key] = {
            "size_gb": env.size_gb,
            "prefix": str(env.prefix),
            "bytes": env.bytes,
            "entries": env.entries,
        }

    def record(self, section: str, env: ScaleEnv, name: str | None, value: dict) -> None:
        """Store ``value`` as ``section / env size [/ name]`` and save."""
        self.add_env(env)
        if self.run > 1:
            value = {**value, "run": self.run}
        if name is None:
            self.data[section][env.key] = value
        else:
            self.data[section].setdefault(env.key, {})[name] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = int(open("/proc/meminfo").readline().split()[1])
    commit = command_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "python"])
    # What pytest was asked to run (make bench's BENCH_ARGS): its arguments without the
    # ones make bench always passes.
    args, rest = [], iter(sys.argv[1:])
    for arg in rest:
        if arg == "-p":
            next(rest, None)
        elif arg not in ("-q", "--benchmark-only"):
            args.append(arg)
    return {
        "reproduce": "make bench  # = python -m pytest benches -q --benchmark-only",
        "settings": {
            "BENCH_SIZES": ",".join(size_key(s) for s in SIZES),
            "BENCH_ROUNDS": ROUNDS,
            **({"BENCH_ADD": "1"} if ADD else {}),
            **({"BENCH_SETTLE": SETTLE} if SETTLE is not None else {}),
            **({"BENCH_ARGS": shlex.join(args)} if args != ["benches"] else {}),
        },
        "argv": sys.argv,
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "mem_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": commit + (" (src/ or python/ modified)" if dirty else ""),
        "ours": command_output([str(LAUNCHER), "--version"]),
        "ours_extension": extension_state(SNAPSHOT / "conda_pack"),
        "ours_snapshot": str(SNAPSHOT),
        "tools": {
            "conda-pack 0.9.2 venv": " ".join(CP092_REQUIREMENTS),
            "tar": command_output(["tar", "--version"]),
            "pigz": command_output(["pigz", "--version"]),
            "zstd": command_output(["zstd", "--version"]),
        },
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    """Snapshot our package, refusing to spend an hour measuring a debug build."""
    state = snapshot_ours()
    if "release" not in state and os.environ.get("BENCH_ALLOW_DEBUG") != "1":
        pytest.exit(
            f"the installed conda_pack extension is not a release build: {state}. Reinstall "
            "it (pip install -e .) or set BENCH_ALLOW_DEBUG=1 to measure it anyway.",
            returncode=1,
        )


@pytest.fixture(scope="session")
def results() -> Results:
    res = Results(RESULTS)
    yield res
    res.meta["finished"] = now()
    res.meta["loadavg_end"] = loadavg()
    res.save()
    import report

    report.write(res.path, res.path.with_name("RESULTS.md"))
