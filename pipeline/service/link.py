"""A service's link to the broker: connect, retry, reconnect, one session at a time.

The first connection must come within ``broker.connect_timeout_s``: a wrong address or
a broker that is not up is a clear :class:`TransportError` that names it, the same on
the edge and on the worker. After that a lost broker is waited for as long as it takes,
with full-jitter exponential backoff (many clients reconnecting do not stampede).

Each connection runs one *session* (the service's subscribe-and-serve coroutine). A
session that returns ends the link; one that loses the connection (aiomqtt's
``MqttError``, or a :class:`TransportError` raised inside it) is followed by a
reconnect and a fresh session. This is the one place where aiomqtt's errors become
camoffload's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiomqtt
from aiomqtt import Will

from pipeline.config import BrokerConfig
from pipeline.errors import TransportError
from pipeline.mqtt import DEFAULT_INCOMING_QUEUE, backoff_delays, make_client

__all__ = ["BrokerLink", "Session"]

logger = logging.getLogger(__name__)

Session = Callable[[aiomqtt.Client], Awaitable[None]]
"""A service's work on one connection: returns when the service is done."""


class BrokerLink:
    """Connects ``client_id`` to the broker and keeps it connected while sessions run.

    ``client`` is the connected client, or None while there is none: a service reads it
    to publish from outside its session (the edge's frames) and treats None as "decide
    locally". ``connected`` is set at the first connection and stays set.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        client_id: str,
        what: str,
        will: Callable[[], Will] | None = None,
        max_queued_incoming: int = DEFAULT_INCOMING_QUEUE,
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._broker = broker
        self._client_id = client_id
        self._what = what
        self._will = will
        self._max_queued_incoming = max_queued_incoming
        self._manual_ack = manual_ack
        self._receive_maximum = receive_maximum
        self._on_lost = on_lost
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self, session: Session, *, stop: asyncio.Event | None = None) -> None:
        """Connect and run ``session`` until one returns; reconnect in between. Once
        ``stop`` is set, a link waiting for the broker gives up and returns (a service
        told to stop while its broker is gone has nothing left to drain).

        Raises :class:`TransportError` when the first connection does not come within
        ``broker.connect_timeout_s``.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._broker.connect_timeout_s
        delays = backoff_delays()
        while True:
            # The will is rendered per connection: it carries the service's latest state.
            client = make_client(
                self._broker,
                client_id=self._client_id,
                will=None if self._will is None else self._will(),
                max_queued_incoming=self._max_queued_incoming,
                manual_ack=self._manual_ack,
                receive_maximum=self._receive_maximum,
            )
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                delay = next(delays)
                if not self.connected.is_set() and loop.time() + delay > give_up_at:
                    raise TransportError(
                        f"{self._what}: cannot connect to the broker at {self._broker.url} "
                        f"within {self._broker.connect_timeout_s:g} s: {exc}"
                    ) from exc
                logger.info(
                    "%s: broker not reachable (%s); retrying in %.2f s", self._what, exc, delay
                )
                if await _stopped_within(stop, delay):
                    return
                continue
            if self.connected.is_set():
                self.reconnects += 1
                logger.warning("%s: reconnected to the broker", self._what)
            delays = backoff_delays()
            try:
                if await self._session(client, session):
                    return
            finally:
                self.client = None
                await _close(client)
            if await _stopped_within(stop, next(delays)):
                return

    async def _session(self, client: aiomqtt.Client, session: Session) -> bool:
        """Run one session; True when it ended on its own, False when the link broke."""
        self.client = client
        self.connected.set()
        try:
            await session(client)
        except (aiomqtt.MqttError, TransportError) as exc:
            logger.warning("%s: broker connection lost (%s); reconnecting", self._what, exc)
            if self._on_lost is not None:
                self._on_lost(str(exc))
            return False
        return True

    async def wait_connected(self, task: asyncio.Task[None]) -> None:
        """Wait until the first connection, or until ``task`` (running :meth:`run`)
        ends, re-raising what ended it."""
        waiter = asyncio.create_task(self.connected.wait(), name=f"{self._client_id}-connected")
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not self.connected.is_set():
            await task  # raises what ended it
            raise TransportError(f"{self._what}: the broker link ended before connecting")


async def _stopped_within(stop: asyncio.Event | None, delay_s: float) -> bool:
    """Sleep ``delay_s``, or less if ``stop`` is set meanwhile; True if it is set."""
    if stop is None:
        await asyncio.sleep(delay_s)
        return False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await stop.wait()
    return stop.is_set()


async def _close(client: aiomqtt.Client) -> None:
    try:
        await client.__aexit__(None, None, None)
    except aiomqtt.MqttError as exc:
        logger.debug("closing a broken connection: %s", exc)
