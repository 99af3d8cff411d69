"""Logging what is refused by reason and by interval, not a line per message.

A burst of 20,000 malformed or refused messages must leave a log a person can read. The
first of each reason in an interval is logged at once with its detail (what went wrong,
so it can be fixed); the rest are counted, and once an interval has passed a single
line says how many of each there were.
"""

from __future__ import annotations

import logging
import time

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval_s: float = 10.0,
        level: int = logging.WARNING,
    ) -> None:
        self._logger = logger
        self._what = what
        self.interval_s = interval_s
        self._level = level
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()
        self.total: dict[str, int] = {}  # every reason ever noted, for tests and reports

    def note(self, reason: str, detail: str = "") -> None:
        """One more refusal for ``reason``; ``detail`` is logged with the first."""
        count = self._counts.get(reason, 0)
        if count == 0:
            self._logger.log(
                self._level,
                "%s: %s%s (more are summarised every %g s)",
                self._what,
                reason,
                f": {detail}" if detail else "",
                self.interval_s,
            )
        self._counts[reason] = count + 1
        self.total[reason] = self.total.get(reason, 0) + 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """The summary line, once an interval has passed since the last one."""
        if time.monotonic() - self._since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """The summary line now (a service stopping), if anything was counted."""
        now = time.monotonic()
        counted = self._counts
        self._counts, span, self._since = {}, now - self._since, now
        if sum(counted.values()) > len(counted):  # more than the lines already logged
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(counted.items()))
            self._logger.log(
                self._level,
                "%s: %s in the last %.0f s: %s",
                self._what,
                f"{sum(counted.values()):,}",
                span,
                reasons,
            )
