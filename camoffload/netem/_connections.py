"""The proxy's connections: accepting them, dialling the upstream for each, the four
pumps between the two, and the counters :class:`~camoffload.netem.proxy.ShapingProxy`
reports.

Each accepted connection is served by one task, which owns a TaskGroup of four named
tasks: a reader and a writer each way. Socket errors end that connection only (and are
passed on to its other side as a reset); a refused upstream closes the client's
connection and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket

from camoffload.netem._link import Link, Outages, Pipe
from camoffload.netem._sockets import Connection, connect, receive, send
from pipeline.tasks import cancel_and_wait

__all__ = ["Switchboard"]

# The proxy's logger, not this module's: callers filter the proxy's warnings by its name.
logger = logging.getLogger("camoffload.netem.proxy")


class Switchboard:
    """The connections of one run of the proxy, through the links ``up`` and ``down``.

    A new run gets a new switchboard, so the counters start again with it.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        up: Link,
        down: Link,
        outages: Outages,
        *,
        max_connections: int,
        connect_timeout_s: float,
    ) -> None:
        self._upstream = upstream
        self._up = up
        self._down = down
        self._outages = outages
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._numbers = itertools.count(1)
        self.conns: dict[int, Connection] = {}
        self.accepted = self.upstream_failures = self.refused = self.resets = 0

    async def accept(
        self, listener: socket.socket, tg: asyncio.TaskGroup, port: int | None
    ) -> None:
        """Accept connections on ``listener`` until cancelled; each is served by a task in
        ``tg``. ``port`` is only for the log."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listener)
            except OSError as exc:  # out of file descriptors, say: the listener is fine
                logger.warning("netem: accept on port %s failed: %s", port, exc)
                await asyncio.sleep(0.1)
                continue
            peer = f"{address[0]}:{address[1]}"
            if len(self.conns) >= self._max_connections:
                self.refused += 1
                logger.warning(
                    "netem: refusing %s: %d connections open", peer, self._max_connections
                )
                sock.close()
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            conn = Connection(next(self._numbers), sock, peer)
            self.conns[conn.number] = conn
            conn.task = tg.create_task(self._serve(conn), name=f"netem-conn-{conn.number}")

    async def reset_all(self) -> None:
        """Close every open connection with a reset, and wait for their tasks to end."""
        doomed = list(self.conns.values())
        for conn in doomed:
            conn.reset = True
        self.resets += len(doomed)
        await cancel_and_wait([conn.task for conn in doomed if conn.task is not None])

    def close_all(self) -> None:
        """Close every connection's sockets now (each task closes its own; in case)."""
        for conn in list(self.conns.values()):
            conn.close()
        self.conns.clear()

    async def _serve(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        host, port = self._upstream
        try:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    conn.upstream = await connect(host, port)
            except OSError as exc:  # TimeoutError included
                self.upstream_failures += 1
                logger.warning(
                    "netem: connection %d from %s: upstream %s:%d unreachable (%s); closing it",
                    conn.number,
                    conn.peer,
                    host,
                    port,
                    exc or type(exc).__name__,
                )
                return
            logger.debug("netem: connection %d from %s", conn.number, conn.peer)
            # A real client's first bytes leave one RTT after its SYN (the handshake) and
            # then cross the uplink; here connect() returned at once, so hold them.
            handshake = accepted + self._up.params.delay_s * 2 + self._down.params.delay_s
            up = Pipe(self._up, self._outages, not_before=handshake)
            down = Pipe(self._down, self._outages)
            conn.pipes = [up, down]
            name = f"netem-conn-{conn.number}"
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(receive(conn.client, up), name=f"{name}-up-read")
                    tg.create_task(send(up, conn.upstream), name=f"{name}-up-write")
                    tg.create_task(receive(conn.upstream, down), name=f"{name}-down-read")
                    tg.create_task(send(down, conn.client), name=f"{name}-down-write")
            except* OSError as group:
                conn.reset = True  # pass the reset (or broken pipe) on to the other side
                logger.debug("netem: connection %d ended: %s", conn.number, group.exceptions[0])
        finally:
            conn.close()
            self.conns.pop(conn.number, None)
