"""A TCP proxy that makes a loopback hop behave like a slow, delayed or flaky link.

The kernel's netem needs root, so the link is emulated in user space: an edge connects
to :class:`ShapingProxy` instead of the broker, and every byte it sends or receives is
held back as the :class:`~camoffload.netem.profile.LinkProfile` says. Each direction is
one wire shared by all connections (see :mod:`camoffload.netem._link` for the model)::

    async with ShapingProxy(("127.0.0.1", 1883), LinkProfile.preset("3g")) as proxy:
        ...  # connect MQTT clients to proxy.url

The connections themselves, four pump tasks each, are :mod:`camoffload.netem._connections`;
this module is the lifecycle, the listening port and the outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import random
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from camoffload.netem._connections import Switchboard
from camoffload.netem._link import Link, Outages
from camoffload.netem._sockets import listen_on
from camoffload.netem.profile import LinkProfile, OutageMode
from pipeline.errors import CamoffloadError, ConfigError, TransportError
from pipeline.tasks import cancel_and_wait

__all__ = ["DEFAULT_QUEUE_BYTES", "ProxyStats", "ShapingProxy"]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_BYTES = 256 * 1024
"""The bottleneck queue each direction of each connection may fill before the proxy
stops reading from its sender (on top of the bytes in flight, rate x delay)."""

_REBIND_TRIES = 50  # x 0.1 s: how long to try to listen again after a reset outage


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started; ``queued_*`` are bytes held right now."""

    bytes_up: int
    bytes_down: int
    queued_up: int
    queued_down: int
    connections: int
    open_connections: int
    upstream_failures: int
    refused: int  # over max_connections
    resets: int  # connections closed by reset outages


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CLOSING = "closing"


class ShapingProxy:
    """Listen on ``listen`` (127.0.0.1, a free port by default) and forward every
    connection to ``upstream`` through the emulated link ``profile``.

    An async context manager, reusable but not re-entrant: entering binds the port (so
    ``port`` and ``url`` are known at once), exiting closes every connection and task.
    ``seed`` makes the jitter reproducible.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        profile: LinkProfile | None = None,
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        max_connections: int = 256,
        connect_timeout_s: float = 10.0,
        seed: int | None = None,
    ) -> None:
        for name, (_, port) in (("upstream", upstream), ("listen", listen)):
            if not 0 <= port <= 65535 or (name == "upstream" and port == 0):
                raise ConfigError(f"{name} port {port} is out of range", key=name)
        if queue_bytes < 1:
            raise ConfigError("queue_bytes must be >= 1", key="queue_bytes")
        if max_connections < 1:
            raise ConfigError("max_connections must be >= 1", key="max_connections")
        if not (math.isfinite(connect_timeout_s) and connect_timeout_s > 0):
            raise ConfigError("connect_timeout_s must be > 0", key="connect_timeout_s")
        self._upstream = upstream
        self._listen = listen
        self._profile = profile if profile is not None else LinkProfile()
        self._queue_bytes = queue_bytes
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._seed = seed
        self._state = _State.IDLE
        self._port: int | None = None
        self._listener: socket.socket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._fresh_run(start=0.0)

    def _fresh_run(self, *, start: float) -> None:
        rng = random.Random(self._seed)
        self._outages = Outages(start)
        self._outages.plan(self._profile.outages, self._profile.outage_mode)
        self._up = Link(self._profile.uplink, self._outages, rng, queue_bytes=self._queue_bytes)
        self._down = Link(self._profile.downlink, self._outages, rng, queue_bytes=self._queue_bytes)
        self._board = Switchboard(
            self._upstream,
            self._up,
            self._down,
            self._outages,
            max_connections=self._max_connections,
            connect_timeout_s=self._connect_timeout_s,
        )
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._resetting = False

    # -- the public surface ------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has no port until it is entered")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` to give a client instead of the broker's URL."""
        host = self._listen[0]
        return f"mqtt://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def profile(self) -> LinkProfile:
        return self._profile

    def set_profile(self, profile: LinkProfile) -> None:
        """Change the link now; bytes already read keep the arrival time they were given.
        A new profile's outages count from the proxy's start, like the first one's."""
        self._profile = profile
        self._up.params = profile.uplink
        self._down.params = profile.downlink
        self._outages.plan(profile.outages, profile.outage_mode)
        self._changed.set()
        logger.info("netem: link on port %s now %s", self._port, profile.describe())

    async def outage_now(self, duration_s: float, mode: OutageMode = "stall") -> None:
        """Take the link down for ``duration_s`` from now. For ``"reset"`` this returns
        once every connection is closed and the port refuses new ones."""
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ConfigError(f"outage duration must be > 0 s, got {duration_s!r}", key="outage")
        if mode not in ("stall", "reset"):
            raise ConfigError(f"outage mode must be stall or reset, got {mode!r}", key="outage")
        self._require_running()
        self._outages.add(asyncio.get_running_loop().time(), duration_s, mode)
        self._changed.set()
        if mode == "reset":
            await self._enter_reset()

    def stats(self) -> ProxyStats:
        return ProxyStats(
            bytes_up=self._up.delivered,
            bytes_down=self._down.delivered,
            queued_up=self._up.queued,
            queued_down=self._down.queued,
            connections=self._board.accepted,
            open_connections=len(self._board.conns),
            upstream_failures=self._board.upstream_failures,
            refused=self._board.refused,
            resets=self._board.resets,
        )

    async def wait_closed(self) -> None:
        """Return when the proxy stops by itself: only a failure does that, and it is
        raised (a :class:`TransportError` when the port cannot be taken again after a
        reset outage)."""
        self._require_running()
        assert self._runner is not None
        await asyncio.wait([self._runner])
        failure = _failure(self._runner)
        if failure is not None:
            raise failure

    async def __aenter__(self) -> Self:
        if self._state is not _State.IDLE:
            raise RuntimeError("ShapingProxy is already running (it is not re-entrant)")
        loop = asyncio.get_running_loop()
        self._listener = listen_on(self._listen[0], self._listen[1])
        self._port = self._listener.getsockname()[1]
        self._fresh_run(start=loop.time())
        self._runner = asyncio.create_task(self._run(), name=f"netem-proxy-{self._port}")
        self._state = _State.RUNNING
        logger.info(
            "netem: %s -> %s:%d, %s",
            self.url,
            *self._upstream,
            self._profile.describe(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state is not _State.RUNNING:
            return
        self._state = _State.CLOSING
        assert self._runner is not None
        try:
            await cancel_and_wait([self._runner])
        finally:
            self._close_listener()
            self._board.close_all()
            self._state = _State.IDLE
            logger.info("netem: proxy on port %s closed: %s", self._port, self.stats())
        failure = _failure(self._runner)
        if failure is not None and exc_type is None:
            raise failure

    def __repr__(self) -> str:
        return (
            f"<ShapingProxy {self._state.value} port={self._port} "
            f"upstream={self._upstream[0]}:{self._upstream[1]} {self._profile.spec()!r}>"
        )

    # -- running -----------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._state is not _State.RUNNING:
            raise RuntimeError("the proxy is not running: use `async with ShapingProxy(...)`")

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if not self._resetting:
                    self._start_accepting()
                await self._watch_outages()
        finally:
            self._tg = None
            self._close_listener()

    def _start_accepting(self) -> None:
        assert self._tg is not None
        assert self._listener is not None
        self._accept_task = self._tg.create_task(
            self._board.accept(self._listener, self._tg, self._port),
            name=f"netem-accept-{self._port}",
        )

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def _watch_outages(self) -> None:
        loop = asyncio.get_running_loop()
        seen: set[tuple[float, float, OutageMode]] = set()
        while True:
            self._changed.clear()
            now = loop.time()
            active = set(self._outages.active(now))
            for _, end, mode in active - seen:
                logger.info("netem: link down (%s) for %.3g s", mode, end - now)
            for _, _, mode in seen - active:
                logger.info("netem: link up after a %s outage", mode)
            seen = active
            resetting = self._outages.end_of(now, "reset") is not None
            if resetting and not self._resetting:
                await self._enter_reset()
            elif not resetting and self._resetting:
                await self._leave_reset()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self._outages.next_change(now)):
                    await self._changed.wait()

    async def _enter_reset(self) -> None:
        async with self._lock:
            if self._resetting:
                return
            self._resetting = True
            if self._accept_task is not None:
                await cancel_and_wait([self._accept_task])
                self._accept_task = None
            self._close_listener()  # connects are refused until the outage ends
            await self._board.reset_all()

    async def _leave_reset(self) -> None:
        async with self._lock:
            if not self._resetting:
                return
            for attempt in itertools.count(1):
                try:
                    self._listener = listen_on(self._listen[0], self.port)
                    break
                except TransportError:
                    if attempt >= _REBIND_TRIES:
                        raise
                    await asyncio.sleep(0.1)
            self._resetting = False
            if self._tg is not None:
                self._start_accepting()


def _failure(runner: asyncio.Task[None]) -> BaseException | None:
    """The runner's error, if it died of one: the TaskGroup's group, unwrapped when it
    holds a single error of ours."""
    if not runner.done() or runner.cancelled():
        return None
    exc = runner.exception()
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        if isinstance(inner, CamoffloadError):
            return inner
    return exc
