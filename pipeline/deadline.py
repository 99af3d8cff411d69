"""A frame's deadline: one value from capture to decision, and from arrival to reply.

It is absolute Unix time because it crosses machines on the wire (``deadline_ts`` of a
frame request; edges and workers are expected to run NTP). Everything that asks "how
long is left", "has it passed", "would an answer ready then be in time" or "when is
that on the event loop's clock" asks this value, so the edge and the worker compute it
one way.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

__all__ = ["Deadline"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """The instant ``ts`` (Unix seconds) by which a frame's answer is due."""

    ts: float

    @classmethod
    def after(cls, start_ts: float, budget_ms: float) -> Deadline:
        """``budget_ms`` after ``start_ts`` (a frame's capture time)."""
        return cls(start_ts + budget_ms / 1000)

    def remaining_s(self, now: float | None = None) -> float:
        """Seconds left (negative once passed); ``now`` defaults to the wall clock."""
        return self.ts - (time.time() if now is None else now)

    def remaining_ms(self, now: float | None = None) -> float:
        return self.remaining_s(now) * 1000

    def passed(self, now: float | None = None) -> bool:
        return self.remaining_s(now) <= 0

    def met_by(self, ready_ts: float) -> bool:
        """Whether an answer ready at ``ready_ts`` (Unix seconds) is in time."""
        return ready_ts < self.ts

    def loop_time(self, loop: asyncio.AbstractEventLoop | None = None) -> float:
        """The same instant on the event loop's clock, for ``asyncio.timeout_at`` (never
        before now: a passed deadline times out at once)."""
        loop = loop or asyncio.get_running_loop()
        return loop.time() + max(0.0, self.remaining_s())
