"""What a security camera's user asks of a run: who and what was in view, when, and a
picture of it. Read from the ledger, which keeps each frame's detections.

A detection counts when its score reaches ``COUNT_MIN_SCORE``: the cloud detector's
answers keep nothing lower, and the edge keeps a frame only when each of its
detections is sure (>= edge.detect_high) or noise (< edge.detect_low), so the one
threshold reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_node.ledger_rows import FrameRecord
from pipeline.codecs import Image
from pipeline.detection import VEHICLES
from pipeline.errors import SourceError

__all__ = [
    "COUNT_MIN_SCORE",
    "SecuritySummary",
    "counted",
    "draw_detections",
    "format_security",
    "frame_at",
]

COUNT_MIN_SCORE = 0.35


def counted(record: FrameRecord) -> list[dict[str, object]]:
    return [
        d
        for d in record.detections or []
        if isinstance(d.get("score"), float | int) and float(d["score"]) >= COUNT_MIN_SCORE  # type: ignore[arg-type]
    ]


@dataclass(frozen=True, slots=True)
class SecuritySummary:
    frames: int
    fps: float | None
    people: tuple[int, ...]  # per frame, in capture order
    vehicles: tuple[int, ...]
    busiest_seq: int | None  # the frame with most people (then vehicles); None: empty

    @classmethod
    def from_records(cls, records: Iterable[FrameRecord], fps: float | None) -> SecuritySummary:
        people, vehicles, seqs = [], [], []
        for record in records:
            found = counted(record)
            people.append(sum(1 for d in found if d.get("label") == "person"))
            vehicles.append(sum(1 for d in found if d.get("label") in VEHICLES))
            seqs.append(record.seq)
        busiest = None
        if any(people) or any(vehicles):
            best = max(range(len(seqs)), key=lambda i: (people[i], vehicles[i]))
            busiest = seqs[best]
        return cls(len(seqs), fps, tuple(people), tuple(vehicles), busiest)

    def when(self, counts: Sequence[int]) -> str:
        frames = [i for i, n in enumerate(counts) if n]
        if not frames:
            return "never"
        first, last = frames[0], frames[-1]
        if self.fps:
            return f"{first / self.fps:.1f}-{last / self.fps:.1f} s ({len(frames)} frames)"
        return f"frames {first}-{last} ({len(frames)} frames)"


def format_security(
    summary: SecuritySummary, snapshot: Path | None, *, offloaded: int, bytes_sent: int
) -> str:
    """The security lines under the demo's summary table."""
    share = offloaded / summary.frames if summary.frames else 0.0
    per_frame = bytes_sent / summary.frames if summary.frames else 0.0
    rows = [
        ("sent to the cloud", f"{offloaded} of {summary.frames} frames ({share:.0%}), "
         f"{per_frame / 1000:.1f} kB a frame"),
        ("people in view", f"up to {max(summary.people, default=0)} at once, "
         f"{summary.when(summary.people)}"),
        ("vehicles in view", f"up to {max(summary.vehicles, default=0)} at once, "
         f"{summary.when(summary.vehicles)}"),
        ("annotated frame", str(snapshot) if snapshot else "- (nothing detected)"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


_COLOURS = {"person": (0, 0, 255)}  # BGR: people red, everything else blue
_OTHER = (255, 128, 0)


def draw_detections(image: Image, detections: Sequence[dict[str, object]]) -> Image:
    """``image`` with each detection's box and "label score" drawn on a copy."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 300))
    for d in detections:
        box = d.get("box")
        if not isinstance(box, list) or len(box) != 4:
            continue
        x1, y1, x2, y2 = (
            round(float(v) * s) for v, s in zip(box, (width, height) * 2, strict=True)
        )
        colour = _COLOURS.get(str(d.get("label")), _OTHER)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{d.get('label')} {float(d.get('score', 0.0)):.2f}"  # type: ignore[arg-type]
        cv2.putText(
            out,
            text,
            (x1, max(10, y1 - 3)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            colour,
            1,
        )
    return out


def frame_at(source: str, index: int) -> Image:
    """Frame ``index`` of a video file (0-based), read again for the snapshot."""
    capture = cv2.VideoCapture(source)
    try:
        image: np.ndarray | None = None
        for _ in range(index + 1):
            ok, image = capture.read()
            if not ok:
                raise SourceError(f"{source} has no frame {index}")
    finally:
        capture.release()
    assert image is not None
    return image
