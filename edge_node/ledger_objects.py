"""The objects of a run, read back from its ledger.

The ledger keeps each frame's detections and which model answered, which is all the
tracker needs: replaying them through :class:`edge_node.tracker.ObjectTracker` in
capture order gives the objects the live edge announced, with the same ids (an id is
derived from the object's first detection). So objects need no table of their own,
and a ledger written before objects existed lists them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_node.ledger_rows import FrameRecord
from edge_node.tracker import ObjectEvent, Source, security_tracker
from pipeline.detection import DETECTORS, Detection

__all__ = ["ObjectSummary", "format_objects", "objects_in"]


@dataclass(frozen=True, slots=True)
class ObjectSummary:
    """An ended object, for a run's summary."""

    id: str
    label: str
    start_ts: float
    end_ts: float
    frames: int
    top_score: float
    seen_by: tuple[str, ...]


def _detections(record: FrameRecord) -> list[Detection]:
    found = []
    for d in record.detections or []:
        box = d.get("box")
        score = d.get("score")
        if isinstance(box, list) and len(box) == 4 and isinstance(score, int | float):
            x1, y1, x2, y2 = (float(v) for v in box)
            found.append(Detection(-1, str(d.get("label")), float(score), (x1, y1, x2, y2)))
    return found


def objects_in(
    records: Iterable[FrameRecord], *, labels: Iterable[str] = ()
) -> list[ObjectSummary]:
    """Every object of these frames (one run's, in capture order), oldest first:
    people and vehicles, and ``labels`` besides."""
    tracker = security_tracker(labels)
    ended: list[ObjectEvent] = []
    last_ts = 0.0
    for record in records:
        last_ts = record.capture_ts
        if record.detections is None:
            continue  # no answer for this frame: no evidence either way
        source: Source = "cloud" if record.decision == "cloud" else "edge"
        seen = DETECTORS[record.model][1] if record.model in DETECTORS else ()
        # A specialized model's counted objects have no box: still there, wherever.
        counted = {str(d.get("label")) for d in record.detections if "box" not in d}
        seen = tuple(label for label in seen if label not in counted)
        events = tracker.update(
            record.capture_ts, record.seq, _detections(record), source=source, seen_labels=seen
        )
        ended += [e for e in events if e.type == "end"]
    ended += tracker.finish(last_ts)
    return sorted(
        (
            ObjectSummary(
                e.object.id, e.object.label, e.object.start_ts, e.object.end_ts or e.ts,
                e.object.frames, e.object.top_score, tuple(sorted(e.object.seen_by)),
            )
            for e in ended
        ),
        key=lambda o: (o.start_ts, o.id),
    )  # fmt: skip


def format_objects(objects: Sequence[ObjectSummary], *, start_ts: float, limit: int = 20) -> str:
    """A table of objects, times in seconds from ``start_ts`` (the run's first frame)."""
    if not objects:
        return "objects seen      none"
    per_label: dict[str, int] = {}
    for obj in objects:
        per_label[obj.label] = per_label.get(obj.label, 0) + 1
    tally = ", ".join(f"{n} {label}" for label, n in sorted(per_label.items()))
    lines = [f"objects seen      {tally}"]
    for obj in objects[:limit]:
        lines.append(
            f"  {obj.label:<8} {obj.start_ts - start_ts:6.1f}-{obj.end_ts - start_ts:.1f} s  "
            f"{obj.frames:4d} frames  top {obj.top_score:.2f}  seen by {'+'.join(obj.seen_by)}"
        )
    if len(objects) > limit:
        lines.append(f"  ... and {len(objects) - limit} more")
    return "\n".join(lines)
