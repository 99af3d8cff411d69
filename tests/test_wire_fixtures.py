"""The wire, byte for byte: every message type encodes to its committed fixture
(tests/data/wire/, written by ``make_fixtures.py`` before msgspec replaced the
hand-written encoder) and each fixture decodes back to its value."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.protocol import (
    Decision,
    ErrorCode,
    FrameBundle,
    FrameRequest,
    PayloadCodec,
    ReplyBundle,
    ResultColumns,
    Task,
    TensorDType,
    decode_frames,
    decode_replies,
    decode_reply,
)
from tests.data.wire.make_fixtures import FIXTURES, fixture_path

NAMES = sorted(FIXTURES)


def _fixture(name: str) -> bytes:
    return fixture_path(name).read_bytes()


def test_every_message_type_and_case_has_a_fixture() -> None:
    kinds = {type(message).__name__ for message in FIXTURES.values()}
    assert kinds == {
        "FrameRequest", "Result", "DetectionResult", "ErrorReply", "FrameBundle",
        "ReplyBundle", "ResultColumns", "EdgeStatus", "WorkerStatus", "Event",
    }  # fmt: skip
    frames = [m for m in FIXTURES.values() if isinstance(m, FrameRequest)]
    assert {f.codec for f in frames} == set(PayloadCodec)
    tensors = {f.dtype for f in frames if f.codec is PayloadCodec.TENSOR}
    assert tensors == set(TensorDType)
    assert any(f.tensor_scale is not None for f in frames)
    assert {f.task for f in frames} == {None, Task.DETECT}
    detections = [getattr(m, "labels", None) for m in FIXTURES.values()]
    assert () in detections  # an empty frame's answer
    assert any(labels for labels in detections)
    for codec in PayloadCodec:  # each codec with and without the optional fields
        given = {f.edge_label is not None for f in frames if f.codec is codec}
        assert given == {True, False}, codec
    codes = {getattr(m, "code", None) for m in FIXTURES.values()}
    assert set(ErrorCode) <= codes
    decisions = {getattr(m, "decision", None) for m in FIXTURES.values()}
    assert set(Decision) <= decisions
    assert all(fixture_path(name).is_file() for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_encodes_byte_for_byte_as_the_fixture(name: str) -> None:
    message: Any = FIXTURES[name]
    assert message.to_bytes() == _fixture(name)


@pytest.mark.parametrize("name", NAMES)
def test_the_fixture_decodes_to_its_value(name: str) -> None:
    message: Any = FIXTURES[name]
    data = _fixture(name)
    decoded = type(message).from_bytes(data)
    assert decoded == message
    assert type(decoded) is type(message)
    # Field by field with types, so an int read where a float was sent shows.
    for field in _field_names(message):
        assert type(getattr(decoded, field)) is type(getattr(message, field)), field
    # ... and through the helpers the edge and the worker call.
    if isinstance(message, FrameRequest):
        assert decode_frames(data).requests == [message]
    elif isinstance(message, FrameBundle):
        arrived = decode_frames(data)
        members = [m for m in message.frames if _is_frame(m)]
        assert arrived.bundled
        assert [r.to_bytes() for r in arrived.requests] == members
        assert len(arrived.errors) == len(message.frames) - len(members)
    elif isinstance(message, ResultColumns):
        assert decode_replies(data) == (message.results(), [])
    elif isinstance(message, ReplyBundle):
        replies, errors = decode_replies(data)
        assert [r.to_bytes() for r in replies] == list(message.replies)
        assert errors == []
    elif type(message).__name__ in ("Result", "DetectionResult", "ErrorReply"):
        assert decode_reply(data) == message
        assert decode_replies(data) == ([message], [])


def _field_names(message: Any) -> tuple[str, ...]:
    names: tuple[str, ...] = message.__struct_fields__
    return names


def _is_frame(member: bytes) -> bool:
    return any(member == f.to_bytes() for f in FIXTURES.values() if isinstance(f, FrameRequest))
