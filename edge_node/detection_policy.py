"""Which camera frames the edge's detector is sure about, and which go to the cloud.

The edge runs a cheap detector (``ssdlite_person``: people only); the cloud a stronger
one (``nanodet_coco``: 80 classes). A frame stays local when the edge is sure of it:

* nothing above ``low``: an empty scene (or only noise);
* every detection either sure (``>= high``) or noise (``< low``).

It goes to the cloud when it is not: a detection between ``low`` and ``high`` (a
person half hidden, small or far), or when the user wants classes the edge cannot see
at all (``detect_classes`` has "car" and the edge detects only people). A camera's
specialized model (``edge.specialized``) brings its own sureness: a frame stays local
when one of its exits was sure (:meth:`DetectionPolicy.route_counted`). Frames
without motion never get here when the motion gate is on: they are skipped.

The same shape as DDS's and Reducto's filters: the camera answers what it can and
sends what it cannot; the thresholds trade bandwidth for agreement with the cloud.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.detection import Detection

__all__ = ["DetectionPolicy", "DetectionRoute"]


@dataclass(frozen=True, slots=True)
class DetectionRoute:
    offload: bool
    reason: str


class DetectionPolicy:
    def __init__(
        self,
        *,
        low: float,
        high: float,
        wanted: Iterable[str],
        local_labels: Sequence[str],
        mode: str = "threshold",
    ) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"need 0 <= low <= high <= 1, got {low}, {high}")
        self.low = low
        self.high = high
        self.mode = mode  # "threshold", "cloud-only" or "local-only"
        self._local_labels = frozenset(local_labels)
        self.unseen: tuple[str, ...] = ()
        self.watch(wanted)

    def watch(self, wanted: Iterable[str]) -> None:
        """The classes the user asks for (``edge.detect_classes``; a control may change
        them at run time)."""
        self.unseen = tuple(sorted(set(wanted) - self._local_labels))

    def route_counted(self, sure: bool, detail: str) -> DetectionRoute:
        """A specialized model's answer (edge.specialized): local when an exit was sure."""
        if self.mode == "cloud-only":
            return DetectionRoute(True, "cloud-only")
        if self.mode == "local-only":
            return DetectionRoute(False, f"local-only: {detail}")
        if self.unseen:
            return DetectionRoute(True, f"wants {', '.join(self.unseen)}: the edge cannot see it")
        return DetectionRoute(not sure, detail)

    def route(self, detections: Sequence[Detection]) -> DetectionRoute:
        if self.mode == "cloud-only":
            return DetectionRoute(True, "cloud-only")
        if self.mode == "local-only":
            return DetectionRoute(False, "local-only")
        if self.unseen:
            return DetectionRoute(True, f"wants {', '.join(self.unseen)}: the edge cannot see it")
        unsure = [d for d in detections if self.low <= d.score < self.high]
        if unsure:
            best = max(unsure, key=lambda d: d.score)
            return DetectionRoute(True, f"unsure: {best.name} {best.score:.2f}")
        sure = sum(1 for d in detections if d.score >= self.high)
        if sure:
            return DetectionRoute(False, f"sure: {sure} found")
        return DetectionRoute(False, f"nothing above {self.low:.2f}")
