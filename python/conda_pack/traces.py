"""Files that conda-unpack and the relocation hook leave in an unpacked environment.

They describe one unpacked copy (where its files point, a run under way), not the
environment, so the packer leaves them out of archives; the hook is generated anew when
packing asks for it. conda-unpack, which runs with only the standard library, names the
same files itself (a test keeps the two in step).
"""

from __future__ import annotations

__all__ = ["HOOK_MODULE", "HOOK_PTH", "STATE", "hook_paths", "is_trace"]

#: Where conda-unpack records the prefix the files hold.
STATE = "conda-meta/.conda-unpack-prefix"
#: Every file conda-unpack keeps in conda-meta (state, lock, journals) starts so.
_META = "conda-meta/.conda-unpack"
#: conda-unpack's temporary files: ``.conda-unpack-<pid>-<n>.tmp`` beside the file they replace.
_TEMP_PREFIX = ".conda-unpack-"
_TEMP_SUFFIX = ".tmp"
#: The startup hook in site-packages: a .pth file (named to be read before any other) and
#: the module it imports.
HOOK_PTH = "00-conda-pack-relocate.pth"
HOOK_MODULE = "_conda_pack_relocate"


def hook_paths(site_packages: str) -> tuple[str, str]:
    """Where the hook's .pth file and module go."""
    return site_packages + "/" + HOOK_PTH, site_packages + "/" + HOOK_MODULE + ".py"


def is_trace(path: str, site_packages: str | None) -> bool:
    """Whether ``path`` (relative, with ``/``) is one of those files."""
    if path.startswith(_META):
        return True
    name = path.rpartition("/")[2]
    if name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX):
        middle = name[len(_TEMP_PREFIX) : -len(_TEMP_SUFFIX)].split("-")
        if len(middle) == 2 and all(m.isdigit() for m in middle):
            return True
    if site_packages is None or HOOK_MODULE not in path and HOOK_PTH not in path:
        return False
    sp = site_packages + "/"
    return path in hook_paths(site_packages) or path.startswith(
        sp + "__pycache__/" + HOOK_MODULE + "."
    )
