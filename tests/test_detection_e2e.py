"""Detection through a real Mosquitto: an edge with ssdlite_person, a worker with
nanodet_coco, the shipped clip; malformed detection replies refused with the frame
kept at its local answer; a worker refuses the task it does not serve."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import msgpack
import msgspec
import numpy as np
import pytest

from camoffload.demo import default_video
from edge_node import EdgeNode, Ledger, VideoSource
from edge_node.ledger_rows import iter_frames
from pipeline.config import Config
from pipeline.detection import Detector, iou
from pipeline.protocol import ErrorCode, ErrorReply, FrameRequest, Task, decode_reply
from pipeline.topics import reply_target
from tests._helpers import client, detecting, jpeg_request, next_message, running_worker

pytestmark = pytest.mark.timeout(240)


def _people(detections: list[dict[str, object]] | None) -> list[tuple[float, ...]]:
    return [
        tuple(d["box"])  # type: ignore[arg-type]
        for d in detections or []
        if d["label"] == "person" and float(d["score"]) >= 0.35  # type: ignore[arg-type]
    ]


def test_edge_and_worker_detect_people_in_the_shipped_clip(config: Config, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frames = 12
    cfg = detecting(config, policy="threshold")
    ledger_path = tmp_path / "ledger.sqlite"

    async def scenario() -> str:
        async with running_worker(cfg):
            ledger = Ledger(ledger_path)
            try:
                node = EdgeNode(cfg, VideoSource(str(default_video())), ledger)
                summary = await node.run(max_frames=frames)
            finally:
                ledger.close()
        assert summary.captured == summary.decided == frames
        return ledger.run_id

    run_id = asyncio.run(scenario())
    records = list(iter_frames(ledger_path, run_id=run_id))
    assert len(records) == frames
    offloaded = [r for r in records if r.decision == "cloud"]
    assert offloaded, "the edge was unsure of no frame in 12: the policy never offloads"
    # The reference: the cloud detector on the full-quality frame.
    reference = Detector.by_name("nanodet_coco", min_score=0.35, threads=1)
    source = VideoSource(str(default_video()))
    images = []
    for _ in range(frames):
        captured = source.read()
        assert captured is not None
        images.append(captured.image)
    source.close()
    for record in records:
        assert record.detections is not None  # every frame of a detection run
        if record.decision != "cloud":
            assert record.model == "ssdlite_person"
            continue
        assert record.model == "nanodet_coco"
        expected = [
            d.box
            for d in reference.detect_one(images[record.seq])
            if d.name == "person" and d.score >= 0.35
        ]
        got = _people(record.detections)
        assert abs(len(got) - len(expected)) <= 1, (record.seq, got, expected)
        matched = sum(1 for box in got if max((iou(box, e) for e in expected), default=0) >= 0.5)
        assert matched >= len(got) - 1


def _raw_detections(request: FrameRequest, **broken: object) -> bytes:
    fields: dict[str, object] = {
        "v": 1,
        "t": "detections",
        "frame_id": request.frame_id,
        "worker_id": "fake",
        "labels": [0],
        "label_names": ["person"],
        "scores": [0.9],
        "boxes": [0.1, 0.1, 0.2, 0.4],
        "model": "nanodet_coco",
        "model_version": "v",
        "queue_ms": 0.0,
        "decode_ms": 0.0,
        "inference_ms": 0.0,
        "batch_size": 1,
    }
    fields.update(broken)
    return msgpack.packb(fields)


BROKEN = [
    {"boxes": [0.5, 0.1, 0.2, 0.4]},  # x1 > x2
    {"boxes": [0.1, 0.1, 0.2, 1.5]},  # outside the frame
    {"scores": [math.nan]},
    {"labels": [0] * 101, "label_names": ["person"] * 101, "scores": [0.5] * 101,
     "boxes": [0.1, 0.1, 0.2, 0.4] * 101},  # too many
]  # fmt: skip


def test_malformed_detections_are_refused_and_the_frame_keeps_its_local_answer(
    config: Config,
) -> None:
    frames = len(BROKEN)
    cfg = detecting(config, policy="cloud-only", deadline_ms=1500.0, max_in_flight=1)

    async def fake_worker(ready: asyncio.Event) -> None:
        async with client(cfg) as worker:
            await worker.subscribe(cfg.topics.frames_filter, qos=1)
            ready.set()
            async for message in worker.messages:
                request = FrameRequest.from_bytes(message.payload)  # type: ignore[arg-type]
                assert request.task is Task.DETECT
                target = reply_target(cfg.topics, message.topic.value, message.properties)
                assert target is not None
                data = _raw_detections(request, **BROKEN[request.seq % len(BROKEN)])
                await worker.publish(target.topic, data, qos=1, properties=target.properties)

    async def scenario() -> tuple[int, str]:
        ready = asyncio.Event()
        faker = asyncio.create_task(fake_worker(ready))
        await ready.wait()
        ledger = Ledger()
        try:
            node = EdgeNode(cfg, VideoSource(str(default_video())), ledger)
            summary = await node.run(max_frames=frames)
            assert summary.by_decision == {"local-after-timeout": frames}
            rows = list(iter_frames(ledger.path, run_id=ledger.run_id)) if ledger.path else []
            assert all(r.model == "ssdlite_person" for r in rows)
        finally:
            faker.cancel()
            ledger.close()
        return node.bad_replies, ledger.run_id

    bad, _ = asyncio.run(scenario())
    assert bad == frames


def test_a_worker_refuses_the_task_it_does_not_serve(
    config: Config, frames: list[np.ndarray]
) -> None:
    cfg = detecting(config)

    async def scenario() -> tuple[ErrorReply, ErrorReply]:
        async with running_worker(cfg), client(cfg) as c:
            await c.subscribe(cfg.topics.results("cam-1"), qos=1)
            old_edge = jpeg_request(frames[0], model="nanodet_coco")  # no task: classify
            await c.publish(cfg.topics.frames("cam-1"), old_edge.to_bytes(), qos=1)
            first = decode_reply((await next_message(c)).payload)  # type: ignore[arg-type]
        classifying = dataclasses.replace(cfg, worker=config.worker)
        async with running_worker(classifying), client(cfg) as c:
            await c.subscribe(cfg.topics.results("cam-1"), qos=1)
            new_edge = msgspec.structs.replace(
                jpeg_request(frames[0], frame_id="f2"), task=Task.DETECT
            )
            await c.publish(cfg.topics.frames("cam-1"), new_edge.to_bytes(), qos=1)
            second = decode_reply((await next_message(c)).payload)  # type: ignore[arg-type]
        assert isinstance(first, ErrorReply)
        assert isinstance(second, ErrorReply)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.code is ErrorCode.BAD_REQUEST
    assert "detects objects" in first.message
    assert second.code is ErrorCode.BAD_REQUEST
    assert "classifies" in second.message
