"""What gets archived, file by file: :class:`File`, and :class:`FileTable`, the compact
sequence of them an environment is loaded into."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from ._core import FLAG_SHA256, FLAG_SHA256_IN_PREFIX, FLAG_SIZE_RECORDED, KIND_SYMLINK
from .metadata import Package

__all__ = ["File", "FileTable"]


class File:
    """One entry of the archive: where its bytes come from and where they go.

    Parameters
    ----------
    source : str
        The absolute path to read it from.
    target : str
        Its path relative to the environment's root, e.g. ``lib/python3.11/os.py``: its
        place in the archive (under ``arcroot``, if one is given).
    is_conda : bool, optional
        True if a conda package installed it; False for anything else (pip, the user).
    file_mode : {None, 'text', 'binary', 'unknown'}, optional
        How it holds the prefix: ``'text'`` or ``'binary'`` as its package recorded,
        ``'unknown'`` to have its bytes scanned for the prefix, None if it holds none.
    prefix_placeholder : None or str, optional
        The placeholder prefix its package was built with, when it holds one.
    """

    __slots__ = (
        "_source",
        "_root",
        "target",
        "is_conda",
        "file_mode",
        "prefix_placeholder",
        "_record",
        "_package",
        "_size",
        "_check_size",
        "_copy_of",
    )

    def __init__(
        self,
        source: str,
        target: str,
        is_conda: bool = True,
        file_mode: str | None = None,
        prefix_placeholder: str | None = None,
    ) -> None:
        self._source: str | None = source
        #: The environment's root, when the source is ``_root/target`` (``_in_env``).
        self._root: str | None = None
        self.target = target
        self.is_conda = is_conda
        self.file_mode = file_mode
        self.prefix_placeholder = prefix_placeholder
        #: (size_in_bytes, sha256, sha256_in_prefix) of a conda file with a placeholder.
        self._record: tuple | None = None
        self._package: Package | None = None
        #: Size from the scan or the record, for progress and batching.
        self._size: int | None = None
        #: The packer must report this conda file if its size is not `_size`.
        self._check_size = False
        #: The file this one copies under another name (for a link, in archives that
        #: store copies instead of links).
        self._copy_of: File | None = None

    @classmethod
    def _in_env(cls, root, target, is_conda, file_mode, placeholder, size, package) -> File:
        """A file at ``root/target``; its source path is derived when asked for, which
        saves a string per file in environments of hundreds of thousands of files."""
        f = cls.__new__(cls)
        f._source = None
        f._root = root
        f.target = target
        f.is_conda = is_conda
        f.file_mode = file_mode
        f.prefix_placeholder = placeholder
        f._record = None
        f._package = package
        f._size = size
        f._check_size = False
        f._copy_of = None
        return f

    @property
    def source(self) -> str:
        if self._source is not None:
            return self._source
        return self._root + "/" + self.target  # type: ignore[operator]  # set by _in_env

    @source.setter
    def source(self, value: str) -> None:
        self._source = value

    def __repr__(self) -> str:
        return "File<%r, is_conda=%r>" % (self.target, self.is_conda)


# Per-entry bits of a :class:`FileTable` (what loading decided; the core's flags of what
# the records say are ``_core.FLAG_*``).
#: A conda package installed the file.
IS_CONDA = 1
#: The packer must report the file if its size is not the package's.
CHECK_SIZE = 2
#: The file may hold the prefix; its bytes tell whether and how (``file_mode="unknown"``).
UNKNOWN = 4
#: The file holds a placeholder (``EnvColumns.placeholder_facts``).
HOLDS_PLACEHOLDER = 8


class EnvColumns:
    """One environment's files as ``_core.index_env`` returned them (one element per
    entry, paths in order) plus what loading decided for each: a few bytes per file.
    A file with a placeholder gets its facts from ``placeholders``; the rare file whose
    source lies elsewhere is kept whole in ``special``."""

    __slots__ = (
        "root",
        "paths",
        "ends",
        "size",
        "package",
        "packages",
        "info",
        "flags",
        "ph_entry",
        "ph_text",
        "ph_mode",
        "ph_strings",
        "ph_hashes",
        "legacy",
        "special",
        "shared_inodes",
        "kind",
    )

    def __init__(self, root: str, columns: dict, packages: list[Package]) -> None:
        self.root = root
        #: Every path followed by a NUL; ``ends[i]`` is where path ``i``'s NUL is.
        self.paths: bytes = columns["paths"]
        self.ends = memoryview(columns["ends"]).cast(columns["ends_type"])
        self.size = memoryview(columns["size"]).cast(columns["size_type"])
        self.package = memoryview(columns["package"]).cast("i")
        self.packages = packages
        self.info = bytearray(len(self.ends))
        self.flags: bytes = columns["flags"]
        ph = columns["placeholders"]
        #: The entries whose record names a placeholder, and its facts (see _core.pyi).
        self.ph_entry = memoryview(ph["entry"]).cast("Q")
        self.ph_text = memoryview(ph["placeholder"]).cast("I")
        self.ph_mode = memoryview(ph["mode"]).cast("I")
        self.ph_strings: list[str] = ph["strings"]
        self.ph_hashes: bytes = ph["hashes"]
        #: ``(placeholder, file_mode)`` from a package's legacy ``info/has_prefix``.
        self.legacy: dict[int, tuple[str, str]] = {}
        self.special: dict[int, File] = {}
        #: Inodes found under several names here (native u64s): the packer need only
        #: remember these to store hard links.
        self.shared_inodes: bytes = columns["shared_inodes"]
        #: index_env's kind letter per entry (``l`` for a symlink): the few links are
        #: found in it by a scan in C when an archive must store copies for them.
        self.kind: bytes = columns["kind"]

    def target(self, e: int) -> str:
        start = self.ends[e - 1] + 1 if e else 0
        return self.paths[start : self.ends[e]].decode("utf-8", "surrogateescape")

    def targets(self, block: int = 4096) -> Iterator[str]:
        """Every entry's path in order, decoded a block at a time: a list of them all
        would cost ~100 bytes a path (10 MB for the 3 GB benchmark env) at the moment
        the environment is loaded, which is when the core's index is largest too."""
        paths, ends = self.paths, self.ends
        start = 0
        for first in range(0, len(ends), block):
            stop = ends[min(first + block, len(ends)) - 1]
            yield from paths[start:stop].decode("utf-8", "surrogateescape").split("\0")
            start = stop + 1

    def placeholder_facts(self, e: int) -> tuple:
        """``(placeholder, file_mode, sha256, sha256_in_prefix)`` of entry ``e``."""
        if e in self.legacy:
            return (*self.legacy[e], None, None)
        k = bisect_left(self.ph_entry, e)
        mode = self.ph_mode[k]
        flags = self.flags[e]
        h = self.ph_hashes[64 * k : 64 * k + 64]
        return (
            self.ph_strings[self.ph_text[k]],
            self.ph_strings[mode - 1] if mode else None,
            h[:32].hex() if flags & FLAG_SHA256 else None,
            h[32:].hex() if flags & FLAG_SHA256_IN_PREFIX else None,
        )

    def file(self, e: int) -> File:
        f = self.special.get(e)
        if f is not None:
            return f
        info = self.info[e]
        pkg = self.package[e]
        target = self.target(e)
        package = self.packages[pkg] if pkg >= 0 else None
        if info & HOLDS_PLACEHOLDER:
            placeholder, mode, sha, sha_in = self.placeholder_facts(e)
            size = self.size[e]
            f = File._in_env(self.root, target, True, mode or "text", placeholder, size, package)
            expected = size if self.flags[e] & FLAG_SIZE_RECORDED else None
            f._record = (expected, sha, sha_in)
            return f
        f = File._in_env(
            self.root,
            target,
            bool(info & IS_CONDA),
            "unknown" if info & UNKNOWN else None,
            None,
            self.size[e],
            package,
        )
        f._check_size = bool(info & CHECK_SIZE)
        return f


class FileTable(Sequence):
    """The files of an environment, held as rows of an :class:`EnvColumns`; a
    :class:`File` is made when one is asked for. A list of ``File`` objects would cost
    ~800 bytes per file, which is most of the memory of packing 100k+ files. Rows are
    entry numbers, and entries are in path order, so sorted rows are sorted targets."""

    __slots__ = ("_cols", "_rows")

    def __init__(self, cols: EnvColumns, rows: array) -> None:
        self._cols = cols
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._cols.file(e) for e in self._rows[i]]
        return self._cols.file(self._rows[i])

    def __iter__(self) -> Iterator[File]:
        file = self._cols.file
        for e in self._rows:
            yield file(e)

    def target(self, i: int) -> str:
        return self._cols.target(self._rows[i])

    @property
    def shared_inodes(self) -> bytes:
        return self._cols.shared_inodes

    def total_size(self) -> int:
        size = self._cols.size
        special = self._cols.special
        if not special:
            return sum(size[e] for e in self._rows)
        return sum(size[e] if e not in special else (special[e]._size or 0) for e in self._rows)

    def partition(self, matches: Callable[[str], object]) -> tuple[FileTable, FileTable]:
        """``(rows whose target does not match, rows whose target does)``."""
        keep, drop = array("I"), array("I")
        target = self._cols.target
        for e in self._rows:
            (drop if matches(target(e)) else keep).append(e)
        return FileTable(self._cols, keep), FileTable(self._cols, drop)

    def without(self, targets: set[str]) -> FileTable:
        """The rows whose target is none of ``targets``: found in the paths column by
        their bytes, not by decoding every row's path (a few names among 100k+ rows)."""
        paths, ends = self._cols.paths, self._cols.ends
        found = set()
        for t in targets:
            name = t.encode("utf-8", "surrogateescape")
            if b"\0" in name or not name:
                continue
            # A match is an entry's whole path: the start or a NUL before it, its NUL after
            # it (at `ends[entry]`). A path may be recorded twice: every match counts.
            if paths.startswith(name + b"\0"):
                found.add(bisect_left(ends, len(name)))
            needle = b"\0" + name + b"\0"
            at = paths.find(needle)
            while at >= 0:
                found.add(bisect_left(ends, at + 1 + len(name)))
                at = paths.find(needle, at + 1 + len(name))
        if not found:
            return self
        return FileTable(self._cols, array("I", (e for e in self._rows if e not in found)))

    def links(self) -> list[int]:
        """Positions of the rows that are symlinks on disk (a link into the package
        cache, packed as the file it names, is not one)."""
        kind, rows, special = self._cols.kind, self._rows, self._cols.special
        found = []
        e = kind.find(KIND_SYMLINK)
        while e >= 0:
            if e not in special:
                i = bisect_left(rows, e)
                if i < len(rows) and rows[i] == e:
                    found.append(i)
            e = kind.find(KIND_SYMLINK, e + 1)
        return found

    def sorted(self) -> FileTable:
        # Sorting sorted rows is a linear pass in C; checking them in Python was slower.
        ordered = array("I", sorted(self._rows))
        return self if ordered == self._rows else FileTable(self._cols, ordered)

    def joined(self, other: object) -> FileTable | None:
        """Both tables' rows, if ``other`` is a table of the same environment."""
        if isinstance(other, FileTable) and other._cols is self._cols:
            return FileTable(self._cols, self._rows + other._rows)
        return None
