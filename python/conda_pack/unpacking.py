"""``conda-pack unpack ARCHIVE DEST``: extract an archive and relocate it in the same pass.

The Rust core (``_core.Unpacker``) does the work: it reads the archive (decompressing our
gzip blocks and zstd frames on every core), refuses members that would land outside DEST,
and rewrites the files conda-unpack's records name for DEST before it writes them. This
module finds those records, stages the extraction in a directory beside DEST (renamed to
DEST at the end, so an error or Ctrl-C leaves nothing half-made), and records the new
prefix the way ``bin/conda-unpack`` does, so that a later conda-unpack, or the startup
hook, finds nothing left to do.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sys
import tempfile

from . import _core
from .errors import CondaPackException
from .progress import ProgressBar

#: conda-unpack's state file (see ``STATE_FILE`` in unpack/conda_unpack.py).
STATE_FILE = "conda-meta/.conda-unpack-prefix"
#: A squashfs image starts with this: mounted, not unpacked.
SQUASHFS_MAGIC = b"hsqs"


class Records:
    """What an archive's conda-unpack would rewrite: ``jobs`` for the core, and whether
    it keeps conda-unpack's state file (ours does; 0.9.2's has no state)."""

    def __init__(self, root: str, jobs: list, stateful: bool) -> None:
        #: The environment's directory inside the archive ("" at its root: ``--arcroot``).
        self.root = root
        self.jobs = jobs
        self.stateful = stateful


def script_data(source: str) -> dict | None:
    """The records of our conda-unpack (``_DATA``, filled in at pack time), or None."""
    m = re.search(r"^# <conda-pack:data>\n_DATA = json\.loads\((.*)\)$", source, re.M)
    return None if m is None else json.loads(ast.literal_eval(m.group(1)))


def _ours(source: str) -> list | None:
    """Jobs from our conda-unpack."""
    data = script_data(source)
    if data is None:
        return None
    if data.get("windows"):
        # Windows rules (launchers, backslash spellings) are conda-unpack's alone: such
        # an archive is only extracted here, and relocated on Windows.
        return []
    placeholders = [os.fsencode(p) for p in data["placeholders"]]
    jobs: dict[bytes, list] = {}
    for row in data["prefix"]:
        path = os.fsencode(row[0])
        job = jobs.setdefault(path, [path, [], row[2], None])
        job[1].append(placeholders[row[1]])
    for path, exe, options in data["shebang"]:
        p = os.fsencode(path)
        job = jobs.setdefault(p, [p, [], None, None])
        job[3] = (os.fsencode(exe), os.fsencode(options))
    return [tuple(j) for j in jobs.values()]


def _legacy(source: str) -> list | None:
    """Jobs from conda-pack 0.9.2's conda-unpack (its ``_prefix_records`` list)."""
    m = re.search(r"^_prefix_records = \[\n(.*?)^\]$", source, re.M | re.S)
    if m is None:
        return None
    rows = ast.literal_eval("[" + m.group(1) + "]")
    return [(os.fsencode(p), [os.fsencode(ph)], mode, None) for p, ph, mode in rows]


def records(scripts: list) -> Records | None:
    """The records of the shallowest conda-unpack among ``[(member path, content)]``."""
    for path, content in sorted(scripts, key=lambda s: s[0].count(b"/")):
        source = content.decode("utf-8", "surrogateescape")
        rel = path.decode("utf-8", "surrogateescape")
        root = rel[: -len("bin/conda-unpack")] if rel.endswith("bin/conda-unpack") else ""
        if rel.endswith("Scripts/conda-unpack-script.py"):
            root = rel[: -len("Scripts/conda-unpack-script.py")]
        jobs = _ours(source)
        stateful = jobs is not None
        if jobs is None:
            jobs = _legacy(source)
        if jobs is None:
            continue
        prefix = os.fsencode(root)
        jobs = [(prefix + p, olds, mode, sb) for p, olds, mode, sb in jobs]
        return Records(root.rstrip("/"), jobs, stateful)
    return None


def _check_dest(dest: str) -> None:
    if os.path.lexists(dest):
        if not os.path.isdir(dest) or os.path.islink(dest):
            raise CondaPackException("%s exists and is not a directory" % dest)
        if os.listdir(dest):
            raise CondaPackException(
                "%s exists and is not empty: unpack into a new or empty directory" % dest
            )


def _is_squashfs(archive: str) -> bool:
    try:
        with open(archive, "rb") as f:
            return f.read(4) == SQUASHFS_MAGIC
    except OSError:
        return False


def _write_state(root: str, target: str) -> None:
    """What conda-unpack leaves after a finished run: the prefix the files hold."""
    meta = os.path.join(root, "conda-meta")
    if not os.path.isdir(meta) or os.path.islink(meta):
        return
    # A new file renamed over whatever the archive put there (a link is replaced, never
    # followed).
    fd, tmp = tempfile.mkstemp(prefix=".conda-unpack-", suffix=".tmp", dir=meta)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(target + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(root, STATE_FILE))


#: What conda-unpack refuses in a prefix: it would break the quoting of the files naming it.
UNSAFE_CHARACTERS = "'\"`$\\"


def check_target(target: str, jobs: list) -> None:
    """conda-unpack's checks of the new prefix, made before anything is extracted."""
    bad = sorted(set(c for c in target if c in UNSAFE_CHARACTERS or c < " " or c == "\x7f"))
    if bad:
        raise CondaPackException(
            "cannot unpack the environment to %r: its path holds %s, which the files naming "
            "it (Python and shell sources among them) cannot hold without breaking their "
            "quoting. Choose a path without quotes, backslashes, $, ` or control characters."
            % (target, " ".join(repr(c) for c in bad))
        )
    rooms = [min(len(o) for o in olds) for _, olds, mode, _ in jobs if mode == "binary" and olds]
    if rooms and len(os.fsencode(target)) > min(rooms):
        raise CondaPackException(
            "cannot unpack the environment to %s (%d characters): its binaries have room for "
            "at most %d. Nothing was written; choose a shorter path."
            % (target, len(os.fsencode(target)), min(rooms))
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unpack(archive: str, dest: str, verbose: bool = True, n_threads: int | None = None) -> dict:
    """Extract ``archive`` into ``dest`` (new, or an empty directory) and relocate the
    environment in it for ``dest``. Returns what was done (for messages and tests)."""
    if not os.path.isfile(archive):
        raise CondaPackException("%s: no such archive" % archive)
    if _is_squashfs(archive):
        raise CondaPackException(
            "%s is a squashfs image: mount it (e.g. squashfuse) instead of unpacking it" % archive
        )
    dest = os.path.abspath(dest).rstrip("/") or "/"
    parent = os.path.dirname(dest)
    _check_dest(dest)
    try:
        os.makedirs(parent, exist_ok=True)  # as `mkdir -p`; so does the installer
    except OSError as e:
        raise CondaPackException("cannot create %s: %s" % (parent, e.strerror)) from e
    # The prefix the files will hold is where DEST really is: symbolic links in its
    # parent are resolved, as conda-unpack resolves them.
    target = os.path.join(os.path.realpath(parent), os.path.basename(dest))
    threads = n_threads if n_threads and n_threads > 0 else (os.cpu_count() or 1)
    unpacker = _core.Unpacker(archive)
    ahead = unpacker.read_ahead()
    rec = records(ahead) if ahead else None
    env_target = lambda r: target + ("/" + r.root if r.root else "")  # noqa: E731
    jobs = rec.jobs if rec is not None else []
    if rec is not None and rec.jobs:
        check_target(env_target(rec), rec.jobs)
    bar = ProgressBar(1, unpacker.size) if ProgressBar.wanted(verbose) else None
    if verbose:
        print("Unpacking %s into %s" % (archive, dest), file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix=".%s.unpacking-" % os.path.basename(dest), dir=parent)
    completed = False
    try:
        files, relocated, met = unpacker.extract(
            tmp,
            jobs,
            os.fsencode(env_target(rec)) if rec is not None else os.fsencode(target),
            threads,
            bar,
        )
        completed = True
        if rec is None:
            # The records came at the end of the stream: the files are relocated now.
            rec = records(met)
            if rec is not None and rec.jobs:
                relocated = _core.relocate_tree(
                    tmp, rec.jobs, os.fsencode(env_target(rec)), threads
                )
        if rec is not None and rec.stateful:
            _write_state(os.path.join(tmp, rec.root) if rec.root else tmp, env_target(rec))
        os.chmod(tmp, 0o777 & ~_umask())
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close(completed)
    if verbose:
        print(
            "Unpacked %d files, relocated %d for %s" % (files, relocated, dest),
            file=sys.stderr,
        )
    return {
        "files": files,
        "relocated": relocated,
        "format": unpacker.format,
        "indexed": unpacker.indexed,
        "records": rec is not None,
    }
