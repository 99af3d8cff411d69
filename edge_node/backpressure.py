"""Back-pressure at the edge: offload less when the workers say they are full.

Two signals lower the offload rate:

* a ``busy`` (or ``shutting_down``) reply holds offloading back for a backoff that
  doubles with each consecutive refusal (``base_s`` .. ``max_s``) and resets on the
  next answer;
* the workers' retained status: when every fresh, online worker reports a queue at
  least ``high_water`` full, offloading is held for one status period; when workers
  have reported and none is online, nothing is sent (frames would reach nobody).

While held, the node decides frames locally at once instead of sending frames that
would be refused or queue past their deadline. The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.protocol import WorkerStatus

__all__ = ["OffloadGovernor"]


@dataclass(slots=True)
class _WorkerLoad:
    online: bool
    fill: float  # queue depth / capacity
    seen: float  # our monotonic clock when the status arrived


class OffloadGovernor:
    def __init__(
        self,
        *,
        base_s: float = 0.1,
        max_s: float = 5.0,
        high_water: float = 0.8,
        status_fresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base_s, self._max_s = base_s, max_s
        self._high_water = high_water
        self._fresh_s = status_fresh_s
        self._clock = clock
        self._backoff_s = 0.0
        self._hold_until = 0.0
        self._workers: dict[str, _WorkerLoad] = {}

    def on_busy(self) -> None:
        self._backoff_s = min(self._max_s, max(self._base_s, self._backoff_s * 2))
        self._hold_until = max(self._hold_until, self._clock() + self._backoff_s)

    def on_answer(self) -> None:
        self._backoff_s = 0.0

    def on_worker_status(self, status: WorkerStatus) -> None:
        fill = status.queue_depth / status.queue_capacity if status.queue_capacity else 0.0
        self._workers[status.worker_id] = _WorkerLoad(status.online, fill, self._clock())

    def hold_reason(self) -> str | None:
        """Why offloading is held back right now, or ``None`` if a frame may go."""
        now = self._clock()
        if now < self._hold_until:
            return f"workers busy: backing off {self._backoff_s * 1000:.0f} ms"
        if not self._workers:
            return None  # no status seen (yet): workers may not publish it; try
        fresh = [w for w in self._workers.values() if now - w.seen <= self._fresh_s]
        online = [w for w in self._workers.values() if w.online]
        if not online:
            return "no worker online"
        fresh_online = [w for w in fresh if w.online]
        if fresh_online and all(w.fill >= self._high_water for w in fresh_online):
            return f"every worker's queue is over {self._high_water:.0%} full"
        return None
