"""The fast path (msgspec's typed decoder on a message exactly as we write it) decodes
exactly what the checked path decodes.

For valid messages both build an equal message, field types included; for anything
the checked path refuses or converts, the fast path steps aside (returns None) or
refuses it the same way, and ``from_bytes`` ends where the checked path ends.
"""

from __future__ import annotations

import math
import random
from typing import Any

import msgpack
import pytest

from pipeline.errors import ProtocolError
from pipeline.protocol import (
    Decision,
    EdgeStatus,
    ErrorCode,
    ErrorReply,
    Event,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    TensorDType,
    WorkerStatus,
    _wire,
    decode_frames,
    decode_replies,
    decode_reply,
)


def _valid(rng: random.Random) -> list[Any]:
    tensor = FrameRequest(
        frame_id=f"run-{rng.randint(0, 10**6)}",
        edge_id="cam-1",
        seq=rng.randint(0, 10**9),
        capture_ts=1.7e9 + rng.random(),
        deadline_ts=1.7e9 + 5,
        codec=PayloadCodec.TENSOR,
        shape=(48, 28, 28),
        dtype=TensorDType.UINT8,
        payload=rng.randbytes(48 * 28 * 28),
        model="fmnist_exit_resnet",
        split_stage=1,
        edge_label=rng.choice((None, 3)),
        edge_confidence=rng.choice((None, 0.4)),
        tensor_scale=0.01,
        tensor_offset=-0.5,
    )
    jpeg = FrameRequest(
        frame_id="f-2",
        edge_id="cam-2",
        seq=0,
        capture_ts=1.0,
        deadline_ts=2.0,
        codec=rng.choice((PayloadCodec.JPEG, PayloadCodec.JPEG_ABBREV)),
        quality=rng.randint(1, 100),
        shape=(576, 768, 3),
        dtype=TensorDType.UINT8,
        payload=b"\xff\xd8",
        model="efficientnet_lite0",
    )
    result = Result(
        frame_id="f-3",
        worker_id="w1",
        label=rng.randint(0, 9),
        topk_labels=(1, 2, 3),
        topk_scores=(0.9, 0.05, 0.01),
        model="m",
        model_version="v1",
        queue_ms=rng.random(),
        decode_ms=0.0,
        inference_ms=3.5,
        batch_size=rng.randint(1, 32),
        label_name=rng.choice((None, "coat")),
    )
    error = ErrorReply(
        worker_id="w1", code=ErrorCode.BUSY, message="queue full", frame_id=rng.choice((None, "f"))
    )
    return [
        tensor,
        jpeg,
        result,
        error,
        FrameBundle(edge_id="cam-1", frames=(tensor.to_bytes(), jpeg.to_bytes())),
        ReplyBundle(replies=(result.to_bytes(), error.to_bytes())),
        WorkerStatus(worker_id="w1", online=True, ts=1.7e9, models=("m",), queue_depth=2),
        EdgeStatus(edge_id="cam-1", online=True, ts=1.7e9, rtt_ms_p50=rng.choice((None, 4.5))),
        Event(edge_id="cam-1", frame_id="f-4", seq=4, ts=1.7e9, decision=Decision.CLOUD, label=2),
    ]


def _map(message: Any) -> dict[str, object]:
    return _wire.unpack_map(message.to_bytes(), max_bytes=_wire.MAX_MESSAGE_BYTES)


def _packb(obj: dict[str, object]) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def _fast(cls: type, data: bytes) -> Any:
    return _wire.decode_fast(data, (cls,))


def _checked(cls: type, data: bytes) -> Any:
    return _wire.decode_as(cls, _wire.unpack_map(data, max_bytes=_wire.MAX_MESSAGE_BYTES))


def _typed(outcome: object) -> object:
    """A message as its fields' (type, value) pairs, so 1 and 1.0 differ; else as is."""
    if isinstance(outcome, _wire.WireMessage):
        return [(type(v), v) for v in (getattr(outcome, f) for f in outcome.__struct_fields__)]
    return outcome


def _outcome(decode: Any, cls: type, data: bytes) -> object:
    try:
        return _typed(decode(cls, data))
    except ProtocolError as exc:
        return ("refused", exc.reason, exc.frame_id, str(exc))


def test_every_envelope_type_takes_the_fast_path() -> None:
    for message in _valid(random.Random(0)):
        assert _fast(type(message), message.to_bytes()) == message


def test_valid_messages_decode_to_what_the_checked_path_builds() -> None:
    rng = random.Random(0)
    for _ in range(200):
        for message in _valid(rng):
            data = message.to_bytes()
            fast = _fast(type(message), data)
            assert fast == _checked(type(message), data) == message
            assert _typed(fast) == _typed(_checked(type(message), data)) == _typed(message)
            assert type(fast) is type(message)


# Values each declared type refuses or converts, tried in every field.
_ODD_VALUES: list[object] = [
    None,
    True,
    1,
    -1,
    1.5,
    math.nan,
    math.inf,
    "x",
    "x" * (_wire.MAX_STR_CHARS + 1),
    b"x",
    (),
    (1, 2),
    (1.0,),
    (b"a",),
    ("a",),
    tuple(range(_wire.MAX_ARRAY_ITEMS + 1)),
    {"a": 1},
    "jpeg",
    "uint8",
    "busy",
]


@pytest.mark.parametrize("index", range(9))
def test_a_changed_missing_or_unknown_field_ends_where_the_checked_path_ends(index: int) -> None:
    message = _valid(random.Random(1))[index]
    cls = type(message)
    base = _map(message)
    variants: list[dict[str, object]] = [{**base, "extra": 1}]
    for name in base:
        variants.append({k: v for k, v in base.items() if k != name})
        variants += [{**base, name: value} for value in _ODD_VALUES]
    for obj in variants:
        data = _packb(obj)
        checked = _outcome(_checked, cls, data)
        # None: left to the checked path. Otherwise the message it builds, or the
        # refusal of the message's own invariants, as on the checked path.
        fast = _outcome(_fast, cls, data)
        if fast is not None:
            assert fast == checked, obj
        assert _outcome(lambda c, d: c.from_bytes(d), cls, data) == checked, obj


def test_decoding_a_real_message_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked_path(*args: object, **kwargs: object) -> object:
        raise AssertionError("a valid message took the checked path")

    monkeypatch.setattr(_wire, "unpack_map", checked_path)
    monkeypatch.setattr(_wire, "decode_as", checked_path)
    for message in _valid(random.Random(2)):
        data = message.to_bytes()
        assert type(message).from_bytes(data) == message
        if isinstance(message, FrameRequest):
            assert decode_frames(data).requests == [message]
        if isinstance(message, FrameBundle):
            assert len(decode_frames(data).requests) == 2
        if isinstance(message, (Result, ErrorReply)):
            assert decode_reply(data) == message
            assert decode_replies(data) == ([message], [])
        if isinstance(message, ReplyBundle):
            assert len(decode_replies(data)[0]) == 2


def test_another_key_order_takes_the_checked_path_to_the_same_message() -> None:
    for message in _valid(random.Random(4)):
        reordered = dict(reversed(_map(message).items()))  # the fields, then "t", then "v"
        data = _packb(reordered)
        assert _fast(type(message), data) is None
        assert _typed(type(message).from_bytes(data)) == _typed(message)


def test_an_int_where_a_float_is_declared_still_decodes_as_a_float() -> None:
    result = _valid(random.Random(3))[2]
    obj = _map(result)
    obj["queue_ms"] = 2
    data = _packb(obj)
    for decoded in (_fast(Result, data), _checked(Result, data), Result.from_bytes(data)):
        assert decoded.queue_ms == 2.0
        assert type(decoded.queue_ms) is float
