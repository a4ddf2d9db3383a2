"""What one Spark task sees of the packed environment in its executor's directory.

Standard library only: this source runs inside the packed environment's own Python, either in a
PySpark worker (executed there by the driver's task function) or as a program that Spark's JVM
starts itself (``python -c SOURCE`` under ``JavaRDD.pipe``: the partition's element arrives on
stdin, one JSON line goes out). It records observations only; the test judges them.
"""

import json
import os
import ssl
import subprocess
import sys
import sysconfig
import time

CONFIG_VARS = ("prefix", "exec_prefix", "BINDIR", "LIBDIR", "INCLUDEPY", "LIBPL")
PATH_KEYS = ("stdlib", "platstdlib", "purelib", "platlib", "include", "scripts", "data")
# lstat of these shows what the executor's extraction kept: a file and a directory symlink,
# a hard-link pair, an executable, a script and a text file.
LISTED = (
    "bin/python",
    "share/links/current",
    "share/links/v1/a.txt",
    "share/links/v1/b.txt",
    "bin/cprog",
    "bin/conda-unpack",
    "etc/cprog.conf",
)
ENVIRON_PREFIXES = ("PYTHON", "SPARK", "PYSPARK", "SSL_CERT", "CONDA", "LD_")
ENVIRON_NAMES = ("HOME", "PATH", "PWD", "TMPDIR")


def _argv(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError as e:
        return [repr(e)]


def process_started():
    """Seconds since the epoch when this process started (a fork: when it was forked)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _listing(env):
    out = {}
    for rel in LISTED:
        path = os.path.join(env, rel)
        try:
            st = os.lstat(path)
        except OSError as e:
            out[rel] = {"error": repr(e)}
            continue
        out[rel] = {
            "mode": st.st_mode,
            "ino": st.st_ino,
            "nlink": st.st_nlink,
            "mtime": st.st_mtime,
            "link": os.readlink(path) if os.path.islink(path) else None,
        }
    return out


def _run_cprog(env):
    try:
        p = subprocess.run(
            [os.path.join(env, "bin", "cprog")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-2000:]}
    except (OSError, subprocess.SubprocessError) as e:
        return {"rc": None, "stdout": "", "stderr": repr(e)}


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        return repr(e)


def probe(label, env_dir, hold=0.0):
    """Observations of one task about the copy in ``env_dir`` (an archive's ``#fragment``,
    relative to the executor's directory); ``hold`` seconds spent at the end keep the process
    alive so that the tasks of one wave are seen side by side."""
    began = time.time()
    env = os.path.realpath(env_dir)
    vp = ssl.get_default_verify_paths()
    paths = sysconfig.get_paths()
    seen = {
        "label": label,
        "pid": os.getpid(),
        "process_started": process_started(),
        "probe_began": began,
        "cwd": os.getcwd(),
        "env": env,
        "sys_prefix": sys.prefix,
        "sys_executable": sys.executable,
        "argv": _argv("self"),
        "parent_argv": _argv(os.getppid()),
        "flags": {
            "no_site": sys.flags.no_site,
            "isolated": sys.flags.isolated,
            "ignore_environment": sys.flags.ignore_environment,
            "no_user_site": sys.flags.no_user_site,
        },
        "environ": {
            k: v
            for k, v in os.environ.items()
            if k.startswith(ENVIRON_PREFIXES) or k in ENVIRON_NAMES
        },
        "cprog": _run_cprog(env),
        "cprog_conf": _read(os.path.join(env, "etc", "cprog.conf")),
        "ssl": {"openssl_cafile": vp.openssl_cafile, "openssl_capath": vp.openssl_capath},
        "sysconfig_paths": {k: paths.get(k) for k in PATH_KEYS},
        "sysconfig_vars": {k: sysconfig.get_config_var(k) for k in CONFIG_VARS},
        "listing": _listing(env),
    }
    time.sleep(hold)
    seen["probe_ended"] = time.time()
    return seen


if __name__ == "__main__":
    # Under JavaRDD.pipe: the partition's element on stdin names the task.
    print(json.dumps(probe(sys.stdin.read().strip(), sys.argv[1], float(sys.argv[2]))))
