"""The archive formats conda-pack writes, by the names ``--format`` accepts.

A module of its own so that the command line can offer them without importing the packer.
"""

FORMATS = (
    "zip",
    "tar.gz",
    "tgz",
    "tar.bz2",
    "tbz2",
    "tar.xz",
    "txz",
    "tar",
    "tar.zst",
    "tzst",
    "parcel",
    "squashfs",
    "no-archive",
    "sh",
)
