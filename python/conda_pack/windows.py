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
from .files import File
from .plan import Plan, is_conda_record
from .unpack.conda_unpack import windows_path, windows_replace_launcher, windows_replace_text

__all__ = ["is_windows_absolute", "rewrite_for_dest"]


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
