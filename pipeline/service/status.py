"""A service's retained status: published while it runs, its last will when it dies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import aiomqtt
from aiomqtt import Will

from pipeline.errors import TransportError
from pipeline.service.publish import publish

__all__ = ["RetainedStatus"]


class RetainedStatus:
    """The retained status of one service on ``topic``.

    ``render(online)`` builds the encoded status message. The same message with
    ``online=False`` is the last will, so a crash reads as offline, and is published
    on a clean exit too (the broker sends a will only on an unclean disconnect).
    """

    def __init__(self, topic: str, render: Callable[[bool], bytes], *, interval_s: float) -> None:
        self.topic = topic
        self._render = render
        self._interval_s = interval_s

    def will(self) -> Will:
        return Will(self.topic, self._render(False), qos=1, retain=True)

    async def publish(self, client: aiomqtt.Client, *, online: bool) -> None:
        """Publish now; raises :class:`TransportError` when the publish fails."""
        await publish(client, self.topic, self._render(online), qos=1, retain=True)

    async def publish_quietly(self, client: aiomqtt.Client | None, *, online: bool) -> bool:
        """Publish if connected; a lost connection is the link's to report, not ours.
        True when the status reached the client."""
        if client is None:
            return False
        with contextlib.suppress(TransportError):
            await self.publish(client, online=online)
            return True
        return False

    async def every_interval(self, tick: Callable[[], Awaitable[None]]) -> None:
        """Await ``tick()`` every interval, forever (until cancelled)."""
        while True:
            await asyncio.sleep(self._interval_s)
            await tick()
