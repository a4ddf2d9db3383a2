"""Command line: warm the cache and make demo environments (used by the Makefile and CI).

python -m tests.envfactory build-python            # build CPython + python/pip/setuptools once
python -m tests.envfactory demo-env PREFIX         # a typical env with python, pip and friends
python -m tests.envfactory scale-env PREFIX --size-gb 1 --seed 0
python -m tests.envfactory win-env PREFIX          # a win-64 env (Windows layout), for packing
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .factory import EnvFactory
from .windows import WIN_64

DEMO_PACKAGES = (
    "cprog",
    "cprog-data",
    "links",
    "python",
    "pip",
    "setuptools",
    "condatest-lib",
    "pyscripts",
)
#: A win-64 environment: an interpreter's layout, a payload holding the build prefix in every
#: Windows spelling, and a noarch package whose entry point rattler makes a launcher for.
WIN_PACKAGES = ("python", "winlib", "condatest-lib")


def _factory(args: argparse.Namespace) -> EnvFactory:
    workdir = args.workdir
    if workdir is None:
        from .constants import cache_dir

        # Persistent so demo envs keep a real package cache (link.source stays valid).
        workdir = cache_dir() / "work"
    return EnvFactory(workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.envfactory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch dir for the channel and package cache (default: <cache>/work)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build-python", help="build (or reuse) CPython and the python/pip packages")
    demo = sub.add_parser("demo-env", help="install " + ", ".join(DEMO_PACKAGES))
    demo.add_argument("prefix", type=Path)
    demo.add_argument("--pkgs-dir", type=Path, default=None)
    win = sub.add_parser("win-env", help="install " + ", ".join(WIN_PACKAGES) + " for win-64")
    win.add_argument("prefix", type=Path)
    win.add_argument("--pkgs-dir", type=Path, default=None)
    scale = sub.add_parser("scale-env", help="install a benchmark-scale environment")
    scale.add_argument("prefix", type=Path)
    scale.add_argument("--size-gb", type=float, default=1.0)
    scale.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    fac = _factory(args)
    start = time.monotonic()
    if args.command == "build-python":
        for pkg in fac.packages(["python", "pip", "setuptools"]):
            print(pkg)
    elif args.command == "demo-env":
        print(fac.install(args.prefix, list(DEMO_PACKAGES), pkgs_dir=args.pkgs_dir))
    elif args.command == "win-env":
        prefix = fac.install(args.prefix, list(WIN_PACKAGES), args.pkgs_dir, platform=WIN_64)
        print(prefix)
    else:
        print(fac.build_scale_env(args.prefix, size_gb=args.size_gb, seed=args.seed))
    print(f"done in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
