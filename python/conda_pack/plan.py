"""Deciding what goes into an archive: format, output name, and what each file needs.

Everything here is a decision; the bytes are moved by the Rust core (``_core``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime

from ._core import CONTENT_CONDA_META
from .env import CondaEnv
from .errors import CondaPackException
from .files import CHECK_SIZE, HOLDS_PLACEHOLDER, UNKNOWN, File, FileTable
from .formats import FORMATS
from .metadata import Layout, package_path

# Output suffix -> format, tried in order.
_SUFFIXES = (
    (".parcel", "parcel"),
    (".zip", "zip"),
    (".tar.gz", "tar.gz"),
    (".tgz", "tar.gz"),
    (".tar.bz2", "tar.bz2"),
    (".tbz2", "tar.bz2"),
    (".tar.xz", "tar.xz"),
    (".txz", "tar.xz"),
    (".tar.zst", "tar.zst"),
    (".tzst", "tar.zst"),
    (".tar", "tar"),
    (".squashfs", "squashfs"),
    (".no-archive", "no-archive"),
    (".sh", "sh"),
)
_CANONICAL = {
    "tgz": "tar.gz",
    "tbz2": "tar.bz2",
    "txz": "tar.xz",
    "tzst": "tar.zst",
    "parcel": "tar.gz",
}


def canonical_format(format: str) -> str:
    """The archive format behind an alias (a parcel is a tar.gz)."""
    return _CANONICAL.get(format, format)


def output_and_format(name: str, output: str | None = None, format: str = "infer"):
    """The output path and format, each inferred from the other as conda-pack does."""
    if output is None and format == "infer":
        format = "tar.gz"
    elif format == "infer" and output is not None:
        for suffix, fmt in _SUFFIXES:
            if output.endswith(suffix):
                format = fmt
                break
        else:
            raise CondaPackException(
                "Unknown file extension %r (pass --format, or use one of: %s)"
                % (output, ", ".join(s for s, _ in _SUFFIXES))
            )
    elif format not in FORMATS:
        raise CondaPackException("Unknown format %r" % format)
    elif output is not None and output.endswith(".parcel"):
        if format not in ("tar.gz", "tgz", "parcel"):
            raise CondaPackException("Invalid format for parcel %r" % format)
        format = "parcel"
    if output is None and format != "parcel":
        output = os.extsep.join([name, format])
    return output, format


def parcel_output(
    name, parcel_root=None, parcel_name=None, parcel_version=None, parcel_distro=None
):
    """``(dest_prefix, arcroot, name-version-distro)`` of a Cloudera parcel."""
    parcel_root = parcel_root or "/opt/cloudera/parcels"
    parcel_name = parcel_name or name
    parcel_version = parcel_version or datetime.today().strftime("%Y.%m.%d")
    parcel_distro = parcel_distro or "el7"
    if "-" in parcel_name:
        raise CondaPackException("Parcel names may not have dashes: %s" % parcel_name)
    if "-" in parcel_distro:
        raise CondaPackException("Parcel distributions may not have dashes: %s" % parcel_distro)
    arcroot = parcel_name + "-" + parcel_version
    return os.path.join(parcel_root, arcroot), arcroot, arcroot + "-" + parcel_distro


def check_output_location(
    output: str, force: bool, directory_output: bool = False, arcroot: str = ""
) -> None:
    """Fail before any work if the output cannot be written where asked."""
    if not os.path.basename(output.rstrip("/")) or (output.endswith("/") and not directory_output):
        raise CondaPackException("The output %r must name a file, not a directory" % output)
    if os.path.lexists(output) and not force:
        raise CondaPackException("File %r already exists (pass --force to overwrite it)" % output)
    if os.path.isdir(output) and not os.path.islink(output):
        if not directory_output:
            raise CondaPackException(
                "The output %r is an existing directory; name the archive file instead" % output
            )
        env_root = os.path.join(output, arcroot) if arcroot else output
        if os.listdir(output) and not os.path.isdir(os.path.join(env_root, "conda-meta")):
            raise CondaPackException(
                "Refusing to replace directory %r: it is not empty and holds no environment"
                % output
            )
    directory = os.path.dirname(output) or "."
    if force:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise CondaPackException(
                "Cannot create the output directory %s: %s" % (directory, e.strerror)
            ) from e
    if not os.path.isdir(directory):
        raise CondaPackException(
            "The target output directory %s does not exist (pass --force to create it)" % directory
        )


def normalize_arcroot(arcroot: str | None) -> str:
    """A relative archive path: '.' parts dropped, '..' refused (it would leave the
    extraction directory)."""
    parts = [p for p in re.split(r"[\\/]", arcroot or "") if p not in ("", ".")]
    if ".." in parts:
        raise CondaPackException("--arcroot %r must not contain '..'" % arcroot)
    return "/".join(parts)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def parse_n_threads(n_threads: int | None) -> int:
    """Worker threads: None or -1 means every core this process may use. More workers
    than cores cannot go faster, but each holds its own compression buffers, so a larger
    request is capped at the core count: memory stays bounded whatever ``-j`` says."""
    cores = available_cores()
    if n_threads is None or n_threads == -1:
        return cores
    if n_threads < 1:
        raise CondaPackException("n-threads must be >= 1, or -1 for all cores")
    return min(n_threads, cores)


_LEVELS = {
    "tar.gz": (0, 9),
    "sh": (0, 9),
    "zip": (0, 9),
    "tar.bz2": (1, 9),
    "tar.xz": (0, 9),
    "tar.zst": (-7, 22),
    "squashfs": (0, 9),
}


def check_level(format: str, level: int) -> int:
    bounds = _LEVELS.get(format)
    if bounds is None:
        return level
    low, high = bounds
    if not low <= level <= high:
        raise CondaPackException(
            "--compress-level %d is out of range for %s (use %d to %d)" % (level, format, low, high)
        )
    return level


def source_date(prefix: str) -> int:
    """A fixed time for generated files, so that packing twice gives identical archives."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env and env.isdigit():
        return int(env)
    meta = os.path.join(prefix, "conda-meta")
    try:
        return int(os.stat(os.path.join(meta, "history")).st_mtime)
    except OSError:
        pass
    try:
        times = [e.stat().st_mtime for e in os.scandir(meta) if e.name.endswith(".json")]
        return int(max(times)) if times else 0
    except OSError:
        return 0


class Plan:
    """The files to archive, in order, and the core's entry for each, made a chunk at a
    time: a whole environment's entries at once would cost ~150 bytes per file in Python
    and as much again in the core, for hundreds of thousands of files."""

    #: Files per ``_core.ArchiveWriter.write`` call: small next to any environment, large
    #: enough that the core's pipeline refills between calls are lost in the noise. Two
    #: chunks are alive at once, one in each language: 8192 cost 5 MB more peak memory.
    CHUNK = 4096
    #: A chunk also ends at this many rewritten files (entries with a content spec). Such
    #: an entry and its report cost ~1.5 KB of Python objects where a plain copy's costs
    #: ~150 bytes, and packages that hold the prefix cluster in path order: the 3 GB
    #: benchmark env has a stretch of ~12k files nearly all rewritten, whose full chunks
    #: made its plain tar's peak RSS 62-65 MB instead of 56-58.
    REWRITES = 1024

    def __init__(
        self,
        env: CondaEnv,
        dest: str | None,
        files: list[File] | FileTable,
        copies: dict[int, File] | None = None,
        appended: list[File] | None = None,
    ) -> None:
        self.files = files
        if isinstance(files, FileTable):
            self.total_bytes = files.total_size()
        else:
            self.total_bytes = sum(f._size or 0 for f in files)
        #: Files packed in place of the link at their index, and files packed after all
        #: others (see ``link_copies``).
        self.copies = copies or {}
        self.appended = appended or []
        self.total_bytes += sum(f._size or 0 for f in self.appended)
        #: Entries replaced outright, by index (Windows files rewritten for --dest-prefix).
        self.overrides: dict[int, tuple] = {}
        self._layout = env._layout
        self._prefix = env.prefix
        self._prefix_b = os.fsencode(env.prefix)
        self._dest_b = os.fsencode(dest) if dest is not None else None

    def __len__(self) -> int:
        return len(self.files) + len(self.appended)

    def file(self, i: int) -> File:
        """The file packed as entry ``i``."""
        n = len(self.files)
        if i >= n:
            return self.appended[i - n]
        f = self.copies.get(i)
        return self.files[i] if f is None else f

    def entry(self, i: int) -> tuple:
        """``(target, source, content, mode, mtime, size)`` of file ``i``: see ``_core.pyi``.
        Runs once per file, so the common case (a plain copy) is kept inline."""
        if i in self.overrides:
            return self.overrides[i]
        f = self.file(i)
        target = f.target
        size = f._size or 0
        mode = None
        if f.file_mode is None and not target.startswith("conda-meta/"):
            content = size if f._check_size else None
        else:
            content = content_for(f, self._layout, self._prefix_b, self._dest_b)
            if content == CONTENT_CONDA_META:
                mode = 0o644
        # A file at its place in this environment leaves the core to derive its source.
        source = None if f._source is None and f._root == self._prefix else f.source
        return (target, source, content, mode, None, size)

    def chunks(self):
        """``(first_index, entries)`` for consecutive runs of files: ``CHUNK`` of them,
        or fewer where ``REWRITES`` of them are rewritten (their content is a spec)."""
        n, total = len(self.files), len(self)
        table = isinstance(self.files, FileTable)
        start = 0
        while start < total:
            chunk: list[tuple] = []
            add, rewrites = chunk.append, 0
            # A chunk holds files of the table or appended ones, never both.
            stop = min(start + self.CHUNK, n if start < n else total)
            entries = self._table_entries if table and start < n else self._entries
            for made in entries(start, stop):
                add(made)
                if isinstance(made[2], tuple):
                    rewrites += 1
                    if rewrites == self.REWRITES:
                        break
            yield start, chunk
            start += len(chunk)

    def _entries(self, start: int, stop: int) -> Iterator[tuple]:
        return map(self.entry, range(start, stop))

    def _table_entries(self, start: int, stop: int) -> Iterator[tuple]:
        """``_entries``, with plain copies (nearly every file) made straight from the
        table's columns: making a ``File`` first costs ~3 us a file, a third of a second
        per 100k files taken from the cores that read and write them."""
        table = self.files
        assert isinstance(table, FileTable)  # as chunks() checked
        cols = table._cols
        if cols.root != self._prefix:
            yield from self._entries(start, stop)
            return
        rows, info, sizes = table._rows, cols.info, cols.size
        paths, ends = cols.paths, cols.ends
        special, overrides, entry = cols.special, self.overrides, self.entry
        copies = self.copies
        for i in range(start, stop):
            e = rows[i]
            flags = info[e]
            begin = ends[e - 1] + 1 if e else 0  # EnvColumns.target inlined: hot loop
            if (
                flags & (UNKNOWN | HOLDS_PLACEHOLDER)
                or e in special
                or i in overrides
                or i in copies
                or paths.startswith(b"conda-meta/", begin)
            ):
                yield entry(i)
                continue
            size = sizes[e]
            checked = size if flags & CHECK_SIZE else None
            yield (paths[begin : ends[e]], None, checked, None, None, size)


def _restore_spec(f: File, layout: Layout, env_prefix: bytes, dest: bytes | None) -> tuple:
    rec = f._record
    size = sha = sha_in = cache = None
    if rec is not None:
        size, sha, sha_in = rec
        pkg = f._package
        if pkg is not None and pkg.link_source:
            cache = os.path.join(pkg.link_source, package_path(f.target, pkg, layout))
    # A text file is archived as installed once restoring verified it: at a path as long
    # as the environment's or longer, conda-unpack never has to shrink it. Windows files
    # keep the placeholder, whose spelling conda-unpack's Windows rules know.
    verify_only = f.file_mode == "text" and not layout.windows and dest is None
    placeholder = os.fsencode(f.prefix_placeholder or "")  # content_for: never empty
    return (f.file_mode, env_prefix, placeholder, size, sha, sha_in, cache, verify_only)


def is_conda_record(f: File) -> bool:
    """``conda-meta/<name>.json``, as conda-pack's ``conda-meta/*.json`` pattern meant it."""
    t = f.target
    return f.is_conda and t.startswith("conda-meta/") and t.endswith(".json") and t.count("/") == 1


def content_for(f: File, layout: Layout, env_prefix: bytes, dest: bytes | None):
    """What the core must do with one file's bytes (see ``_core.pyi``)."""
    if f.file_mode is None:
        if is_conda_record(f):
            return CONTENT_CONDA_META
        return f._size if f._check_size else None
    if f.file_mode not in ("text", "binary", "unknown"):
        raise CondaPackException("unknown file_mode %r for %s" % (f.file_mode, f.target))
    shebang = not layout.windows and f.target.startswith(layout.bin_dir + "/")
    if f.file_mode != "unknown" and f.prefix_placeholder:
        return (_restore_spec(f, layout, env_prefix, dest), None, dest, shebang)
    return (None, env_prefix, dest, shebang)


def plan_entries(
    env: CondaEnv, dest: str | None, replaced: set, follow_links: bool = False
) -> Plan:
    """The env's files in its (sorted) order; ``replaced`` targets are left out because a
    generated file takes their place. ``follow_links``: the archive stores copies of what
    links point to (see ``link_copies``)."""
    files = env._files
    if isinstance(files, FileTable):
        files = files.without(replaced)
    else:
        files = [f for f in files if f.target not in replaced]
    if not follow_links:
        return Plan(env, dest, files)
    copies, appended, dropped = link_copies(files, env.prefix)
    if dropped:
        if isinstance(files, FileTable):
            files = files.without(dropped)
        else:
            files = [f for f in files if f.target not in dropped]
    at: dict[int, File] = {}
    for f in copies:
        i = _position(files, f.target)
        if i is not None:  # a copy is named as a link that is among the files
            at[i] = f
    return Plan(env, dest, files, at, appended)


def _copy_as(f: File, target: str) -> File:
    """``f``, packed under the name ``target``."""
    c = File(f.source, target, f.is_conda, f.file_mode, f.prefix_placeholder)
    c._record, c._package, c._size, c._check_size = f._record, f._package, f._size, f._check_size
    c._copy_of = f
    return c


def _target_at(files, i: int) -> str:
    return files.target(i) if isinstance(files, FileTable) else files[i].target


def _first_from(files, key: str) -> int:
    """The position of the first of the (sorted) ``files`` whose target is ``key`` or
    sorts after it."""
    lo, hi = 0, len(files)
    while lo < hi:
        mid = (lo + hi) // 2
        if _target_at(files, mid) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _position(files, target: str) -> int | None:
    """Where ``target`` is among the (sorted) ``files``, or None."""
    i = _first_from(files, target)
    return i if i < len(files) and _target_at(files, i) == target else None


def _under(files, directory: str) -> range:
    """Positions of the (sorted) ``files`` below ``directory``: every path below "d/"
    sorts from "d/" to before "d0" ('0' follows '/')."""
    return range(_first_from(files, directory + "/"), _first_from(files, directory + "0"))


def link_copies(files, prefix: str) -> tuple[list[File], list[File], set[str]]:
    """For archives that store what a link points to instead of the link (zip without
    --zip-symlinks): what to pack for each link that resolves inside the environment to
    files being packed, so that a copy is read and rewritten like the file it copies and
    conda-unpack gets records for it under its own name.

    Returns ``(copies, appended, dropped)``: the files to pack in place of file links
    (named as the links); the files to pack after all others, for what lies below linked
    directories (named below the links); and those directory links, which are packed as
    these files only. Links out of the environment, dangling ones and links to files not
    being packed are left to the core, which refuses the first two and copies the last as
    they are."""
    if isinstance(files, FileTable):
        links = files.links()
    else:
        links = [i for i, f in enumerate(files) if os.path.islink(f.source)]
    root = os.path.realpath(prefix)
    copies: list[File] = []
    appended: list[File] = []
    dropped: set[str] = set()

    def inside(target: str) -> str | None:
        real = os.path.realpath(os.path.join(prefix, target))
        below = os.path.join(root, "")
        # A target, "/"-separated: realpath spells it with "\\" on Windows.
        return real[len(below) :].replace(os.sep, "/") if real.startswith(below) else None

    def copy(f: File, name: str) -> File | None:
        """What to pack as ``name`` for the link ``f``, if it names a file being packed."""
        rel = inside(f.target)
        k = _position(files, rel) if rel is not None else None
        return _copy_as(files[k], name) if k is not None else None

    def expand(link: str, real_dir: str, seen: frozenset) -> None:
        below = _under(files, real_dir)
        if not below:
            appended.append(File(os.path.join(root, real_dir), link, False))
        for j in below:
            f = files[j]
            name = link + f.target[len(real_dir) :]
            if j not in is_link:
                appended.append(_copy_as(f, name))
                continue
            rel = inside(f.target)
            if rel is not None and os.path.isdir(os.path.join(root, rel)):
                if rel not in seen:  # a loop is cut where it comes back
                    expand(name, rel, seen | {rel})
                continue
            # Left to the core, as the link it is (a plain copy of what it names).
            appended.append(copy(f, name) or File(f.source, name, False))

    is_link = set(links)
    for i in links:
        f = files[i]
        rel = inside(f.target)
        if rel is not None and os.path.isdir(os.path.join(root, rel)):
            dropped.add(f.target)
            expand(f.target, rel, frozenset({rel}))
            continue
        c = copy(f, f.target)
        if c is not None:
            copies.append(c)
    return copies, appended, dropped


#: Characters that end or escape a quoted string in the sources holding the prefix (Python,
#: shell): a prefix holding one cannot be written there. conda-unpack refuses the same.
UNQUOTABLE = "'\"`$\\"


def check_dest_characters(dest: str, windows: bool) -> None:
    """Fail before writing anything if files naming ``dest`` would break their quoting."""
    bad = sorted({c for c in dest if c in UNQUOTABLE or c < " " or c == "\x7f"})
    if windows:
        bad = [c for c in bad if c != "\\"]
    try:
        dest.encode("utf-8")
    except UnicodeEncodeError:
        bad.append("bytes that are not UTF-8")
    if bad:
        raise CondaPackException(
            "--dest-prefix %r holds %s, which the files naming it (Python and shell sources "
            "among them) cannot hold without breaking their quoting. Choose a path without "
            "quotes, backslashes, $, ` or control characters." % (dest, " ".join(map(repr, bad)))
        )


def check_dest_room(env: CondaEnv, dest: str) -> None:
    """Fail before writing anything if a binary file cannot hold ``dest``. Windows
    binaries are never patched (only launchers' ``#!`` lines, which may grow)."""
    if env._layout.windows:
        return
    need = len(os.fsencode(dest))
    tight = [
        f
        for f in env._files
        if f.file_mode == "binary"
        and f.prefix_placeholder
        and need > len(os.fsencode(f.prefix_placeholder))
    ]
    if tight:
        room = min(len(os.fsencode(f.prefix_placeholder)) for f in tight)
        names = ", ".join(sorted(f.target for f in tight)[:5])
        more = " and %d more" % (len(tight) - 5) if len(tight) > 5 else ""
        raise CondaPackException(
            "--dest-prefix %r is %d characters, but %s%s hold binary strings with room for "
            "at most %d characters. Choose a shorter destination." % (dest, need, names, more, room)
        )
