"""What a cell measured, computed from its ledger records and the reference labels.

Every captured frame counts: a frame decided without a label (a drop, or a fallback
with no local model) is a wrong answer, not a missing one, so a strategy cannot look
accurate by answering less. Latency is capture to final decision, for every frame.

``timely_accuracy`` is the share of frames answered correctly *within the suite's
latency objective* (``slo_ms``): for a security camera a late alert is a missed one, so
this one number is what a strategy "wins" on; plain ``accuracy`` is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_node.ledger_rows import FrameRecord
from pipeline.protocol import Decision

__all__ = ["CellMeasures", "FrameRow", "frame_rows", "measure"]

_OFFLOADED = frozenset(d.value for d in Decision if d.offloaded)


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One frame of one cell, as stored in frames.jsonl."""

    seq: int
    decision: str
    correct: bool
    latency_ms: float
    bytes_sent: int
    rtt_ms: float | None
    local_confidence: float | None


@dataclass(frozen=True, slots=True)
class CellMeasures:
    frames: int
    accuracy: float
    timely_accuracy: float  # correct and decided within slo_ms
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    offload_share: float  # frames sent to a worker
    cloud_share: float  # frames answered by a worker
    local_share: float  # frames answered by the edge's own model (incl. fallbacks)
    timeouts: int
    refused: int  # busy, expired, shutting down, errors
    dropped: int
    bytes_per_frame: float
    rtt_p50_ms: float | None
    undecided: int
    # Capture to decision over the frames that were sent (what offloading costs them),
    # where the whole-run percentiles are mostly the local answers' own.
    sent_latency_p50_ms: float | None = None
    sent_latency_p95_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame_rows(records: Sequence[FrameRecord], labels: Sequence[int]) -> list[FrameRow]:
    rows = []
    for record in records:
        if record.decision is None or record.latency_ms is None:
            continue
        truth = labels[record.seq] if record.seq < len(labels) else None
        rows.append(
            FrameRow(
                seq=record.seq,
                decision=record.decision,
                correct=record.label is not None and record.label == truth,
                latency_ms=record.latency_ms,
                bytes_sent=record.bytes_sent or 0,
                rtt_ms=record.rtt_ms,
                local_confidence=record.local_confidence,
            )
        )
    return rows


def measure(
    records: Sequence[FrameRecord], labels: Sequence[int], *, slo_ms: float
) -> CellMeasures:
    rows = frame_rows(records, labels)
    n = len(records)
    if not rows:
        nan = float("nan")
        return CellMeasures(n, 0.0, 0.0, nan, nan, nan, nan, 0.0, 0.0, 0.0, 0, 0, 0, 0.0, None, n)
    latency = np.array([r.latency_ms for r in rows])
    rtts = [r.rtt_ms for r in rows if r.rtt_ms is not None]
    sent = [r.latency_ms for r in rows if r.bytes_sent > 0]
    decisions = [r.decision for r in rows]

    def share(predicate: frozenset[str]) -> float:
        return sum(1 for d in decisions if d in predicate) / n

    local_kinds = frozenset(
        d.value
        for d in (
            Decision.LOCAL,
            Decision.LOCAL_AFTER_TIMEOUT,
            Decision.LOCAL_AFTER_BUSY,
            Decision.LOCAL_AFTER_ERROR,
        )
    )
    refused_kinds = frozenset({Decision.LOCAL_AFTER_BUSY.value, Decision.LOCAL_AFTER_ERROR.value})
    return CellMeasures(
        frames=n,
        accuracy=sum(1 for r in rows if r.correct) / n,
        timely_accuracy=sum(1 for r in rows if r.correct and r.latency_ms <= slo_ms) / n,
        latency_p50_ms=float(np.percentile(latency, 50)),
        latency_p95_ms=float(np.percentile(latency, 95)),
        latency_p99_ms=float(np.percentile(latency, 99)),
        latency_mean_ms=float(latency.mean()),
        offload_share=share(_OFFLOADED),
        cloud_share=share(frozenset({Decision.CLOUD.value})),
        local_share=share(local_kinds),
        timeouts=decisions.count(Decision.LOCAL_AFTER_TIMEOUT.value),
        refused=sum(1 for d in decisions if d in refused_kinds),
        dropped=decisions.count(Decision.DROPPED.value),
        bytes_per_frame=sum(r.bytes_sent for r in rows) / n,
        rtt_p50_ms=float(np.percentile(rtts, 50)) if rtts else None,
        undecided=n - len(rows),
        sent_latency_p50_ms=float(np.percentile(sent, 50)) if sent else None,
        sent_latency_p95_ms=float(np.percentile(sent, 95)) if sent else None,
    )
