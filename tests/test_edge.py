"""The edge node end to end: frames -> real Mosquitto -> worker -> one decision each."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_node import EdgeNode, ImageFolderSource, Ledger, LedgerError, LedgerSummary
from edge_node.ledger import summarize_ledger_file
from pipeline.config import Config
from pipeline.inference import Classifier
from pipeline.protocol import Decision, Event
from tests._helpers import client, next_message, running_worker


@pytest.fixture
def folder(tmp_path: Path, frames: list[np.ndarray]) -> Path:
    out = tmp_path / "frames"
    out.mkdir()
    for i, image in enumerate(frames[:6]):
        cv2.imwrite(str(out / f"{i:03d}.png"), image)
    return out


def _with_edge(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, edge=dataclasses.replace(config.edge, **changes))


def test_every_frame_answered_by_the_cloud_and_announced(
    config: Config, classifier: Classifier, folder: Path, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "ledger.sqlite"

    async def scenario() -> tuple[LedgerSummary, list[Event]]:
        events: list[Event] = []
        async with running_worker(config, classifier), client(config) as watcher:
            await watcher.subscribe(config.topics.events(config.edge.edge_id), qos=1)
            ledger = Ledger(ledger_path)
            summary = await EdgeNode(config, ImageFolderSource(folder), ledger).run()
            ledger.close()
            for _ in range(summary.captured):
                events.append(Event.from_bytes((await next_message(watcher)).payload))  # type: ignore[arg-type]
        return summary, events

    summary, events = asyncio.run(scenario())
    assert summary.captured == 6
    assert summary.answered == 6
    assert summary.undecided == 0
    assert summary.rtt_ms_p50 is not None
    on_disk = summarize_ledger_file(ledger_path)
    assert (on_disk.captured, on_disk.decided, on_disk.undecided) == (6, 6, 0)
    assert on_disk.by_decision == {"cloud": 6}
    assert on_disk.bytes_sent > 6 * 1000
    assert sorted(e.seq for e in events) == list(range(6))
    assert all(e.decision is Decision.CLOUD and e.label is not None for e in events)


def test_without_a_worker_every_frame_times_out_to_a_local_decision(
    config: Config, folder: Path
) -> None:
    fast = _with_edge(config, deadline_ms=300.0, max_in_flight=3)

    async def scenario() -> LedgerSummary:
        return await EdgeNode(fast, ImageFolderSource(folder), Ledger()).run()

    summary = asyncio.run(scenario())
    assert summary.captured == 6
    assert summary.by_decision == {"local-after-timeout": 6}
    assert summary.offloaded == 6


def test_a_worker_for_another_model_means_local_after_error(
    config: Config, classifier: Classifier, folder: Path
) -> None:
    other = _with_edge(config, model="mobilenet_v3_small")

    async def scenario() -> LedgerSummary:
        async with running_worker(config, classifier):
            return await EdgeNode(other, ImageFolderSource(folder), Ledger()).run(max_frames=3)

    summary = asyncio.run(scenario())
    assert summary.by_decision == {"local-after-error": 3}


def test_stop_event_ends_capture_and_settles_in_flight_frames(
    config: Config, classifier: Classifier, folder: Path
) -> None:
    async def scenario() -> LedgerSummary:
        stop = asyncio.Event()
        async with running_worker(config, classifier):
            edge = EdgeNode(config, ImageFolderSource(folder), Ledger())
            stop.set()
            return await edge.run(stop=stop)

    summary = asyncio.run(scenario())
    assert summary.captured == 0
    assert summary.undecided == 0


def test_ledger_refuses_double_decisions() -> None:
    ledger = Ledger()
    ledger.capture("a", seq=0, capture_ts=0.0, true_label=3)
    with pytest.raises(LedgerError):
        ledger.capture("a", seq=0, capture_ts=0.0, true_label=3)
    assert ledger.decide("a", Decision.CLOUD, decided_ts=1.0, rtt_ms=5.0) == 3
    with pytest.raises(LedgerError):
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0)
    summary = ledger.summary()
    assert (summary.captured, summary.decided, summary.answered) == (1, 1, 1)
    assert summary.rtt_ms_p50 == 5.0
