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


PROG = "conda-pack"
DESCRIPTION = "Pack a conda environment into one archive, to unpack and use anywhere."
# Names the console script, also in `conda pack --help`: a "conda pack" split across two
# lines would wrap the help unlike the console script's.
EPILOG = (
    "To unpack an archive and relocate it in one step: 'conda-pack unpack ARCHIVE DEST' "
    "(see 'conda-pack unpack --help')."
)
UNPACK_DESCRIPTION = (
    "Extract ARCHIVE (any format conda-pack writes but squashfs, archives of conda-pack "
    "0.9.2, plain tar, or a self-extracting installer conda-pack wrote) into DEST and "
    "relocate the environment there in the same pass: afterwards it works in DEST, and "
    "bin/conda-unpack has nothing left to do. DEST must not exist, or be empty; the "
    "archive is extracted into a directory beside it that is renamed to DEST at the end, "
    "so an error or Ctrl-C leaves no half environment. Members that would end up outside "
    "DEST (absolute names, '..', links leading out, devices) stop the unpack. "
    "Linux and macOS only."
)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=EPILOG,
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument(
        "--name",
        "-n",
        metavar="ENV",
        help="Pack the environment conda knows by the name ENV ('base' is the root "
        "environment). With neither --name nor --prefix: the activated environment.",
    )
    parser.add_argument(
        "--prefix",
        "-p",
        metavar="PATH",
        help="Pack the environment in the directory PATH. Give --name or --prefix, not both.",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        help="Where to write the archive. Default: NAME.FORMAT in the current directory, "
        "from the environment's name (my_env.tar.gz without --format; for a parcel, "
        "NAME-VERSION-DISTRO.parcel).",
    )
    parser.add_argument(
        "--arcroot",
        metavar="PATH",
        default="",
        help="Put the environment under this relative directory inside the archive. "
        "Default: '', the top of the archive.",
    )
    parser.add_argument(
        "--dest-prefix",
        "-d",
        metavar="PATH",
        help="Rewrite the environment's prefix to PATH while packing, for an archive that "
        "will only be unpacked at PATH; it then carries no conda-unpack. Not for parcels: "
        "they take their prefix from --parcel-root, --parcel-name and --parcel-version.",
    )
    parser.add_argument(
        "--parcel-root",
        default=None,
        help="(Parcels only) The directory on the target Hadoop nodes that holds every "
        "parcel. Default: '/opt/cloudera/parcels'.",
    )
    parser.add_argument(
        "--parcel-name",
        default=None,
        help="(Parcels only) What to call the parcel, with no hyphens (its version is "
        "added separately). Default: the environment's name.",
    )
    parser.add_argument(
        "--parcel-version",
        default=None,
        help="(Parcels only) The parcel's version. Default: today's date as YYYY.MM.DD.",
    )
    parser.add_argument(
        "--parcel-distro",
        default=None,
        help="(Parcels only) The OS distribution tag that ends the parcel's file name and "
        "full version, with no hyphens. Default: 'el7'.",
    )
    parser.add_argument(
        "--format",
        choices=["infer", *FORMATS],
        default="infer",
        help="The kind of archive to write. Default: 'infer', from the extension of "
        "--output (tar.gz without --output). 'sh' (.sh) is a self-extracting installer: "
        "a POSIX sh script and a tar.gz, run as 'sh env.sh -p DEST' on Linux or macOS "
        "(not Windows).",
    )
    parser.add_argument(
        "--compress-level",
        metavar="LEVEL",
        type=int,
        default=4,
        help="How hard to compress: 0 to 9 (tar.bz2: 1 to 9, tar.zst: -7 to 22). Higher "
        "levels give smaller archives and take longer. Default: 4.",
    )
    parser.add_argument(
        "--n-threads",
        "-j",
        metavar="N",
        type=int,
        default=None,
        help="How many threads read and compress files. Default, or -1: one per CPU this "
        "process may run on, which is also the most a larger N gets. Every format "
        "compresses in parallel, and the archive comes out the same whatever N is.",
    )
    parser.add_argument(
        "--zip-symlinks",
        action="store_true",
        help="(zip only) Store symbolic links as links, not as copies of the files they "
        "point to, which can make the archive much smaller. The zip standard has no "
        "links: many unzip programs restore them, but some quietly write a small file "
        "holding the link's target instead. Has no effect on other formats.",
    )
    parser.add_argument(
        "--no-zip-64",
        action="store_true",
        help="(zip only) Write the archive without ZIP64 extensions.",
    )
    parser.add_argument(
        "--ignore-editable-packages",
        action="store_true",
        help="Pack even if packages are installed in editable mode (pip install -e); they "
        "will not work from the archive.",
    )
    parser.add_argument(
        "--ignore-missing-files",
        action="store_true",
        help="Pack even if files that conda installed were deleted or changed since (e.g. by pip).",
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
        help="Leave out the files whose path in the environment matches the glob PATTERN. "
        "Repeatable; --exclude and --include apply in the order given.",
    )
    parser.add_argument(
        "--include",
        action=MultiAppendAction,
        metavar="PATTERN",
        dest="filters",
        help="Put back the files left out so far whose path matches the glob PATTERN.",
    )
    parser.add_argument(
        "--force",
        "-f",
        action="store_true",
        help="Replace an archive (or an earlier no-archive output) already at the output "
        "path, and create the output's missing parent directories.",
    )
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="Print no progress: neither messages nor the progress bar.",
    )
    parser.add_argument("--help", "-h", action="help", help="Print this help and exit.")
    parser.add_argument("--version", action="store_true", help="Print the version and exit.")
    return parser


def build_unpack_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog + " unpack", description=UNPACK_DESCRIPTION, allow_abbrev=False
    )
    parser.add_argument("archive", metavar="ARCHIVE", help="The archive to unpack.")
    parser.add_argument(
        "dest", metavar="DEST", help="The directory to create (or an empty one to fill)."
    )
    parser.add_argument(
        "--n-threads",
        "-j",
        metavar="N",
        type=int,
        default=-1,
        help="Threads to decompress and write with (default -1: every core).",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="Print nothing but errors.")
    return parser


# At module level, for sphinxcontrib.autoprogram and drop-in compatibility.
PARSER = build_parser()


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(1)


def run(args: argparse.Namespace, pack: Callable | None = None) -> None:
    if pack is None:
        # Here, not at import: --help and --version must stay fast.
        from .locate import check_installation

        check_installation()
        from .packing import pack as pack_it

        pack = pack_it
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


def main(args: list[str] | None = None, pack: Callable | None = None, prog: str = PROG) -> None:
    """Run the command with ``args`` (default: ``sys.argv[1:]``) and exit.

    ``prog`` is what usage lines and argparse's errors call the command: ``conda pack``
    when conda runs it as a plugin.
    """
    args = sys.argv[1:] if args is None else args
    if args[:1] == ["unpack"]:
        # A subcommand only in name: 'unpack' was never a valid first argument, and every
        # other command line is the packer's, unchanged.
        unpacked = build_unpack_parser(prog).parse_args(args=args[1:])
        _guarded(lambda: _run_unpack(unpacked))
    parser = PARSER if prog == PROG else build_parser(prog)
    parsed = parser.parse_args(args=args)
    if parsed.version:
        print("conda-pack %s" % __version__)
        sys.exit(0)
    # The packer (and the Rust core) is imported in here, so that a Ctrl-C while it loads
    # is reported like one while it runs.
    _guarded(lambda: run(parsed, pack))


def _run_unpack(args: argparse.Namespace) -> None:
    from .unpacking import unpack

    unpack(args.archive, args.dest, verbose=not args.quiet, n_threads=args.n_threads)


def _guarded(work: Callable[[], None]) -> None:
    """Run ``work`` and exit: 0, or 1 with one line on stderr."""
    try:
        with cli_mode():
            work()
    except CondaPackException as e:
        fail("CondaPackError: %s" % e)
    except KeyboardInterrupt:
        fail("Interrupted")
    except Exception:
        fail(traceback.format_exc())
    sys.exit(0)


if __name__ == "__main__":
    main()
