"""Windows environments packed with ``--dest-prefix``: their prefix rules at pack time.

The core's prefix engine knows the POSIX rules: text replaced as recorded, binary C strings
patched in place. Windows files need conda-unpack's Windows rules instead (every spelling
of the prefix, forward slashes in text, only launchers' ``#!`` lines in binaries), so with
``--dest-prefix`` those files are rewritten here, by the very functions conda-unpack runs,
and handed to the archive writer as bytes.
"""

from __future__ import annotations

import os
import stat

from .env import CondaEnv
from .errors import CondaPackException
from .files import File
from .plan import Plan, is_conda_record
from .unpack.conda_unpack import windows_path, windows_replace_launcher, windows_replace_text

__all__ = [
    "installed_elsewhere_error",
    "is_windows_absolute",
    "rewrite_for_dest",
    "windows_install_prefix",
]


def is_windows_absolute(path: str) -> bool:
    """``C:\\x``, ``C:/x`` or a UNC path ``\\\\server\\share``."""
    return path[1:3] in (":\\", ":/") or path.startswith(("\\\\", "//"))


def _rewritten(f: File, env_prefix: str, dest: bytes) -> bytes | None:
    """``f``'s bytes for ``dest``, or None to pack it as it is."""
    with open(f.source, "rb") as fh:
        data = fh.read()
    # The file names the prefix it was installed at; copies the installer did not record
    # still name the build placeholder.
    olds = [os.fsencode(env_prefix)]
    if f.prefix_placeholder:
        olds.append(os.fsencode(f.prefix_placeholder))
    mode = f.file_mode if f.file_mode in ("text", "binary") else None
    if mode is None:
        mode = "binary" if b"\0" in data else "text"
    if mode == "text":
        new = windows_replace_text(data, olds, dest)
    else:
        new = windows_replace_launcher(data, olds, dest)
    return None if new == data else new


def rewrite_for_dest(plan: Plan, env: CondaEnv, dest: str) -> None:
    """Replace, in ``plan``, the entries of files that may hold the prefix by their bytes
    for ``dest`` (with each file's own mode and time), or by plain copies when they need no
    change, so that the core applies no POSIX rule to them."""
    dest_b = os.fsencode(windows_path(dest))
    for i in range(len(plan)):
        f = plan.file(i)
        if f.file_mode is None or is_conda_record(f):
            continue
        target, source, _content, mode, mtime, size = plan.entry(i)
        if os.path.islink(f.source):
            plan.overrides[i] = (target, source, None, mode, mtime, size)
            continue
        data = _rewritten(f, env.prefix, dest_b)
        if data is None:
            plan.overrides[i] = (target, source, None, mode, mtime, size)
            continue
        st = os.lstat(f.source)
        plan.overrides[i] = (
            target,
            data,
            None,
            stat.S_IMODE(st.st_mode),
            int(st.st_mtime),
            len(data),
        )


#: How many files holding the install prefix are read to learn which prefix that is.
_SAMPLE = 8
#: A Windows absolute path as an installer writes it into a text file.
_WINDOWS_PATH = rb"(?<![A-Za-z0-9])[A-Za-z]:[\\/][^\0\r\n\"'<>|*?;=]*"


def windows_install_prefix(env: CondaEnv) -> str | None:
    """The Windows path a Windows environment was installed at, when its files name that
    instead of where it is now: one created on Windows and packed from Linux (WSL, a copied
    tree). None when its files name where it is (or nothing tells).

    An installer turns a package's placeholder into its prefix, so the prefix is the part
    of a Windows path in the file that, put back to the placeholder, gives the package's
    file again: its recorded sha256 proves it."""
    import hashlib
    import re

    here = os.fsencode(env.prefix)
    read = 0
    for f in env._files:
        if read >= _SAMPLE:
            break
        if f.file_mode != "text" or not f.prefix_placeholder or f._record is None:
            continue
        sha = f._record[1]
        if not sha:
            continue
        try:
            with open(f.source, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        read += 1
        if here in data:
            return None
        placeholder = os.fsencode(f.prefix_placeholder)
        for m in re.finditer(_WINDOWS_PATH, data):
            path = m.group(0).rstrip(b" ")
            # The prefix ends where a path component does.
            cuts = [i for i in range(3, len(path)) if path[i : i + 1] in b"\\/"] + [len(path)]
            for cut in reversed(cuts):
                candidate = path[:cut]
                restored = data.replace(candidate, placeholder)
                if hashlib.sha256(restored).hexdigest() == sha:
                    return os.fsdecode(candidate)
    return None


def installed_elsewhere_error(env: CondaEnv, windows_prefix: str) -> CondaPackException:
    return CondaPackException(
        "This environment was installed on Windows at %s and its files name that path, "
        "not %s where it is now, so they cannot be put back to their packages' content "
        "(they would all be reported as changed since install). Pack it with "
        "--ignore-missing-files: its files are then packed as they are, and conda-unpack "
        "relocates them from %s to wherever the archive is unpacked."
        % (windows_prefix, env.prefix, windows_prefix)
    )
