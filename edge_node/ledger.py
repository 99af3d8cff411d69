"""The edge's ledger: every captured frame gets exactly one final decision.

Memory is bounded by what is undecided (at most the frames in flight) plus one float
per offload round trip; every decision is also appended to an optional JSON-lines file,
flushed per line, so a crash loses at most the frames in flight.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from pipeline.errors import CamoffloadError
from pipeline.protocol import Decision

__all__ = ["Ledger", "LedgerCounts", "LedgerError", "LedgerSummary"]


class LedgerError(CamoffloadError):
    """A frame was captured twice or decided twice (a bug, never input's fault)."""


@dataclass(frozen=True, slots=True)
class _Captured:
    seq: int
    capture_ts: float
    true_label: int | None


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    captured: int
    decided: int
    offloaded: int


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    captured: int
    decided: int
    undecided: int
    offloaded: int
    by_decision: dict[str, int]
    rtt_ms_p50: float | None
    rtt_ms_p95: float | None

    @property
    def answered(self) -> int:
        return self.by_decision.get(Decision.CLOUD.value, 0)

    @property
    def timed_out(self) -> int:
        return self.by_decision.get(Decision.LOCAL_AFTER_TIMEOUT.value, 0)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[rank]


class Ledger:
    def __init__(self, path: str | Path | None = None) -> None:
        self._undecided: dict[str, _Captured] = {}
        self._counts: Counter[Decision] = Counter()
        self._captured = 0
        self._rtts_ms = array("d")
        self._file: IO[str] | None = None
        if path is not None:
            self._file = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def capture(
        self, frame_id: str, *, seq: int, capture_ts: float, true_label: int | None
    ) -> None:
        if frame_id in self._undecided:
            raise LedgerError(f"frame {frame_id} captured twice")
        self._undecided[frame_id] = _Captured(seq, capture_ts, true_label)
        self._captured += 1

    def decide(
        self,
        frame_id: str,
        decision: Decision,
        *,
        decided_ts: float,
        label: int | None = None,
        confidence: float | None = None,
        bytes_sent: int = 0,
        rtt_ms: float | None = None,
        detail: str | None = None,
    ) -> int | None:
        """Record the final decision; returns the frame's true label, if known."""
        captured = self._undecided.pop(frame_id, None)
        if captured is None:
            raise LedgerError(f"frame {frame_id} is not awaiting a decision (unknown or decided)")
        self._counts[decision] += 1
        if rtt_ms is not None:
            self._rtts_ms.append(rtt_ms)
        if self._file is not None:
            record = {
                "frame_id": frame_id,
                **asdict(captured),
                "decision": decision.value,
                "decided_ts": decided_ts,
                "label": label,
                "confidence": confidence,
                "bytes_sent": bytes_sent,
                "rtt_ms": rtt_ms,
                "detail": detail,
            }
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        return captured.true_label

    @property
    def undecided(self) -> list[str]:
        return list(self._undecided)

    def counts(self) -> LedgerCounts:
        """Cheap running totals (no sorting), for periodic status messages."""
        return LedgerCounts(
            captured=self._captured,
            decided=sum(self._counts.values()),
            offloaded=sum(n for d, n in self._counts.items() if d.offloaded),
        )

    def summary(self) -> LedgerSummary:
        rtts = sorted(self._rtts_ms)
        decided = sum(self._counts.values())
        return LedgerSummary(
            captured=self._captured,
            decided=decided,
            undecided=len(self._undecided),
            offloaded=sum(n for d, n in self._counts.items() if d.offloaded),
            by_decision={d.value: self._counts[d] for d in Decision if self._counts[d]},
            rtt_ms_p50=_percentile(rtts, 50),
            rtt_ms_p95=_percentile(rtts, 95),
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
