"""The progress bar: rate and time left on a terminal, nothing anywhere else."""

from __future__ import annotations

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


class ProgressBar:
    """Called as ``bar(files_done, bytes_done)`` by the core about ten times a second."""

    width = 30

    def __init__(self, total_files: int, total_bytes: int, stream: TextIO | None = None):
        self.total_files = max(total_files, 1)
        self.total_bytes = total_bytes
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.monotonic()

    @staticmethod
    def wanted(verbose: bool, stream: TextIO | None = None) -> bool:
        stream = stream if stream is not None else sys.stdout
        return verbose and hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, files: int, nbytes: int) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        if self.total_bytes:
            frac = min(nbytes / self.total_bytes, 1.0)
        else:
            frac = min(files / self.total_files, 1.0)
        rate = nbytes / elapsed
        left = (elapsed / frac - elapsed) if frac > 0.01 else None
        bar = "#" * int(self.width * frac)
        line = "\r[%-*s] %3d%% | %s/s | %s elapsed" % (
            self.width,
            bar,
            int(frac * 100),
            format_bytes(rate),
            format_time(elapsed),
        )
        if left is not None and frac < 1:
            line += " | ETA %s" % format_time(left)
        self.stream.write(line.ljust(80))
        self.stream.flush()

    def close(self, completed: bool = True) -> None:
        if completed:
            # Archived sizes differ a little from the scan's (links, rewritten records):
            # finished is 100%, whatever the byte count says.
            self(self.total_files, self.total_bytes)
        self.stream.write("\n")
        self.stream.flush()
