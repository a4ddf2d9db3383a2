"""conda-unpack: finish moving a packed conda environment to the directory it is in.

conda-pack writes this file into every archive as ``bin/conda-unpack`` (Windows:
``Scripts/conda-unpack-script.py``), with the list of files that hold a prefix filled in.
Run after extracting, it rewrites those files for the environment's new location; the
startup hook conda-pack puts into site-packages runs the same code the first time the
environment's Python starts somewhere new. It uses only the standard library of any
Python 3.6+ (the environment's own interpreter is tried first).

What it promises, and how:

- Every file is old or new, whatever stops a run (Ctrl-C, SIGKILL, a full disk, an I/O
  error). Rewriting a file where it is costs ~40 us; a new file renamed over the old one
  costs 1-2 ms on ext4 (rename-over flushes the data), too much for the ten thousand text
  files of a large environment. So a file is rewritten in place only after the bytes the
  write will replace are saved in an undo journal (``conda-meta/.conda-unpack-journal.N``,
  one per worker; a record covers a batch of files and is always written at offset 0); a
  run that died mid-write leaves that record, and the next run puts the bytes back before
  it starts. Files that cannot be
  written in place (a second hard link, a running program or loaded library, no write
  permission, more than a megabyte) are replaced by rename instead, never written
  through.
- A run can always be finished, from any path: before it touches a file it records, in
  ``conda-meta/.conda-unpack-prefix``, every prefix a file may hold from then on (the old
  ones and the new one); the next run replaces any of them, longest match first, so a
  file already holding the new prefix is never rewritten again.
- Nothing outside the environment is read or written: directories are opened one level
  at a time from the environment's root without following links, and every file
  conda-unpack creates is created exclusively, never through a link.
- One run at a time: a lock on ``conda-meta/.conda-unpack.lock`` (released by the system
  when its holder dies); a second run waits, then finds nothing left to do.
- Mistakes are found before anything changes: a path too long for the binaries' room, a
  path with characters that would break the quoting of the files holding it, a state
  file that is damaged, files that cannot be written.

This module is also imported by conda-pack's tests: its byte rules must match the Rust
core's exactly (``replace_cstrings``, ``replace_text``, ``format_shebang``).
"""

import errno
import os
import stat
import struct
import sys
import time


def _json_loads():
    """``json.loads`` without importing ``json``, whose imports (``re``, ``enum``, ...)
    take longer than decoding a large environment's records: CPython's own C scanner,
    where there is one."""
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads

    class Options:
        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float
        memo = {}

    scan = make_scanner(Options())

    def loads(text):
        try:
            value, end = scan(text, 0)
            if end == len(text):
                return value
        except Exception:
            pass
        import json

        return json.loads(text)

    return loads


class json:
    """What the records line below calls (``json.loads``, as in every archive so far)."""

    loads = staticmethod(_json_loads())


# The next two assignments are filled in at pack time (the markers must stay above them):
# the version, and the placeholders, prefix records, shebang records and target platform.
# <conda-pack:version>
VERSION = "0.0.0"
# <conda-pack:data>
_DATA = json.loads('{"placeholders": [], "prefix": [], "shebang": [], "windows": false}')

# What conda-unpack keeps in the environment (conda-pack leaves all of it out of archives;
# its packer names the same files in conda_pack/traces.py).
STATE_FILE = "conda-meta/.conda-unpack-prefix"
LOCK_FILE = "conda-meta/.conda-unpack.lock"
JOURNAL_PREFIX = ".conda-unpack-journal."
TEMP_PREFIX = ".conda-unpack-"
TEMP_SUFFIX = ".tmp"
# The state file's first line while a run is under way; what follows is one prefix a line.
IN_PROGRESS = "# conda-unpack: unfinished; files may hold any of these prefixes"
# In the state file: the placeholders recorded when packing (the state of a fresh archive).
PACKED = "packed"
# Set (to anything but 0) to silence the warning the automatic relocation prints when it
# cannot relocate.
QUIET_VARIABLE = "CONDA_UNPACK_QUIET"
# Set (to anything but 0) to have it say on stderr when it relocated the environment.
VERBOSE_VARIABLE = "CONDA_UNPACK_VERBOSE"
SHEBANG_LIMIT = 127
ON_WINDOWS = bool(_DATA.get("windows"))
# Larger files are replaced by rename rather than journaled and rewritten in place.
IN_PLACE_LIMIT = 1 << 20
# Files holding the prefix are sources in Python, shell and other languages, where these
# characters end or escape a quoted string: a prefix holding one cannot be written there.
UNSAFE_CHARACTERS = "'\"`$\\"
# Set by the hidden --new-prefix option: the path files must name instead of the one the
# environment is at (to prepare an environment where it will be seen under another name,
# and to exercise the Windows rules on any OS).
_NEW_PREFIX = None


class NoRoom(Exception):
    """A binary string would grow past the NUL padding that follows it."""


class Failure(Exception):
    """A reason not to relocate, for the user: one line, without the program's name."""


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


def _prefix_pattern(olds, encoding="utf-8"):
    """One pattern for every spelling of every old prefix, so that a single pass replaces
    them all and never rewrites a new prefix that happens to contain an old one."""
    alts = set()
    for old in olds:
        alts |= _spellings(old)
    alts = sorted(alts, key=lambda a: (-len(a), a))
    import re  # only Windows targets need it; it is slow to import

    def enc(b):
        return re.escape(_recode(b, encoding))

    body = b"|".join(enc(a) for a in alts)
    marker = enc(b"\\\\?\\") + b"|" + enc(b"//?/")
    # Bytes are matched case-blind for ASCII letters only: a UTF-16 or UTF-32 letter is
    # one ASCII byte and zeros, so that is still every ASCII letter.
    return re.compile(b"(?:" + marker + b")?(?:" + body + b")", re.I)


# Text files in these encodings hold the prefix too (a .reg file, a PowerShell profile):
# conda replaces the prefix in each of them, endianness given so that no byte order mark
# is written. Their text always has NUL bytes, which UTF-8 text never has.
WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


def _recode(b, encoding):
    """UTF-8 (or surrogate-escaped) bytes ``b`` in ``encoding``."""
    if encoding == "utf-8":
        return b
    return b.decode("utf-8", "surrogateescape").encode(encoding, "surrogatepass")


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
    data = _quote_shebang(_prefix_pattern(olds).sub(lambda _: new, data), new)
    if b"\0" in data:
        for encoding in WIDE_ENCODINGS:
            data = _sub_aligned(
                _prefix_pattern(olds, encoding),
                data,
                _recode(new, encoding),
                int(encoding[4:6]) // 8,
            )
    return data


def _sub_aligned(pattern, data, new, unit):
    """``data`` with the matches of ``pattern`` that start at a multiple of ``unit`` bytes
    replaced by ``new``. Others are one encoding read out of step: little-endian UTF-16
    text read as big-endian one byte early, which would be garbled if replaced."""
    out = []
    emitted = pos = 0
    while True:
        m = pattern.search(data, pos)
        if m is None:
            break
        if m.start() % unit:
            pos = m.start() + 1
            continue
        out.append(data[emitted : m.start()])
        out.append(new)
        emitted = pos = m.end()
    if not out:
        return data
    out.append(data[emitted:])
    return b"".join(out)


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


# --- several old prefixes at once -----------------------------------------------------------
# A run that was stopped leaves files holding different prefixes (the one packed, the one it
# was moving to). The next run replaces each of them; the new prefix is matched as well, and
# kept, so that an old prefix found inside it (/env inside /env2) is never replaced. At each
# position the longest prefix wins, as a regular expression listing them longest first would.


def _matches(data, prefixes, start=0, end=None):
    """``(position, prefix)`` of each match in ``data[start:end]``, leftmost and longest
    first, not overlapping. Each prefix is searched for with ``bytes.find``, again only when
    the scan has passed its last hit."""
    end = len(data) if end is None else end
    prefixes = sorted(set(p for p in prefixes if p), key=len, reverse=True)
    nxt = [data.find(p, start, end) for p in prefixes]
    pos = start
    while True:
        best = -1
        for i, p in enumerate(prefixes):
            if 0 <= nxt[i] < pos:
                nxt[i] = data.find(p, pos, end)
            if nxt[i] >= 0 and (best < 0 or nxt[i] < nxt[best]):
                best = i
        if best < 0:
            return
        hit = nxt[best]
        yield hit, prefixes[best]
        pos = hit + len(prefixes[best])


def _substitute(data, olds, new):
    """``data`` with every match of ``olds`` replaced by ``new`` (see ``_matches``)."""
    out = []
    emitted = 0
    for pos, p in _matches(data, list(olds) + [new]):
        if p != new:
            out.append(data[emitted:pos])
            out.append(new)
            emitted = pos + len(p)
    if not out:
        return data
    out.append(data[emitted:])
    return b"".join(out)


def _olds(olds, new):
    return [o for o in olds if o and o != new]


def _growth(span, olds, new):
    """How much longer ``span`` gets when its old prefixes become ``new``."""
    if len(olds) == 1:
        return span.count(olds[0]) * (len(new) - len(olds[0]))
    return sum(len(new) - len(m) for _, m in _matches(span, olds + [new]) if m != new)


def replace_text_any(data, olds, new):
    """Text mode for any number of old prefixes; one of them: ``replace_text``."""
    olds = _olds(olds, new)
    if len(olds) == 1:
        return replace_text(data, olds[0], new)
    return _substitute(data, olds, new) if olds else data


def replace_cstrings_any(data, olds, new):
    """Binary mode for any number of old prefixes; one of them: ``replace_cstrings``. A C
    string holding several matches shrinks or grows by their total change in length."""
    olds = _olds(olds, new)
    if len(olds) <= 1:
        return replace_cstrings(data, olds[0], new) if olds else data
    out = []
    emitted = 0
    size = len(data)
    pos = 0
    while pos < size:
        first = next(_matches(data, olds + [new], pos), None)
        if first is None:
            break
        start, p = first
        if p == new:
            pos = start + len(new)
            continue
        term = data.find(b"\0", start)
        if term < 0:
            term = size
        span = data[start:term]
        grow = _growth(span, olds, new)
        if grow > 0:
            room = data[term : term + grow + 1]
            nuls = len(room) - len(room.lstrip(b"\0"))
            if nuls < grow + 1:
                raise NoRoom(
                    "string at offset %d needs %d bytes of NUL padding but has %d"
                    % (start, grow, max(nuls - 1, 0))
                )
        out.append(data[emitted:start])
        out.append(_substitute(span, olds, new))
        if grow <= 0:
            out.append(b"\0" * -grow)
            emitted = term
        else:
            emitted = term + grow
        pos = max(emitted, start + 1)
    if not out:
        return data
    out.append(data[emitted:])
    return b"".join(out)


def _cstring_patches(read, offsets, olds, new):
    """The writes that relocate the C strings in which a prefix starts at each of
    ``offsets`` (bytes before it in the same string, such as ``-L``, never move):
    ``(offset, old bytes, new bytes)`` each, for the strings not yet holding ``new``.
    Every string is read and checked first; None means one no longer starts with an
    expected prefix (the file changed since packing), and the caller must look at the whole
    file instead.
    ``read(size, offset)`` reads the file."""
    olds = _olds(olds, new)
    expected = sorted(set(olds + [new]), key=len, reverse=True)
    single = olds[0] if len(olds) == 1 else None
    patches = []
    for off in offsets:
        window = read(4096, off)
        if single is not None and window.startswith(single):
            if not (len(new) > len(single) and window.startswith(new)):
                patch = _one_cstring(window, single, new)
                if patch is not None:
                    patches.append((off, patch[0], patch[1]))
                    continue
        hit = next((p for p in expected if window.startswith(p)), None)
        if hit is None:
            return None
        if hit == new:
            continue  # moved there by an earlier run that was stopped
        while True:
            term = window.find(b"\0")
            if term >= 0:
                grow = _growth(window[:term], olds, new)
                need = term + 1 + max(grow, 0)
                if need <= len(window):
                    break
            more = read(65536, off + len(window))
            if not more or len(window) > (1 << 20):
                return None
            window += more
        old = window[:need]
        patches.append((off, old, replace_cstrings_any(old, olds, new)))
    return patches


def _one_cstring(window, old, new):
    """``_cstring_patches``' common case, the same bytes sooner: ``window`` starts with
    the only old prefix. ``(old bytes, new bytes)``, or None where the general way must
    look (no end of the string in ``window``, or too little padding after it)."""
    term = window.find(b"\0")
    if term < 0:
        return None
    span = window[:term]
    grow = span.count(old) * (len(new) - len(old))
    if grow <= 0:
        return window[: term + 1], span.replace(old, new) + b"\0" * (1 - grow)
    need = term + 1 + grow
    if window[term:need] != b"\0" * (grow + 1):
        return None
    return window[:need], span.replace(old, new) + b"\0"


# --- files, reached without leaving the environment ------------------------------------------
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ = os.O_RDONLY | _O_BINARY | _O_CLOEXEC | _O_NOFOLLOW
_WRITE = os.O_RDWR | _O_BINARY | _O_CLOEXEC | _O_NOFOLLOW
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC | _O_NOFOLLOW
# Directory descriptors: where the system can open a file relative to one, and refuse a
# link in its last component (not on Windows).
_DIR_FDS = (
    os.open in getattr(os, "supports_dir_fd", ())
    and os.rename in os.supports_dir_fd
    and bool(_O_NOFOLLOW and _O_DIRECTORY)
)


def _pread(fd, size, offset):
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _pwrite_all(fd, data, offset):
    view = memoryview(data)
    done = 0
    while done < len(view):
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, view[done:], offset + done)
        else:
            os.lseek(fd, offset + done, os.SEEK_SET)
            n = os.write(fd, view[done:])
        done += n


def _common_start(a, b):
    """How many bytes ``a`` and ``b`` begin with in common: equal chunks of growing size
    compared first, then the first unequal one halved down to its first difference."""
    n = min(len(a), len(b))
    lo, step = 0, 512
    while lo < n:
        hi = min(lo + step, n)
        if a[lo:hi] != b[lo:hi]:
            break
        lo, step = hi, step * 2
    else:
        return n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _read_all(fd, size):
    """The rest of the file: one read for a file of ``size`` bytes (a short read of a
    regular file is its end)."""
    chunks = []
    while True:
        want = max(size + 1, 65536)
        chunk = os.read(fd, want)
        if chunk:
            chunks.append(chunk)
        if len(chunk) < want:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Tree:
    """The environment's directories, each opened from its parent without following a
    link, so that whatever links an archive planted, no path leads out of the environment.
    ``parent(path)`` gives ``(directory descriptor, name)``, or ``(None, None)`` when a
    directory on the way is missing, a link or not a directory. A few dozen descriptors
    are kept open: the files come in path order, so their directories repeat."""

    KEEP = 64

    def __init__(self, root):
        self.root = root
        self._open = {"": os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)}

    def dir(self, rel):
        fd = self._open.get(rel)
        if fd is not None:
            return fd
        up, _, name = rel.rpartition("/")
        parent = self.dir(up)
        if parent is None or name in ("", ".", ".."):
            return None
        try:
            fd = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None
            raise
        if len(self._open) >= self.KEEP:
            oldest = next(k for k in self._open if k)
            os.close(self._open.pop(oldest))
        self._open[rel] = fd
        return fd

    def parent(self, path):
        up, _, name = path.rpartition("/")
        fd = self.dir(up)
        return (None, None) if fd is None else (fd, name)

    def close(self):
        for fd in self._open.values():
            os.close(fd)
        self._open = {}


class _PathTree:
    """``_Tree`` where files cannot be opened relative to a directory (Windows): paths
    from the root, each checked to resolve inside the environment before it is used."""

    def __init__(self, root):
        self.root = root
        self.real = os.path.realpath(root)
        self._inside = {}

    def dir(self, rel):
        path = os.path.join(self.root, rel) if rel else self.root
        inside = self._inside.get(rel)
        if inside is None:
            real = os.path.realpath(path)
            inside = real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)
            inside = inside and os.path.isdir(path) and not os.path.islink(path)
            self._inside[rel] = inside
        return path if inside else None

    def parent(self, path):
        up, _, name = path.rpartition("/")
        folder = self.dir(up)
        return (None, None) if folder is None else (None, os.path.join(folder, name))

    def close(self):
        pass


def _tree(root):
    return _Tree(root) if _DIR_FDS else _PathTree(root)


def _at(tree, rel_dir):
    """``(dir_fd, prefix)`` for opening names in ``rel_dir``: a descriptor, or a path."""
    if isinstance(tree, _Tree):
        return tree.dir(rel_dir), ""
    folder = tree.dir(rel_dir)
    return None, (folder + os.sep if folder else None)


def _open_in(tree, rel_dir, name, flags, mode=0o644):
    fd, base = _at(tree, rel_dir)
    if fd is None and base is None:
        raise Failure("%s is missing, or is a link or not a directory" % (rel_dir or "."))
    return os.open(base + name, flags, mode, dir_fd=fd)


def _listdir(tree, rel_dir):
    fd, base = _at(tree, rel_dir)
    if fd is None and base is None:
        return []
    if fd is not None:
        return os.listdir(fd)
    return os.listdir(base)


def _unlink(tree, rel_dir, name):
    fd, base = _at(tree, rel_dir)
    try:
        os.unlink(base + name, dir_fd=fd)
    except FileNotFoundError:
        pass


def _rename(tree, rel_dir, old, new):
    fd, base = _at(tree, rel_dir)
    os.replace(base + old, base + new, src_dir_fd=fd, dst_dir_fd=fd)


_TEMPS = [0]


def _temp_name():
    _TEMPS[0] += 1
    return "%s%d-%d%s" % (TEMP_PREFIX, os.getpid(), _TEMPS[0], TEMP_SUFFIX)


def _is_temp_name(name):
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return False
    middle = name[len(TEMP_PREFIX) : -len(TEMP_SUFFIX)].split("-")
    return len(middle) == 2 and all(m.isdigit() for m in middle)


def _write_new(dir_fd, name, data, st, keep_mtime):
    """Replace ``name`` with a new file holding ``data``: written under a temporary name
    beside it (created exclusively, never through a link), given the old file's mode,
    owner and times, then renamed over it. The old file's other hard links, and programs
    running it, keep the old bytes."""
    tmp = _temp_name()
    if dir_fd is None:  # a path (see _PathTree): the temporary goes beside it
        folder, base = os.path.split(name)
        tmp_path, target = os.path.join(folder, tmp), name
    else:
        tmp_path, target = tmp, name
    fd = os.open(tmp_path, _CREATE, 0o600, dir_fd=dir_fd)
    try:
        try:
            _pwrite_all(fd, data, 0)
            if os.chmod in os.supports_fd:
                os.chmod(fd, stat.S_IMODE(st.st_mode))
            mine = os.fstat(fd)
            if hasattr(os, "fchown") and (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
            _set_times(fd, st, keep_mtime)
        finally:
            os.close(fd)
        if dir_fd is None:
            os.chmod(tmp_path, stat.S_IMODE(st.st_mode))
            if not st.st_mode & stat.S_IWRITE:
                os.chmod(target, stat.S_IMODE(st.st_mode) | stat.S_IWRITE)  # Windows refuses
        os.replace(tmp_path, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp_path, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def _set_times(fd, st, keep_mtime):
    """Give a rewritten file its old times, so that relocating an archive gives the same
    files, times included, wherever and whenever it is done. Python sources are the
    exception: Python keeps using a cached .pyc whose recorded mtime and size match the
    source, so a source that changed gets a second more than it had."""
    bump = 0 if keep_mtime else 1000000000
    if os.utime in os.supports_fd:
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def _keeps_mtime(path):
    return not path.endswith((".py", ".pyw"))


# --- the undo journal -------------------------------------------------------------------------
# A record: magic, sequence number, file count; per file its path, its size before the
# writes and the pieces they replace (offset, bytes); then the magic and sequence number
# again. It is written at offset 0 of the worker's journal, over the one before, and is
# valid only whole: a record cut short by a kill keeps the old trailer, whose number
# differs. It covers a batch of files, written only after it: a torn file always has a
# valid record, and putting back a file of the batch that was not yet written, or was
# written whole, leaves it old, which the state allows.
_JOURNAL_HEAD = struct.Struct("<4sQI")
_JOURNAL_FILE = struct.Struct("<IQI")
_JOURNAL_PIECE = struct.Struct("<QQ")
_JOURNAL_TAIL = struct.Struct("<4sQ")
_JOURNAL_MAGIC = b"CUJ2"
# A batch ends at this many files or undo bytes, whichever comes first: one record (one
# system call) for many files, and a bounded amount of file contents held meanwhile.
BATCH_FILES = 64
BATCH_BYTES = 4 << 20


class _Journal:
    def __init__(self, tree, worker):
        self.tree = tree
        self.name = JOURNAL_PREFIX + str(worker)
        self.fd = None
        self.seq = struct.unpack("<Q", os.urandom(8))[0] >> 1

    def record(self, files):
        """Save ``(path, size, pieces)`` for each file about to be written."""
        if self.fd is None:
            _unlink(self.tree, "conda-meta", self.name)
            self.fd = _open_in(self.tree, "conda-meta", self.name, _CREATE, 0o600)
        self.seq += 1
        parts = [_JOURNAL_HEAD.pack(_JOURNAL_MAGIC, self.seq, len(files))]
        total = _JOURNAL_HEAD.size + _JOURNAL_TAIL.size
        for path, size, pieces in files:
            rel = path.encode("utf-8", "surrogateescape")
            parts.append(_JOURNAL_FILE.pack(len(rel), size, len(pieces)))
            parts.append(rel)
            total += _JOURNAL_FILE.size + len(rel)
            for off, data in pieces:
                parts.append(_JOURNAL_PIECE.pack(off, len(data)))
                parts.append(data)
                total += _JOURNAL_PIECE.size + len(data)
        parts.append(_JOURNAL_TAIL.pack(_JOURNAL_MAGIC, self.seq))
        done = 0
        if hasattr(os, "pwritev") and len(parts) <= 1024:  # no copy of the files' bytes
            done = os.pwritev(self.fd, parts, 0)
        if done < total:
            _pwrite_all(self.fd, b"".join(parts)[done:], done)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _parse_journal(data):
    """``[(path, size, pieces), ...]`` of the record at the start of ``data``, or None."""
    try:
        magic, seq, count = _JOURNAL_HEAD.unpack_from(data, 0)
        if magic != _JOURNAL_MAGIC:
            return None
        at = _JOURNAL_HEAD.size
        files = []
        for _ in range(count):
            n, size, npieces = _JOURNAL_FILE.unpack_from(data, at)
            at += _JOURNAL_FILE.size
            path = data[at : at + n].decode("utf-8", "surrogateescape")
            at += n
            pieces = []
            for _ in range(npieces):
                off, length = _JOURNAL_PIECE.unpack_from(data, at)
                at += _JOURNAL_PIECE.size
                if at + length > len(data):
                    return None
                pieces.append((off, data[at : at + length]))
                at += length
            files.append((path, size, pieces))
        tail = _JOURNAL_TAIL.unpack_from(data, at)
    except (struct.error, UnicodeDecodeError):
        return None
    return files if tail == (_JOURNAL_MAGIC, seq) else None


def _undo(tree, path, size, pieces):
    """Put back the bytes a stopped run was writing into ``path``."""
    d, name = tree.parent(path)
    if name is None:
        return
    try:
        fd = os.open(name, _WRITE, dir_fd=d)
    except FileNotFoundError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return  # not the file that was being written
        for off, data in pieces:
            _pwrite_all(fd, data, off)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _recover(tree, dirs):
    """Finish what a stopped run left: put back the file each of its workers was writing,
    and remove its journals and temporary files."""
    for name in _listdir(tree, "conda-meta"):
        if name.startswith(JOURNAL_PREFIX):
            fd = _open_in(tree, "conda-meta", name, _READ)
            try:
                record = _parse_journal(_read_all(fd, 1 << 16))
            finally:
                os.close(fd)
            for path, size, pieces in record or ():
                _undo(tree, path, size, pieces)
            _unlink(tree, "conda-meta", name)
        elif _is_temp_name(name):
            _unlink(tree, "conda-meta", name)
    for rel in sorted(dirs):
        for name in _listdir(tree, rel):
            if _is_temp_name(name):
                _unlink(tree, rel, name)


def _remove_journals(tree):
    for name in _listdir(tree, "conda-meta"):
        if name.startswith(JOURNAL_PREFIX):
            _unlink(tree, "conda-meta", name)


# --- the state: which prefixes the files hold ---------------------------------------------------


class State:
    """What conda-meta/.conda-unpack-prefix says: the prefixes files may hold (``PACKED``
    for the placeholders of the archive), and whether the last run finished (then there is
    one). Absent, the files are as packed."""

    def __init__(self, holds, done, fresh=False):
        self.holds = holds
        self.done = done
        self.fresh = fresh

    def text(self):
        if self.done:
            return self.holds[0] + "\n"
        return "".join(line + "\n" for line in [IN_PROGRESS] + self.holds)


def _valid_prefix(path):
    if not path or any(c < " " or c == "\x7f" for c in path):
        return False
    if ON_WINDOWS:
        body = path[2:] if path[1:3] == ":/" else path[1:] if path.startswith("//") else None
        return bool(body) and "//" not in body and not path.endswith("/")
    return path.startswith("/") and path != "/" and os.path.normpath(path) == path


def _damaged(what):
    return Failure(
        "%s is damaged (%s); nothing was changed. It records where this environment's "
        "files point; if you did not relocate the environment before, delete that file and "
        "run conda-unpack again, otherwise extract the archive anew." % (STATE_FILE, what)
    )


def _read_state(tree):
    try:
        fd = _open_in(tree, "conda-meta", STATE_FILE.rsplit("/", 1)[1], _READ)
    except FileNotFoundError:
        return State([PACKED], True, fresh=True)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _damaged("it is a symbolic link") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _damaged("not a regular file")
        raw = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    if not text.endswith("\n") or len(raw) >= 1 << 16:
        raise _damaged("it holds %r" % text[:80])
    lines.pop()
    if len(lines) == 1 and _valid_prefix(lines[0]):
        return State(lines, True)
    if lines[:1] == [IN_PROGRESS] and len(lines) > 1:
        holds = lines[1:]
        if all(h == PACKED or _valid_prefix(h) for h in holds):
            return State(holds, False)
    raise _damaged("it holds %r" % text[:80])


def _write_state(tree, state, durable):
    """Replace the state file (a new file renamed over it, so that it is whole). The state
    that announces a run is made durable before any file is touched."""
    tmp = _temp_name()
    fd = _open_in(tree, "conda-meta", tmp, _CREATE, 0o644)
    try:
        try:
            _pwrite_all(fd, state.text().encode("utf-8", "surrogateescape"), 0)
            if durable and hasattr(os, "fsync"):
                os.fsync(fd)
        finally:
            os.close(fd)
        _rename(tree, "conda-meta", tmp, STATE_FILE.rsplit("/", 1)[1])
    except BaseException:
        _unlink(tree, "conda-meta", tmp)
        raise
    if durable and isinstance(tree, _Tree):
        os.fsync(tree.dir("conda-meta"))


# --- the lock -----------------------------------------------------------------------------------


class _Lock:
    """``conda-meta/.conda-unpack.lock``, held for a whole run and removed by its holder
    (a waiter that then holds a removed file tries again). The system releases it when its
    holder dies, however it dies; the worker processes share it, so a run killed mid-way
    keeps it until they have finished the files in hand."""

    NAME = LOCK_FILE.rsplit("/", 1)[1]

    def __init__(self, tree, say):
        self.tree = tree
        while True:
            self.fd = self._open()
            try:
                self._take(say)
                if self._still_named():
                    return
            except BaseException:
                os.close(self.fd)
                raise
            os.close(self.fd)
            say = _quiet

    def _open(self):
        try:
            fd = _open_in(
                self.tree,
                "conda-meta",
                self.NAME,
                _WRITE | os.O_CREAT | getattr(os, "O_NONBLOCK", 0),
            )
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnly("%s: %s" % (LOCK_FILE, e.strerror)) from None
            if e.errno == errno.ELOOP:
                raise Failure("%s is a symbolic link; remove it" % LOCK_FILE) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise Failure("%s is not a regular file; remove it" % LOCK_FILE)
        return fd

    def _still_named(self):
        if not isinstance(self.tree, _Tree):
            return True  # Windows cannot remove an open file: the lock file stays
        try:
            named = os.stat(self.NAME, dir_fd=self.tree.dir("conda-meta"), follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(self.fd)
        return (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino)

    def _take(self, say):
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
                    return
                except OSError:
                    time.sleep(0.05)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            say("conda-unpack: waiting for another run on this environment to finish")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fcntl.lockf(self.fd, fcntl.LOCK_EX)  # file systems without flock (some NFS)

    def release(self):
        if isinstance(self.tree, _Tree):
            _unlink(self.tree, "conda-meta", self.NAME)
        os.close(self.fd)


class ReadOnly(Failure):
    """The environment cannot be written: nothing is attempted."""


# --- checks made before anything changes -------------------------------------------------------


def _check_target(target):
    bad = sorted(set(c for c in target if c in UNSAFE_CHARACTERS or c < " " or c == "\x7f"))
    if ON_WINDOWS:
        bad = [c for c in bad if c != "\\"]
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        bad.append("bytes that are not UTF-8")
    if bad:
        raise Failure(
            "cannot move the environment to %r: its path holds %s, which the files "
            "naming it (Python and shell sources among them) cannot hold without breaking "
            "their quoting. Nothing was changed; move it to a path without quotes, "
            "backslashes, $, ` or control characters." % (target, " ".join(repr(c) for c in bad))
        )


def _check_room(jobs, target_b):
    # Windows binaries are never patched, only launchers' #! lines: no room to check.
    tight = [j for j in jobs if j.mode == "binary" and len(target_b) > j.room and not ON_WINDOWS]
    if tight:
        limit = min(j.room for j in tight)
        names = ", ".join(sorted(j.path for j in tight)[:5])
        more = " and %d more" % (len(tight) - 5) if len(tight) > 5 else ""
        raise Failure(
            "cannot move the environment to %s (%d characters): %s%s hold binary strings "
            "with room for at most %d characters. Nothing was changed; extract the archive "
            "to a shorter path." % (os.fsdecode(target_b), len(target_b), names, more, limit)
        )


def _check_claim(tree, jobs, prefix):
    """A state that says the files hold ``prefix`` is believed only if one of them does: a
    wrong one would have every occurrence of some unrelated path replaced."""
    want = os.fsencode(prefix)
    looked = 0
    for job in jobs:
        if job.mode != "binary" or not job.offsets or ON_WINDOWS:
            continue
        d, name = tree.parent(job.path)
        if name is None:
            continue
        try:
            fd = os.open(name, _READ, dir_fd=d)
        except OSError:
            continue
        try:
            if _pread(fd, len(want), job.offsets[0]) == want:
                return
        finally:
            os.close(fd)
        looked += 1
        if looked == 8:
            break
    if looked:
        raise _damaged("it says the files hold %s, but none of those looked at does" % prefix)
    for job in jobs[:8]:
        d, name = tree.parent(job.path)
        if name is None:
            continue
        try:
            fd = os.open(name, _READ, dir_fd=d)
        except OSError:
            continue
        try:
            if want in _read_all(fd, 0):
                return
        finally:
            os.close(fd)
        looked += 1
    if looked:
        raise _damaged("it says the files hold %s, but none of those looked at does" % prefix)


def _check_writable(tree, jobs, mapped):
    """Every file must be writable in place or replaceable (its directory writable)."""
    if not hasattr(os, "access") or not isinstance(tree, _Tree):
        return
    by_dir = {}
    for job in jobs:
        by_dir.setdefault(job.path.rpartition("/")[0], []).append(job)
    stuck = []
    for rel, members in by_dir.items():
        fd = tree.dir(rel)
        if fd is None or os.access(".", os.W_OK | os.X_OK, dir_fd=fd):
            continue
        for job in members:
            try:
                st = os.stat(job.path.rpartition("/")[2], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            in_place = (
                st.st_nlink == 1
                and (st.st_dev, st.st_ino) not in mapped
                and st.st_size <= IN_PLACE_LIMIT
                and os.access(job.path.rpartition("/")[2], os.W_OK, dir_fd=fd)
            )
            if not in_place:
                stuck.append(job.path)
    if stuck:
        stuck.sort()
        more = " and %d more" % (len(stuck) - 5) if len(stuck) > 5 else ""
        raise Failure(
            "cannot rewrite %s%s: neither the file nor its directory is writable by this "
            "user. Nothing was changed; make them writable (chmod u+w) or run conda-unpack "
            "as their owner." % (", ".join(stuck[:5]), more)
        )


# --- relocation -----------------------------------------------------------------------------


class Job:
    __slots__ = ("path", "placeholders", "mode", "room", "shebang", "offsets")

    def __init__(self, path, placeholders, mode, room, shebang, offsets=()):
        self.path = path
        self.placeholders = placeholders
        self.mode = mode
        self.room = room
        self.shebang = shebang
        self.offsets = offsets


def _jobs():
    """One job per file: its prefix records (a file may hold several placeholders) and/or
    its shebang record."""
    jobs = {}
    placeholders = [os.fsencode(p) for p in _DATA["placeholders"]]
    for row in _DATA["prefix"]:
        path, ph = row[0], placeholders[row[1]]
        offsets = tuple(row[3]) if len(row) > 3 else ()
        job = jobs.get(path)
        if job is None:
            jobs[path] = Job(path, (ph,), row[2], len(ph), None, offsets)
        else:
            job.placeholders += (ph,)
            job.room = min(job.room, len(ph))
            job.offsets = tuple(sorted(set(job.offsets + offsets)))
    for path, exe, options in _DATA["shebang"]:
        job = jobs.get(path)
        sb = (os.fsencode(exe), os.fsencode(options))
        if job is None:
            jobs[path] = Job(path, None, None, None, sb)
        else:
            job.shebang = sb
    return list(jobs.values())


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


class _Relocation:
    """Rewrites files for ``target``; each may hold any of ``holds`` (``PACKED`` standing
    for its records' placeholders)."""

    def __init__(self, tree, holds, target, mapped, worker=0):
        self.tree = tree
        self.holds = [os.fsencode(h) for h in holds if h != PACKED]
        self.packed = PACKED in holds
        self.target = target
        self.mapped = mapped
        self.journal = _Journal(tree, worker)
        self._olds = {}

    def olds(self, placeholders):
        olds = self._olds.get(placeholders)
        if olds is None:
            olds = (list(placeholders) if self.packed else []) + self.holds
            olds = self._olds[placeholders] = sorted(set(olds), key=len, reverse=True)
        return olds

    def relocated(self, data, job):
        new = data
        if job.mode is not None:
            olds = self.olds(job.placeholders)
            if ON_WINDOWS:
                if len(olds) > 1:
                    olds = olds + [self.target]
                if job.mode == "text":
                    new = windows_replace_text(new, olds, self.target)
                else:
                    new = windows_replace_launcher(new, olds, self.target)
            elif job.mode == "text":
                new = replace_text_any(new, olds, self.target)
            elif job.mode == "binary":
                new = replace_cstrings_any(new, olds, self.target)
            else:
                raise ValueError("unknown mode %r" % (job.mode,))
        if job.shebang is not None and not ON_WINDOWS:
            new = fix_shebang(new, self.target, job.shebang[0], job.shebang[1])
        return new

    def rewrite(self, job, batch):
        """Relocate one file; True if it changes. A file written where it is joins
        ``batch`` (its descriptor with it), and is written when the batch is."""
        d, name = self.tree.parent(job.path)
        if name is None:
            return False  # not reachable without following a link: never followed
        fd, writable = _open_file(d, name, job.path)
        if fd is None:
            return False  # excluded or removed after packing, or a link (never followed)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Failure("%s: not a regular file" % job.path)
            # Written where it is only if no other name or running program shares it.
            in_place = writable and st.st_nlink == 1 and (st.st_dev, st.st_ino) not in self.mapped
            binary = job.mode == "binary" and job.offsets and job.shebang is None
            if in_place and binary and not ON_WINDOWS:
                patches = _cstring_patches(
                    lambda n, off: _pread(fd, n, off),
                    job.offsets,
                    self.olds(job.placeholders),
                    self.target,
                )
                if patches is not None:
                    if not patches:
                        return False
                    undo = [(off, old) for off, old, _ in patches]
                    writes = [(off, new) for off, _, new in patches]
                    batch.add(_Write(job, fd, st, undo, writes, st.st_size, st.st_size, True))
                    fd = None
                    return True
            data = _read_all(fd, st.st_size)
            new = self.relocated(data, job)
            if new == data:
                return False
            keep = _keeps_mtime(job.path)
            if in_place and max(len(data), len(new)) <= IN_PLACE_LIMIT:
                # Only from the first change on: the bytes before it stay where they are.
                k = _common_start(data, new)
                old_tail, new_tail = memoryview(data)[k:], memoryview(new)[k:]
                batch.add(
                    _Write(job, fd, st, [(k, old_tail)], [(k, new_tail)], len(data), len(new), keep)
                )
                fd = None
                return True
        finally:
            if fd is not None:
                os.close(fd)
        _write_new(d, name, new, st, keep)
        return True


class _Write:
    """A file to write where it is: its descriptor, the bytes the writes replace, the
    writes, its size before and after."""

    __slots__ = ("job", "fd", "st", "undo", "writes", "size", "new_size", "keep")

    def __init__(self, job, fd, st, undo, writes, size, new_size, keep):
        self.job = job
        self.fd = fd
        self.st = st
        self.undo = undo
        self.writes = writes
        self.size = size
        self.new_size = new_size
        self.keep = keep


class _Batch:
    """In-place writes waiting for their journal record."""

    def __init__(self, journal):
        self.journal = journal
        self.pending = []
        self.bytes = 0

    def add(self, write):
        self.pending.append(write)
        for _, old in write.undo:
            self.bytes += len(old)

    def full(self):
        return len(self.pending) >= BATCH_FILES or self.bytes >= BATCH_BYTES

    def write(self):
        """Journal the batch, then write its files. On an error: its message, the file
        being written put back whole; else None."""
        pending, self.pending, self.bytes = self.pending, [], 0
        try:
            if not pending:
                return None
            try:
                self.journal.record([(w.job.path, w.size, w.undo) for w in pending])
            except OSError as e:
                return _os_message(e, "conda-meta/" + self.journal.name)
            for w in pending:
                try:
                    for off, new in w.writes:
                        _pwrite_all(w.fd, new, off)
                    if w.new_size < w.size:
                        os.ftruncate(w.fd, w.new_size)
                except BaseException as e:
                    _restore(w.fd, w.undo, w.size)
                    if isinstance(e, OSError):
                        return _os_message(e, w.job.path)
                    raise
                _set_times(w.fd, w.st, w.keep)
            return None
        finally:
            for w in pending:
                os.close(w.fd)

    def drop(self):
        """Forget the writes not made (a stop): the files stay as they are."""
        for w in self.pending:
            os.close(w.fd)
        self.pending, self.bytes = [], 0


def _open_file(d, name, path):
    """``(fd, writable)`` for a file to relocate: opened for writing too when it may be
    written where it is (one open for both), never through a link; ``(None, False)`` if
    it is gone or a link. Not blocking on a pipe planted in its place."""
    flags = _WRITE | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        return os.open(name, flags, dir_fd=d), True
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None, False
        if e.errno == errno.EISDIR:
            raise Failure("%s: not a regular file" % path) from None
        if e.errno not in (errno.ETXTBSY, errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(name, _READ | getattr(os, "O_NONBLOCK", 0), dir_fd=d), False
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None, False
        raise


def _restore(fd, pieces, size):
    """After a failed write (a full disk, say), put the old bytes back at once: they fit
    where they were. If even that fails, the journal still holds them for the next run."""
    try:
        for off, data in pieces:
            _pwrite_all(fd, data, off)
        os.ftruncate(fd, size)
    except OSError:
        pass


# --- running it -----------------------------------------------------------------------------


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


def _os_message(e, path=None):
    """One line for an OSError: the file, what went wrong, and what to do when the run may
    have stopped half-way."""
    where = path or (os.fsdecode(e.filename) if e.filename else None)
    text = "%s: %s" % (where, e.strerror or e) if where else str(e.strerror or e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        text += (
            ". Every file is whole (old or new): fix that, then run conda-unpack again to finish"
        )
    return text


def _message(job, e):
    if isinstance(e, NoRoom):
        return "%s: %s" % (job.path, e)
    if isinstance(e, Failure):
        return str(e)
    return _os_message(e, job.path)


def _work(jobs, relocation, report, stop):
    """Rewrite ``jobs`` in order; report(files done, files changed) after every run of
    files. Returns an error message for the first file that cannot be moved, else None."""
    changed = 0
    batch = _Batch(relocation.journal)
    try:
        for i, job in enumerate(jobs):
            if stop():
                return None
            try:
                changed += relocation.rewrite(job, batch)
            except (NoRoom, Failure, OSError) as e:
                return batch.write() or _message(job, e)
            if batch.full():
                failed = batch.write()
                if failed:
                    return failed
            if i % 64 == 63:
                report(64, changed)
                changed = 0
        failed = batch.write()
        if failed:
            return failed
        report(len(jobs) % 64, changed)
        return None
    finally:
        batch.drop()


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _serial(jobs, relocation, progress):
    changed = [0]

    def report(done, n):
        changed[0] += n
        progress.add(done)

    try:
        error = _work(jobs, relocation, report, lambda: False)
    finally:
        relocation.journal.close()
    if error:
        raise Failure(error)
    return changed[0]


def _child(jobs, relocation, out):
    """A worker process: rewrites its share, reporting "done changed" lines on ``out``.
    Ctrl-C lets it finish the file it is writing, then stop."""
    import signal

    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    code = 0
    try:
        error = _work(
            jobs,
            relocation,
            lambda d, n: os.write(out, b"%d %d\n" % (d, n)),
            lambda: stopping,
        )
        if error:
            os.write(out, b"E" + error.encode("utf-8", "replace") + b"\n")
            code = 1
    except BaseException as e:
        os.write(out, ("E%r\n" % (e,)).encode("utf-8", "replace"))
        code = 1
    os._exit(code)


def _forked(jobs, make_relocation, progress, workers):
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
                _child(jobs[k::workers], make_relocation(k), w)
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
        raise Failure(errors[0])
    return changed


def _set_new_prefix(prefix):
    global _NEW_PREFIX
    _NEW_PREFIX = prefix


def _target_prefix(root):
    prefix = _NEW_PREFIX or root
    return windows_path(prefix) if ON_WINDOWS else prefix


def _same_place(held, target, root):
    """Whether files holding ``held`` are right for ``target``: the same path, or (when the
    target is where the environment is) another name of the same directory."""
    if held == target:
        return True
    if _NEW_PREFIX is not None or ON_WINDOWS:
        return False
    try:
        return os.path.samefile(held, root)
    except OSError:
        return False


def _quiet(message):
    pass


def unpack(root, verbose=False, workers=None, target=None, say=None):
    """Relocate the environment at ``root`` for ``target`` (default: ``root``); returns
    the number of files changed, None if its files already named it. Raises Failure
    (ReadOnly when the environment cannot be written) with nothing changed, or with the
    environment left for the next run to finish."""
    root = os.path.abspath(root)
    target = target or _target_prefix(root)
    say = say or (lambda m: sys.stderr.write(m + "\n"))
    tree = _tree(root)
    try:
        if tree.dir("conda-meta") is None:
            raise Failure("%s/conda-meta is missing, or is a link" % root)
        jobs = _jobs()
        _check_target(target)
        _check_room(jobs, os.fsencode(target))
        lock = _Lock(tree, say)
        try:
            return _unpack_locked(tree, root, jobs, target, verbose, workers)
        finally:
            lock.release()
    finally:
        tree.close()


def _unpack_locked(tree, root, jobs, target, verbose, workers):
    state = _read_state(tree)
    if state.done and not state.fresh and _same_place(state.holds[0], target, root):
        return None
    target_b = os.fsencode(target)
    if state.done and not state.fresh:
        _check_claim(tree, jobs, state.holds[0])
    mapped = _mapped_files()
    _check_writable(tree, jobs, mapped)
    dirs = set(j.path.rpartition("/")[0] for j in jobs)
    if not state.done:
        _recover(tree, dirs)
    holds = [h for h in state.holds if h != target]
    _write_state(tree, State(holds + [target], False), durable=True)

    def relocation(worker):
        return _Relocation(tree, holds, target_b, mapped, worker)

    if workers is None:
        # A process per core, each with a few hundred files at least: starting one costs
        # about as much as rewriting a hundred small files.
        workers = min(_cores(), 8, len(jobs) // 256) if hasattr(os, "fork") else 1
    progress = _Progress(len(jobs), verbose)
    if workers > 1:
        changed = _forked(jobs, relocation, progress, workers)
    else:
        changed = _serial(jobs, relocation(0), progress)
    if verbose and jobs:
        sys.stdout.write("\n")
    # Journals go first: a run stopped between the two finds an unfinished state with no
    # journal, and simply runs again.
    _remove_journals(tree)
    _write_state(tree, State([target], True), durable=False)
    return changed


def _warn(message):
    if os.environ.get(QUIET_VARIABLE, "0") in ("", "0"):
        sys.stderr.write(
            "conda-unpack: %s (set %s=1 to hide this message)\n" % (message, QUIET_VARIABLE)
        )


def auto_relocate(root):
    """Relocate the environment at ``root`` if it moved: what the startup hook and the
    activation scripts run. Never raises for a reason not to relocate: one line on stderr
    says why, and the program goes on."""
    real = os.path.realpath(root)
    try:
        changed = unpack(real, target=_target_prefix(real), say=_quiet)
        if changed is not None and os.environ.get(VERBOSE_VARIABLE, "0") not in ("", "0"):
            sys.stderr.write("conda-unpack: relocated %s (%d files)\n" % (real, changed))
    except ReadOnly as e:
        _warn(
            "%s was packed elsewhere and cannot be relocated here (%s): files that name its "
            "old place will not work. Pack it with --dest-prefix %s, or copy it somewhere "
            "writable and run bin/conda-unpack there" % (real, e, real)
        )
    except (Failure, NoRoom, OSError) as e:
        _warn("%s was not relocated: %s" % (real, e))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    verbose = auto = False
    workers = None
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
        parser.add_argument(
            "--auto",
            action="store_true",
            help="Relocate only if the environment moved, naming its real path, and never "
            "fail: say on stderr why it was not relocated (what activation scripts run)",
        )
        parser.add_argument("--new-prefix", help=argparse.SUPPRESS)
        parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--batch-files", type=int, help=argparse.SUPPRESS)
        args = parser.parse_args(argv)
        if args.version:
            print("conda-unpack %s" % VERSION)
            return 0
        if args.new_prefix is not None:
            _set_new_prefix(args.new_prefix)
        verbose, auto, workers = args.verbose, args.auto, args.workers
        if args.batch_files is not None:
            global BATCH_FILES
            BATCH_FILES = max(args.batch_files, 1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if auto:
        auto_relocate(root)
        return 0
    if verbose and _DATA["prefix"]:
        print("Unpacking environment...")
    try:
        changed = unpack(root, verbose=verbose, workers=workers)
    except (Failure, NoRoom) as e:
        sys.stderr.write("conda-unpack: %s\n" % e)
        return 1
    except OSError as e:
        sys.stderr.write("conda-unpack: %s\n" % _os_message(e))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            "\nconda-unpack: interrupted; every file is old or new. Run it again to finish.\n"
        )
        return 130
    if verbose and changed is None:
        print("Nothing to do: the files already name %s" % root)
    return 0


if __name__ == "__main__":
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    # Not sys.exit: tearing down the records of a large environment takes tens of ms.
    os._exit(code)
