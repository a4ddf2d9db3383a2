"""``conda pack``: the ``conda-pack`` command as a conda subcommand plugin.

conda 26.3 stopped running ``conda-*`` executables found on ``PATH`` for ``conda <name>``;
subcommands now come from plugins registered under the ``conda`` entry point group. conda
imports every plugin module on each run, so this one imports only ``conda.plugins`` and
defers the CLI (and the Rust core) until ``conda pack`` actually runs.

Nothing else in ``conda_pack`` imports this module, so ``import conda_pack`` never imports
conda.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from conda.plugins import hookimpl
from conda.plugins.types import CondaSubcommand

# cli.DESCRIPTION, repeated: importing the CLI here would cost every conda command.
SUMMARY = "Pack a conda environment into one archive, to unpack and use anywhere."
PROG = "conda pack"


def run_conda_pack(args: Iterable[str] = ()) -> int:
    """Run ``conda-pack`` with the words after ``conda pack``; return its exit status.

    Without ``configure_parser`` conda passes the words after ``pack`` (``sys.argv[2:]``
    before conda 23.7, a tuple of the unparsed rest since). The CLI prints its own help,
    errors and ``CondaPackError: ...`` as the console script does, naming itself
    ``conda pack``; its ``sys.exit`` becomes the return value, which ``conda`` exits with.
    Environment names are resolved by the conda running this, not by a ``conda`` on
    ``PATH``, which there may not be.
    """
    from .locate import mixed_installation, names_from_running_conda

    # Before importing the CLI: with conda-pack 0.9.2 installed over this package, the
    # CLI would be 0.9.2's.
    problem = mixed_installation()
    if problem is not None:
        print("CondaPackError: " + problem, file=sys.stderr)
        return 1
    from .cli import main

    argv = list(args)
    try:
        with names_from_running_conda():
            main(argv, prog=PROG)
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        # sys.exit("message") prints the message and exits 1; keep that behaviour.
        print(code, file=sys.stderr)
        return 1
    return 0


@hookimpl
def conda_subcommands():
    yield CondaSubcommand(name="pack", summary=SUMMARY, action=run_conda_pack)
