"""The frames a worker holds, in units: the frames of one message, admitted together.

A bundle's frames arrive in one message, are admitted in one step, queue as one item,
join a batch together and are answered together (one reply message per batch). A
camera's lone frame is a unit of one. The queue is bounded in frames
(``worker.max_queue``), not units; a unit is never larger than ``worker.max_batch``
(the session splits a bigger bundle), so a batch takes whole units.

Dynamic batching: wait for one unit, then take what is queued or arrives within
``max_wait_s``, up to ``max_batch`` frames. A unit that would overflow the batch waits
for the next one (it is still counted as waiting, and answered by a goodbye).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from cloud_worker.processing import Pending

__all__ = ["Backlog", "Unit"]

Unit = list[Pending]


@dataclass(slots=True)
class Backlog:
    """Queued units, the batch taken and decoding (``held``), and the frames computing
    in the inference thread now: across reconnects, for the worker's whole life."""

    capacity: int  # frames the queue may hold (worker.max_queue)
    queue: asyncio.Queue[Unit] = field(default_factory=asyncio.Queue)
    queued: int = 0  # frames in the queue and the carried unit
    held: dict[int, list[Pending]] = field(default_factory=dict)
    computing: int = 0
    # Taken from the queue but not batched: a unit that would have overflowed a batch,
    # or a batch's units when its gathering was cancelled (a reconnect). First next time.
    _carry: list[Unit] = field(default_factory=list)

    def room(self) -> int:
        """Frames the queue can still take."""
        return max(0, self.capacity - self.queued)

    def put(self, unit: Unit) -> None:
        self.queue.put_nowait(unit)
        self.queued += len(unit)

    def waiting(self) -> int:
        """Frames here and not yet computing: queued, or batched and decoding."""
        return self.queued + sum(len(batch) for batch in self.held.values())

    def ahead(self) -> int:
        """Frames a newly arrived one would wait for."""
        return self.waiting() + self.computing

    async def next_batch(self, *, max_batch: int, max_wait_s: float) -> list[Unit]:
        """Whole units, at least one, of at most ``max_batch`` frames together (a lone
        unit may be bigger). Each unit is ``task_done`` by whoever computes it."""
        units: list[Unit] = []
        frames = 0
        try:
            units.append(self._carry.pop(0) if self._carry else await self.queue.get())
            frames = len(units[0])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_wait_s
            while frames < max_batch:
                unit = await self._next_unit(deadline - loop.time())
                if unit is None:
                    break
                if frames + len(unit) > max_batch:
                    self._carry.insert(0, unit)
                    break
                units.append(unit)
                frames += len(unit)
        except asyncio.CancelledError:
            self._carry[:0] = units
            raise
        self.queued -= frames
        return units

    async def _next_unit(self, wait_s: float) -> Unit | None:
        """A carried or queued unit, waiting at most ``wait_s`` for one; else None."""
        if self._carry:
            return self._carry.pop(0)
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if wait_s <= 0:
                return None
        try:
            async with asyncio.timeout(wait_s):
                return await self.queue.get()
        except TimeoutError:
            return None

    def take_all(self) -> list[Pending]:
        """Everything not yet computing, removed (a worker going away answers them)."""
        taken = [p for batch in self.held.values() for p in batch]
        self.held.clear()
        for unit in self._carry:
            taken += unit
            self.queue.task_done()
        self._carry.clear()
        while True:
            try:
                taken += self.queue.get_nowait()
            except asyncio.QueueEmpty:
                self.queued = 0
                return taken
            self.queue.task_done()
