"""Retained availability and load messages of workers and edges."""

from __future__ import annotations

from typing import ClassVar, Literal

from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id, check_non_negative
from pipeline.protocol._wire import written

__all__ = ["EdgeStatus", "WorkerStatus"]

MAX_STATUS_BYTES = 64 * 1024


class WorkerStatus(_wire.WireMessage, frozen=True, kw_only=True):
    """Published retained on ``{prefix}/status/workers/{worker_id}``; the last-will is
    the same message with ``online=False``, so a dead worker is marked offline."""

    MESSAGE_TYPE: ClassVar[str] = "worker_status"
    MAX_BYTES: ClassVar[int] = MAX_STATUS_BYTES

    _t: Literal["worker_status"] = _wire.type_field(MESSAGE_TYPE)
    worker_id: _wire.Str
    online: bool
    ts: _wire.Float
    device: _wire.Str = written("cpu")
    models: _wire.Strs = written(())
    queue_depth: int = written(0)
    queue_capacity: int = written(0)
    mean_batch_size: _wire.Float = written(0.0)
    latency_ms_per_image: _wire.Float = written(0.0)
    throughput_fps: _wire.Float = written(0.0)
    frames_done: int = written(0)
    frames_rejected: int = written(0)

    def __post_init__(self) -> None:
        check_id(self.worker_id, "worker_id")
        for model in self.models:
            check_id(model, "models[]")
        check_non_negative(
            {
                "queue_depth": self.queue_depth,
                "queue_capacity": self.queue_capacity,
                "mean_batch_size": self.mean_batch_size,
                "latency_ms_per_image": self.latency_ms_per_image,
                "throughput_fps": self.throughput_fps,
                "frames_done": self.frames_done,
                "frames_rejected": self.frames_rejected,
            }
        )


class EdgeStatus(_wire.WireMessage, frozen=True, kw_only=True):
    """Published retained on ``{prefix}/status/edges/{edge_id}``, with a last-will."""

    MESSAGE_TYPE: ClassVar[str] = "edge_status"
    MAX_BYTES: ClassVar[int] = MAX_STATUS_BYTES

    _t: Literal["edge_status"] = _wire.type_field(MESSAGE_TYPE)
    edge_id: _wire.Str
    online: bool
    ts: _wire.Float
    captured: int = written(0)
    in_flight: int = written(0)
    offloaded: int = written(0)
    decided: int = written(0)
    skipped: int = written(0)
    dropped: int = written(0)
    bytes_sent: int = written(0)
    # Over the edge's recent window (its stats window, ~10 s):
    capture_fps: _wire.Float = written(0.0)
    skipped_fps: _wire.Float = written(0.0)
    offload_share: _wire.Float = written(0.0)  # offloaded / decided
    rtt_ms_p50: _wire.Float | None = None
    connected: bool = written(True)  # False while the edge decides locally, reconnecting
    # Added after the first release, so optional: an older edge leaves them out.
    rtt_ms_p95: _wire.Float | None = None
    bytes_per_s: _wire.Float | None = None

    def __post_init__(self) -> None:
        check_id(self.edge_id, "edge_id")
        check_non_negative(
            {
                "captured": self.captured,
                "in_flight": self.in_flight,
                "offloaded": self.offloaded,
                "decided": self.decided,
                "skipped": self.skipped,
                "dropped": self.dropped,
                "bytes_sent": self.bytes_sent,
                "capture_fps": self.capture_fps,
                "skipped_fps": self.skipped_fps,
                "offload_share": self.offload_share,
                "rtt_ms_p50": self.rtt_ms_p50 or 0.0,
                "rtt_ms_p95": self.rtt_ms_p95 or 0.0,
                "bytes_per_s": self.bytes_per_s or 0.0,
            }
        )
