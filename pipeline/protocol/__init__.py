"""The wire protocol: versioned MessagePack envelopes with strict decoding.

Every message type is a frozen dataclass with ``to_bytes()`` / ``from_bytes()``;
decoding validates everything and raises :class:`pipeline.errors.ProtocolError`.
"""

from pipeline.protocol._wire import MAX_MESSAGE_BYTES, SCHEMA_VERSION
from pipeline.protocol.events import Decision, Event
from pipeline.protocol.frames import MAX_PAYLOAD_BYTES, FrameRequest, PayloadCodec, TensorDType
from pipeline.protocol.replies import ErrorCode, ErrorReply, Reply, Result, decode_reply
from pipeline.protocol.status import EdgeStatus, WorkerStatus

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "Decision",
    "EdgeStatus",
    "ErrorCode",
    "ErrorReply",
    "Event",
    "FrameRequest",
    "PayloadCodec",
    "Reply",
    "Result",
    "TensorDType",
    "WorkerStatus",
    "decode_reply",
]
