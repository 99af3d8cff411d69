"""Where a frame's one final decision goes: the ledger, the stats, the metrics and the
events topic. The node decides; the recorder fans the decision out to every sink."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import aiomqtt

from edge_node.ledger import LedgerDetection
from edge_node.ledger_keeper import LedgerKeeper
from edge_node.local_model import LocalOutput
from edge_node.metrics import EdgeMetrics
from edge_node.objects import ObjectWatcher
from edge_node.outcomes import Outcome
from edge_node.sources import CapturedFrame
from edge_node.stats import EdgeStats
from pipeline.errors import TransportError
from pipeline.protocol import Event
from pipeline.service import publish

__all__ = ["Recorder"]


class Recorder:
    def __init__(
        self,
        *,
        edge_id: str,
        run_token: str,
        ledger: LedgerKeeper,
        stats: EdgeStats,
        metrics: EdgeMetrics,
        events_topic: str,
        default_payload: str,
        client: Callable[[], aiomqtt.Client | None],
    ) -> None:
        self._edge_id = edge_id
        self._run_token = run_token  # frame ids stay unique across restarts
        self._ledger = ledger
        self._stats = stats
        self._metrics = metrics
        self._events_topic = events_topic
        self._default_payload = default_payload
        self._client = client
        self.objects: ObjectWatcher | None = None  # task detect: objects from detections

    def captured(self, seq: int, capture_ts: float, true_label: int | None) -> str:
        """Enter a captured frame into the ledger; returns its frame id."""
        frame_id = f"{self._run_token}-{seq}"
        self._ledger.capture(frame_id, seq=seq, capture_ts=capture_ts, true_label=true_label)
        self._stats.record_capture()
        self._metrics.record_capture()
        return frame_id

    async def decided(
        self,
        frame_id: str,
        seq: int,
        outcome: Outcome,
        *,
        local: LocalOutput | None = None,
        payload: str | None = None,
        frame: CapturedFrame | None = None,
    ) -> None:
        """Record the frame's one final decision and announce it on the events topic
        (and, detecting, to the object watcher: ``frame`` is its picture)."""
        now = time.time()
        true_label = self._ledger.decide(
            frame_id,
            outcome.decision,
            decided_ts=now,
            label=outcome.label,
            confidence=outcome.confidence,
            bytes_sent=outcome.bytes_sent,
            rtt_ms=outcome.rtt_ms,
            detail=outcome.detail,
            model=outcome.model,
            local_label=local.class_label if local else None,
            local_confidence=local.confidence if local else None,
            payload=(payload or self._default_payload) if outcome.decision.offloaded else None,
            detections=_ledger_detections(outcome),
        )
        self._stats.record_decision(
            outcome.decision, rtt_ms=outcome.rtt_ms, bytes_sent=outcome.bytes_sent
        )
        self._metrics.record_decision(
            outcome.decision, rtt_ms=outcome.rtt_ms, bytes_sent=outcome.bytes_sent
        )
        if self.objects is not None:
            await self.objects.decided(seq, outcome, frame)
        client = self._client()
        if client is None:
            return  # events are informational; the ledger is the record
        event = Event(
            edge_id=self._edge_id,
            frame_id=frame_id,
            seq=seq,
            ts=now,
            decision=outcome.decision,
            bytes_sent=outcome.bytes_sent,
            label=outcome.label,
            confidence=outcome.confidence,
            model=outcome.model,
            latency_ms=outcome.rtt_ms,
            true_label=true_label,
        )
        # QoS 0, and a broken connection must not turn a decided frame into an exception.
        with contextlib.suppress(TransportError):
            await publish(client, self._events_topic, event.to_bytes(), qos=0)


def _ledger_detections(outcome: Outcome) -> list[LedgerDetection] | None:
    """The answer's objects as the ledger keeps them; a counted one has no box."""
    if outcome.detections is None:
        return None
    found: list[LedgerDetection] = [(d.name, d.score, d.box) for d in outcome.detections]
    found += [(label, score, None) for label, score in outcome.counted or ()]
    return found
