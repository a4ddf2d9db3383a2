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


def _read(root, parts):
    """The bytes of ``root/parts...``, reached without following a link below ``root``
    (where the system allows it); None if it cannot be read."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fds = []
    try:
        if nofollow and os.open in getattr(os, "supports_dir_fd", ()):
            fds.append(os.open(root, os.O_RDONLY))
            for part in parts[:-1]:
                fds.append(os.open(part, os.O_RDONLY | nofollow | os.O_DIRECTORY, dir_fd=fds[-1]))
            fds.append(os.open(parts[-1], os.O_RDONLY | nofollow, dir_fd=fds[-1]))
        else:
            path = os.path.join(root, *parts)
            if os.path.realpath(path) != os.path.join(os.path.realpath(root), *parts):
                return None
            fds.append(os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0)))
        chunks = []
        while True:
            chunk = os.read(fds[-1], 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _starting_conda_unpack(root):
    """Whether this process runs the environment's own conda-unpack."""
    import sys

    argv = getattr(sys, "argv", None)
    if not argv or not argv[0]:
        return False
    try:
        return os.path.samefile(argv[0], os.path.join(root, *UNPACK))
    except (OSError, ValueError):
        return False


def _run():
    root = os.path.abspath(__file__)
    for _ in range(DEPTH + 1):
        root = os.path.dirname(root)
    held = _read(root, STATE)
    if held is not None and held.endswith(b"\n") and held.count(b"\n") == 1:
        if held[:-1] == os.fsencode(root):
            return  # the files name this directory: nothing moved
        try:
            if os.path.samefile(held[:-1], root):
                return  # another name of this directory
        except OSError:
            pass  # a place the environment was at before
    if _starting_conda_unpack(root):
        return  # it relocates the environment itself, as its options say
    source = _read(root, UNPACK)
    if source is not None:
        engine = {"__name__": "_conda_pack_unpack"}
        exec(compile(source, os.path.join(root, *UNPACK), "exec"), engine)
        engine["auto_relocate"](root)


try:
    _run()
except Exception as e:  # never in the way of the program that is starting
    import sys

    sys.stderr.write("conda-unpack: automatic relocation failed: %r\n" % (e,))
