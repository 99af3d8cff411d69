"""Retained availability and load messages of workers and edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.protocol import _wire
from pipeline.protocol._checks import check_id, check_non_negative

__all__ = ["EdgeStatus", "WorkerStatus"]

MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStatus(_wire.WireMessage):
    """Published retained on ``{prefix}/status/workers/{worker_id}``; the last-will is
    the same message with ``online=False``, so a dead worker is marked offline."""

    MESSAGE_TYPE: ClassVar[str] = "worker_status"
    MAX_BYTES: ClassVar[int] = MAX_STATUS_BYTES

    worker_id: str
    online: bool
    ts: float
    device: str = "cpu"
    models: tuple[str, ...] = ()
    queue_depth: int = 0
    queue_capacity: int = 0
    mean_batch_size: float = 0.0
    latency_ms_per_image: float = 0.0
    throughput_fps: float = 0.0
    frames_done: int = 0
    frames_rejected: int = 0

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


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeStatus(_wire.WireMessage):
    """Published retained on ``{prefix}/status/edges/{edge_id}``, with a last-will."""

    MESSAGE_TYPE: ClassVar[str] = "edge_status"
    MAX_BYTES: ClassVar[int] = MAX_STATUS_BYTES

    edge_id: str
    online: bool
    ts: float
    captured: int = 0
    in_flight: int = 0
    offloaded: int = 0
    decided: int = 0
    skipped: int = 0
    dropped: int = 0
    bytes_sent: int = 0
    # Over the edge's recent window (its stats window, ~10 s):
    capture_fps: float = 0.0
    skipped_fps: float = 0.0
    offload_share: float = 0.0  # offloaded / decided
    rtt_ms_p50: float | None = None
    connected: bool = True  # False while the edge decides locally, reconnecting

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
            }
        )
