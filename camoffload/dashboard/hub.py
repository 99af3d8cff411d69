"""From MQTT messages to every open page: one state, batched pushes, bounded queues.

MQTT messages arrive one by one (eight edges and four workers with a status a second,
and every edge's decisions, ten or more a second each). A page does not need each one:
the hub marks the state changed and, at most every ``push_interval_s``, sends each page
one patch with everything that changed. A page that cannot keep up (a slow link, a
background tab) does not hold the others back or grow a queue: its queue holds
``QUEUE_PATCHES`` patches, and when it is full the page's queue is emptied and it gets
the whole state instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from camoffload.dashboard.state import DashboardState

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

QUEUE_PATCHES = 32


class Hub:
    def __init__(self, state: DashboardState, *, push_interval_s: float = 0.1) -> None:
        self.state = state
        self.push_interval_s = push_interval_s
        self._pages: set[asyncio.Queue[str | None]] = set()
        self._changed = asyncio.Event()
        self._closed = False

    def apply(self, topic: str, payload: bytes) -> None:
        if self.state.apply(topic, payload):
            self._changed.set()

    def set_broker(self, connected: bool) -> None:
        if self.state.set_broker(connected):
            self._changed.set()

    @property
    def pages(self) -> int:
        return len(self._pages)

    async def run(self) -> None:
        """Push changes to every page until cancelled."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            patch = self.state.changes()
            if patch is not None:
                self._send(json.dumps(patch, separators=(",", ":")))
            # A burst of messages becomes one patch per interval, not one each.
            await asyncio.sleep(self.push_interval_s)

    def _send(self, data: str) -> None:
        for queue in list(self._pages):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                # Behind by QUEUE_PATCHES: drop what it has not read, send everything.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(self._full())

    def _full(self) -> str:
        return json.dumps(self.state.full(), separators=(",", ":"))

    async def stream(self, *, keepalive_s: float = 15.0) -> AsyncIterator[str]:
        """One page's messages: the whole state, then patches, until the hub closes."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=QUEUE_PATCHES)
        self._pages.add(queue)
        try:
            yield self._full()
            while not self._closed:
                try:
                    async with asyncio.timeout(keepalive_s):
                        data = await queue.get()
                except TimeoutError:
                    yield ""  # a keep-alive: proxies close idle streams
                    continue
                if data is None:
                    return
                yield data
        finally:
            self._pages.discard(queue)

    def close(self) -> None:
        """End every page's stream (the server is stopping)."""
        self._closed = True
        for queue in list(self._pages):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
