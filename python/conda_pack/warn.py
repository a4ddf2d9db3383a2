"""Warnings: printed for people at the command line, ``warnings.warn`` for programs."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_cli = False


def warn(message: str) -> None:
    if _cli:
        print(message + "\n", file=sys.stderr)
    else:
        warnings.warn(message, UserWarning, stacklevel=3)


@contextmanager
def cli_mode() -> Iterator[None]:
    global _cli
    old, _cli = _cli, True
    try:
        yield
    finally:
        _cli = old
