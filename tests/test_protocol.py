"""The wire protocol: round trips, strict decoding, and nothing but ProtocolError."""

from __future__ import annotations

import contextlib
import enum
import math
from typing import ClassVar, Literal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ProtocolError
from pipeline.protocol import (
    Decision,
    EdgeStatus,
    ErrorCode,
    ErrorReply,
    Event,
    FrameRequest,
    PayloadCodec,
    Result,
    TensorDType,
    WorkerStatus,
    _wire,
    decode_reply,
)

ids = st.text(
    alphabet=st.characters(blacklist_characters="/+#\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=40,
)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
non_negative = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@st.composite
def frame_requests(draw: st.DrawFn) -> FrameRequest:
    codec = draw(st.sampled_from(list(PayloadCodec)))
    if codec.is_jpeg:
        shape = (
            draw(st.integers(1, 4000)),
            draw(st.integers(1, 4000)),
            draw(st.sampled_from([1, 3])),
        )
        dtype, payload = TensorDType.UINT8, draw(st.binary(max_size=200))
        quality: int | None = draw(st.integers(1, 100))
    else:
        shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
        dtype = draw(st.sampled_from(list(TensorDType)))
        payload = draw(
            st.binary(
                min_size=math.prod(shape) * dtype.itemsize,
                max_size=math.prod(shape) * dtype.itemsize,
            )
        )
        quality = None
    quantized = codec is PayloadCodec.TENSOR and dtype is TensorDType.UINT8
    return FrameRequest(
        frame_id=draw(ids),
        edge_id=draw(ids),
        seq=draw(st.integers(0, 2**63 - 1)),
        capture_ts=draw(times),
        deadline_ts=draw(times),
        codec=codec,
        shape=shape,
        dtype=dtype,
        payload=payload,
        model=draw(ids),
        quality=quality,
        split_stage=draw(st.integers(1, 4)) if codec is PayloadCodec.TENSOR else None,
        edge_label=draw(st.none() | st.integers(0, 999)),
        edge_confidence=draw(st.none() | unit),
        tensor_scale=draw(st.floats(1e-30, 1e30)) if quantized else None,
        tensor_offset=draw(st.floats(-1e30, 1e30)) if quantized else None,
    )


@st.composite
def results(draw: st.DrawFn) -> Result:
    k = draw(st.integers(1, 5))
    return Result(
        frame_id=draw(ids),
        worker_id=draw(ids),
        label=draw(st.integers(0, 999)),
        topk_labels=tuple(draw(st.lists(st.integers(0, 999), min_size=k, max_size=k))),
        topk_scores=tuple(draw(st.lists(unit, min_size=k, max_size=k))),
        model=draw(ids),
        model_version=draw(ids),
        queue_ms=draw(non_negative),
        decode_ms=draw(non_negative),
        inference_ms=draw(non_negative),
        batch_size=draw(st.integers(1, 512)),
        label_name=draw(st.none() | st.text(max_size=30)),
    )


error_replies = st.builds(
    ErrorReply,
    worker_id=ids,
    code=st.sampled_from(list(ErrorCode)),
    message=st.text(max_size=200),
    frame_id=st.none() | ids,
)
worker_statuses = st.builds(
    WorkerStatus,
    worker_id=ids,
    online=st.booleans(),
    ts=times,
    device=st.sampled_from(["cpu", "cuda:0"]),
    models=st.lists(ids, max_size=3).map(tuple),
    queue_depth=st.integers(0, 10_000),
    queue_capacity=st.integers(0, 10_000),
    mean_batch_size=non_negative,
    latency_ms_per_image=non_negative,
    throughput_fps=non_negative,
    frames_done=st.integers(0, 2**40),
    frames_rejected=st.integers(0, 2**40),
)
edge_statuses = st.builds(
    EdgeStatus,
    edge_id=ids,
    online=st.booleans(),
    ts=times,
    captured=st.integers(0, 2**40),
    in_flight=st.integers(0, 1000),
    offloaded=st.integers(0, 2**40),
    decided=st.integers(0, 2**40),
)
events = st.builds(
    Event,
    edge_id=ids,
    frame_id=ids,
    seq=st.integers(0, 2**40),
    ts=times,
    decision=st.sampled_from(list(Decision)),
    bytes_sent=st.integers(0, 2**30),
    label=st.none() | st.integers(0, 999),
    confidence=st.none() | unit,
    model=st.none() | ids,
    latency_ms=st.none() | non_negative,
    true_label=st.none() | st.integers(0, 999),
)

ALL_TYPES = [FrameRequest, Result, ErrorReply, WorkerStatus, EdgeStatus, Event]


@given(
    st.one_of(frame_requests(), results(), error_replies, worker_statuses, edge_statuses, events)
)
def test_round_trip(message: object) -> None:
    cls = type(message)
    data = message.to_bytes()  # type: ignore[attr-defined]
    assert cls.from_bytes(data) == message  # type: ignore[attr-defined]


@given(st.one_of(results(), error_replies))
def test_decode_reply_dispatches_on_type(reply: Result | ErrorReply) -> None:
    assert decode_reply(reply.to_bytes()) == reply


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    for cls in ALL_TYPES:
        with contextlib.suppress(ProtocolError):
            cls.from_bytes(data)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500)
@given(msgpack_values)
def test_random_msgpack_raises_only_protocol_error(value: object) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    for cls in ALL_TYPES:
        with contextlib.suppress(ProtocolError):
            cls.from_bytes(data)


@settings(max_examples=300)
# The fields, less the private "t" key.
@given(
    frame_requests(),
    st.sampled_from(sorted(set(FrameRequest.__struct_fields__) - {"_t"})),
    msgpack_values,
)
def test_one_corrupted_field_raises_only_protocol_error(
    request: FrameRequest, field: str, value: object
) -> None:
    obj = msgpack.unpackb(request.to_bytes(), raw=False)
    obj[field] = value
    try:
        decoded = FrameRequest.from_bytes(msgpack.packb(obj, use_bin_type=True))
    except ProtocolError:
        return
    assert getattr(decoded, field) is not None or value is None


def _valid_frame(**changes: object) -> dict[str, object]:
    frame = FrameRequest(
        frame_id="f1",
        edge_id="cam-1",
        seq=0,
        capture_ts=1.0,
        deadline_ts=2.0,
        codec=PayloadCodec.RAW,
        shape=(2, 2, 3),
        dtype=TensorDType.UINT8,
        payload=bytes(12),
        model="m",
    )
    obj: dict[str, object] = msgpack.unpackb(frame.to_bytes(), raw=False)
    obj.update(changes)
    return obj


def _decode(obj: dict[str, object]) -> FrameRequest:
    return FrameRequest.from_bytes(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"v": 2}, "bad_version"),
        ({"v": True}, "bad_version"),
        ({"t": "result"}, "wrong_message_type"),
        ({"seq": "7"}, "wrong_type"),
        ({"seq": True}, "wrong_type"),
        ({"deadline_ts": float("nan")}, "bad_value"),
        ({"codec": "png"}, "bad_value"),
        ({"shape": (2, 2, 4)}, "bad_shape"),
        ({"shape": ()}, "bad_shape"),
        ({"payload": bytes(11)}, "bad_shape"),
        ({"payload": "not bytes"}, "wrong_type"),
        ({"frame_id": "a/b"}, "bad_value"),
        ({"extra": 1}, "unknown_field"),
        ({"quality": 50}, "bad_value"),
        ({"codec": "tensor"}, "bad_value"),
        ({"edge_confidence": 1.5}, "bad_value"),
    ],
)
def test_rejects_with_reason(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _decode(_valid_frame(**changes))
    assert info.value.reason == reason
    expected_id = None if "frame_id" in changes or reason == "bad_version" else "f1"
    assert info.value.frame_id == expected_id


def test_a_binary_key_is_an_unknown_field() -> None:
    # MessagePack allows binary map keys, and none is a field. (The checkers msgspec
    # replaced sorted str and binary keys together and raised TypeError.)
    obj: dict[object, object] = {**_valid_frame(extra=1), b"bk": 1}
    with pytest.raises(ProtocolError) as info:
        FrameRequest.from_bytes(msgpack.packb(obj, use_bin_type=True))
    assert info.value.reason == "unknown_field"
    assert info.value.frame_id == "f1"


def test_missing_field_is_named() -> None:
    obj = _valid_frame()
    del obj["deadline_ts"]
    with pytest.raises(ProtocolError, match="deadline_ts") as info:
        _decode(obj)
    assert info.value.reason == "missing_field"


def test_oversize_payload_is_refused_before_building() -> None:
    obj = _valid_frame(shape=(1000, 1000, 3), payload=bytes(3_000_000))
    with pytest.raises(ProtocolError) as info:
        FrameRequest.from_bytes(msgpack.packb(obj, use_bin_type=True), max_payload_bytes=1_000_000)
    assert info.value.reason == "oversize"


def test_jpeg_needs_quality_and_image_shape() -> None:
    with pytest.raises(ProtocolError, match="quality"):
        _decode(_valid_frame(codec="jpeg"))
    with pytest.raises(ProtocolError, match="shape"):
        _decode(_valid_frame(codec="jpeg", quality=80, shape=(4, 3)))


def _uint8_tensor(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "codec": "tensor", "split_stage": 1, "shape": (2, 2, 3), "dtype": "uint8",
        "payload": bytes(12), "tensor_scale": 0.02, "tensor_offset": -0.5,
    }  # fmt: skip
    return _valid_frame(**{**base, **changes})


def test_a_uint8_tensor_carries_its_scale_and_offset() -> None:
    request = _decode(_uint8_tensor())
    assert (request.tensor_scale, request.tensor_offset) == (0.02, -0.5)


@pytest.mark.parametrize(
    "obj",
    [
        _uint8_tensor(tensor_scale=None),
        _uint8_tensor(tensor_offset=None),
        _uint8_tensor(tensor_scale=0.0),
        _uint8_tensor(tensor_scale=-1.0),
        _uint8_tensor(tensor_offset=float("inf")),
        _uint8_tensor(dtype="float16", payload=bytes(24)),  # scale on a float tensor
        _valid_frame(tensor_scale=1.0, tensor_offset=0.0),  # scale on raw pixels
    ],
)
def test_scale_and_offset_go_with_uint8_tensors_only(obj: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as info:
        _decode(obj)
    assert info.value.reason == "bad_value"
    assert info.value.frame_id == "f1"


def test_optional_fields_at_none_are_left_out_and_read_back_as_none() -> None:
    obj = _valid_frame()
    assert not {"tensor_scale", "quality", "edge_label"} & obj.keys()
    assert {"frame_id", "payload", "shape"} <= obj.keys()
    # An explicit nil (what earlier builds sent) still decodes.
    assert _decode({**obj, "tensor_scale": None, "quality": None}).tensor_scale is None


def test_frame_envelope_overhead_is_small() -> None:
    obj = _valid_frame()
    assert len(msgpack.packb(obj, use_bin_type=True)) < 250


class _Colour(enum.Enum):  # a plain Enum, not a StrEnum
    RED = "red"


class _PlainEnumMessage(_wire.WireMessage, frozen=True, kw_only=True):
    MESSAGE_TYPE: ClassVar[str] = "plain-enum"
    MAX_BYTES: ClassVar[int] = 1024
    _t: Literal["plain-enum"] = _wire.type_field(MESSAGE_TYPE)
    colour: _Colour | None = None


def test_a_schema_enum_goes_on_the_wire_as_its_value() -> None:
    # The hand-written encoder handed enum members to MessagePack as they were, which
    # was right only for a StrEnum, so it refused any other enum outright; msgspec
    # writes every enum as its value and reads it back as the member.
    data = _PlainEnumMessage(colour=_Colour.RED).to_bytes()
    assert msgpack.unpackb(data)["colour"] == "red"
    assert _PlainEnumMessage.from_bytes(data).colour is _Colour.RED
