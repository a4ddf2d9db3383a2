"""Packing an environment: the steps from a :class:`CondaEnv` to an archive on disk.

The archive is written under a temporary name next to the output and renamed into place
only when complete, so a failure or Ctrl-C never leaves a partial archive behind.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, TypeVar

from . import _core, installer
from ._version import __version__
from .env import CondaEnv, missing_files_error
from .errors import CondaPackException, PackIOError
from .files import FileTable
from .plan import (
    Plan,
    canonical_format,
    check_dest_characters,
    check_dest_room,
    check_level,
    check_output_location,
    normalize_arcroot,
    output_and_format,
    parcel_output,
    parse_n_threads,
    plan_entries,
    source_date,
)
from .progress import ProgressBar
from .unpack import (
    Generated,
    PrefixRecord,
    PrefixRows,
    ShebangRecord,
    activation_scripts,
    conda_unpack_files,
    conda_unpack_program,
    parcel_files,
    relocation_hook,
)
from .warn import warn
from .windows import (
    installed_elsewhere_error,
    is_windows_absolute,
    rewrite_for_dest,
    windows_install_prefix,
)

# Windows has no fcntl, no O_NOFOLLOW/O_DIRECTORY, no uid, and os.kill(pid, 0) would end the
# process there instead of asking whether it lives.
_WINDOWS = os.name == "nt"
if not _WINDOWS:
    import fcntl

if TYPE_CHECKING:
    from ._core import _Entry

__all__ = ["pack", "pack_env"]

_T = TypeVar("_T")


def pack(
    name=None,
    prefix=None,
    output=None,
    format="infer",
    arcroot="",
    dest_prefix=None,
    parcel_root=None,
    parcel_name=None,
    parcel_version=None,
    parcel_distro=None,
    verbose=False,
    force=False,
    compress_level=4,
    n_threads=None,
    zip_symlinks=False,
    zip_64=True,
    filters=None,
    ignore_editable_packages=False,
    ignore_missing_files=False,
    auto_relocate=True,
):
    """Write an archive of a conda environment; return the archive's path.

    Give the environment by ``name`` or by ``prefix`` (not both); with neither, the
    activated environment is packed. The other arguments are the ``conda-pack`` command's
    options, under the same names.

    Parameters
    ----------
    name : str, optional
        An environment conda knows by this name; ``'base'`` (or ``'root'``) is conda's
        root environment.
    prefix : str, optional
        The directory of the environment.
    output : str, optional
        Where to write the archive. Default: the environment's name, a dot and the format
        (``my_env.tar.gz`` when ``format`` is not given either), in the current directory;
        parcels default to ``NAME-VERSION-DISTRO.parcel``.
    format : {'infer', 'zip', 'tar.gz', 'tgz', 'tar.bz2', 'tbz2', 'tar.xz', 'txz',
        'tar.zst', 'tzst', 'tar', 'parcel', 'squashfs', 'no-archive'}, optional
        The kind of archive. ``'infer'`` (the default) takes it from the extension of
        ``output``, or ``tar.gz`` without ``output``.
    arcroot : str, optional
        A relative directory inside the archive to put the environment in. Default:
        ``''``, the top of the archive.
    dest_prefix : str, optional
        An absolute path to rewrite the environment's prefix to while packing, for an
        archive that will be unpacked only there. Such an archive carries no
        ``conda-unpack``. Not for parcels.
    parcel_root, parcel_name, parcel_version, parcel_distro : str, optional
        For ``format='parcel'``: the directory holding every parcel on the target nodes
        (default ``/opt/cloudera/parcels``), the parcel's name (default: the
        environment's), its version (default: today as ``YYYY.MM.DD``) and its
        distribution tag (default ``el7``). Name and tag may not hold hyphens. The
        environment is packed for ``parcel_root/NAME-VERSION``, which sets
        ``dest_prefix`` and ``arcroot``, so neither may be given with a parcel.
    verbose : bool, optional
        Print what is being done on stdout and, when stderr is a terminal, a progress
        bar there. Default: False.
    force : bool, optional
        Replace an archive (or an earlier ``no-archive`` output) at ``output``, and
        create missing parent directories of it. Default: False.
    compress_level : int, optional
        How hard to compress: 0 to 9, 1 to 9 for ``tar.bz2``, -7 to 22 for ``tar.zst``.
        Higher is smaller and slower. Default: 4.
    n_threads : int, optional
        Threads reading and compressing files. None (the default) or -1: one per CPU
        this process may run on, which also caps larger counts. The archive is the same
        for any count.
    zip_symlinks : bool, optional
        For ``zip``: store symbolic links as links rather than copies of their targets.
        Smaller, but some unzip programs do not restore links. Default: False.
    zip_64 : bool, optional
        For ``zip``: allow ZIP64 extensions. Default: True.
    filters : list, optional
        ``(kind, pattern)`` pairs applied in order: kind ``'exclude'`` leaves out the
        files matching the glob ``pattern``, ``'include'`` puts matching ones back.
    ignore_editable_packages : bool, optional
        Pack even with editable (``pip install -e``) packages installed, which will not
        work from the archive. Default: False, which refuses.
    ignore_missing_files : bool, optional
        Pack even if files conda installed are missing or were changed. Default: False,
        which refuses and lists them.
    auto_relocate : bool, optional
        Make an environment with Python relocate itself the first time its Python starts
        in a new place (a startup hook in site-packages runs what ``conda-unpack`` does),
        so that it works where nobody runs ``conda-unpack``, e.g. on Spark or YARN
        executors. Default is True; only archives that carry ``conda-unpack`` (no
        ``dest_prefix``) get the hook.

    Returns
    -------
    out_path : str
        The path of the archive (or directory, for ``no-archive``) written.

    Raises
    ------
    CondaPackException
        For anything the caller can fix: a bad argument, an environment that cannot be
        packed as asked, an output that cannot be written.
    """
    if name and prefix:
        raise CondaPackException("Cannot specify both 'name' and 'prefix'")
    if verbose:
        print("Collecting packages...")
    kwargs = dict(
        ignore_editable_packages=ignore_editable_packages,
        ignore_missing_files=ignore_missing_files,
    )
    if prefix:
        env = CondaEnv.from_prefix(prefix, **kwargs)
    elif name:
        env = CondaEnv.from_name(name, **kwargs)
    else:
        env = CondaEnv.from_default(**kwargs)
    for kind, pattern in filters or ():
        if kind == "exclude":
            env = env.exclude(pattern)
        elif kind == "include":
            env = env.include(pattern)
        else:
            raise CondaPackException("Unknown filter of kind %r" % kind)
    return env.pack(
        output=output,
        format=format,
        arcroot=arcroot,
        dest_prefix=dest_prefix,
        parcel_root=parcel_root,
        parcel_name=parcel_name,
        parcel_version=parcel_version,
        parcel_distro=parcel_distro,
        verbose=verbose,
        force=force,
        compress_level=compress_level,
        n_threads=n_threads,
        zip_symlinks=zip_symlinks,
        zip_64=zip_64,
        auto_relocate=auto_relocate,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _replace_dir(tmp: str, output: str) -> None:
    # Whether `output` may be replaced was checked before packing started.
    if os.path.lexists(output):
        if not os.path.isdir(output) or os.path.islink(output):
            os.unlink(output)
        else:
            shutil.rmtree(output)
    os.rename(tmp, output)


#: The names we stage output under, next to it: ``.<output>.conda-pack-<pid>-<random>.partial``.
#: The pid, and a lock held on the file or directory while the pack runs, tell a live
#: pack's from one killed mid-way, which the next pack into the directory removes.
_STAGING = re.compile(r"\..*\.conda-pack-([0-9]+)-[a-z0-9_]+\.partial\Z", re.S)
_NAME_MAX = 255


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


def _locked(fd: int) -> bool:
    """Take the lock on ``fd`` if nobody holds it; False if someone does (or the file
    system has no locks, when nobody can tell)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def remove_stale_partials(parent: str) -> None:
    """Remove our staged outputs in ``parent`` left by packs that died (SIGKILL, power
    loss): only names of our pattern, owned by this user, whose process is gone and whose
    lock nobody holds. Anything else is left alone, and on Windows everything: neither the
    process nor a lock can be asked there with the standard library."""
    if _WINDOWS:
        return
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        found = _STAGING.match(name)
        if found is None or _alive(int(found.group(1))):
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
            if st.st_uid != os.getuid() or not (S_ISREG(st.st_mode) or S_ISDIR(st.st_mode)):
                continue
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags | (os.O_DIRECTORY if S_ISDIR(st.st_mode) else 0))
        except OSError:
            continue
        try:
            if _locked(fd):
                _remove(path)
        finally:
            os.close(fd)


def _make_partial(path: str, directory: bool) -> int | None:
    """Create ``path`` (failing if it exists) and return a descriptor of it to hold the
    lock with; None on Windows, where a file held open cannot be renamed into place."""
    if _WINDOWS:
        if directory:
            os.mkdir(path)
        else:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return None
    if directory:
        os.mkdir(path, 0o700)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


@contextmanager
def _partial(parent: str, output: str, directory: bool) -> Iterator[str]:
    """A new file or directory in ``parent`` under a staging name for ``output``, locked
    while the block runs and removed if it fails. A Ctrl-C at any moment, even just
    after the name is made, leaves nothing behind."""
    tail = ".conda-pack-%d-" % os.getpid()
    # A name of at most 255 bytes whatever the output's (the random part is 8 long).
    room = _NAME_MAX - len("." + tail + "12345678.partial")
    prefix = "." + os.fsdecode(os.fsencode(os.path.basename(output))[:room]) + tail
    tmp = None
    try:
        while True:
            tmp = os.path.join(parent, prefix + secrets.token_hex(4) + ".partial")
            try:
                fd = _make_partial(tmp, directory)
                break
            except FileExistsError:
                continue
    except OSError as e:
        raise CondaPackException("Cannot write to %s: %s" % (parent, e.strerror)) from e
    except BaseException:
        if tmp is not None:
            _remove(tmp)  # interrupted, perhaps once it was made
        raise
    try:
        if fd is not None:
            _locked(fd)
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _raise_naming(e: CondaPackException, paths: str, name: str) -> None:
    """Raise ``e`` again with what the regular expression ``paths`` matches in its
    message shown as ``name``, if it matches: same class (PackIOError stays catchable as
    such) and same cause (the OS error)."""
    message = re.sub(paths, lambda _: name, str(e))
    if message != str(e):
        raise type(e)(message) from (e.__cause__ or e)


@contextmanager
def staged_output(output: str, directory: bool, executable: bool = False) -> Iterator[str]:
    """A temporary path next to ``output``, moved there only if the block succeeds."""
    parent = os.path.dirname(os.path.abspath(output))
    remove_stale_partials(parent)
    with _partial(parent, output, directory) as tmp:
        try:
            yield tmp
            os.chmod(tmp, (0o777 if directory or executable else 0o666) & ~_umask())
            if directory:
                _replace_dir(tmp, output)
            else:
                os.replace(tmp, output)
        except CondaPackException as e:
            # The staging name is ours, not the user's: name the output they asked for.
            _raise_naming(e, re.escape(tmp), output)
            raise


def _mksquashfs(staging: str, out: str, level: int, threads: int, verbose: bool) -> None:
    cmd = ["mksquashfs", staging, out, "-noappend", "-processors", str(threads), "-all-root"]
    cmd += ["-mkfs-time", "0"]
    if level == 0:
        cmd += ["-noI", "-noD", "-noF", "-noX"]
        what = "no"
    elif level == 9:
        cmd += ["-comp", "xz"]
        what = "xz"
    else:
        zlevel = int(level / 8 * 20)
        cmd += ["-comp", "zstd", "-Xcompression-level", str(zlevel), "-b", str(256 * 1024)]
        what = "zstd (level %d)" % zlevel
    if verbose:
        print("Running mksquashfs with %s compression (processors: %d)." % (what, threads))
        cmd.append("-quiet")
    else:
        cmd += ["-quiet", "-no-progress"]
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd, stderr=err)
        except OSError as e:
            raise CondaPackException("Could not run mksquashfs: %s" % e) from e
        try:
            # Polled: on Ctrl-C, Popen.wait and communicate first give the child a
            # quarter of a second to exit on its own.
            while proc.poll() is None:
                time.sleep(0.05)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0:
            err.seek(0)
            raise CondaPackException(
                "mksquashfs failed (exit %d): %s"
                % (proc.returncode, err.read().decode(errors="replace").strip())
            )


class _Outcome:
    """What packing learned about the files: conda-unpack's records and the problems."""

    def __init__(self) -> None:
        #: conda-unpack's prefix records, encoded as each chunk's reports come.
        self.prefix = PrefixRows()
        self.shebang: list[ShebangRecord] = []
        self.changed: dict[tuple[str, str], list[str]] = {}
        self.unrestorable: list[str] = []
        self.unmanaged_binaries: list[str] = []


def _is_bytecode(target: str) -> bool:
    return target.endswith((".pyc", ".pyo")) or "/__pycache__/" in target


def interpret(
    plan: Plan,
    reports: list,
    env_prefix: str,
    dest: str | None,
    windows: bool = False,
    out: _Outcome | None = None,
) -> _Outcome:
    """conda-unpack's records and the problems, from the core's reports, added to ``out``
    (reports come a chunk at a time). In a Windows environment conda-unpack only
    rewrites the ``#!`` line of launcher programs among binaries, which is safe for any
    file and needs no room: no offsets, no warnings."""
    out = _Outcome() if out is None else out
    found: list[PrefixRecord] = []
    for index, (outcome, _problem, modified, binary, contains, shebang, offsets) in reports:
        f = plan.file(index)
        # A copy of another file (for a link) is as good as that file, which reports for
        # itself: only the records are the copy's own.
        copy = f._copy_of is not None
        if modified and not copy:
            pkg = f._package
            key = (pkg.name, pkg.version) if pkg else ("?", "?")
            out.changed.setdefault(key, []).append(f.target + " (changed since install)")
        if f.file_mode is None:
            continue  # a plain copy: only a size check reports back
        restored = outcome in (_core.OUTCOME_RESTORED, _core.OUTCOME_CACHED)
        placeholder = (f.prefix_placeholder if restored else None) or env_prefix
        if f.file_mode in ("text", "binary") and f.prefix_placeholder:
            mode = f.file_mode
            if not restored and mode == "binary" and contains and not modified and not windows:
                if not copy:
                    out.unrestorable.append(f.target)
        else:
            mode = "binary" if binary else "text"
        if mode == "binary" and contains and not f.is_conda and not windows:
            # Strings in other binaries may be length-prefixed: patching could corrupt them.
            if not _is_bytecode(f.target) and not copy:
                out.unmanaged_binaries.append(f.target)
            continue
        if dest is not None:
            continue
        if windows and outcome == _core.OUTCOME_AS_IS and f.prefix_placeholder:
            # Packed as found (in an environment conda-unpack relocated, say), it may hold
            # the prefix only in spellings the core does not search for, such as a
            # launcher's #! line with backslashes. conda-unpack's Windows rules match every
            # spelling, and change nothing when none is there.
            contains = True
        if contains:
            spans = offsets if mode == "binary" and not windows else ()
            found.append(PrefixRecord(f.target, placeholder, mode, tuple(spans)))
        if shebang is not None:
            exe, options, _rewritten = shebang
            out.shebang.append(ShebangRecord(f.target, exe, options))
    out.prefix.add(found)
    return out


def _warn_outcome(out: _Outcome, env_prefix: str, dest: str | None) -> None:
    def listing(paths: list[str]) -> str:
        shown = "\n".join("  - " + p for p in sorted(paths)[:10])
        if len(paths) > 10:
            shown += "\n  + %d others" % (len(paths) - 10)
        return shown

    if out.unrestorable:
        warn(
            "The build placeholder could not be restored in these binary files (they are "
            "packed as installed), so they relocate only to paths of at most %d characters:\n%s"
            % (len(os.fsencode(env_prefix)), listing(out.unrestorable))
        )
    if out.unmanaged_binaries:
        warn(
            "These binary files were not installed by conda and hold the environment's "
            "path %s; conda-pack cannot safely rewrite them, so they may not work once the "
            "environment is moved%s:\n%s"
            % (
                env_prefix,
                "" if dest is None else " to %s" % dest,
                listing(out.unmanaged_binaries),
            )
        )


def _generated(
    env: CondaEnv, out: _Outcome, dest: str | None, parcel: str | None, auto_relocate: bool
) -> list[Generated]:
    layout = env._layout
    if parcel is not None:
        name, rest = parcel.split("-", 1)
        version, distro = rest.rsplit("-", 1)
        return parcel_files(name, version, distro, [p.as_dict() for p in env._packages])
    files = []
    has_conda = any(p.name == "conda" for p in env._packages)
    if not (dest is not None and has_conda):
        files += activation_scripts(layout.windows)
    if dest is None:
        script = conda_unpack_program(out.prefix, out.shebang, __version__, layout.windows)
        files += conda_unpack_files(script, layout.windows, layout.subdir)
        if auto_relocate and layout.site_packages is not None:
            files += relocation_hook(layout.site_packages, layout.windows)
    return files


def _generated_targets(
    env: CondaEnv, dest: str | None, parcel: str | None, auto_relocate: bool
) -> set:
    """Targets generated files will take, computed before packing starts."""
    if parcel is not None:
        return {"meta/parcel.json", "meta/conda_env.sh"}
    fake = _Outcome()
    return {g.target for g in _generated(env, fake, dest, None, auto_relocate)}


def pack_env(
    env: CondaEnv,
    output=None,
    format="infer",
    arcroot="",
    dest_prefix=None,
    parcel_root=None,
    parcel_name=None,
    parcel_version=None,
    parcel_distro=None,
    verbose=False,
    force=False,
    compress_level=4,
    n_threads=None,
    zip_symlinks=False,
    zip_64=True,
    auto_relocate=True,
) -> str:
    output, format = output_and_format(env.name, output, format)
    parcel = None
    if format == "parcel":
        if dest_prefix or arcroot:
            raise CondaPackException("Cannot specify 'dest_prefix'/'arcroot' for parcels")
        dest_prefix, arcroot, parcel = parcel_output(
            env.name, parcel_root, parcel_name, parcel_version, parcel_distro
        )
        if output is None:
            output = parcel + ".parcel"
    else:
        arcroot = normalize_arcroot(arcroot)
    kind = canonical_format(format)
    level = check_level(kind, compress_level)
    threads = parse_n_threads(n_threads)
    if dest_prefix is not None:
        windows_abs = env._layout.windows and is_windows_absolute(dest_prefix)
        if not (dest_prefix.startswith("/") or windows_abs):
            raise CondaPackException("--dest-prefix %r must be an absolute path" % dest_prefix)
        check_dest_characters(dest_prefix, env._layout.windows)
        check_dest_room(env, dest_prefix)
    if kind == "squashfs" and shutil.which("mksquashfs") is None:
        raise CondaPackException(
            "Command 'mksquashfs' not found. Install squashfs-tools "
            "(e.g. 'apt-get install squashfs-tools' or 'conda install squashfs-tools')."
        )
    check_output_location(output, force, kind == "no-archive", arcroot)
    if verbose:
        print("Packing environment at %r to %r" % (env.prefix, output))

    def write(path: str, writer_format: str) -> list:
        return _write(
            env,
            path,
            writer_format,
            level,
            threads,
            arcroot,
            dest_prefix,
            parcel,
            zip_symlinks,
            zip_64,
            verbose,
            auto_relocate=auto_relocate,
        )

    if kind == "sh" and arcroot:
        raise CondaPackException("An installer (format sh) cannot have an --arcroot")
    with staged_output(output, directory=kind == "no-archive", executable=kind == "sh") as tmp:
        if kind == "sh":
            # The payload is a tar.gz, staged beside the output, then copied after the
            # installer's script (which needs conda-unpack's records: known at the end).
            with _partial(os.path.dirname(tmp), output, directory=False) as payload:
                try:
                    generated = write(payload, "tar.gz")
                    script = next((g[1] for g in generated if g[0] == "bin/conda-unpack"), None)
                    installer.write(tmp, payload, script)
                finally:
                    _remove(payload)
            return output
        if kind != "squashfs":
            write(tmp, "dir" if kind == "no-archive" else kind)
            return output
        with _partial(os.path.dirname(tmp), output, directory=True) as staging:
            try:
                write(staging, "dir-linked")
                _mksquashfs(staging, tmp, level, threads, verbose)
            except CondaPackException as e:
                # A file of the staging tree is no name the user knows: the output is.
                _raise_naming(e, re.escape(staging) + "(/[^:]*)?", tmp)
                raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return output


def _chunks_ahead(plan) -> Iterator[tuple[int, list]]:
    """``plan.chunks()``, each made by a helper thread while the core writes the one
    before (the core releases the GIL): Python's share of the work, ~0.3 s per 100k files,
    then no longer holds up the archive. Only one chunk is made ahead: a chunk is a few
    thousand tuples, and each one more alive is a megabyte or so more at the peak."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    room = threading.Semaphore(1)  # released when the consumer takes a chunk
    stop = threading.Event()
    done = object()

    def wait_for_room() -> bool:
        while not stop.is_set():
            if room.acquire(timeout=0.1):
                return True
        return False

    def offer(item: object) -> bool:
        """Hand ``item`` over unless the consumer has stopped; False if it has."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            chunks = plan.chunks()
            while wait_for_room():
                item = next(chunks, done)
                if not offer(item) or item is done:
                    return
        except BaseException as e:  # handed to the consumer, raised there
            offer(e)

    worker = threading.Thread(target=produce, name="conda-pack-plan", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            room.release()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            item = None  # not kept alive while the next chunk is awaited
    finally:
        stop.set()
        worker.join()


@contextmanager
def _in_background(consume: Callable[[_T], None]) -> Iterator[Callable[[_T], None]]:
    """A function handing items to ``consume``, which a helper thread calls in order
    while the caller goes on; leaving the block waits for it, and an error it raised is
    raised here. An error in the block stops it without waiting for the rest."""
    todo: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    failed: list[BaseException] = []

    def run() -> None:
        while (item := todo.get()) is not done:
            if not failed:
                try:
                    consume(item)
                except BaseException as e:  # raised in the caller's thread
                    failed.append(e)

    def hand_over(item: _T) -> None:
        if failed:
            raise failed[0]
        todo.put(item)

    worker = threading.Thread(target=run, name="conda-pack-reports", daemon=True)
    worker.start()
    try:
        yield hand_over
    except BaseException as e:
        failed.append(e)  # the helper skips what is left
        raise
    finally:
        todo.put(done)
        worker.join()
    if failed:
        raise failed[0]


def _write_plan(writer, plan, bar, take_reports: Callable[[list], None]) -> None:
    """Feed the plan to the writer a chunk at a time (see ``Plan``). Each chunk's
    reports, indexed into the plan, go to ``take_reports`` on a helper thread while the
    core writes the next chunk: they are read as they come, not kept for the end."""
    before = [0, 0]  # files and bytes written by earlier chunks
    last = [0, 0]  # the current chunk's latest counts

    def progress(files: int, nbytes: int) -> None:
        last[:] = files, nbytes
        bar(before[0] + files, before[1] + nbytes)

    with _in_background(take_reports) as hand_over:
        for start, chunk in _chunks_ahead(plan):
            last[:] = 0, 0
            got = writer.write(chunk, progress if bar is not None else None)
            del chunk  # written: not kept while the next one is awaited
            if got:
                hand_over([(start + i, r) for i, r in got])
            before[0] += last[0]
            before[1] += last[1]


def _write(
    env,
    path,
    writer_format,
    level,
    threads,
    arcroot,
    dest,
    parcel,
    zip_symlinks,
    zip_64,
    verbose,
    auto_relocate=True,
) -> list:
    replaced = _generated_targets(env, dest, parcel, auto_relocate)
    plan = plan_entries(env, dest, replaced, writer_format == "zip" and not zip_symlinks)
    # conda-unpack's records name the prefix the files hold: where the environment is,
    # unless it was installed on Windows and is packed from elsewhere.
    held = env.prefix
    installed_at = windows_install_prefix(env) if env._layout.windows else None
    if installed_at is not None:
        if not env.ignore_missing_files:
            raise installed_elsewhere_error(env, installed_at)
        held = installed_at
    if dest is not None and env._layout.windows:
        rewrite_for_dest(plan, env, dest)
    when = source_date(env.prefix)
    shared = plan.files.shared_inodes if isinstance(plan.files, FileTable) else None
    writer = _core.ArchiveWriter(
        path,
        writer_format,
        level,
        threads,
        arcroot,
        env.prefix,
        zip_symlinks,
        zip_64,
        when,
        shared,
    )
    bar = ProgressBar(len(plan), plan.total_bytes) if ProgressBar.wanted(verbose) else None
    out = _Outcome()

    def take_reports(reports: list) -> None:
        interpret(plan, reports, held, dest, env._layout.windows, out)

    completed = False
    try:
        _write_plan(writer, plan, bar, take_reports)
        completed = True
    except PackIOError as e:
        cause = e.__cause__
        unreadable = isinstance(cause, PermissionError) and str(cause.filename).startswith(
            os.path.join(env.prefix, "")
        )
        if not unreadable:
            raise
        raise PackIOError("%s: make it readable, or leave it out with --exclude" % e) from cause
    finally:
        if bar is not None:
            bar.close(completed)
    if out.changed and not env.ignore_missing_files:
        raise missing_files_error(out.changed)
    _warn_outcome(out, env.prefix, dest)
    generated: list[_Entry] = [
        (g.target, g.data, None, g.mode, when, len(g.data))
        for g in _generated(env, out, dest, parcel, auto_relocate)
    ]
    # Our unpacker reads the generated files (conda-unpack's records) before the rest.
    writer.mark_tail()
    writer.write(generated)
    writer.finish()
    return generated
