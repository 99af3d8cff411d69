"""A service's retained status: published while it runs, its last will when it dies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiomqtt
from aiomqtt import Will

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

    async def publish(
        self, client: aiomqtt.Client, *, online: bool, rendered: bytes | None = None
    ) -> None:
        """Publish now (``rendered``: the status already built, else ``render(online)``);
        raises :class:`TransportError` when the publish fails."""
        payload = self._render(online) if rendered is None else rendered
        await publish(client, self.topic, payload, qos=1, retain=True)

    async def every_interval(self, tick: Callable[[], Awaitable[None]]) -> None:
        """Await ``tick()`` every interval, forever (until cancelled)."""
        while True:
            await asyncio.sleep(self._interval_s)
            await tick()
