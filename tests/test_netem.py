"""The shaping proxy against real sockets and the real Mosquitto: delay, rate, jitter,
outages, shutdown; and the profile parser.

Timing assertions leave room for a loaded 2-core machine: the shaped times (50-100 ms
delays, 1-2 s transfers) dwarf scheduling noise, lower bounds are exact (the proxy
never delivers early), and upper bounds allow 10 % or a few milliseconds of lag.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from broker import BrokerInfo
from camoffload.netem import PRESETS, LinkDirection, LinkProfile, Outage, ShapingProxy
from pipeline.config import load_config
from pipeline.errors import ConfigError, TransportError
from tests._helpers import client, next_message

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Upstream:
    """A TCP server on 127.0.0.1:0 standing in for the broker: it records every chunk it
    receives with its arrival time, echoes it back when ``echo``, and notes closes."""

    def __init__(self, *, echo: bool) -> None:
        self.echo = echo
        self.received: list[tuple[float, bytes]] = []
        self.connections = 0
        self.closes = 0
        self.closed = asyncio.Event()
        self.total = 0
        self._grew = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._idle = asyncio.Event()
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._idle.clear()
        self.connections += 1
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                self.received.append((loop.time(), data))
                self.total += len(data)
                self._grew.set()
                if self.echo:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.closes += 1
            self.closed.set()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._writers.discard(writer)
            if not self._writers:
                self._idle.set()

    async def arrived(self, nbytes: int) -> float:
        """Wait until ``nbytes`` have arrived in all; when the last of them did."""
        while self.total < nbytes:
            self._grew.clear()
            await self._grew.wait()
        return self.received[-1][0]

    def data(self) -> bytes:
        return b"".join(chunk for _, chunk in self.received)

    async def __aenter__(self) -> _Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()
        # Not cancelled: on 3.11 start_server logs an error for a cancelled handler.
        for writer in self._writers:
            writer.transport.abort()
        if self._writers:
            await asyncio.wait_for(self._idle.wait(), 5)


@contextlib.asynccontextmanager
async def _connected(port: int) -> AsyncIterator[Streams]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def _pings(streams: Streams, count: int) -> list[float]:
    """Round trips of one byte through an echo server, in seconds."""
    reader, writer = streams
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(count):
        start = loop.time()
        writer.write(b"p")
        await writer.drain()
        await reader.readexactly(1)
        times.append(loop.time() - start)
    return times


def _run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


# -- profiles -------------------------------------------------------------------------


def test_parse_symmetric_and_asymmetric_links() -> None:
    p = LinkProfile.parse("rate=2mbit,delay=40ms,jitter=5ms")
    assert p.uplink == p.downlink == LinkDirection(rate_bps=2e6, delay_s=0.04, jitter_s=0.005)
    q = LinkProfile.parse(" up=1mbit , down=10mbit, rtt=80ms ")
    assert (q.uplink.rate_bps, q.downlink.rate_bps) == (1e6, 10e6)
    assert q.uplink.delay_s == q.downlink.delay_s == pytest.approx(0.04)
    assert q.rtt_s == pytest.approx(0.08)
    r = LinkProfile.parse("up_delay=10ms,down_delay=30ms,down_jitter=500us,rate=unlimited")
    assert (r.uplink.delay_s, r.downlink.delay_s, r.downlink.jitter_s) == (0.01, 0.03, 0.0005)
    assert r.uplink.rate_bps is None


def test_parse_outages_and_presets_with_overrides() -> None:
    p = LinkProfile.parse("outage=10s+5s,outage=1s+500ms,outage_mode=reset")
    assert p.outages == (Outage(1.0, 0.5), Outage(10.0, 5.0))  # sorted
    assert p.outage_mode == "reset"
    q = LinkProfile.parse("3g,outage=10s+5s")
    assert q.uplink == PRESETS["3g"].uplink
    assert q.outages == (Outage(10.0, 5.0),)
    assert q.name is None  # no longer the preset itself
    assert LinkProfile.parse("3G").name == "3g"
    assert LinkProfile.preset("wifi") is PRESETS["wifi"]


def test_presets_cover_the_compared_rates_and_round_trip() -> None:
    for name, rate, rtt in [("1mbit", 1e6, 0.1), ("10mbit", 10e6, 0.04), ("100mbit", 100e6, 0.01)]:
        p = LinkProfile.preset(name)
        assert p.uplink.rate_bps == p.downlink.rate_bps == rate
        assert p.rtt_s == pytest.approx(rtt)
    assert {"lan", "wifi", "4g", "3g", "slow", "ideal"} <= set(PRESETS)
    for name, profile in PRESETS.items():
        assert LinkProfile.parse(profile.spec()) == profile, name
        assert profile.describe().startswith(f"{name}: up ")
    odd = LinkProfile(
        uplink=LinkDirection(rate_bps=1234567.0, delay_s=0.0123456),
        outages=(Outage(0.25, 1 / 3),),
        outage_mode="reset",
    )
    assert LinkProfile.parse(odd.spec()) == odd
    assert "1.6 Mbit/s" in PRESETS["3g"].describe()
    assert "outages (reset) 250ms+" in odd.describe()


@pytest.mark.parametrize(
    ("text", "key", "match"),
    [
        ("", None, "empty link profile"),
        ("rate=2mbps", "rate", "ambiguous"),
        ("rate=2", "rate", "needs a unit"),
        ("rate=fast", "rate", "not a rate"),
        ("rate=500bit", "rate", "at least 1kbit"),
        ("delay=40", "delay", "needs a unit"),
        ("delay=-5ms", "delay", "not a duration"),
        ("delay=5ms,jitter=10ms", "jitter", "must not exceed the delay"),
        ("rate=1mbit,up=2mbit", "rate", "not both"),
        ("delay=10ms,rtt=20ms", "delay", "not both"),
        ("delay=10ms,delay=20ms", "delay", "given twice"),
        ("bandwidth=1mbit", "bandwidth", "unknown key 'bandwidth'"),
        ("rate", "profile", "unknown link preset 'rate'"),
        ("3g,", None, "not KEY=VALUE"),
        ("outage=10s", "outage", "START\\+DURATION"),
        ("outage=1s+0s", "outage", "duration must be > 0"),
        ("outage=1s+5s,outage=2s+1s", "outage", "overlap"),
        ("outage_mode=drop", "outage_mode", "stall or reset"),
        ("loss=lots", "loss", "not 2% or 0.02"),
        ("loss=100%", "loss", r"in \[0, 1\)"),
        ("loss=1%,up_loss=2%", "loss", "not both"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, key: str | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        LinkProfile.parse(text)
    assert info.value.key == key


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match="rate"):
        LinkDirection(rate_bps=-1.0)
    with pytest.raises(ConfigError, match="jitter"):
        LinkDirection(delay_s=0.01, jitter_s=0.02)
    with pytest.raises(ConfigError, match="delay"):
        LinkDirection(delay_s=float("nan"))
    with pytest.raises(ConfigError, match="outage_mode"):
        LinkProfile(outage_mode="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="port"):
        ShapingProxy(("127.0.0.1", 0))


# -- the link model, measured ---------------------------------------------------------


def test_loss_stalls_a_round_trip_by_a_retransmission_timeout() -> None:
    """A lost chunk is late by TCP's retransmission timeout (200 ms, doubling): on a
    lossy link some round trips take 200 ms or more, and none take an odd time between
    the link's own delay and that."""

    async def scenario() -> None:
        async with _Upstream(echo=True) as echo:
            profile = LinkProfile.parse("delay=2ms,loss=20%")
            assert profile.spec() == "delay=2ms,loss=20%"
            async with (
                ShapingProxy(("127.0.0.1", echo.port), profile, seed=3) as proxy,
                _connected(proxy.port) as streams,
            ):
                times = await _pings(streams, 40)
        stalled = [t for t in times if t >= 0.2]
        logger.info(
            "loss: %d of %d round trips stalled, longest %.2f s", len(stalled), 40, max(times)
        )
        # 40 round trips cross the link twice each at 20% loss: about 14 stall.
        assert 4 <= len(stalled) <= 30, sorted(times)
        assert all(t < 0.1 or t >= 0.2 for t in times), sorted(times)
        assert max(times) <= 2 * 3.2 + 0.5

    _run(scenario)


def test_one_way_delay_each_way_adds_up_to_the_rtt() -> None:
    d = 0.1

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _Upstream(echo=True) as echo:
            async with (
                ShapingProxy(("127.0.0.1", echo.port)) as plain,
                _connected(plain.port) as streams,
            ):
                baseline = statistics.median(await _pings(streams, 10))
            profile = LinkProfile.parse(f"delay={d * 1000:g}ms")
            async with ShapingProxy(("127.0.0.1", echo.port), profile) as proxy:
                connecting = loop.time()
                async with _connected(proxy.port) as streams:
                    await _pings(streams, 1)
                    first = loop.time() - connecting  # connect, then the first round trip
                    rest = await _pings(streams, 8)
        shaped = statistics.median(rest) - baseline
        logger.info(
            "delay: RTT %.1f ms for %.0f ms; first %.1f ms", shaped * 1e3, 2e3 * d, first * 1e3
        )
        assert min(rest) >= 2 * d  # never early
        assert shaped == pytest.approx(2 * d, rel=0.1)
        # The first bytes also pay for the TCP handshake a real link would have had.
        assert 4 * d <= first <= 4 * d * 1.25

    _run(scenario)


def test_rate_paces_a_transfer() -> None:
    size, rate = 1_000_000, 4e6  # 2 s

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _Upstream(echo=False) as sink:
            profile = LinkProfile.parse("up=4mbit")
            async with (
                ShapingProxy(("127.0.0.1", sink.port), profile) as proxy,
                _connected(proxy.port) as (_, writer),
            ):
                start = loop.time()
                writer.write(bytes(size))
                await writer.drain()
                elapsed = await sink.arrived(size) - start
                assert proxy.stats().bytes_up == size
        logger.info(
            "rate: %d bytes in %.3f s at 4 Mbit/s (%.3f s expected)", size, elapsed, size * 8 / rate
        )
        assert elapsed == pytest.approx(size * 8 / rate, rel=0.1)

    _run(scenario)


def test_connections_share_one_link() -> None:
    size = 250_000  # each; 2 x 250 kB at 4 Mbit/s = 1 s (0.5 s if each had its own link)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _Upstream(echo=False) as sink:
            profile = LinkProfile.parse("rate=4mbit")
            async with (
                ShapingProxy(("127.0.0.1", sink.port), profile) as proxy,
                _connected(proxy.port) as (_, a),
                _connected(proxy.port) as (_, b),
            ):
                start = loop.time()
                a.write(bytes(size))
                b.write(bytes(size))
                elapsed = await sink.arrived(2 * size) - start
        logger.info("shared: 2 x %d bytes in %.3f s at 4 Mbit/s", size, elapsed)
        assert elapsed == pytest.approx(2 * size * 8 / 4e6, rel=0.1)

    _run(scenario)


def test_jitter_spreads_delay_but_never_reorders() -> None:
    d, j, count = 0.06, 0.04, 150

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        sent: list[float] = []
        async with _Upstream(echo=False) as sink:
            profile = LinkProfile.parse(f"up_delay={d * 1e3:g}ms,up_jitter={j * 1e3:g}ms")
            async with (
                ShapingProxy(("127.0.0.1", sink.port), profile, seed=7) as proxy,
                _connected(proxy.port) as (_, writer),
            ):
                writer.write(b"w")  # the handshake's hold on the first bytes, out of the way
                await sink.arrived(1)
                for seq in range(count):
                    sent.append(loop.time())
                    writer.write(struct.pack(">I", seq))
                    await writer.drain()
                    await asyncio.sleep(0.004)
                await sink.arrived(1 + 4 * count)
        stream = sink.data()[1:]
        assert stream == b"".join(struct.pack(">I", seq) for seq in range(count))  # in order
        arrived: list[float] = []
        for at, chunk in sink.received[1:]:
            arrived.extend([at] * (len(chunk) // 4))
        delays = [a - s for a, s in zip(arrived, sent, strict=True)]
        logger.info(
            "jitter: delays %.1f-%.1f ms for %g±%g ms",
            min(delays) * 1e3,
            max(delays) * 1e3,
            d * 1e3,
            j * 1e3,
        )
        assert min(delays) >= d - j
        # Late only by scheduling lag (of the proxy, the sink and the sender): allow a few
        # stragglers, but a jitter wider than j (or applied twice) would show here.
        late = [x for x in delays if x > d + j + 0.005]
        assert len(late) <= count * 0.05, late
        # Jitter really happened, over most of its range.
        assert min(delays) < d - j / 2
        assert max(delays) > d + j / 2

    _run(scenario)


def test_mqtt_round_trip_through_mosquitto_shows_the_delay(
    mosquitto: BrokerInfo, prefix: str
) -> None:
    d = 0.15  # four process wake-ups per round trip: keep the shaping dominant

    async def round_trips(url: str) -> list[float]:
        config = load_config(env={}, overrides=[f"broker.url={url}"])
        loop = asyncio.get_running_loop()
        topic = f"{prefix}/netem/{uuid.uuid4().hex[:6]}"
        times = []
        async with client(config) as c:
            await c.subscribe(topic, qos=0)
            for i in range(5):
                start = loop.time()
                await c.publish(topic, str(i).encode(), qos=0)
                message = await next_message(c, timeout_s=5)
                assert message.payload == str(i).encode()
                times.append(loop.time() - start)
        return times

    async def scenario() -> None:
        baseline = statistics.median(await round_trips(mosquitto.url))
        profile = LinkProfile.parse(f"delay={d * 1e3:g}ms")
        async with ShapingProxy(("127.0.0.1", mosquitto.port), profile) as proxy:
            shaped = await round_trips(proxy.url)
            assert proxy.stats().connections == 1
        extra = statistics.median(shaped) - baseline
        logger.info(
            "mqtt: round trip +%.1f ms for %.0f ms (baseline %.1f ms)",
            extra * 1e3,
            2e3 * d,
            baseline * 1e3,
        )
        assert min(shaped) >= 2 * d
        assert extra == pytest.approx(2 * d, rel=0.1)

    _run(scenario)


def test_set_profile_changes_the_link_live() -> None:
    async def scenario() -> None:
        async with (
            _Upstream(echo=True) as echo,
            ShapingProxy(("127.0.0.1", echo.port)) as proxy,
            _connected(proxy.port) as streams,
        ):
            fast = await _pings(streams, 3)
            proxy.set_profile(LinkProfile.parse("delay=100ms"))
            slow = await _pings(streams, 3)
        assert statistics.median(fast) < 0.05
        assert min(slow) >= 0.2  # never early
        assert statistics.median(slow) <= 0.2 * 1.1 + statistics.median(fast)

    _run(scenario)


# -- outages --------------------------------------------------------------------------


def test_stall_outage_holds_bytes_and_keeps_the_connection() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _Upstream(echo=True) as echo:
            profile = LinkProfile.parse("delay=10ms")
            async with (
                ShapingProxy(("127.0.0.1", echo.port), profile) as proxy,
                _connected(proxy.port) as (reader, writer),
            ):
                await _pings((reader, writer), 2)
                await proxy.outage_now(0.5, "stall")
                start = loop.time()
                writer.write(b"during the outage")
                await writer.drain()
                assert await reader.readexactly(17) == b"during the outage"
                held = loop.time() - start
                after = await _pings((reader, writer), 2)
                stats = proxy.stats()
        logger.info("stall: held %.3f s for a 0.5 s outage", held)
        assert 0.5 + 0.02 <= held <= 0.6  # the outage, then the delay each way
        assert max(after) < 0.05
        assert (stats.open_connections, stats.resets, echo.connections) == (1, 0, 1)

    _run(scenario)


def test_scheduled_reset_outage_closes_and_refuses_then_accepts() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with _Upstream(echo=True) as echo:
            profile = LinkProfile.parse("delay=5ms,outage=500ms+1s,outage_mode=reset")
            t0 = loop.time()  # at most the proxy's start, which the schedule counts from
            async with ShapingProxy(("127.0.0.1", echo.port), profile) as proxy:
                async with _connected(proxy.port) as (reader, writer):
                    await _pings((reader, writer), 1)
                    with pytest.raises(ConnectionResetError):
                        await reader.read(1)  # blocks until the outage resets it
                    reset_after = loop.time() - t0
                    assert 0.5 <= reset_after < 0.75, reset_after
                await asyncio.wait_for(echo.closed.wait(), 1)  # the upstream side too
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.open_connection("127.0.0.1", proxy.port)
                await asyncio.sleep(t0 + 1.5 - loop.time())
                async with asyncio.timeout(1):
                    while True:  # the proxy listens again as soon as its timer fires
                        try:
                            async with _connected(proxy.port) as streams:
                                assert len(await _pings(streams, 1)) == 1
                            break
                        except ConnectionRefusedError:
                            await asyncio.sleep(0.01)
                assert proxy.stats().resets == 1

    _run(scenario)


def test_reset_outage_now_takes_effect_on_return() -> None:
    async def scenario() -> None:
        async with _Upstream(echo=True) as echo, ShapingProxy(("127.0.0.1", echo.port)) as proxy:
            async with _connected(proxy.port) as (reader, writer):
                await _pings((reader, writer), 1)
                await proxy.outage_now(0.3, "reset")
                with pytest.raises(ConnectionResetError):
                    await reader.read(1)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", proxy.port)
            await asyncio.sleep(0.4)
            async with _connected(proxy.port) as streams:
                await _pings(streams, 1)
            with pytest.raises(ConfigError):
                await proxy.outage_now(0)

    _run(scenario)


# -- robustness -----------------------------------------------------------------------


def test_refused_upstream_closes_the_client_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]

    async def scenario() -> None:
        async with ShapingProxy(("127.0.0.1", dead)) as proxy:
            async with _connected(proxy.port) as (reader, _):
                assert await asyncio.wait_for(reader.read(1), 2) == b""
            assert proxy.stats().upstream_failures == 1

    with caplog.at_level(logging.WARNING, logger="camoffload.netem.proxy"):
        _run(scenario)
    assert "unreachable" in caplog.text


def test_a_port_in_use_is_a_clear_error() -> None:
    async def scenario() -> None:
        async with _Upstream(echo=False) as taken:
            proxy = ShapingProxy(("127.0.0.1", taken.port), listen=("127.0.0.1", taken.port))
            with pytest.raises(TransportError, match=f"cannot listen on 127.0.0.1:{taken.port}"):
                await proxy.__aenter__()
            with pytest.raises(RuntimeError, match="no port"):
                _ = proxy.url

    _run(scenario)


def test_a_full_queue_pushes_back_on_the_sender() -> None:
    async def scenario() -> None:
        async with _Upstream(echo=False) as sink:
            profile = LinkProfile.parse("up=1mbit")
            async with (
                ShapingProxy(("127.0.0.1", sink.port), profile, queue_bytes=64 * 1024) as proxy,
                _connected(proxy.port) as (_, writer),
            ):
                writer.write(bytes(8_000_000))
                await asyncio.sleep(0.3)
                stats = proxy.stats()
                unsent = writer.transport.get_write_buffer_size()
        assert 0 < stats.queued_up <= 64 * 1024 + 1500  # the budget, plus one read
        # The proxy took in only its budget plus what 1 Mbit/s let through in 0.3 s;
        # the rest is with the sender or in kernel socket buffers (TCP flow control).
        # How much the kernel holds depends on its buffer autotuning (tcp_rmem max is
        # 32 MiB here), so the sender's own backlog is only checked to be there.
        assert stats.bytes_up + stats.queued_up < 200_000
        assert unsent > 0

    _run(scenario)


def test_closing_the_proxy_closes_everything() -> None:
    async def scenario() -> None:
        before = asyncio.all_tasks()
        async with _Upstream(echo=True) as echo:
            proxy = ShapingProxy(("127.0.0.1", echo.port), LinkProfile.parse("delay=20ms"))
            async with proxy, _connected(proxy.port) as (reader, writer):
                await _pings((reader, writer), 1)
                writer.write(b"still in flight")
                with pytest.raises(RuntimeError, match="re-entrant"):
                    await proxy.__aenter__()
                assert {t.get_name() for t in asyncio.all_tasks()} >= {
                    "netem-conn-1-up-read",
                    "netem-conn-1-down-write",
                }
                await asyncio.sleep(0)
            await asyncio.wait_for(echo.closed.wait(), 1)  # the upstream saw the close
            stats = proxy.stats()
            assert (stats.open_connections, stats.queued_up, stats.queued_down) == (0, 0, 0)
            # Reusable: a second run works, on a fresh port.
            async with proxy, _connected(proxy.port) as streams:
                await _pings(streams, 1)
        await asyncio.sleep(0)
        leftover = asyncio.all_tasks() - before - {asyncio.current_task()}
        assert not leftover, leftover

    _run(scenario)


# -- the command ----------------------------------------------------------------------


def test_link_command_prints_the_url_and_stops_on_sigint(
    mosquitto: BrokerInfo, prefix: str
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "camoffload",
            "link",
            "--upstream",
            mosquitto.url,
            "--link",
            "delay=5ms",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("mqtt://127.0.0.1:"), url

        async def pub_sub() -> bytes:
            config = load_config(env={}, overrides=[f"broker.url={url}"])
            async with client(config) as c:
                await c.subscribe(f"{prefix}/cli", qos=1)
                await c.publish(f"{prefix}/cli", b"via the link", qos=1)
                message = await next_message(c, timeout_s=5)
                assert isinstance(message.payload, bytes)
                return message.payload

        assert asyncio.run(pub_sub()) == b"via the link"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_link_command_refuses_bad_arguments() -> None:
    from camoffload.link_commands import run_link_command

    args = {"profile": None, "link_spec": "rate=1mbit", "listen": "127.0.0.1:0", "seed": None}
    for bad, match in [
        ({"link_spec": "rate=2mbps"}, "ambiguous"),
        ({"upstream": "http://127.0.0.1:1883"}, "mqtt://"),
        ({"listen": "127.0.0.1"}, "HOST:PORT"),
        ({"upstream": "mqtt://127.0.0.1:99999"}, "upstream"),
    ]:
        namespace = {"upstream": "mqtt://127.0.0.1:1883", **args, **bad}
        with pytest.raises(ConfigError, match=match):
            run_link_command(argparse.Namespace(**namespace))
