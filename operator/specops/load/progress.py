"""A one-line progress bar on stderr, redrawn at most a few times a second.

No dependency: a sweep runs for minutes and a user wants to see it move, but
a pipe (CI logs) should get one line per profile, not thousands of redraws.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Shows ``[profile i/n] label  ####....  done/planned  elapsed``."""

    def __init__(self, profiles: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.profiles = profiles
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._line = ""

    def update(self, index: int, label: str, done: int, planned: int, elapsed_s: float) -> None:
        now = time.monotonic()
        if not self.tty or now - self._last < 0.2:
            return
        self._last = now
        self._draw(index, label, done, planned, elapsed_s)

    def _draw(self, index: int, label: str, done: int, planned: int, elapsed_s: float) -> None:
        frac = min(1.0, done / planned) if planned else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self._line = (
            f"[profile {index}/{self.profiles}] {label:<18} {bar} {done}/{planned} "
            f"{elapsed_s:5.1f}s"
        )
        self.stream.write("\r" + self._line)
        self.stream.flush()

    def finish(self, index: int, label: str, summary_line: str) -> None:
        """End one profile's line with its headline numbers."""
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}[profile {index}/{self.profiles}] {label:<18} {summary_line}")
        self.stream.write(" " * max(0, len(self._line) - 60) + "\n")
        self.stream.flush()
        self._line = ""
