"""Faults at the edge's end, with the ledger's promise checked from the file (every
captured frame decided exactly once): a lossy link, and a ledger file that stops taking
writes (full, or read-only) while the edge keeps deciding."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
from pathlib import Path

import pytest

from camoffload.netem import LinkProfile, ShapingProxy
from edge_node import EdgeNode, Ledger, open_source
from edge_node.ledger_rows import FrameRecord
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST
from tests._helpers import eventually
from tests.test_faults import (
    MODEL,
    _decisions,
    check_edge_output,
    check_ledger,
    children,
    edge_argv,
    fault_config,
    own_broker,
    wait_for,
    wait_online,
    worker_argv,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
    ),
]

__all__ = ["fault_config"]  # the fixture, shared with tests/test_faults.py


def _on(config: Config, url: str) -> Config:
    return dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=url))


def test_a_lossy_link_every_frame_decided_once(fault_config: Config, tmp_path: Path) -> None:
    """5% loss each way on the edge's link: TCP turns each loss into a stall of 200 ms
    or more, late for some deadlines. Every frame still ends in one decision."""
    ledger = tmp_path / "edge.sqlite"

    async def scenario(url: str) -> list[FrameRecord]:
        config = _on(fault_config, url)
        upstream = (config.broker.host, config.broker.port)
        profile = LinkProfile.parse("delay=5ms,loss=5%")
        async with (
            children(tmp_path) as start,
            ShapingProxy(upstream, profile, seed=7) as link,
        ):
            start("worker", worker_argv(config, "w1"))
            await wait_online(config, {"w1"})
            edge = start("edge", edge_argv(config, ledger, broker_url=link.url, rate=20))
            rows = await wait_for(ledger, "300 decisions", lambda r: len(r) >= 300, 120)
            assert await edge.stop() == 0
            rows = check_ledger(ledger, deadline_ms=1000)
            check_edge_output(edge, rows)
            return rows

    with own_broker() as broker:
        rows = asyncio.run(scenario(broker.info.url))
    counts = _decisions(rows)
    rtts = sorted(r.rtt_ms for r in rows if r.rtt_ms is not None)
    stalled = sum(rtt >= 200 for rtt in rtts)
    p50, p95 = rtts[len(rtts) // 2], rtts[int(len(rtts) * 0.95)]
    print(f"lossy link: rtt p50 {p50:.0f} ms, p95 {p95:.0f} ms; {stalled} of {len(rtts)} >= 200 ms")
    assert stalled > 0  # the loss showed
    # Most frames are answered in time; some wait out a stall past their deadline.
    assert counts["cloud"] >= len(rows) // 2, counts
    assert set(counts) <= {"cloud", "local-after-timeout", "local"}, counts


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_ledger_that_stops_taking_writes(
    fault_config: Config, tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The ledger file refuses writes for a while (SQLite's own 'database or disk is
    full' or 'attempt to write a readonly database'). The edge keeps deciding, says
    once that it cannot record, and writes what it held once the file takes writes
    again: every frame ends in the file, decided once."""
    path = tmp_path / "edge.sqlite"

    def refuse(conn: sqlite3.Connection, on: bool) -> None:
        if fault == "read-only":
            conn.execute(f"PRAGMA query_only = {int(on)}")
        else:  # no page beyond those it has: the next row that needs one is refused
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages if on else 1_000_000}")

    async def scenario(url: str) -> int:
        config = _on(fault_config, url)
        config = dataclasses.replace(
            config,
            edge=dataclasses.replace(
                config.edge, model=MODEL, local_model=MODEL, policy="cloud-only",
                payload="raw", rate="40", max_in_flight=16,
            ),
        )  # fmt: skip
        ledger = Ledger(path)
        conn = ledger._connection()  # the ledger's own connection: its pragmas are its own
        node = EdgeNode(config, open_source("fashion-mnist:test"), ledger)
        async with children(tmp_path) as start:
            start("worker", worker_argv(config, "w1"))
            await wait_online(config, {"w1"})
            running = asyncio.create_task(node.run(max_frames=300))
            await eventually(lambda: ledger.counts().decided >= 40, 60)
            refuse(conn, True)
            # A lot more frames are decided while nothing can be written.
            written = ledger.counts().decided
            await eventually(lambda: node._keeper.counts().decided >= written + 60, 60)
            assert ledger.counts().decided < written + 60
            refuse(conn, False)
            await asyncio.wait_for(running, 120)
        ledger.close()
        return written

    with own_broker() as broker, caplog.at_level(logging.WARNING):
        asyncio.run(scenario(broker.info.url))
    rows = check_ledger(path, deadline_ms=1000)
    assert len(rows) == 300
    log = caplog.text
    # Said once, with SQLite's reason; then at most a summary line, not one a frame.
    assert log.count("cannot record frame") == 1, log[-2000:]
    assert log.count("cannot write: the edge keeps deciding") <= 2, log[-2000:]
    assert "recording again" in log
    assert "full" in log if fault == "full" else "readonly" in log
