"""The edge node with its own model, against a real Mosquitto: policies, payloads, the
motion gate, broker outages, bad replies, and SIGTERM. Every test checks the ledger's
promise: N captured frames, N final decisions."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from broker import mosquitto_broker
from edge_node import EdgeNode, ImageFolderSource, Ledger, LedgerSummary
from edge_node.backpressure import OffloadGovernor
from edge_node.ledger import LedgerError, summarize_ledger_file
from edge_node.sources import CapturedFrame, DatasetSource
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST
from pipeline.inference import Classifier
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameRequest,
    Result,
    WorkerStatus,
)
from pipeline.topics import reply_target
from tests._helpers import client, running_worker

pytestmark = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)

MODEL = "fmnist_exit_resnet"


@pytest.fixture
def fm_config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        edge=dataclasses.replace(
            config.edge, model=MODEL, local_model=MODEL, deadline_ms=3000.0, max_in_flight=16
        ),
        worker=dataclasses.replace(config.worker, model=MODEL, max_batch=16),
    )


def _edge(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, edge=dataclasses.replace(config.edge, **changes))


def _run_edge(config: Config, frames: int, *, worker: bool = True) -> LedgerSummary:
    async def scenario() -> LedgerSummary:
        source = DatasetSource(limit=frames)
        if not worker:
            return await EdgeNode(config, source, Ledger()).run()
        async with running_worker(config, Classifier.by_name(MODEL)):
            return await EdgeNode(config, source, Ledger()).run()

    return asyncio.run(scenario())


def _assert_every_frame_decided_once(summary: LedgerSummary, frames: int) -> None:
    assert summary.captured == frames
    assert summary.decided == frames
    assert summary.undecided == 0
    assert sum(summary.by_decision.values()) == frames


@pytest.mark.parametrize(
    ("payload", "tensor_dtype"),
    [("jpeg", "uint8"), ("raw", "uint8"), ("tensor", "uint8"), ("tensor", "float16")],
)
def test_cloud_only_with_each_payload_answers_from_the_cloud(
    fm_config: Config, payload: str, tensor_dtype: str
) -> None:
    summary = _run_edge(_edge(fm_config, payload=payload, tensor_dtype=tensor_dtype), 64)
    _assert_every_frame_decided_once(summary, 64)
    assert summary.by_decision == {"cloud": 64}
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.85  # the cloud model is ~94% on this split
    per_frame = summary.bytes_sent / 64
    # tensor: the split-1 activation, 48x28x28 = 37.6 kB as uint8 codes, 75 kB as
    # float16; raw: 784 B; jpeg < raw
    expected = {
        "jpeg": (300, 1000),
        "raw": (784, 1100),
        "tensor": (37_632, 38_500) if tensor_dtype == "uint8" else (75_264, 76_000),
    }[payload]
    assert expected[0] <= per_frame <= expected[1], per_frame


def test_local_only_sends_nothing_and_uses_the_early_exit(fm_config: Config) -> None:
    summary = _run_edge(_edge(fm_config, policy="local-only"), 100, worker=False)
    _assert_every_frame_decided_once(summary, 100)
    assert summary.by_decision == {"local": 100}
    assert summary.bytes_sent == 0
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.8  # exit 1 is ~91% on the test split


def test_threshold_policy_offloads_only_the_unsure_frames(fm_config: Config) -> None:
    summary = _run_edge(_edge(fm_config, policy="threshold", confidence_threshold=0.7), 200)
    _assert_every_frame_decided_once(summary, 200)
    local, cloud = summary.by_decision.get("local", 0), summary.by_decision.get("cloud", 0)
    assert local + cloud == 200
    assert 0 < cloud < 200  # some frames are sure, some are not
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.85


def test_without_a_worker_every_frame_falls_back_to_its_local_answer(fm_config: Config) -> None:
    summary = _run_edge(_edge(fm_config, deadline_ms=300.0), 30, worker=False)
    _assert_every_frame_decided_once(summary, 30)
    assert summary.by_decision == {"local-after-timeout": 30}
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.7  # the local model's labels, not None


def test_the_motion_gate_skips_static_frames(
    fm_config: Config, frames: list[np.ndarray], tmp_path: Path
) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:02d}.png"), frames[0])  # a camera watching nothing
    config = _edge(fm_config, motion_threshold=0.01, policy="local-only")

    async def scenario() -> LedgerSummary:
        return await EdgeNode(config, ImageFolderSource(folder), Ledger()).run()

    summary = asyncio.run(scenario())
    _assert_every_frame_decided_once(summary, 5)
    assert summary.by_decision == {"local": 1, "skipped": 4}


def test_the_broker_going_away_mid_replay_loses_no_frame(fm_config: Config) -> None:
    with mosquitto_broker(port=0) as info:
        port = info.port
    config = dataclasses.replace(
        _edge(fm_config, rate="40", deadline_ms=1000.0),
        broker=dataclasses.replace(fm_config.broker, url=f"mqtt://127.0.0.1:{port}"),
    )

    async def scenario() -> tuple[LedgerSummary, int, int]:
        broker = mosquitto_broker(port=port)
        await asyncio.to_thread(broker.start)
        try:
            node = EdgeNode(config, DatasetSource(limit=5000), Ledger())
            stop = asyncio.Event()
            async with running_worker(config, Classifier.by_name(MODEL)):
                run = asyncio.create_task(node.run(stop=stop))
                await asyncio.sleep(1.0)  # ~40 frames answered by the cloud
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(1.0)  # ~40 frames with no broker
                await asyncio.to_thread(broker.start)
                async with asyncio.timeout(30):  # the backoff is jittered, up to 10 s
                    while node.reconnects == 0:  # noqa: ASYNC110 - a counter, not an event
                        await asyncio.sleep(0.1)
                cloud_before = node.ledger.counts().offloaded
                # The worker reconnects on its own backoff; until its status says it
                # is back, the edge keeps frames local ("no worker online").
                async with asyncio.timeout(30):
                    while node.ledger.counts().offloaded <= cloud_before:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                stop.set()
                summary = await run
            return summary, node.reconnects, cloud_before
        finally:
            await asyncio.to_thread(broker.stop)

    summary, reconnects, offloaded_before = asyncio.run(scenario())
    _assert_every_frame_decided_once(summary, summary.captured)
    assert reconnects >= 1
    assert summary.offloaded > offloaded_before  # offloading resumed after the outage
    assert summary.by_decision.get("cloud", 0) >= 20
    local = summary.by_decision.get("local", 0) + summary.by_decision.get("local-after-error", 0)
    assert local >= 10  # decided locally while the broker was away
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.8  # local answers carried labels


def test_bad_late_duplicate_and_foreign_replies_never_change_a_decision(
    fm_config: Config,
) -> None:
    """A hostile 'worker' answers each frame with garbage, a reply carrying another
    frame's correlation data, the right answer, then a duplicate with another label."""
    frames = 4
    config = _edge(fm_config, policy="cloud-only", max_in_flight=1)

    async def fake_worker(ready: asyncio.Event) -> None:
        topics = config.topics
        async with client(config) as worker:
            await worker.subscribe(topics.frames_filter, qos=1)
            ready.set()
            async for message in worker.messages:
                request = FrameRequest.from_bytes(message.payload)  # type: ignore[arg-type]
                target = reply_target(topics, message.topic.value, message.properties)
                assert target is not None

                def result(label: int, request: FrameRequest = request) -> bytes:
                    return Result(
                        frame_id=request.frame_id,
                        worker_id="fake",
                        label=label,
                        topk_labels=(label,),
                        topk_scores=(0.9,),
                        model=MODEL,
                        model_version="v",
                        queue_ms=0,
                        decode_ms=0,
                        inference_ms=0,
                        batch_size=1,
                    ).to_bytes()

                async def send(data: bytes, target: object = target) -> None:
                    await worker.publish(target.topic, data, qos=1, properties=target.properties)  # type: ignore[attr-defined]

                await send(b"\x93garbage")
                foreign = dataclasses.replace(target, properties=None)
                await worker.publish(
                    config.topics.results(config.edge.edge_id),
                    ErrorReply(
                        frame_id="someone-else",
                        worker_id="fake",
                        code=ErrorCode.BUSY,
                        message="not yours",
                    ).to_bytes(),
                    qos=1,
                    properties=foreign.properties,
                )
                await send(result(7))
                await send(result(3))  # a duplicate: must not re-decide the frame

    async def scenario() -> tuple[LedgerSummary, EdgeNode]:
        ready = asyncio.Event()
        faker = asyncio.create_task(fake_worker(ready))
        await ready.wait()
        node = EdgeNode(config, DatasetSource(limit=frames), Ledger())
        try:
            summary = await node.run()
            await asyncio.sleep(0.3)  # let the duplicates of the last frame arrive
        finally:
            faker.cancel()
        return summary, node

    summary, node = asyncio.run(scenario())
    _assert_every_frame_decided_once(summary, frames)
    assert summary.by_decision == {"cloud": frames}
    assert node.bad_replies >= frames  # the garbage
    assert node.late_replies >= frames  # the duplicates (and the foreign frame id)


def test_busy_replies_and_worker_load_hold_offloading_back() -> None:
    now = [100.0]
    governor = OffloadGovernor(base_s=0.1, max_s=0.4, clock=lambda: now[0])
    assert governor.hold_reason() is None
    governor.on_busy()
    assert governor.hold_reason() is not None  # held for 100 ms
    now[0] += 0.11
    assert governor.hold_reason() is None
    governor.on_busy()  # 200 ms
    governor.on_busy()  # 400 ms (the cap)
    governor.on_busy()  # still 400 ms
    now[0] += 0.39
    assert governor.hold_reason() is not None
    now[0] += 0.02
    assert governor.hold_reason() is None
    governor.on_answer()
    governor.on_busy()
    now[0] += 0.11
    assert governor.hold_reason() is None  # backoff restarted at 100 ms

    def status(worker: str, depth: int, online: bool = True) -> WorkerStatus:
        return WorkerStatus(
            worker_id=worker,
            online=online,
            ts=now[0],
            device="cpu",
            models=(MODEL,),
            queue_depth=depth,
            queue_capacity=100,
            mean_batch_size=1.0,
            latency_ms_per_image=1.0,
            throughput_fps=1.0,
            frames_done=0,
            frames_rejected=0,
        )

    governor.on_worker_status(status("a", 90))
    assert "full" in (governor.hold_reason() or "")  # the only worker is 90% full
    governor.on_worker_status(status("b", 10))
    assert governor.hold_reason() is None  # another has room
    governor.on_worker_status(status("a", 0, online=False))
    governor.on_worker_status(status("b", 0, online=False))
    assert governor.hold_reason() == "no worker online"


def _edge_argv(config: Config, ledger: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "camoffload",
        "edge",
        "--source",
        "fashion-mnist:test:3000",
        "--broker",
        config.broker.url,
        "--set",
        f"prefix={config.prefix}",
        "--model",
        MODEL,
        "--local-model",
        MODEL,
        "--ledger",
        str(ledger),
        *extra,
    ]


def _captured_so_far(ledger: Path) -> int:
    try:
        return summarize_ledger_file(ledger).captured
    except LedgerError:
        return 0  # not created yet, or created but its schema not yet written


def test_sigterm_ends_the_edge_with_every_captured_frame_decided(
    fm_config: Config, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    argv = _edge_argv(fm_config, ledger, "--rate", "100", "--deadline-ms", "500")
    with (tmp_path / "edge.log").open("w+") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until frames flow
                time.sleep(0.5)
                if _captured_so_far(ledger) > 50:
                    break
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.seek(0)
        output = log.read()
    assert code == 0, output
    summary = summarize_ledger_file(ledger)
    assert 50 < summary.captured < 3000  # stopped early, by the signal
    assert summary.decided == summary.captured
    assert summary.undecided == 0
    assert "decided" in output  # the final summary was printed


def test_home_assistant_discovery_and_metrics_follow_the_decisions(fm_config: Config) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    config = _edge(
        fm_config,
        policy="local-only",
        homeassistant=True,
        homeassistant_prefix=f"ha-{fm_config.prefix}",
        metrics_port=0,
        status_interval_s=0.2,
        rate="50",
    )

    async def scenario() -> tuple[LedgerSummary, EdgeNode, list[str]]:
        async with client(config) as watcher:
            await watcher.subscribe(f"ha-{config.prefix}/sensor/#", qos=1)
            node = EdgeNode(config, DatasetSource(limit=30), Ledger())
            summary = await node.run()
            topics = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    async for message in watcher.messages:
                        topics.append(message.topic.value)
            return summary, node, topics

    summary, node, topics = asyncio.run(scenario())
    _assert_every_frame_decided_once(summary, 30)
    assert topics
    assert all(t.endswith("/config") for t in topics)
    assert len(set(topics)) >= 5  # one retained config per sensor
    assert node.metrics_port  # the endpoint was served during the run
    samples = {
        (s.name, s.labels.get("decision")): s.value
        for family in text_string_to_metric_families(
            generate_latest(node.metrics.registry).decode()
        )
        for s in family.samples
    }
    assert samples[("camoffload_edge_frames_total", "local")] == 30
    assert samples[("camoffload_edge_captured_total", None)] == 30


class _FastCamera:
    """A live source: labelled frames arriving every ``interval_s``, whether or not the
    node keeps up (what a webcam does)."""

    name = "fake-camera"
    fps = None
    live = True

    def __init__(self, count: int, interval_s: float) -> None:
        self._frames = DatasetSource(limit=count)
        self._interval_s = interval_s

    def read(self) -> CapturedFrame | None:
        time.sleep(self._interval_s)
        return self._frames.read()

    def close(self) -> None:
        self._frames.close()


def test_a_camera_faster_than_the_node_drops_frames_and_counts_each(fm_config: Config) -> None:
    frames = 300
    config = _edge(fm_config, policy="local-only")

    async def scenario() -> LedgerSummary:
        # ~0.5 ms between frames; the local model takes several ms per frame.
        return await EdgeNode(config, _FastCamera(frames, 0.0005), Ledger()).run()

    summary = asyncio.run(scenario())
    _assert_every_frame_decided_once(summary, frames)
    assert summary.by_decision.get("dropped", 0) > 0
    assert summary.by_decision.get("local", 0) > 0
    assert set(summary.by_decision) == {"dropped", "local"}
