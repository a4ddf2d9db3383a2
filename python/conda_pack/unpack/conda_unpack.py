"""conda-unpack: finish moving a packed conda environment to the directory it is in.

conda-pack writes this file into every archive as ``bin/conda-unpack`` (Windows:
``Scripts/conda-unpack-script.py``), with the list of files that hold a prefix filled in.
Run after extracting, it rewrites those files for the environment's new location. It uses
only the standard library of any Python 3.6+ (the environment's own interpreter is tried
first). Files are rewritten where they are, which is several times cheaper than creating
new ones (a create and a rename cost ~0.5 ms a file on ext4, an overwrite ~30 us): a
binary file keeps its length, so only its C strings holding the prefix are patched (each
checked first against what packing recorded); a text file is overwritten and truncated.
Each file is written by a worker that always completes it, so an interrupted run leaves
every file old or new and can simply be repeated. A running program, a library this
interpreter has loaded, or a file that cannot be opened for writing is instead replaced
atomically (write a new file, rename it over the old one). The files are shared among a
worker process per core. Running it again after moving the environment relocates it
again.

This module is also imported by conda-pack's tests: its byte rules must match the Rust
core's exactly (``replace_cstrings``, ``replace_text``, ``format_shebang``).
"""

import errno
import json
import os
import stat
import struct
import sys
import time

# The next two assignments are filled in at pack time (the markers must stay above them):
# the version, and the placeholders, prefix records, shebang records and target platform.
# <conda-pack:version>
VERSION = "0.0.0"
# <conda-pack:data>
_DATA = json.loads('{"placeholders": [], "prefix": [], "shebang": [], "windows": false}')

# The prefix this environment's files held when it was last unpacked (absent until then).
STATE_FILE = os.path.join("conda-meta", ".conda-unpack-prefix")
SHEBANG_LIMIT = 127
ON_WINDOWS = bool(_DATA.get("windows"))
# Set by the hidden --new-prefix option: the path files must name instead of the one the
# environment is at (to prepare an environment where it will be seen under another name,
# and to exercise the Windows rules on any OS).
_NEW_PREFIX = None


class NoRoom(Exception):
    """A binary string would grow past the NUL padding that follows it."""


def _records():
    ph = _DATA["placeholders"]
    return [(r[0], ph[r[1]], r[2]) for r in _DATA["prefix"]]


# (path, placeholder, mode) for every file holding a prefix, as conda-pack 0.9.2 named it.
_prefix_records = _records()
# Binary files: where each C string holding the prefix starts, found when packing.
_OFFSETS = {r[0]: r[3] for r in _DATA["prefix"] if len(r) > 3}


# --- byte rules (the twin of the Rust core's prefix engine) ---------------------------------


def replace_text(data, old, new):
    """Text mode: every occurrence, any length change allowed."""
    return data.replace(old, new) if old else data


def replace_cstrings(data, old, new):
    """Binary mode: rewrite each NUL-terminated string holding ``old`` in place.

    A shorter result is followed by as many NULs as it shrank, so no later byte moves; a
    longer one consumes NULs after the terminator (the padding an earlier shrink left) and
    raises NoRoom when they are not there.
    """
    if not old:
        return data
    out = []
    emitted = 0
    search = 0
    size = len(data)
    while True:
        start = data.find(old, search)
        if start < 0:
            break
        term = data.find(b"\0", start)
        if term < 0:
            term = size
        span = data[start:term]
        hits = span.count(old)
        if len(new) <= len(old):
            out.append(data[emitted:start])
            out.append(span.replace(old, new))
            out.append(b"\0" * (hits * (len(old) - len(new))))
            emitted = term
        else:
            grow = hits * (len(new) - len(old))
            room = data[term : term + grow + 1]
            nuls = len(room) - len(room.lstrip(b"\0"))
            if nuls < grow + 1:
                raise NoRoom(
                    "string at offset %d needs %d bytes of NUL padding but has %d"
                    % (start, grow, max(nuls - 1, 0))
                )
            out.append(data[emitted:start])
            out.append(span.replace(old, new))
            emitted = term + grow
        search = max(emitted, start + 1)
        if search >= size:
            break
    out.append(data[emitted:])
    return b"".join(out)


def replace_prefix(data, mode, old, new):
    if mode == "text":
        return replace_text(data, old, new)
    if mode == "binary":
        return replace_cstrings(data, old, new)
    raise ValueError("unknown mode %r" % (mode,))


def parse_shebang(data):
    """``(line_length, interpreter, options)`` of a ``#!/...`` first line, or None."""
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if not line.startswith(b"#!"):
        return None
    body = line[2:].lstrip(b" ")
    if not body.startswith(b"/"):
        return None
    i = 0
    while i < len(body):
        c = body[i : i + 1]
        if c == b"\\" and body[i + 1 : i + 2] == b" ":
            i += 2
        elif c in (b" ", b"\r", b"\t"):
            break
        else:
            i += 1
    return len(line), body[:i], body[i:]


def _basename(path):
    return path.rsplit(b"/", 1)[-1]


def _is_python(exe):
    rest = _basename(exe)
    if not rest.startswith(b"python"):
        return False
    return all(c in b"0123456789." for c in rest[6:])


def env_shebang(exe, options):
    return b"#!/usr/bin/env " + _basename(exe) + options


def format_shebang(prefix, exe_rel, options):
    """The first line(s) that run interpreter ``prefix/exe_rel`` with ``options``.

    The absolute form when Linux can run it (127 bytes, no blank in the prefix); for
    Python a ``/bin/sh`` trampoline that keeps the absolute interpreter; else the ``env``
    form, which works once the environment is on PATH.
    """
    cr = b""
    opts = options
    if opts.endswith(b"\r"):
        opts, cr = opts[:-1], b"\r"
    exe = prefix + b"/" + exe_rel
    blanks = b" \t\n\r\x0b\x0c"
    python = _is_python(exe_rel)
    # Linux passes everything after the interpreter as one argument, so `-E -s` reaches
    # Python as the single option "-E -s"; the trampoline splits it.
    split_opts = any(c in blanks for c in opts.strip(blanks))
    if (
        2 + len(exe) + len(options) <= SHEBANG_LIMIT
        and not any(c in blanks for c in prefix)
        and not (python and split_opts)
    ):
        return b"#!" + exe + options
    if not python:
        return env_shebang(exe_rel, options)
    quoted = b"".join(b"\\" + bytes([c]) if c in b'"$`\\' else bytes([c]) for c in exe)
    opts = opts.strip(blanks)
    line = b"#!/bin/sh" + cr + b"\n'''exec' \"" + quoted + b'"'
    if opts:
        line += b" " + opts
    return line + b' "$0" "$@" #\'\'\'' + cr


def _shebang_span(data):
    """Length of the interpreter line(s) at the start of ``data`` (a trampoline is two)."""
    first = data.find(b"\n")
    if first < 0:
        return len(data)
    if data[:first].rstrip(b"\r") == b"#!/bin/sh" and data[first + 1 :].startswith(b"'''exec' "):
        second = data.find(b"\n", first + 1)
        return len(data) if second < 0 else second
    return first


def fix_shebang(data, prefix, exe_rel, options):
    """Make the first line run ``prefix/exe_rel``, whatever form it had before."""
    if not data.startswith(b"#!"):
        return data
    return format_shebang(prefix, exe_rel, options) + data[_shebang_span(data) :]


# --- Windows targets ------------------------------------------------------------------------
# Windows paths are case-insensitive and take either separator, and packages hold their
# build prefix as C:\x, C:/x or, inside string literals, C:\\x, while only one spelling is
# recorded (conda-pack #141): every spelling is replaced. Text files get the new prefix with
# forward slashes, as conda and rattler write it: backslashes inside a quoted string would
# read as escapes. An extended-length marker (\\?\ or //?/) before the old prefix goes with it.


def windows_path(path):
    """``path`` as files should name it: no extended-length marker, forward slashes."""
    if path.startswith(("\\\\?\\UNC\\", "//?/UNC/")):
        path = "\\\\" + path[8:]
    elif path.startswith(("\\\\?\\", "//?/")):
        path = path[4:]
    return path.replace("\\", "/")


def _spellings(path):
    back = path.replace(b"/", b"\\")
    return {back, path.replace(b"\\", b"/"), back.replace(b"\\", b"\\\\")}


def _prefix_pattern(olds):
    """One pattern for every spelling of every old prefix, so that a single pass replaces
    them all and never rewrites a new prefix that happens to contain an old one."""
    alts = set()
    for old in olds:
        alts |= _spellings(old)
    alts = sorted(alts, key=lambda a: (-len(a), a))
    import re  # only Windows targets need it; it is slow to import

    body = b"|".join(re.escape(a) for a in alts)
    return re.compile(b"(?:" + re.escape(b"\\\\?\\") + b"|//\\?/)?(?:" + body + b")", re.I)


def _quote_shebang(data, prefix):
    """Quote the interpreter of a ``#!<prefix>...`` line whose prefix holds a blank.

    The setuptools and distlib launchers split that line like a command line, so
    ``#!C:\\Program Files\\env\\python.exe`` would run ``C:\\Program`` (conda-pack #311).
    """
    if not data.startswith(b"#!" + prefix) or not (b" " in prefix or b"\t" in prefix):
        return data
    end = 2 + len(prefix)
    while end < len(data) and data[end : end + 1] not in (b" ", b"\t", b"\r", b"\n"):
        end += 1
    return b'#!"' + data[2:end] + b'"' + data[end:]


def windows_replace_text(data, olds, new):
    """Text files of a Windows environment: every spelling of each of ``olds`` becomes
    ``new`` with forward slashes."""
    new = new.replace(b"\\", b"/")
    return _quote_shebang(_prefix_pattern(olds).sub(lambda _: new, data), new)


def windows_replace_launcher(data, olds, new):
    """Binary files of a Windows environment: only the ``#!`` line of a distlib launcher
    (a launcher program, that line, then a zip archive) names the prefix. Everything else
    finds its files relative to itself, and its strings may be length-prefixed, so it is
    left alone, as conda does. The zip's offsets count from its own start, so the line may
    change length."""
    eocd = data.rfind(b"PK\x05\x06")
    if eocd < 0 or len(data) < eocd + 22:
        return data
    cd_size, cd_offset = struct.unpack("<LL", data[eocd + 12 : eocd + 20])
    zip_start = eocd - cd_size - cd_offset
    start = data.rfind(b"#!", 0, zip_start) if zip_start > 0 else -1
    if start <= 0:
        return data
    new = new.replace(b"/", b"\\")
    line = _prefix_pattern(olds).sub(lambda _: new, data[start:zip_start])
    return data[:start] + _quote_shebang(line, new) + data[zip_start:]


def _write_windows(path, data, st):
    """Overwrite ``path`` with ``data``, keeping its mode. Windows refuses to open a
    read-only file for writing (conda-pack #241): the flag is lifted for the write."""
    mode = stat.S_IMODE(st.st_mode)
    if not mode & stat.S_IWRITE:
        os.chmod(path, mode | stat.S_IWRITE)
    try:
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
    finally:
        if not mode & stat.S_IWRITE:
            os.chmod(path, mode)


def _rewrite_windows(root, root_real, new_prefix, job, mapped=frozenset()):
    """``_rewrite`` for a Windows environment: its rules, and only calls Windows has (no
    pread/pwrite; files opened in binary mode)."""
    path = os.path.join(root, job.path)
    if job.mode is None or os.path.islink(path) or not _inside(root_real, path):
        return False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    with open(path, "rb") as f:
        data = f.read()
    if job.mode == "text":
        new = windows_replace_text(data, [job.old], new_prefix)
    else:
        new = windows_replace_launcher(data, [job.old], new_prefix)
    if new == data:
        return False
    _write_windows(path, new, st)
    return True


def _set_new_prefix(prefix):
    global _NEW_PREFIX
    _NEW_PREFIX = prefix


def _target_prefix(root):
    prefix = _NEW_PREFIX or root
    return windows_path(prefix) if ON_WINDOWS else prefix


# --- relocation -----------------------------------------------------------------------------


class Job:
    __slots__ = ("path", "old", "mode", "room", "shebang", "offsets")

    def __init__(self, path, old, mode, room, shebang, offsets=()):
        self.path = path
        self.old = old
        self.mode = mode
        self.room = room
        self.shebang = shebang
        self.offsets = offsets


def _jobs(root, current):
    """One job per file: its prefix record and/or its shebang record."""
    jobs = {}
    for path, placeholder, mode in _prefix_records:
        ph = os.fsencode(placeholder)
        old = os.fsencode(current) if current is not None else ph
        jobs[path] = Job(path, old, mode, len(ph), None, _OFFSETS.get(path, ()))
    for path, exe, options in _DATA["shebang"]:
        job = jobs.get(path)
        sb = (os.fsencode(exe), os.fsencode(options))
        if job is None:
            jobs[path] = Job(path, None, None, None, sb)
        else:
            job.shebang = sb
    return list(jobs.values())


_INSIDE = {}


def _inside(root_real, path):
    # Resolved once per directory: realpath costs a system call per path component, and a
    # large environment has thousands of files but few directories.
    folder = os.path.dirname(path)
    inside = _INSIDE.get(folder)
    if inside is None:
        parent = os.path.realpath(folder)
        inside = parent == root_real or parent.startswith(root_real + os.sep)
        _INSIDE[folder] = inside
    return inside


def _read_all(fd, size):
    chunks = []
    want = size + 1  # one read for the whole file, one more to see its end
    while True:
        chunk = os.read(fd, max(want, 65536))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_atomic(path, data, st):
    tmp = path + ".conda-unpack-tmp"
    try:
        os.unlink(tmp)
    except OSError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _mapped_files():
    """(device, inode) of the files this process has mapped: its interpreter and libraries,
    perhaps the environment's own. They are replaced, never patched in place under its feet."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths.add(parts[5].rstrip("\n"))
    except OSError:
        pass
    mapped = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # deleted since it was mapped
        mapped.add((st.st_dev, st.st_ino))
    return mapped


def _patch_in_place(path, old, new, offsets):
    """Rewrite, inside the file itself, the C strings that start at ``offsets``.

    A binary file keeps its length and every string its offset, so a few small writes do
    what rewriting the whole file would, which is most of conda-unpack's work on a large
    environment. Every string is read and checked before any is written; False means the
    file no longer looks as packed (or is a running program), and nothing was changed.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        if e.errno == errno.ETXTBSY:
            return False
        raise
    try:
        patches = []
        for off in offsets:
            window = os.pread(fd, 4096, off)
            if not window.startswith(old):
                return False
            term = window.find(b"\0")
            while True:
                if term >= 0:
                    hits = window[:term].count(old)
                    need = term + 1 + max(hits * (len(new) - len(old)), 0)
                    if need <= len(window):
                        break
                more = os.pread(fd, 65536, off + len(window))
                if not more or len(window) > (1 << 20):
                    return False
                window += more
                if term < 0:
                    term = window.find(b"\0")
            patches.append((off, replace_cstrings(window[:need], old, new)))
        for off, data in patches:
            os.pwrite(fd, data, off)
    finally:
        os.close(fd)
    return True


def _overwrite(fd, new, old_size):
    """Overwrite a file's bytes where they are: far cheaper than creating and renaming a
    file. Each file is written by one worker that always finishes it, so an interrupted
    run leaves every file old or new."""
    view = memoryview(new)
    done = 0
    while done < len(new):
        done += os.pwrite(fd, view[done:], done)
    if len(new) < old_size:
        os.ftruncate(fd, len(new))


def _open_for_rewrite(path, busy):
    """``(fd, writable)``: the file opened for reading and, unless it is a running program,
    mapped here, or not writable, for writing in place too (one open instead of two)."""
    if not busy:
        try:
            return os.open(path, os.O_RDWR), True
        except OSError as e:
            if e.errno not in (errno.ETXTBSY, errno.EACCES, errno.EPERM, errno.EROFS):
                raise
    return os.open(path, os.O_RDONLY), False


def _relocated(data, job, new_prefix):
    new = data
    if job.mode is not None and job.old != new_prefix:
        new = replace_prefix(new, job.mode, job.old, new_prefix)
    if job.shebang is not None:
        new = fix_shebang(new, new_prefix, job.shebang[0], job.shebang[1])
    return new


def _rewrite(root, root_real, new_prefix, job, mapped=frozenset()):
    path = os.path.join(root, job.path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False  # excluded or removed after packing
    if stat.S_ISLNK(st.st_mode) or not _inside(root_real, path):
        return False  # never follow a link: its target, if ours, has its own record
    busy = (st.st_dev, st.st_ino) in mapped
    if job.mode == "binary" and job.offsets and job.shebang is None and not busy:
        if job.old == new_prefix:
            return False
        if _patch_in_place(path, job.old, new_prefix, job.offsets):
            return True
    fd, writable = _open_for_rewrite(path, busy)
    try:
        data = _read_all(fd, st.st_size)
        new = _relocated(data, job, new_prefix)
        if new == data:
            return False
        if writable:
            _overwrite(fd, new, len(data))
            return True
    finally:
        os.close(fd)
    _write_atomic(path, new, st)
    return True


class _Progress:
    def __init__(self, total, verbose):
        self.total = total
        self.verbose = verbose
        self.done = 0
        self.start = time.time()

    def add(self, n):
        self.done += n
        if not self.verbose:
            return
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(40 * frac)
        elapsed = time.time() - self.start
        sys.stdout.write("\r[%-40s] | %3d%% Completed | %5.1fs" % (bar, int(100 * frac), elapsed))
        sys.stdout.flush()


def _work(jobs, rewrite, report, stop):
    """Rewrite ``jobs`` in order; report(files done, files changed) after every run of
    files. Returns an error message for the first file that cannot be moved, else None."""
    changed = 0
    for i, job in enumerate(jobs):
        if stop():
            return None
        try:
            changed += rewrite(job)
        except NoRoom as e:
            return "conda-unpack: %s: %s" % (job.path, e)
        except OSError as e:
            return "conda-unpack: %s: %s" % (job.path, e.strerror or e)
        if i % 64 == 63:
            report(64, changed)
            changed = 0
    report(len(jobs) % 64, changed)
    return None


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _serial(jobs, rewrite, progress):
    changed = [0]

    def report(done, n):
        changed[0] += n
        progress.add(done)

    error = _work(jobs, rewrite, report, lambda: False)
    if error:
        raise SystemExit(error)
    return changed[0]


def _child(jobs, rewrite, out):
    """A worker process: rewrites its share, reporting "done changed" lines on ``out``.
    Ctrl-C lets it finish the file it is writing, then stop."""
    import signal

    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    code = 0
    try:
        error = _work(
            jobs, rewrite, lambda d, n: os.write(out, b"%d %d\n" % (d, n)), lambda: stopping
        )
        if error:
            os.write(out, b"E" + error.encode("utf-8", "replace") + b"\n")
            code = 1
    except BaseException as e:
        os.write(out, ("Econda-unpack: %r\n" % (e,)).encode("utf-8", "replace"))
        code = 1
    os._exit(code)


def _forked(jobs, rewrite, progress, workers):
    """Share the files among worker processes: the rewriting is mostly system calls and
    small copies, which threads would serialise on the interpreter's lock."""
    import select

    sys.stdout.flush()
    sys.stderr.flush()
    children = {}  # read end of its pipe -> pid
    changed = 0
    errors = []
    try:
        for k in range(workers):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                _child(jobs[k::workers], rewrite, w)
            os.close(w)
            children[r] = pid
        pending = dict.fromkeys(children, b"")
        while pending:
            ready, _, _ = select.select(list(pending), [], [])
            for r in ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    del pending[r]
                    continue
                lines = (pending[r] + chunk).split(b"\n")
                pending[r] = lines.pop()
                for line in lines:
                    if line.startswith(b"E"):
                        errors.append(line[1:].decode("utf-8", "replace"))
                    else:
                        done, n = line.split()
                        changed += int(n)
                        progress.add(int(done))
    except BaseException:
        # Ctrl-C, or a fork that failed: the workers started finish the file in hand.
        for pid in children.values():
            try:
                os.kill(pid, 2)
            except OSError:
                pass
        raise
    finally:
        for r, pid in children.items():
            os.close(r)
            os.waitpid(pid, 0)
    if errors:
        raise SystemExit(errors[0])
    return changed


def unpack(root, verbose=False, workers=None):
    """Relocate the environment at ``root``; returns the number of files changed."""
    root = os.path.abspath(root)
    new_prefix = _target_prefix(root)
    state = os.path.join(root, STATE_FILE)
    current = None
    if os.path.exists(state):
        with open(state, encoding="utf-8", errors="surrogateescape") as f:
            current = f.read().rstrip("\n") or None
    jobs = _jobs(root, current)
    new_b = os.fsencode(new_prefix)
    if current == new_prefix and all(j.shebang is None for j in jobs):
        return 0
    # Windows binaries are never patched, only launchers' #! lines: no room to check.
    tight = [j for j in jobs if j.mode == "binary" and len(new_b) > j.room and not ON_WINDOWS]
    if tight:
        limit = min(j.room for j in tight)
        names = ", ".join(sorted(j.path for j in tight)[:5])
        more = " and %d more" % (len(tight) - 5) if len(tight) > 5 else ""
        raise SystemExit(
            "conda-unpack: cannot move the environment to %s (%d characters): %s%s hold "
            "binary strings with room for at most %d characters. Nothing was changed; "
            "extract the archive to a shorter path." % (new_prefix, len(new_b), names, more, limit)
        )
    root_real = os.path.realpath(root)
    mapped = _mapped_files()
    _INSIDE.clear()  # directories may have changed since an earlier call in this process
    fix = _rewrite_windows if ON_WINDOWS else _rewrite

    def rewrite(job):
        return fix(root, root_real, new_b, job, mapped)

    if workers is None:
        # A process per core, each with a few hundred files at least: starting one costs
        # about as much as rewriting a hundred small files.
        workers = min(_cores(), 8, len(jobs) // 256) if hasattr(os, "fork") else 1
    progress = _Progress(len(jobs), verbose)
    if workers > 1:
        changed = _forked(jobs, rewrite, progress, workers)
    else:
        changed = _serial(jobs, rewrite, progress)
    if verbose and jobs:
        sys.stdout.write("\n")
    tmp = state + ".tmp"
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(new_prefix + "\n")
    os.replace(tmp, state)
    return changed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    verbose = False
    if argv:  # argparse is a tenth of a typical run's time: imported only when needed
        import argparse

        parser = argparse.ArgumentParser(
            prog="conda-unpack",
            description="Finish unpacking the environment after unarchiving: rewrite the "
            "prefix in every file that holds it, for the directory the environment is in now.",
        )
        parser.add_argument("--version", action="store_true", help="Show version then exit")
        parser.add_argument(
            "--verbose", "-v", action="store_true", help="Show progress bar during unpacking"
        )
        parser.add_argument("--new-prefix", help=argparse.SUPPRESS)
        args = parser.parse_args(argv)
        if args.version:
            print("conda-unpack %s" % VERSION)
            return 0
        if args.new_prefix is not None:
            _set_new_prefix(args.new_prefix)
        verbose = args.verbose
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if verbose and _prefix_records:
        print("Unpacking environment...")
    try:
        unpack(root, verbose=verbose)
    except KeyboardInterrupt:
        sys.stderr.write(
            "\nconda-unpack: interrupted; every file is old or new. Run it again to finish.\n"
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
