"""What a security camera's run got right, measured against a reference detector.

The reference is the cloud detector on every full-quality decoded frame, computed once
and offline (as DDS, AccMPEG and Reducto measure accuracy): a strategy is judged on how
close it comes to what the best model it could call would say with nothing in the way.
Both sides are read the same way, through the detections that reach
:data:`camoffload.security.COUNT_MIN_SCORE`, one frame at a time:

- person presence: a frame is positive when it has at least one person; precision,
  recall and F1 over the frames (what an alarm on "someone is there" would get right);
- count error: mean absolute difference in people per frame;
- vehicle presence recall: the edge detector sees only people, so this is what the
  cascade (and only the cloud) can bring back.

Every frame offered counts: a frame never decided, dropped, or answered with nothing
after a timeout is a frame with no detections, so answering less cannot look better.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camoffload.security import COUNT_MIN_SCORE
from edge_node.ledger_rows import FrameRecord
from pipeline.detection import VEHICLES
from pipeline.errors import CamoffloadError
from pipeline.protocol import Decision

__all__ = [
    "Detections",
    "HandAgreement",
    "Presence",
    "SecurityMeasures",
    "hand_agreement",
    "kept",
    "measure_security",
    "people",
    "presence",
    "read_hand_counts",
    "vehicles",
]

Detections = Sequence[Mapping[str, object]]  # the ledger's form: label, score, box

_OFFLOADED = frozenset(d.value for d in Decision if d.offloaded)


def kept(detections: Detections | None) -> list[Mapping[str, object]]:
    """The detections that count: score >= COUNT_MIN_SCORE (None: nothing found)."""
    out = []
    for d in detections or ():
        score = d.get("score")
        if isinstance(score, float | int) and float(score) >= COUNT_MIN_SCORE:
            out.append(d)
    return out


def people(detections: Detections | None) -> int:
    return sum(1 for d in kept(detections) if d.get("label") == "person")


def vehicles(detections: Detections | None) -> int:
    return sum(1 for d in kept(detections) if d.get("label") in VEHICLES)


@dataclass(frozen=True, slots=True)
class Presence:
    """A per-frame yes/no against the reference's yes/no."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float | None:
        """None when nothing was called positive: no alarm is neither right nor wrong."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """None when the reference has no positive frame to find."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        # 2TP / (2TP + FP + FN): defined (as 0) even where precision is not.
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None


def presence(ours: Sequence[bool], truth: Sequence[bool]) -> Presence:
    if len(ours) != len(truth):
        raise ValueError(f"{len(ours)} answers for {len(truth)} reference frames")
    pairs = Counter(zip(ours, truth, strict=True))
    return Presence(
        tp=pairs[True, True], fp=pairs[True, False], fn=pairs[False, True], tn=pairs[False, False]
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityMeasures:
    frames: int  # frames offered: the reference's length
    person_precision: float | None
    person_recall: float | None
    person_f1: float | None
    count_mae: float  # mean |our people - reference people| per frame
    vehicle_recall: float | None  # None: no reference frame has a vehicle
    vehicle_frames: int  # reference frames with a vehicle
    offload_share: float  # frames sent to a worker, of all frames
    bytes_per_frame: float  # bytes sent over all frames (kept ones send 0)
    latency_p50_ms: float | None  # capture to decision, every decided frame
    latency_p95_ms: float | None
    sent_latency_p50_ms: float | None  # the same over the frames that were sent
    sent_latency_p95_ms: float | None
    decided_once: int  # frames with exactly one decided ledger row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_security(
    records: Iterable[FrameRecord], reference: Sequence[Detections]
) -> SecurityMeasures:
    """``records`` (one run's ledger) against ``reference`` (frame i's detections by the
    reference detector, for every frame offered); a record's ``seq`` is its frame index."""
    frames = len(reference)
    by_seq: dict[int, list[FrameRecord]] = {}
    for record in records:
        if 0 <= record.seq < frames:
            by_seq.setdefault(record.seq, []).append(record)
    answers: list[Detections | None] = []
    latencies: list[float] = []
    sent_latencies: list[float] = []
    offloaded = sent_bytes = decided_once = 0
    for seq in range(frames):
        decided = [r for r in by_seq.get(seq, []) if r.decision is not None]
        decided_once += len(decided) == 1
        if not decided:
            answers.append(None)
            continue
        record = decided[0]
        answers.append(record.detections)
        sent_bytes += record.bytes_sent or 0
        latency = record.latency_ms
        if latency is not None:
            latencies.append(latency)
        if record.decision in _OFFLOADED:
            offloaded += 1
            if latency is not None:
                sent_latencies.append(latency)
    person = presence([people(a) > 0 for a in answers], [people(r) > 0 for r in reference])
    with_vehicle = [i for i, r in enumerate(reference) if vehicles(r) > 0]
    vehicle_hits = sum(1 for i in with_vehicle if vehicles(answers[i]) > 0)
    errors = [abs(people(a) - people(r)) for a, r in zip(answers, reference, strict=True)]
    return SecurityMeasures(
        frames=frames,
        person_precision=person.precision,
        person_recall=person.recall,
        person_f1=person.f1,
        count_mae=float(np.mean(errors)) if errors else 0.0,
        vehicle_recall=vehicle_hits / len(with_vehicle) if with_vehicle else None,
        vehicle_frames=len(with_vehicle),
        offload_share=offloaded / frames if frames else 0.0,
        bytes_per_frame=sent_bytes / frames if frames else 0.0,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
        sent_latency_p50_ms=_percentile(sent_latencies, 50),
        sent_latency_p95_ms=_percentile(sent_latencies, 95),
        decided_once=decided_once,
    )


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass(frozen=True, slots=True)
class HandAgreement:
    """How far the reference is from people counted by hand, over the frames both have."""

    frames: int
    count_mae: float
    presence_agreement: float  # share of frames where both say "someone" or both "no one"


def hand_agreement(
    reference: Sequence[Detections], hand: Mapping[int, int]
) -> HandAgreement | None:
    """None when no hand-counted frame falls inside ``reference``."""
    shared = sorted(i for i in hand if 0 <= i < len(reference))
    if not shared:
        return None
    counts = [people(reference[i]) for i in shared]
    truth = [hand[i] for i in shared]
    return HandAgreement(
        frames=len(shared),
        count_mae=float(np.mean([abs(c - t) for c, t in zip(counts, truth, strict=True)])),
        presence_agreement=float(
            np.mean([(c > 0) == (t > 0) for c, t in zip(counts, truth, strict=True)])
        ),
    )


def read_hand_counts(path: Path) -> dict[int, int]:
    """``frame,people`` rows (frame: 0-based index into the video) as frame -> people."""
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise CamoffloadError(f"cannot read hand counts {path}: {exc}") from exc
    counts: dict[int, int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            frame, count = int(row["frame"]), int(row["people"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CamoffloadError(
                f"{path}:{line}: expected integer columns frame,people, got {row}"
            ) from exc
        if frame < 0 or count < 0:
            raise CamoffloadError(f"{path}:{line}: frame and people must be >= 0")
        counts[frame] = count
    return counts
