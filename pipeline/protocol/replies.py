"""What a worker sends back on the edge's result topic: a result or an error."""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import (
    MAX_LABEL,
    MAX_REPLY_BYTES,
    check_id,
    check_non_negative,
    check_range,
    safe_id,
)
from pipeline.protocol.detections import DetectionResult

__all__ = [
    "MAX_REPLY_BYTES",
    "REPLY_TYPES",
    "ErrorCode",
    "ErrorReply",
    "Reply",
    "Result",
    "decode_reply",
    "reply_from_map",
]

MAX_ERROR_MESSAGE_CHARS = 1024


class Result(_wire.WireMessage, frozen=True, kw_only=True):
    """A worker's answer for one frame, with the timings the edge needs to adapt."""

    MESSAGE_TYPE: ClassVar[str] = "result"
    MAX_BYTES: ClassVar[int] = MAX_REPLY_BYTES

    _t: Literal["result"] = _wire.type_field(MESSAGE_TYPE)
    frame_id: _wire.Str
    worker_id: _wire.Str
    label: int
    topk_labels: _wire.Ints
    topk_scores: _wire.Floats
    model: _wire.Str
    model_version: _wire.Str
    queue_ms: _wire.Float
    decode_ms: _wire.Float
    inference_ms: _wire.Float
    batch_size: int
    label_name: _wire.Str | None = None

    def __post_init__(self) -> None:
        fid = safe_id(self.frame_id)
        if fid is None:
            check_id(self.frame_id, "frame_id")  # raises: the id is not valid
        check_id(self.worker_id, "worker_id", fid)
        if len(self.topk_labels) != len(self.topk_scores) or not self.topk_labels:
            raise ProtocolError(
                "'topk_labels' and 'topk_scores' must be non-empty and of equal length",
                reason="bad_value",
                frame_id=fid,
            )
        # min/max first: every reply passes through here, and they run in C.
        if min(self.topk_scores) < 0.0 or max(self.topk_scores) > 1.0:
            for score in self.topk_scores:
                check_range(score, "topk_scores[]", 0.0, 1.0, fid)
        # Class indices: a label that no model could produce (negative, or past what an
        # edge's SQLite ledger stores) is a malformed reply, refused here at the wire.
        labels = self.topk_labels
        if not 0 <= self.label <= MAX_LABEL or min(labels) < 0 or max(labels) > MAX_LABEL:
            for label in (self.label, *labels):
                if not 0 <= label <= MAX_LABEL:
                    raise ProtocolError(
                        f"label {label} is not a class index (0..{MAX_LABEL})",
                        reason="bad_value",
                        frame_id=fid,
                    )
        if self.batch_size < 1:
            raise ProtocolError("'batch_size' must be >= 1", reason="bad_value", frame_id=fid)
        if self.queue_ms < 0 or self.decode_ms < 0 or self.inference_ms < 0:
            check_non_negative(
                {
                    "queue_ms": self.queue_ms,
                    "decode_ms": self.decode_ms,
                    "inference_ms": self.inference_ms,
                },
                fid,
            )

    @property
    def confidence(self) -> float:
        return self.topk_scores[0]


class ErrorCode(enum.StrEnum):
    BAD_REQUEST = "bad_request"  # the request could not be decoded or is inconsistent
    UNKNOWN_MODEL = "unknown_model"  # this worker does not serve the requested model
    EXPIRED = "expired"  # the deadline passed (or would pass) before an answer
    BUSY = "busy"  # the worker's queue is full: back off
    SHUTTING_DOWN = "shutting_down"  # the worker is stopping and takes no new work
    INTERNAL = "internal"  # decoding or inference failed on the worker's side


class ErrorReply(_wire.WireMessage, frozen=True, kw_only=True):
    """A worker's refusal, with a code the edge can act on and a human message.

    ``frame_id`` is ``None`` only when the request was too broken to read its id.
    """

    MESSAGE_TYPE: ClassVar[str] = "error"
    MAX_BYTES: ClassVar[int] = MAX_REPLY_BYTES

    _t: Literal["error"] = _wire.type_field(MESSAGE_TYPE)
    worker_id: _wire.Str
    code: ErrorCode
    message: _wire.Str
    frame_id: _wire.Str | None = None

    def __post_init__(self) -> None:
        fid = safe_id(self.frame_id)
        if self.frame_id is not None:
            check_id(self.frame_id, "frame_id", fid)
        check_id(self.worker_id, "worker_id", fid)
        if len(self.message) > MAX_ERROR_MESSAGE_CHARS:
            raise ProtocolError("error 'message' is too long", reason="oversize", frame_id=fid)


Reply = Result | DetectionResult | ErrorReply
REPLY_TYPES: tuple[type[Reply], ...] = (Result, DetectionResult, ErrorReply)
_BY_MESSAGE_TYPE: dict[str, type[Reply]] = {cls.MESSAGE_TYPE: cls for cls in REPLY_TYPES}


def decode_reply(data: bytes | bytearray | memoryview) -> Reply:
    """Decode whatever arrived on a result topic: a :class:`Result`, a
    :class:`DetectionResult` or an :class:`ErrorReply`."""
    reply = _wire.decode_fast(data, REPLY_TYPES)
    if reply is None:
        reply = reply_from_map(_wire.unpack_map(data, max_bytes=MAX_REPLY_BYTES))
    return reply


def reply_from_map(obj: dict[str, object]) -> Reply:
    """Validate an already unpacked reply (see :func:`_wire.unpack_map`).

    Dispatched on ``"t"``; an unknown type is refused as a ``result`` would refuse it
    (``wrong_message_type``), as it always has been."""
    cls = _BY_MESSAGE_TYPE.get(_wire.message_type(obj), Result)
    reply: Reply = _wire.decode_as(cls, obj)
    return reply
