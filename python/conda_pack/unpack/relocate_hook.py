"""Relocate this conda environment the first time its Python starts in a new place.

conda-pack put this module, and the .pth file in this directory that imports it, into the
archive this environment came from. Clusters (Spark, YARN, Dask, Ray) extract such archives
where nobody runs ``bin/conda-unpack``; this does it for them, before any user code runs.
Where the environment's files already name the directory it is in, it reads one small
file and returns. Otherwise it runs the environment's own ``conda-unpack`` in this process,
under the lock conda-unpack takes, so that one process relocates and the others wait for
it. An environment that cannot be written is left alone, with one line on stderr.
"""

import os

# Filled in at pack time (the marker must stay above them): how many directories up the
# environment's root is from this directory, and where its conda-unpack is.
# <conda-pack:hook>
DEPTH = 3
UNPACK = ("bin", "conda-unpack")
STATE = ("conda-meta", ".conda-unpack-prefix")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FDS = os.open in getattr(os, "supports_dir_fd", ()) and bool(_NOFOLLOW and _DIRECTORY)


def _read(root, parts, limit):
    """The bytes of ``root/parts...``, opened without following a link anywhere below
    ``root``; None if it cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fds = []
    try:
        if _DIR_FDS:
            fds.append(os.open(root, os.O_RDONLY | _DIRECTORY))
            for part in parts[:-1]:
                fds.append(os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fds[-1]))
            fd = os.open(parts[-1], flags | _NOFOLLOW, dir_fd=fds[-1])
        else:
            path = os.path.join(root, *parts)
            if os.path.realpath(path) != os.path.join(os.path.realpath(root), *parts):
                return None
            fd = os.open(path, flags)
        fds.append(fd)
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return None
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _moved(root):
    state = _read(root, STATE, 4096)
    if state is None or not state.endswith(b"\n") or state.count(b"\n") != 1:
        return True  # never relocated, or a relocation was stopped
    held = state[:-1]
    if held == os.fsencode(root):
        return False
    real = os.path.realpath(root)
    if held == os.fsencode(real):
        return False
    try:
        return not os.path.samefile(held, real)
    except OSError:
        return True


def _relocate(root):
    source = _read(root, UNPACK, 256 << 20)
    if source is None:
        return
    path = os.path.join(root, *UNPACK)
    engine = {"__name__": "_conda_pack_unpack", "__file__": path}
    exec(compile(source, path, "exec"), engine)
    engine["auto_relocate"](root)


def _run():
    root = os.path.abspath(__file__)
    for _ in range(DEPTH + 1):
        root = os.path.dirname(root)
    try:
        if _moved(root):
            _relocate(root)
    except Exception as e:  # never in the way of the program that is starting
        import sys

        sys.stderr.write("conda-unpack: automatic relocation of %s failed: %r\n" % (root, e))


_run()
