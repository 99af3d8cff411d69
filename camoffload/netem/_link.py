"""The link model, apart from sockets: when does a chunk of bytes arrive?

A :class:`Link` is one direction of the emulated wire, shared by every connection that
crosses it. A chunk read at ``now`` is serialised once the wire is free (``busy_until``),
at the direction's rate, then propagates for the one-way delay plus a uniformly drawn
jitter. A :class:`Pipe` is one direction of one connection: the chunks read but not yet
delivered, in order, under a byte budget. :class:`Outages` says when the link is down.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque

from camoffload.netem.profile import LinkDirection, Outage, OutageMode

MAX_CHUNK = 64 * 1024
"""The most one read takes off a socket."""

MIN_CHUNK = 1500
"""The least a read asks for on a slow link (about one Ethernet frame)."""

CHUNK_TIME_S = 0.01
"""A read takes at most this much link time (so a 1 Mbit/s link reads 1,250 bytes at a
time): delays are applied per chunk, and a chunk arrives whole, so this bounds how far
its first byte is late compared to a real link."""

# Linux TCP's minimum retransmission timeout, and where the emulation stops doubling it.
RTO_MIN_S = 0.2
RTO_MAX_S = 3.2

MAX_IN_FLIGHT = 16 * 1024 * 1024
"""Cap on the bytes a pipe may hold in propagation (rate x delay) besides its queue."""

UNLIMITED_IN_FLIGHT = 4 * 1024 * 1024
"""What a pipe may hold in propagation when the rate is unlimited but the delay is not:
the window of the emulated path, so throughput <= 4 MiB / one-way delay."""


class Outages:
    """The outage schedule, in loop time: the profile's plus those started by hand."""

    def __init__(self, start: float) -> None:
        self._start = start
        self._planned: list[tuple[float, float, OutageMode]] = []
        self._adhoc: list[tuple[float, float, OutageMode]] = []

    def plan(self, outages: tuple[Outage, ...], mode: OutageMode) -> None:
        """Replace the planned outages (their times count from the proxy's start)."""
        self._planned = [(self._start + o.start_s, self._start + o.end_s, mode) for o in outages]

    def add(self, now: float, duration_s: float, mode: OutageMode) -> None:
        self._adhoc = [o for o in self._adhoc if o[1] > now]
        self._adhoc.append((now, now + duration_s, mode))

    def _all(self) -> list[tuple[float, float, OutageMode]]:
        return self._planned + self._adhoc

    def active(self, now: float) -> list[tuple[float, float, OutageMode]]:
        return [o for o in self._all() if o[0] <= now < o[1]]

    def end_of(self, now: float, mode: OutageMode) -> float | None:
        """When the outage of ``mode`` under way at ``now`` ends (``None``: none is)."""
        ends = [end for start, end, m in self._all() if m == mode and start <= now < end]
        return max(ends) if ends else None

    def next_change(self, now: float) -> float | None:
        """The next time after ``now`` at which an outage begins or ends."""
        times = [t for start, end, _ in self._all() for t in (start, end) if t > now]
        return min(times) if times else None


class Link:
    """One direction of the wire; every connection's chunks share its ``busy_until``."""

    def __init__(
        self, params: LinkDirection, outages: Outages, rng: random.Random, *, queue_bytes: int
    ) -> None:
        self.params = params
        self.queue_bytes = queue_bytes
        self._outages = outages
        self._rng = rng
        self._busy_until = 0.0
        self.queued = 0  # bytes read from one side and not yet written to the other
        self.delivered = 0

    def chunk_size(self) -> int:
        rate = self.params.rate_bps
        if rate is None:
            return MAX_CHUNK
        return int(min(MAX_CHUNK, max(MIN_CHUNK, rate * CHUNK_TIME_S / 8)))

    def budget(self) -> int:
        """Bytes one connection may hold in this direction: a bottleneck queue of
        ``queue_bytes`` plus what the wire itself holds in flight (rate x delay)."""
        p = self.params
        if p.rate_bps is None:
            in_flight = UNLIMITED_IN_FLIGHT if p.delay_s > 0 else 0
        else:
            in_flight = min(MAX_IN_FLIGHT, math.ceil(p.rate_bps / 8 * (p.delay_s + p.jitter_s)))
        return self.queue_bytes + in_flight

    def one_way(self) -> float:
        p = self.params
        if p.jitter_s == 0:
            return p.delay_s
        return p.delay_s + self._rng.uniform(-p.jitter_s, p.jitter_s)

    def arrival(self, now: float, nbytes: int) -> float:
        """When ``nbytes`` handed to the wire at ``now`` reach the far end.

        During a stall the wire sends nothing: the chunk goes out when it ends, behind
        whatever queued up meanwhile (TCP retransmitting once the cable is back).
        """
        start = now
        stall_end = self._outages.end_of(now, "stall")
        if stall_end is not None:
            start = stall_end
        rate = self.params.rate_bps
        if rate is not None:
            start = max(start, self._busy_until) + nbytes * 8 / rate
            self._busy_until = start
        return start + self.one_way() + self.retransmission()

    def retransmission(self) -> float:
        """How late loss makes a chunk: 0, or TCP's retransmission timeout (200 ms,
        doubled for each retransmission lost in turn, at most 3.2 s). The pipe keeps
        order, so what follows waits too: head-of-line blocking, as on TCP."""
        late, timeout = 0.0, RTO_MIN_S
        while self.params.loss and self._rng.random() < self.params.loss and late < RTO_MAX_S:
            late += timeout
            timeout *= 2
        return min(late, RTO_MAX_S)


class Pipe:
    """One direction of one connection: chunks in arrival order, under a byte budget.

    The reader stops reading once the pipe holds its budget, so the sender's TCP window
    fills and flow control pushes back on it, as a real bottleneck queue does; memory
    stays bounded whatever the sender does.
    """

    def __init__(self, link: Link, outages: Outages, *, not_before: float = 0.0) -> None:
        self.link = link
        self._outages = outages
        self._chunks: deque[tuple[float, bytes | None]] = deque()  # None: end of stream
        self._last = not_before  # arrivals never go backwards: no reordering
        self.held = 0
        self._readable = asyncio.Event()
        self._room = asyncio.Event()

    async def wait_for_room(self) -> None:
        while self.held >= self.link.budget():
            self._room.clear()
            await self._room.wait()

    def put(self, now: float, data: bytes) -> None:
        self._push(max(self._last, self.link.arrival(now, len(data))), data)
        self.held += len(data)
        self.link.queued += len(data)

    def put_eof(self, now: float) -> None:
        """The sender closed its side: a FIN crosses the link behind the data."""
        self._push(max(self._last, self.link.arrival(now, 0)), None)

    def _push(self, at: float, data: bytes | None) -> None:
        self._last = at
        self._chunks.append((at, data))
        self._readable.set()

    async def take(self) -> tuple[bytes, bool]:
        """Wait for the chunks that are due; all of them, joined, and whether the stream
        ends after them. Coalescing keeps a fast link from paying per-chunk overhead."""
        loop = asyncio.get_running_loop()
        while not self._chunks:
            self._readable.clear()
            await self._readable.wait()
        while True:
            now = loop.time()
            stall_end = self._outages.end_of(now, "stall")
            if stall_end is not None:
                # In flight when the cable was pulled: resent once it is back.
                await asyncio.sleep(stall_end + self.link.params.delay_s - now)
                continue
            due = self._chunks[0][0]
            if due <= now:
                break
            await asyncio.sleep(due - now)
        parts: list[bytes] = []
        eof = False
        while self._chunks and self._chunks[0][0] <= now:
            data = self._chunks.popleft()[1]
            if data is None:
                eof = True
                break
            parts.append(data)
        return b"".join(parts), eof

    def delivered(self, nbytes: int) -> None:
        self.held -= nbytes
        self.link.queued -= nbytes
        self.link.delivered += nbytes
        self._room.set()

    def discard(self) -> None:
        """The connection is gone: release what it still held from the link's count."""
        self.link.queued -= self.held
        self.held = 0
        self._chunks.clear()
