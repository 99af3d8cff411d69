"""The generated per-type decoders decode exactly what the field checkers decode.

For valid messages they must build an equal message; for anything the checkers refuse
or convert they must step aside (return None) or refuse it the same way.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import msgpack
import pytest

from pipeline.errors import ProtocolError
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    Result,
    TensorDType,
    WorkerStatus,
    _wire,
)

HOT = (FrameRequest, Result, ErrorReply, FrameBundle, ReplyBundle)


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
    ]


def _map(message: Any) -> dict[str, object]:
    return _wire.unpack_map(message.to_bytes(), max_bytes=_wire.MAX_MESSAGE_BYTES)


def _fast(cls: type, obj: dict[str, object]) -> object:
    decoder = _wire._fast_decoder(cls)
    assert decoder is not None
    return decoder(obj)


def test_the_hot_types_have_a_fast_decoder_and_the_rest_may_not() -> None:
    assert all(_wire._fast_decoder(cls) is not None for cls in HOT)
    assert _wire._fast_decoder(WorkerStatus) is None  # non-None defaults: checkers only


def test_valid_messages_decode_to_what_the_checkers_build() -> None:
    rng = random.Random(0)
    for _ in range(200):
        for message in _valid(rng):
            obj = _map(message)
            fast = _fast(type(message), obj)
            assert fast == _wire._decode_checked(type(message), obj) == message
            assert _typed(fast) == _typed(message)
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


def _typed(outcome: object) -> object:
    """A message as its fields' (value, type) pairs, so 1 and 1.0 differ; else as is."""
    if dataclasses.is_dataclass(outcome):
        return [
            (type(v), v) for v in (getattr(outcome, f.name) for f in dataclasses.fields(outcome))
        ]
    return outcome


def _outcome(decode: Any, cls: type, obj: dict[str, object]) -> object:
    try:
        return decode(cls, obj)
    except ProtocolError as exc:
        return ("refused", exc.reason, str(exc))


@pytest.mark.parametrize("index", range(6))
def test_a_changed_missing_or_unknown_field_is_left_to_the_checkers(index: int) -> None:
    message = _valid(random.Random(1))[index]
    cls = type(message)
    base = _map(message)
    variants: list[dict[str, object]] = [{**base, "extra": 1}]
    for name in _wire._field_types(cls):
        variants.append({k: v for k, v in base.items() if k != name})
        variants += [{**base, name: value} for value in _ODD_VALUES]
    for obj in variants:
        checked = _outcome(_wire._decode_checked, cls, obj)
        # None: left to the checkers. A refusal: the message's own invariants refused it,
        # as they refuse it on the checked path.
        fast = _outcome(lambda c, o: _fast(c, o), cls, obj)
        if fast is not None:
            assert _typed(fast) == _typed(checked), obj
        assert _outcome(_wire.decode_as, cls, obj) == checked


def test_decoding_a_real_message_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked_path(cls: type, obj: object) -> object:
        raise AssertionError("a valid message took the checked path")

    monkeypatch.setattr(_wire, "_decode_checked", checked_path)
    for message in _valid(random.Random(2)):
        assert type(message).from_bytes(message.to_bytes()) == message


def test_an_int_where_a_float_is_declared_still_decodes_as_a_float() -> None:
    result = _valid(random.Random(3))[2]
    obj = _map(result)
    obj["queue_ms"] = 2
    assert _fast(Result, obj) is None  # converted by the checkers, not here
    decoded = Result.from_bytes(msgpack.packb(obj))
    assert decoded.queue_ms == 2.0
    assert type(decoded.queue_ms) is float
