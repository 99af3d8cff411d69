"""The final decision an edge publishes for every frame on ``{prefix}/events/{edge_id}``."""

from __future__ import annotations

import enum
from typing import ClassVar, Literal

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id, check_non_negative, check_range, safe_id
from pipeline.protocol._wire import written

__all__ = ["Decision", "Event"]

MAX_EVENT_BYTES = 64 * 1024


class Decision(enum.StrEnum):
    """How a frame's answer was reached; every captured frame gets exactly one."""

    LOCAL = "local"  # the edge's own model answered
    CLOUD = "cloud"  # a worker answered in time
    LOCAL_AFTER_TIMEOUT = "local-after-timeout"  # no reply before the deadline
    LOCAL_AFTER_BUSY = "local-after-busy"  # the worker refused: queue full / stopping
    LOCAL_AFTER_ERROR = "local-after-error"  # the worker answered with an error
    SKIPPED = "skipped"  # no motion: not classified at all
    DROPPED = "dropped"  # the pipeline fell behind and the frame was discarded

    @property
    def offloaded(self) -> bool:
        return self in _OFFLOADED


_OFFLOADED = frozenset(
    {
        Decision.CLOUD,
        Decision.LOCAL_AFTER_TIMEOUT,
        Decision.LOCAL_AFTER_BUSY,
        Decision.LOCAL_AFTER_ERROR,
    }
)


class Event(_wire.WireMessage, frozen=True, kw_only=True):
    """One frame's final decision. ``label`` is ``None`` when nobody could answer
    (an edge with no local model whose offload failed, a skipped or dropped frame)."""

    MESSAGE_TYPE: ClassVar[str] = "event"
    MAX_BYTES: ClassVar[int] = MAX_EVENT_BYTES

    _t: Literal["event"] = _wire.type_field(MESSAGE_TYPE)
    edge_id: _wire.Str
    frame_id: _wire.Str
    seq: int
    ts: _wire.Float
    decision: Decision
    bytes_sent: int = written(0)
    label: int | None = None
    confidence: _wire.Float | None = None
    model: _wire.Str | None = None
    latency_ms: _wire.Float | None = None
    true_label: int | None = None

    def __post_init__(self) -> None:
        fid = safe_id(self.frame_id)
        check_id(self.edge_id, "edge_id", fid)
        check_id(self.frame_id, "frame_id", fid)
        check_range(self.confidence, "confidence", 0.0, 1.0, fid)
        check_non_negative({"seq": self.seq, "bytes_sent": self.bytes_sent}, fid)
        if self.latency_ms is not None and self.latency_ms < 0:
            raise ProtocolError("field 'latency_ms' is negative", reason="bad_value", frame_id=fid)
