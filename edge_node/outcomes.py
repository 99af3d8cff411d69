"""A frame's final decision, and how a worker's reply maps onto one."""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.local_model import LocalOutput
from pipeline.detection import Detection
from pipeline.protocol import Decision, DetectionResult, ErrorCode, Reply, Result

__all__ = ["BUSY_CODES", "Outcome", "decision_for", "detections_of", "with_local_answer"]

BUSY_CODES = frozenset({ErrorCode.BUSY, ErrorCode.SHUTTING_DOWN})


@dataclass(frozen=True, slots=True)
class Outcome:
    """A frame's final decision and what goes with it into the ledger and the event."""

    decision: Decision
    label: int | None = None
    confidence: float | None = None
    model: str | None = None
    bytes_sent: int = 0
    rtt_ms: float | None = None
    detail: str | None = None
    detections: tuple[Detection, ...] | None = None  # task detect: the answer's objects
    # A specialized model's count: (label, presence) per object, boxes unknown.
    counted: tuple[tuple[str, float], ...] | None = None


def with_local_answer(
    decision: Decision,
    local: LocalOutput | None,
    local_name: str | None,
    *,
    bytes_sent: int = 0,
    detail: str | None = None,
) -> Outcome:
    """``decision`` carrying the local model's answer, when the edge has one."""
    if local is None:
        return Outcome(decision, bytes_sent=bytes_sent, detail=detail)
    return Outcome(
        decision,
        label=local.class_label,
        confidence=local.confidence,
        model=local_name,
        bytes_sent=bytes_sent,
        detail=detail,
        detections=local.detections,
        counted=local.counted,
    )


def detections_of(reply: DetectionResult) -> tuple[Detection, ...]:
    return tuple(
        Detection(label, name, score, box)
        for label, name, score, box in zip(
            reply.labels, reply.label_names, reply.scores, reply.boxes_xyxy(), strict=True
        )
    )


def decision_for(reply: Reply) -> Decision:
    if isinstance(reply, Result | DetectionResult):
        return Decision.CLOUD
    if reply.code in BUSY_CODES:
        return Decision.LOCAL_AFTER_BUSY
    if reply.code is ErrorCode.EXPIRED:
        return Decision.LOCAL_AFTER_TIMEOUT
    return Decision.LOCAL_AFTER_ERROR
