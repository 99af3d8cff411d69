"""A dependency-free progress bar for long loops, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Redraws one line on a terminal; elsewhere (CI logs) prints every 10 %."""

    def __init__(self, total: int, label: str, *, stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty()
        self.done = 0
        self.started = time.perf_counter()
        self._next_log = 0.1

    def update(self, steps: int = 1, **fields: float) -> None:
        self.done = min(self.total, self.done + steps)
        fraction = self.done / self.total
        if not self.interactive and fraction < self._next_log and self.done < self.total:
            return
        self._next_log = fraction + 0.1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / fraction - elapsed if fraction else 0.0
        bar = "#" * int(24 * fraction)
        extras = " ".join(f"{key} {value:.4g}" for key, value in fields.items())
        line = (
            f"{self.label} [{bar:<24}] {self.done}/{self.total} "
            f"{elapsed:.0f}s<{eta:.0f}s {extras}".rstrip()
        )
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
