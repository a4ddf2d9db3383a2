"""Exceptions raised to users of conda_pack.

Everything a user can cause (a bad option, an environment conda-pack cannot pack, a full
disk) is a :class:`CondaPackException`; the CLI prints it as one ``CondaPackError:`` line.
The subclasses say which part failed; the native core raises them too, with the OS error
chained as ``__cause__``.
"""


class CondaPackException(Exception):
    """An error to report to the user (drop-in name from conda-pack)."""


class PackIOError(CondaPackException):
    """Reading the environment or writing the archive failed."""


class PrefixError(CondaPackException):
    """A prefix cannot be rewritten as asked (e.g. no room for a longer path)."""


class ArchiveFormatError(CondaPackException):
    """The chosen archive format cannot hold the environment as asked."""


class MetadataError(CondaPackException):
    """conda's metadata in the environment is unreadable."""


class UnpackError(CondaPackException):
    """An archive cannot be unpacked: it is damaged, or holds what would end up outside
    the destination (absolute names, ``..``, links leading out, devices)."""
