"""The ``conda-pack`` command line."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable

from ._version import __version__
from .errors import CondaPackException
from .formats import FORMATS
from .warn import cli_mode


class MultiAppendAction(argparse.Action):
    """Collect --exclude/--include into one ordered list of (kind, pattern)."""

    def __init__(self, option_strings, dest, nargs=None, **kwargs):
        if nargs is not None:
            raise ValueError("nargs not allowed")
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest) is None:
            setattr(namespace, self.dest, [])
        getattr(namespace, self.dest).append((option_string.strip("-"), values))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conda-pack",
        description="Package an existing conda environment into an archive file.",
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--name",
        "-n",
        metavar="ENV",
        help="The name of the environment to pack ('base' for the root environment). "
        "If neither --name nor --prefix are supplied, the current activated environment "
        "is packed.",
    )
    parser.add_argument(
        "--prefix",
        "-p",
        metavar="PATH",
        help="The path to the environment to pack. Only one of --name/--prefix should be supplied.",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="The path of the output file. Defaults to the environment name with a "
        "``.tar.gz`` suffix (e.g. ``my_env.tar.gz``).",
    )
    parser.add_argument(
        "--arcroot",
        metavar="PATH",
        default="",
        help="The relative path in the archive to the conda environment. Defaults to ''.",
    )
    parser.add_argument(
        "--dest-prefix",
        "-d",
        metavar="PATH",
        help="If present, prefixes will be rewritten to this path before packaging. In "
        "this case the `conda-unpack` script will not be generated. This option should not "
        "be used with parcels, which instead generate their destination prefix from the "
        "--parcel-root, --parcel-name, and --parcel-version options.",
    )
    parser.add_argument(
        "--parcel-root",
        default=None,
        help="(Parcels only) The location where all parcels are unpacked on the target "
        "Hadoop cluster (default: '/opt/cloudera/parcels').",
    )
    parser.add_argument(
        "--parcel-name",
        default=None,
        help="(Parcels only) The name of the parcel, without a version suffix. The default "
        "value is the local environment name. The parcel name may not have any hyphens.",
    )
    parser.add_argument(
        "--parcel-version",
        default=None,
        help="(Parcels only) The version number for the parcel. The default value is the "
        "current date, using the format YYYY.MM.DD.",
    )
    parser.add_argument(
        "--parcel-distro",
        default=None,
        help="(Parcels only) The distribution type for the parcel. The default value is "
        "'el7'. This value cannot have any hyphens.",
    )
    parser.add_argument(
        "--format",
        choices=["infer", *FORMATS],
        default="infer",
        help="The archival format to use. By default this is inferred by the output file "
        "extension.",
    )
    parser.add_argument(
        "--compress-level",
        metavar="LEVEL",
        type=int,
        default=4,
        help="The compression level to use, from 0 to 9. If ZSTD is used, compression is "
        "supported up to 22. Higher numbers decrease output file size at the expense of "
        "compression time. Default is 4.",
    )
    parser.add_argument(
        "--n-threads",
        "-j",
        metavar="N",
        type=int,
        default=None,
        help="The number of threads to use for reading and compressing. Set to -1 to use "
        "the number of cpus on this machine. Default: every cpu this process may use "
        "(all formats compress in parallel and give identical archives for any N; a larger "
        "N is capped at that count).",
    )
    parser.add_argument(
        "--zip-symlinks",
        action="store_true",
        help="Symbolic links aren't supported by the Zip standard, but are supported by "
        "*many* common Zip implementations. If set, store symbolic links in the archive, "
        "instead of the file referred to by the link. This can avoid storing multiple "
        "copies of the same files. *Note that the resulting archive may silently fail on "
        "decompression if the ``unzip`` implementation doesn't support symlinks*. Ignored "
        "if format isn't ``zip``.",
    )
    parser.add_argument("--no-zip-64", action="store_true", help="Disable ZIP64 extensions.")
    parser.add_argument(
        "--ignore-editable-packages",
        action="store_true",
        help="Skips checks for editable packages.",
    )
    parser.add_argument(
        "--ignore-missing-files",
        action="store_true",
        help="Skip checks for missing or changed package files.",
    )
    parser.add_argument(
        "--no-auto-relocate",
        action="store_true",
        help="Leave out the startup hook that makes an environment with Python relocate "
        "itself the first time its Python starts in a new place (so that it works on "
        "Spark, YARN, Dask or Ray executors, where nobody runs conda-unpack). Without it, "
        "run bin/conda-unpack after extracting, as with conda-pack 0.9.2.",
    )
    parser.add_argument(
        "--exclude",
        action=MultiAppendAction,
        metavar="PATTERN",
        dest="filters",
        help="Exclude files matching this pattern",
    )
    parser.add_argument(
        "--include",
        action=MultiAppendAction,
        metavar="PATTERN",
        dest="filters",
        help="Re-add excluded files matching this pattern",
    )
    parser.add_argument(
        "--force",
        "-f",
        action="store_true",
        help="Overwrite any existing archive at the output path, or create the output "
        "directory structure if it's missing.",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="Do not report progress")
    parser.add_argument("--help", "-h", action="help", help="Show this help message then exit")
    parser.add_argument("--version", action="store_true", help="Show version then exit")
    return parser


# At module level, for sphinxcontrib.autoprogram and drop-in compatibility.
PARSER = build_parser()


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(1)


def run(args: argparse.Namespace, pack: Callable | None = None) -> None:
    if pack is None:
        from .packing import pack
    pack(
        name=args.name,
        prefix=args.prefix,
        output=args.output,
        format=args.format,
        force=args.force,
        compress_level=args.compress_level,
        n_threads=args.n_threads,
        zip_symlinks=args.zip_symlinks,
        zip_64=not args.no_zip_64,
        arcroot=args.arcroot,
        dest_prefix=args.dest_prefix,
        parcel_root=args.parcel_root,
        parcel_name=args.parcel_name,
        parcel_version=args.parcel_version,
        parcel_distro=args.parcel_distro,
        verbose=not args.quiet,
        filters=args.filters,
        ignore_editable_packages=args.ignore_editable_packages,
        ignore_missing_files=args.ignore_missing_files,
        auto_relocate=not args.no_auto_relocate,
    )


def main(args: list[str] | None = None, pack: Callable | None = None) -> None:
    parsed = PARSER.parse_args(args=args)
    if parsed.version:
        print("conda-pack %s" % __version__)
        sys.exit(0)
    # The packer (and the Rust core) is imported in here, so that a Ctrl-C while it loads
    # is reported like one while it runs.
    try:
        with cli_mode():
            run(parsed, pack)
    except CondaPackException as e:
        fail("CondaPackError: %s" % e)
    except KeyboardInterrupt:
        fail("Interrupted")
    except Exception:
        fail(traceback.format_exc())
    sys.exit(0)


if __name__ == "__main__":
    main()
