"""Detections on the wire: DetectionResult round trips, rides in reply bundles, and is
refused with a ProtocolError that says what is wrong, built here or decoded; a
FrameRequest asks for detection with ``task``, and one without is the bytes it was."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ProtocolError
from pipeline.protocol import (
    MAX_DETECTIONS,
    DetectionResult,
    ErrorCode,
    ErrorReply,
    FrameRequest,
    ReplyBundle,
    Result,
    Task,
    _wire,
    decode_frames,
    decode_replies,
    decode_reply,
)
from tests.data.wire.make_fixtures import FIXTURES, fixture_path


def _detections(count: int = 2, **fields: Any) -> DetectionResult:
    base: dict[str, Any] = {
        "frame_id": "f-1",
        "worker_id": "w1",
        "labels": tuple(i % 80 for i in range(count)),
        "label_names": tuple(f"class-{i % 80}" for i in range(count)),
        "scores": tuple(1.0 - i / (count + 1) for i in range(count)),
        "boxes": tuple(c for i in range(count) for c in (0.0, 0.125, 0.5 + i / 1000, 1.0)),
        "model": "ssdlite320_mobilenet_v3",
        "model_version": "1",
        "queue_ms": 0.5,
        "decode_ms": 1.0,
        "inference_ms": 9.5,
        "batch_size": 2,
    }
    return DetectionResult(**{**base, **fields})


def _map(message: Any) -> dict[str, object]:
    return _wire.unpack_map(message.to_bytes(), max_bytes=_wire.MAX_MESSAGE_BYTES)


def _packb(obj: dict[str, object]) -> bytes:
    data = msgpack.packb(obj, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


unit = st.floats(0, 1, allow_nan=False)


@st.composite
def detection_results(draw: st.DrawFn) -> DetectionResult:
    n = draw(st.integers(0, MAX_DETECTIONS))
    boxes: list[float] = []
    for _ in range(n):
        x1, x2 = sorted((draw(unit), draw(unit)))
        y1, y2 = sorted((draw(unit), draw(unit)))
        boxes += (x1, y1, x2, y2)
    names = st.text(min_size=1, max_size=64)
    return _detections(
        labels=tuple(draw(st.lists(st.integers(0, 2**31 - 1), min_size=n, max_size=n))),
        label_names=tuple(draw(st.lists(names, min_size=n, max_size=n))),
        scores=tuple(draw(st.lists(unit, min_size=n, max_size=n))),
        boxes=tuple(boxes),
        batch_size=draw(st.integers(1, 512)),
    )


@settings(max_examples=50)
@given(detection_results())
def test_round_trip(message: DetectionResult) -> None:
    data = message.to_bytes()
    assert DetectionResult.from_bytes(data) == message
    assert decode_reply(data) == message
    assert decode_replies(data) == ([message], [])


def test_what_the_edge_reads() -> None:
    message = _detections(3, scores=(0.25, 0.75, 0.5))
    assert message.confidence == 0.75
    assert message.boxes_xyxy() == [
        (0.0, 0.125, 0.5, 1.0),
        (0.0, 0.125, 0.501, 1.0),
        (0.0, 0.125, 0.502, 1.0),
    ]
    empty = _detections(0)
    assert empty.confidence == 0.0
    assert empty.boxes_xyxy() == []
    assert DetectionResult.from_bytes(empty.to_bytes()) == empty


def test_a_valid_message_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def checked_path(*args: object, **kwargs: object) -> object:
        raise AssertionError("a valid message took the checked path")

    monkeypatch.setattr(_wire, "unpack_map", checked_path)
    monkeypatch.setattr(_wire, "decode_as", checked_path)
    for message in (_detections(), _detections(0), _detections(MAX_DETECTIONS)):
        data = message.to_bytes()
        assert DetectionResult.from_bytes(data) == message
        assert decode_reply(data) == message
        assert decode_replies(data) == ([message], [])


def test_another_key_order_decodes_to_the_same_message() -> None:
    message = _detections()
    data = _packb(dict(reversed(_map(message).items())))
    assert _wire.decode_fast(data, (DetectionResult,)) is None
    for decoded in (DetectionResult.from_bytes(data), decode_reply(data)):
        assert decoded == message
        assert [type(getattr(decoded, f)) for f in decoded.__struct_fields__] == [
            type(getattr(message, f)) for f in message.__struct_fields__
        ]


def test_a_bundle_mixes_results_detections_and_errors() -> None:
    result = Result(
        frame_id="f-0", worker_id="w1", label=3, topk_labels=(3,), topk_scores=(0.9,),
        model="m", model_version="1", queue_ms=0.0, decode_ms=0.0, inference_ms=1.0,
        batch_size=3,
    )  # fmt: skip
    error = ErrorReply(frame_id="f-3", worker_id="w1", code=ErrorCode.BUSY, message="full")
    members = (result, _detections(), _detections(0, frame_id="f-2"), error)
    broken = _map(_detections(frame_id="f-4"))
    broken["boxes"] = [1.5, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    data = ReplyBundle(replies=(*(m.to_bytes() for m in members), _packb(broken))).to_bytes()
    replies, errors = decode_replies(data)
    assert replies == list(members)
    assert [type(r) for r in replies] == [Result, DetectionResult, DetectionResult, ErrorReply]
    assert [(e.reason, e.frame_id) for e in errors] == [("bad_value", "f-4")]


BOX = (0.0, 0.0, 1.0, 1.0)

# Each a change to a valid two-detection reply, the refusal's reason, and what its
# message must name.
REFUSED: dict[str, tuple[dict[str, Any], str, str]] = {
    "x1 > x2": ({"boxes": (*BOX, 0.6, 0.0, 0.4, 1.0)}, "bad_value", "box 1"),
    "y1 > y2": ({"boxes": (0.0, 0.9, 1.0, 0.1, *BOX)}, "bad_value", "box 0"),
    "coordinate 1.5": ({"boxes": (*BOX, 0.0, 0.0, 1.5, 1.0)}, "bad_value", "'boxes[]': 1.5"),
    "negative coordinate": ({"boxes": (-0.1, 0.0, 1.0, 1.0, *BOX)}, "bad_value", "-0.1"),
    "NaN box": ({"boxes": (*BOX, 0.0, math.nan, 1.0, 1.0)}, "bad_value", "'boxes[]': nan"),
    "inf box": ({"boxes": (*BOX, 0.0, 0.0, math.inf, 1.0)}, "bad_value", "'boxes[]': inf"),
    "NaN score": ({"scores": (0.5, math.nan)}, "bad_value", "'scores[]': nan"),
    "NaN first score": ({"scores": (math.nan, 0.5)}, "bad_value", "'scores[]': nan"),
    "inf score": ({"scores": (0.5, math.inf)}, "bad_value", "'scores[]': inf"),
    "score above 1": ({"scores": (0.5, 1.01)}, "bad_value", "'scores[]': 1.01"),
    "negative score": ({"scores": (-0.01, 0.5)}, "bad_value", "'scores[]': -0.01"),
    "one box short": ({"boxes": BOX}, "bad_value", "'boxes' holds 4 coordinates"),
    "a box cut short": ({"boxes": (*BOX, 0.0, 0.0, 1.0)}, "bad_value", "8, not 7"),
    "fewer scores": ({"scores": (0.5,)}, "bad_value", "equal length"),
    "more names": ({"label_names": ("a", "b", "c")}, "bad_value", "equal length"),
    "fewer labels": ({"labels": (1,)}, "bad_value", "equal length"),
    "empty label name": ({"label_names": ("person", "")}, "bad_value", "'label_names[]'"),
    "long label name": ({"label_names": ("p" * 65, "car")}, "bad_value", "1-64 chars"),
    "negative label": ({"labels": (1, -1)}, "bad_value", "label -1"),
    "label past 2**31-1": ({"labels": (2**31, 1)}, "bad_value", f"label {2**31}"),
    "batch of 0": ({"batch_size": 0}, "bad_value", "'batch_size'"),
    "negative timing": ({"decode_ms": -1.0}, "bad_value", "'decode_ms'"),
    "NaN timing": ({"queue_ms": math.nan}, "bad_value", "'queue_ms'"),
    "bad worker id": ({"worker_id": "w/1"}, "bad_value", "'worker_id'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_broken_reply_is_refused_built_or_decoded(case: str) -> None:
    changes, reason, says = REFUSED[case]
    with pytest.raises(ProtocolError) as built:
        _detections(**changes)
    assert (built.value.reason, built.value.frame_id) == (reason, "f-1")
    assert says in str(built.value)
    # The same reply off the wire, through every decoder the edge calls.
    data = _packb({**_map(_detections()), **changes})
    for decode in (DetectionResult.from_bytes, decode_reply, decode_replies):
        with pytest.raises(ProtocolError) as decoded:
            decode(data)
        assert (decoded.value.reason, decoded.value.frame_id) == (reason, "f-1"), decode
        assert says in str(decoded.value), decode


def test_more_than_max_detections_is_oversize() -> None:
    assert DetectionResult.from_bytes(_detections(MAX_DETECTIONS).to_bytes())
    with pytest.raises(ProtocolError, match="101 detections is more than 100") as built:
        _detections(MAX_DETECTIONS + 1)
    assert (built.value.reason, built.value.frame_id) == ("oversize", "f-1")
    obj: dict[str, Any] = _map(_detections(MAX_DETECTIONS))
    for field in ("labels", "label_names", "scores"):
        obj[field] = [*obj[field], obj[field][0]]
    obj["boxes"] = [*obj["boxes"], *BOX]
    with pytest.raises(ProtocolError, match="101 detections") as decoded:
        decode_reply(_packb(obj))
    assert decoded.value.reason == "oversize"


def test_the_checked_path_names_what_is_wrong() -> None:
    base = _map(_detections())
    cases: list[tuple[dict[str, object], str, str]] = [
        ({**base, "labels": ["1", "2"]}, "wrong_type", "field 'labels[]': expected int, got str"),
        ({**base, "scores": "high"}, "wrong_type", "field 'scores': expected array"),
        ({**base, "extra": 1}, "unknown_field", "unknown field(s) 'extra'"),
        ({k: v for k, v in base.items() if k != "boxes"}, "missing_field", "'boxes'"),
        ({**base, "t": "detection"}, "wrong_message_type", "got 'detection'"),
    ]
    for obj, reason, says in cases:
        with pytest.raises(ProtocolError) as refused:
            DetectionResult.from_bytes(_packb(obj))
        assert refused.value.reason == reason, obj
        assert says in str(refused.value), obj
        assert refused.value.frame_id == "f-1", obj


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["labels", "label_names", "scores", "boxes", "batch_size", "x"]),
        st.none()
        | st.floats()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=3)
        | st.lists(st.floats()),
        max_size=3,
    )
)
def test_odd_fields_raise_only_protocol_error(changes: dict[str, object]) -> None:
    data = _packb({**_map(_detections()), **changes})
    with contextlib.suppress(ProtocolError):
        decode_reply(data)


# Frame requests: ``task``.


def test_a_detection_request_round_trips() -> None:
    request = FIXTURES["frame_jpeg_detect"]
    assert isinstance(request, FrameRequest)
    assert request.task is Task.DETECT
    assert request.wants_detection
    data = request.to_bytes()
    assert data == fixture_path("frame_jpeg_detect").read_bytes()
    assert data.endswith(b"\xa4task\xa6detect")  # the last field
    assert FrameRequest.from_bytes(data) == request
    assert decode_frames(data).requests == [request]
    reordered = _packb(dict(reversed(_map(request).items())))
    assert FrameRequest.from_bytes(reordered) == request


@pytest.mark.parametrize(
    "name", sorted(n for n, m in FIXTURES.items() if isinstance(m, FrameRequest) and not m.task)
)
def test_a_request_without_a_task_is_the_bytes_it_was(name: str) -> None:
    data = fixture_path(name).read_bytes()
    request = FrameRequest.from_bytes(data)
    assert request.task is None
    assert not request.wants_detection
    assert request.to_bytes() == data
    assert b"task" not in data


def test_an_explicit_classify_or_an_unknown_task() -> None:
    base = _map(FIXTURES["frame_jpeg"])
    classify = FrameRequest.from_bytes(_packb({**base, "task": "classify"}))
    assert classify.task is Task.CLASSIFY
    assert not classify.wants_detection
    with pytest.raises(ProtocolError, match="'segment' is not one of classify, detect") as bad:
        FrameRequest.from_bytes(_packb({**base, "task": "segment"}))
    assert (bad.value.reason, bad.value.frame_id) == ("bad_value", "run1234-17")
