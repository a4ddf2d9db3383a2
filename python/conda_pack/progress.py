"""The progress bar: on stderr, only when stderr is a terminal, as wide as the terminal.

stdout keeps only the messages (``Collecting packages...``), so that redirecting it gives a
clean log while the bar still shows; with stderr redirected there is no bar at all.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def format_time(t: float) -> str:
    m, s = divmod(t, 60)
    h, m = divmod(m, 60)
    if h:
        return "%dh%02dm" % (h, m)
    if m:
        return "%dm%02ds" % (m, s)
    return "%.1fs" % s


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return ("%.0f %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000
    return "%.1f TB" % n


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to: ``$COLUMNS`` if set (as
    ``shutil.get_terminal_size`` honours it), else the terminal's own, else 80."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class ProgressBar:
    """Called as ``bar(files_done, bytes_done)`` by the core about ten times a second."""

    #: Below this many cells the bar says nothing useful: only the figures are shown.
    min_bar = 10

    def __init__(self, total_files: int, total_bytes: int, stream: TextIO | None = None):
        self.total_files = max(total_files, 1)
        self.total_bytes = total_bytes
        self.stream = stream if stream is not None else sys.stderr
        self.start = time.monotonic()

    @staticmethod
    def wanted(verbose: bool, stream: TextIO | None = None) -> bool:
        stream = stream if stream is not None else sys.stderr
        try:
            return bool(verbose and stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            return False

    def line(self, files: int, nbytes: int, columns: int) -> str:
        """The bar for ``columns`` cells, without its leading ``\\r``."""
        elapsed = max(time.monotonic() - self.start, 1e-6)
        if self.total_bytes:
            frac = min(nbytes / self.total_bytes, 1.0)
        else:
            frac = min(files / self.total_files, 1.0)
        left = (elapsed / frac - elapsed) if 0.01 < frac < 1 else None
        # Fields of fixed width: the bar keeps its length from one update to the next.
        figures = " %3d%% | %9s/s | %5s, ETA %5s" % (
            int(frac * 100),
            format_bytes(nbytes / elapsed),
            format_time(elapsed),
            format_time(left) if left is not None else "-",
        )
        # One cell short of the width: a full line would make some terminals wrap.
        room = max(columns - 1, 1)
        width = room - len(figures) - 2
        if width < self.min_bar:
            return figures.strip()[:room].ljust(room)
        return "[%-*s]%s" % (width, "#" * int(width * frac), figures)

    def __call__(self, files: int, nbytes: int) -> None:
        # Asked each time: the terminal may be resized while packing.
        columns = terminal_columns(self.stream)
        self.stream.write("\r" + self.line(files, nbytes, columns))
        self.stream.flush()

    def close(self, completed: bool = True) -> None:
        if completed:
            # Archived sizes differ a little from the scan's (links, rewritten records):
            # finished is 100%, whatever the byte count says.
            self(self.total_files, self.total_bytes)
        self.stream.write("\n")
        self.stream.flush()
