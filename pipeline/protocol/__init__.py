"""The wire protocol: versioned MessagePack envelopes with strict decoding.

Every message type is a frozen :class:`msgspec.Struct` with ``to_bytes()`` /
``from_bytes()`` (see ``_wire``); decoding validates everything and raises
:class:`pipeline.errors.ProtocolError`.
"""

from pipeline.protocol._wire import MAX_MESSAGE_BYTES, SCHEMA_VERSION
from pipeline.protocol.bundles import (
    MAX_BUNDLE_FRAMES,
    ArrivedFrames,
    FrameBundle,
    ReplyBundle,
    decode_frames,
    decode_replies,
)
from pipeline.protocol.columns import ResultColumns, ResultRow, frames_per_message
from pipeline.protocol.detections import MAX_DETECTIONS, DetectionResult
from pipeline.protocol.events import Decision, Event
from pipeline.protocol.frames import (
    MAX_PAYLOAD_BYTES,
    FrameRequest,
    PayloadCodec,
    Task,
    TensorDType,
)
from pipeline.protocol.replies import ErrorCode, ErrorReply, Reply, Result, decode_reply
from pipeline.protocol.status import EdgeStatus, WorkerStatus

__all__ = [
    "MAX_BUNDLE_FRAMES",
    "MAX_DETECTIONS",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "ArrivedFrames",
    "Decision",
    "DetectionResult",
    "EdgeStatus",
    "ErrorCode",
    "ErrorReply",
    "Event",
    "FrameBundle",
    "FrameRequest",
    "PayloadCodec",
    "Reply",
    "ReplyBundle",
    "Result",
    "ResultColumns",
    "ResultRow",
    "Task",
    "TensorDType",
    "WorkerStatus",
    "decode_frames",
    "decode_replies",
    "decode_reply",
    "frames_per_message",
]
