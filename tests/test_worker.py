"""The cloud worker against a real Mosquitto: answers, error replies, status."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import msgpack
import msgspec
import numpy as np
import torch

from pipeline.codecs import decode_jpeg
from pipeline.config import Config
from pipeline.inference import Classifier
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameRequest,
    PayloadCodec,
    Result,
    TensorDType,
    WorkerStatus,
    decode_reply,
)
from pipeline.topics import request_properties
from tests._helpers import LoopLag, client, jpeg_request, next_message, running_worker


def _reply(message: object) -> Result | ErrorReply:
    payload = message.payload  # type: ignore[attr-defined]
    assert isinstance(payload, bytes)
    return decode_reply(payload)


def test_mqtt5_round_trip_answers_on_the_response_topic(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    async def scenario() -> None:
        topics = config.topics
        async with running_worker(config, classifier), client(config) as edge:
            reply_topic = f"{topics.results('cam-1')}/session-xyz"
            await edge.subscribe(reply_topic, qos=1)
            request = jpeg_request(frames[0], frame_id="abc")
            await edge.publish(
                topics.frames("cam-1"),
                request.to_bytes(),
                qos=1,
                properties=request_properties(reply_topic, b"corr-abc"),
            )
            message = await next_message(edge)
            assert message.topic.value == reply_topic
            assert message.properties is not None
            assert message.properties.CorrelationData == b"corr-abc"
            result = _reply(message)
            assert isinstance(result, Result)
            assert result.frame_id == "abc"
            assert result.model == "efficientnet_lite0"
            assert result.model_version == classifier.spec.version
            assert result.label_name == classifier.spec.labels[result.label]
            # The worker saw the JPEG, not the raw frame: compare with the same pixels.
            sent = decode_jpeg(request.payload)
            assert result.label == classifier.predict([sent])[0].label
            assert result.batch_size >= 1
            assert result.inference_ms > 0

    asyncio.run(scenario())


def test_without_mqtt5_properties_replies_go_to_the_edge_results_topic(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    v311 = dataclasses.replace(config, broker=dataclasses.replace(config.broker, protocol="3.1.1"))

    async def scenario() -> None:
        topics = config.topics
        async with running_worker(v311, classifier), client(v311) as edge:
            await edge.subscribe(topics.results("cam-2"), qos=1)
            request = jpeg_request(frames[1], frame_id="v311", edge_id="cam-2")
            await edge.publish(topics.frames("cam-2"), request.to_bytes(), qos=1)
            result = _reply(await next_message(edge))
            assert isinstance(result, Result)
            assert result.frame_id == "v311"

    asyncio.run(scenario())


def test_garbage_and_wrong_schema_get_error_replies_and_the_worker_keeps_serving(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    async def scenario() -> None:
        topics = config.topics
        async with running_worker(config, classifier) as worker, client(config) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            frames_topic = topics.frames("cam-1")

            await edge.publish(frames_topic, b"\x00\xffgarbage\x13", qos=1)
            garbage = _reply(await next_message(edge))
            assert isinstance(garbage, ErrorReply)
            assert garbage.code is ErrorCode.BAD_REQUEST
            assert garbage.frame_id is None
            assert "MessagePack" in garbage.message

            wrong = msgpack.packb({"v": 1, "t": "frame", "frame_id": "w1", "seq": "x"})
            await edge.publish(frames_topic, wrong, qos=1)
            schema = _reply(await next_message(edge))
            assert isinstance(schema, ErrorReply)
            assert schema.code is ErrorCode.BAD_REQUEST
            assert schema.frame_id == "w1"
            assert "missing field" in schema.message

            await edge.publish(
                frames_topic, jpeg_request(frames[2], frame_id="ok").to_bytes(), qos=1
            )
            ok = _reply(await next_message(edge))
            assert isinstance(ok, Result)
            assert ok.frame_id == "ok"
            assert worker.bad_messages == 2

    asyncio.run(scenario())


def test_requests_the_worker_cannot_serve_are_refused_with_a_code(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    async def scenario() -> dict[str, ErrorCode]:
        topics = config.topics
        tensor = FrameRequest(
            frame_id="tensor",
            edge_id="cam-1",
            seq=0,
            capture_ts=time.time(),
            deadline_ts=time.time() + 10,
            codec=PayloadCodec.TENSOR,
            shape=(4, 2, 2),
            dtype=TensorDType.FLOAT16,
            payload=bytes(32),
            model="efficientnet_lite0",
            split_stage=2,
        )
        corrupt = msgspec.structs.replace(
            jpeg_request(frames[0], frame_id="corrupt"), payload=b"\xff\xd8\xff\xe0 broken"
        )
        requests = [
            jpeg_request(frames[0], frame_id="model", model="resnet999"),
            jpeg_request(frames[0], frame_id="late", deadline_s=-1),
            jpeg_request(frames[0], frame_id="spoof", edge_id="cam-9"),
            tensor,
            corrupt,
        ]
        codes: dict[str, ErrorCode] = {}
        async with running_worker(config, classifier), client(config) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            for request in requests:
                await edge.publish(topics.frames("cam-1"), request.to_bytes(), qos=1)
            for _ in requests:
                reply = _reply(await next_message(edge))
                assert isinstance(reply, ErrorReply), reply
                assert reply.frame_id is not None
                codes[reply.frame_id] = reply.code
        return codes

    assert asyncio.run(scenario()) == {
        "model": ErrorCode.UNKNOWN_MODEL,
        "late": ErrorCode.EXPIRED,
        "spoof": ErrorCode.BAD_REQUEST,
        "tensor": ErrorCode.BAD_REQUEST,
        "corrupt": ErrorCode.BAD_REQUEST,
    }


def test_status_is_retained_online_then_offline(config: Config, classifier: Classifier) -> None:
    async def scenario() -> tuple[WorkerStatus, WorkerStatus]:
        topic = config.topics.worker_status(config.worker.worker_id)
        # The watcher connects after the worker announced itself and still sees the
        # status: it is retained.
        async with running_worker(config, classifier), client(config) as watcher:
            await watcher.subscribe(topic, qos=1)
            online = WorkerStatus.from_bytes((await next_message(watcher)).payload)  # type: ignore[arg-type]
        async with client(config) as watcher:
            await watcher.subscribe(topic, qos=1)
            offline = WorkerStatus.from_bytes((await next_message(watcher)).payload)  # type: ignore[arg-type]
        return online, offline

    online, offline = asyncio.run(scenario())
    assert online.online
    assert online.models == ("efficientnet_lite0",)
    assert online.queue_capacity == config.worker.max_queue
    assert not offline.online


def test_inference_does_not_block_the_event_loop(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    """Sample loop lag (how late a 5 ms sleep wakes) while the worker runs full batches.

    If decoding or inference ran on the loop, a lag as long as a batch would show up.
    """

    async def scenario() -> tuple[float, float]:
        lag = LoopLag()

        topics = config.topics
        batched = dataclasses.replace(
            config, worker=dataclasses.replace(config.worker, max_batch=8, max_wait_ms=50)
        )
        async with running_worker(batched, classifier), client(config) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            lag.start()
            for i in range(16):
                request = jpeg_request(frames[i % len(frames)], frame_id=f"lag{i}")
                await edge.publish(topics.frames("cam-1"), request.to_bytes(), qos=1)
            batch_ms = 0.0
            for _ in range(16):
                result = _reply(await next_message(edge))
                assert isinstance(result, Result)
                batch_ms = max(batch_ms, result.inference_ms)
            max_lag_ms = await lag.stop()
        return max_lag_ms, batch_ms

    max_lag_ms, batch_ms = asyncio.run(scenario())
    assert batch_ms > 0
    assert max_lag_ms < batch_ms / 2, (max_lag_ms, batch_ms)


class _FailingClassifier(Classifier):
    """The real model, made to fail the way torch does (e.g. CUDA out of memory)."""

    def __init__(self, real: Classifier) -> None:
        self.__dict__.update(real.__dict__)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory (simulated)")


def test_an_inference_failure_is_an_internal_error_and_the_worker_survives(
    config: Config, classifier: Classifier, frames: list[np.ndarray]
) -> None:
    failing = _FailingClassifier(classifier)

    async def scenario() -> list[Result | ErrorReply]:
        topics = config.topics
        async with running_worker(config, failing), client(config) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            replies = []
            for i in range(2):
                request = jpeg_request(frames[0], frame_id=f"oom{i}")
                await edge.publish(topics.frames("cam-1"), request.to_bytes(), qos=1)
                replies.append(_reply(await next_message(edge)))
            return replies

    replies = asyncio.run(scenario())
    assert all(isinstance(r, ErrorReply) and r.code is ErrorCode.INTERNAL for r in replies)
    assert "out of memory" in replies[1].message  # type: ignore[union-attr]
