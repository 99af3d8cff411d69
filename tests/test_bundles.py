"""Bundles: frames ready together leave as one message, and their answers come back as
one; each member is still validated and answered on its own. Wire checks by hand, then
the edge's sender and a real worker through a real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses

import msgpack
import msgspec
import numpy as np
import pytest

from edge_node.replies import ReplyRouter
from edge_node.sender import FrameSender
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST, load_fashion_mnist
from pipeline.errors import ProtocolError
from pipeline.inference import Classifier
from pipeline.protocol import (
    MAX_BUNDLE_FRAMES,
    ErrorCode,
    ErrorReply,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    TensorDType,
    _wire,
    decode_frames,
    decode_replies,
)
from pipeline.protocol.replies import MAX_REPLY_BYTES
from tests._helpers import client, raw_request, running_worker

MODEL = "fmnist_exit_resnet"
EDGE = "cam-1"


def _raw(frame_id: str, *, edge_id: str = EDGE, pixels: bytes = bytes(784)) -> FrameRequest:
    return raw_request(frame_id, edge_id=edge_id, pixels=pixels, model=MODEL)


# --------------------------------------------------------------------------- wire


def test_a_frame_bundle_round_trips_and_each_member_is_checked_alone() -> None:
    good = [_raw(f"f{i}") for i in range(3)]
    broken = _raw("bad").to_bytes()[:-5]  # truncated
    data = FrameBundle(edge_id=EDGE, frames=(*(r.to_bytes() for r in good), broken)).to_bytes()
    arrived = decode_frames(data)
    assert arrived.bundled
    assert [r.frame_id for r in arrived.requests] == ["f0", "f1", "f2"]
    assert arrived.requests == good
    assert len(arrived.errors) == 1
    assert arrived.errors[0].reason == "not_msgpack"


def test_a_lone_frame_is_not_a_bundle() -> None:
    arrived = decode_frames(_raw("f1").to_bytes())
    assert not arrived.bundled
    assert [r.frame_id for r in arrived.requests] == ["f1"]
    assert arrived.errors == []


@pytest.mark.parametrize("count", [0, MAX_BUNDLE_FRAMES + 1])
def test_bundles_hold_one_to_the_limit_of_members(count: int) -> None:
    member = _raw("f").to_bytes()
    with pytest.raises(ProtocolError, match="bundle holds"):
        FrameBundle(edge_id=EDGE, frames=(member,) * count)
    with pytest.raises(ProtocolError, match="bundle holds"):
        ReplyBundle(replies=(member,) * count)
    # ... and a forged one is refused when decoded, not only when built.
    forged = msgpack.packb(
        {"v": _wire.SCHEMA_VERSION, "t": "frames", "edge_id": EDGE, "frames": [member] * count}
    )
    with pytest.raises(ProtocolError):
        decode_frames(forged)


@pytest.mark.parametrize("count", [1, 15, 16, 256])
@pytest.mark.parametrize("size", [1, 255, 256, 65_535, 65_536])
def test_bundles_encode_byte_for_byte_as_messagepack_does(count: int, size: int) -> None:
    # msgspec writes the members' headers; MessagePack's own packer on the same map
    # (how the protocol encoded before msgspec) is the reference, across each header's
    # size boundaries.
    members = tuple(bytes([i % 251]) * size for i in range(count))
    for bundle in (
        FrameBundle(edge_id="cam-1", frames=members),
        ReplyBundle(replies=members) if size <= MAX_REPLY_BYTES else None,
    ):
        if bundle is not None:
            assert bundle.to_bytes() == _packed_by_msgpack(bundle)


def _packed_by_msgpack(message: FrameBundle | ReplyBundle) -> bytes:
    body: dict[str, object] = {"v": _wire.SCHEMA_VERSION, "t": message.MESSAGE_TYPE}
    # An optional field at None is left out, as the protocol always has.
    body.update(
        (f, getattr(message, f))
        for f in message.__struct_fields__
        if f != "_t" and getattr(message, f) is not None
    )
    packed = msgpack.packb(body, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def test_reply_bundles_decode_member_by_member() -> None:
    result = Result(
        frame_id="f1",
        worker_id="w1",
        label=3,
        topk_labels=(3, 1),
        topk_scores=(0.9, 0.1),
        model=MODEL,
        model_version="1",
        queue_ms=1.0,
        decode_ms=0.1,
        inference_ms=2.0,
        batch_size=2,
    )
    error = ErrorReply(frame_id="f2", worker_id="w1", code=ErrorCode.EXPIRED, message="late")
    data = ReplyBundle(replies=(result.to_bytes(), b"\xc1junk", error.to_bytes())).to_bytes()
    replies, errors = decode_replies(data)
    assert replies == [result, error]
    assert len(errors) == 1
    assert decode_replies(result.to_bytes()) == ([result], [])
    with pytest.raises(ProtocolError):
        decode_replies(b"\x93\x01\x02")


def test_a_bundled_reply_past_the_reply_limit_is_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        ReplyBundle(replies=(bytes(300 * 1024),))


# --------------------------------------------------------------------------- sender


def _sender(config: Config, **kwargs: object) -> FrameSender:
    topics = config.topics
    return FrameSender(
        edge_id=EDGE,
        topic=topics.frames(EDGE),
        response_topic=topics.results(EDGE),
        mqtt5=config.broker.protocol == "5",
        qos=1,
        **kwargs,  # type: ignore[arg-type]
    )


async def _collect(config: Config, count: int, send: object) -> list[bytes]:
    """The raw messages that reach the frames topic while ``send()`` runs."""
    received: list[bytes] = []
    async with client(config) as spy:
        await spy.subscribe(config.topics.frames(EDGE), qos=1)
        await send()  # type: ignore[operator]
        async with asyncio.timeout(10):
            async for message in spy.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)
                total = sum(len(decode_frames(m).requests) for m in received)
                if total >= count:
                    break
    return received


def test_frames_sent_together_share_messages_and_a_lone_frame_goes_alone(config: Config) -> None:
    asyncio.run(_frames_sent_together_share_messages_and_a_lone_frame_goes_alone(config))


async def _frames_sent_together_share_messages_and_a_lone_frame_goes_alone(config: Config) -> None:
    requests = [_raw(f"f{i}") for i in range(40)]
    sender = _sender(config, max_publishes=1)
    async with client(config) as edge:

        async def burst() -> None:
            first = sender.submit(edge, "f0", requests[0].to_bytes())
            await asyncio.sleep(0)  # f0's publish is out, waiting for its PUBACK
            rest = [sender.submit(edge, r.frame_id, r.to_bytes()) for r in requests[1:]]
            await asyncio.gather(first, *rest)

        messages = await _collect(config, len(requests), burst)
        # f0 left at once, alone; the 39 that queued behind its PUBACK left together,
        # in bundles of at most a worker's default batch.
        assert [len(decode_frames(m).requests) for m in messages] == [1, 32, 7]
        assert not decode_frames(messages[0]).bundled
        assert decode_frames(messages[1]).bundled
        assert (sender.messages, sender.frames) == (3, 40)
        got = [r.frame_id for m in messages for r in decode_frames(m).requests]
        assert got == [r.frame_id for r in requests]  # every frame once, in order

        alone = _raw("solo")
        messages = await _collect(config, 1, lambda: sender.send(edge, "solo", alone.to_bytes()))
        assert messages == [alone.to_bytes()]
    await sender.close()


def test_without_bundling_every_frame_is_its_own_message(config: Config) -> None:
    asyncio.run(_without_bundling_every_frame_is_its_own_message(config))


async def _without_bundling_every_frame_is_its_own_message(config: Config) -> None:
    requests = [_raw(f"f{i}") for i in range(10)]
    sender = _sender(config, bundle=False, max_publishes=1)
    async with client(config) as edge:

        async def burst() -> None:
            await asyncio.gather(*(sender.send(edge, r.frame_id, r.to_bytes()) for r in requests))

        messages = await _collect(config, len(requests), burst)
    assert messages == [r.to_bytes() for r in requests]
    await sender.close()


def test_a_frame_withdrawn_before_it_left_is_never_sent(config: Config) -> None:
    asyncio.run(_a_frame_withdrawn_before_it_left_is_never_sent(config))


async def _a_frame_withdrawn_before_it_left_is_never_sent(config: Config) -> None:
    sender = _sender(config, max_publishes=1)
    async with client(config) as edge:

        async def burst() -> None:
            first = sender.submit(edge, "f0", _raw("f0").to_bytes())
            withdrawn = sender.submit(edge, "f1", _raw("f1").to_bytes())
            last = sender.submit(edge, "f2", _raw("f2").to_bytes())
            withdrawn.cancel()  # its deadline passed while f0's publish was out
            await asyncio.gather(first, last)

        messages = await _collect(config, 2, burst)
    assert [r.frame_id for m in messages for r in decode_frames(m).requests] == ["f0", "f2"]
    await sender.close()


def test_a_bundle_is_kept_under_its_byte_limit(config: Config) -> None:
    asyncio.run(_a_bundle_is_kept_under_its_byte_limit(config))


async def _a_bundle_is_kept_under_its_byte_limit(config: Config) -> None:
    sender = _sender(config, max_publishes=1, max_bytes=3000)
    requests = [_raw(f"f{i}") for i in range(9)]  # ~1 kB each
    async with client(config) as edge:

        async def burst() -> None:
            await asyncio.gather(*(sender.send(edge, r.frame_id, r.to_bytes()) for r in requests))

        messages = await _collect(config, len(requests), burst)
    assert all(len(m) <= 3000 + 100 for m in messages)
    assert sum(len(decode_frames(m).requests) for m in messages) == 9
    await sender.close()


def test_32_split_activations_leave_as_one_bundle_by_default(config: Config) -> None:
    asyncio.run(_32_split_activations_leave_as_one_bundle_by_default(config))


async def _32_split_activations_leave_as_one_bundle_by_default(config: Config) -> None:
    # The largest split payload the edge sends: float16 at split 1, 48x28x28.
    split = _raw("f")
    requests = [
        msgspec.structs.replace(
            split,
            frame_id=f"f{i}",
            codec=PayloadCodec.TENSOR,
            shape=(48, 28, 28),
            dtype=TensorDType.FLOAT16,
            payload=bytes(48 * 28 * 28 * 2),
            split_stage=1,
        )
        for i in range(33)
    ]
    sender = _sender(config, max_publishes=1)
    async with client(config) as edge:

        async def burst() -> None:
            await asyncio.gather(*(sender.send(edge, r.frame_id, r.to_bytes()) for r in requests))

        messages = await _collect(config, len(requests), burst)
    # 32 frames (2.4 MB) leave together; the frame limit, not the byte limit, splits.
    assert sorted(len(decode_frames(m).requests) for m in messages) == [1, 32]
    await sender.close()


# --------------------------------------------------------------------------- worker

needs_fmnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


@needs_fmnist
def test_a_worker_answers_a_bundle_with_bundles_and_refuses_only_bad_members(
    config: Config,
) -> None:
    asyncio.run(_a_worker_answers_a_bundle_with_bundles_and_refuses_only_bad_members(config))


async def _a_worker_answers_a_bundle_with_bundles_and_refuses_only_bad_members(
    config: Config,
) -> None:
    config = dataclasses.replace(
        config, worker=dataclasses.replace(config.worker, model=MODEL, max_batch=64)
    )
    test = load_fashion_mnist(split="test").head(30)
    requests = [_raw(f"f{i}", pixels=img.tobytes()) for i, img in enumerate(test.images)]
    wrong_edge = _raw("other", edge_id="cam-2")
    members = [r.to_bytes() for r in requests] + [wrong_edge.to_bytes(), b"\xc1"]
    router = ReplyRouter(EDGE)
    waiting = {r.frame_id: router.expect(r.frame_id) for r in [*requests, wrong_edge]}
    async with (
        running_worker(config, Classifier.by_name(MODEL, "cpu")),
        client(config) as edge,
    ):
        await edge.subscribe(config.topics.results(EDGE), qos=1)
        bundle = FrameBundle(edge_id=EDGE, frames=tuple(members))
        await edge.publish(config.topics.frames(EDGE), bundle.to_bytes(), qos=1)
        message_count = 0
        async with asyncio.timeout(30):
            async for message in edge.messages:
                message_count += 1
                router.on_message(message)
                # The unreadable member's error has no frame id: it lands as late.
                if all(f.done() for f in waiting.values()) and router.late_replies >= 1:
                    break
    answers = {fid: f.result() for fid, f in waiting.items()}
    results = [answers[r.frame_id] for r in requests]
    assert all(isinstance(r, Result) for r in results)
    labels = np.array([r.label for r in results if isinstance(r, Result)])
    assert (labels == test.labels).mean() > 0.8
    refused = answers["other"]
    assert isinstance(refused, ErrorReply)
    assert refused.code is ErrorCode.BAD_REQUEST
    # 32 answers in far fewer messages than one each.
    assert router.bad_replies == 0
    assert message_count <= 6
