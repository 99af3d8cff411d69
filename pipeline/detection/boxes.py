"""Detections and the box arithmetic every detector and policy shares.

A box is ``(x1, y1, x2, y2)`` normalised to the frame (0..1), so it means the same on
the edge's 300x300 input, the cloud's 416x416 and the camera's own resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Box", "Detection", "agreement", "count_by_name", "iou", "non_max_suppression"]

Box = tuple[float, float, float, float]
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Detection:
    label: int  # the class index in the detector's own label list
    name: str  # the class name ("person", "car"): what users and events speak
    score: float  # 0..1
    box: Box  # (x1, y1, x2, y2), normalised to the frame


def count_by_name(detections: Sequence[Detection], min_score: float = 0.0) -> dict[str, int]:
    counts: dict[str, int] = {}
    for detection in detections:
        if detection.score >= min_score:
            counts[detection.name] = counts.get(detection.name, 0) + 1
    return counts


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when either is empty."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(
    boxes: Floats, scores: Floats, labels: npt.NDArray[np.int64], *, iou_threshold: float
) -> list[int]:
    """Indices kept by greedy per-class NMS, best score first.

    Per class without a loop over classes: each class's boxes are shifted to a region
    of their own, so boxes of different classes never overlap.
    """
    if len(scores) == 0:
        return []
    shifted = boxes + (labels.astype(np.float32) * 4.0)[:, None]
    x1, y1, x2, y2 = shifted.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = width * height
        union = areas[best] + areas[rest] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        order = rest[overlap <= iou_threshold]
    return keep


def agreement(
    found: Sequence[Detection], reference: Sequence[Detection], *, iou_threshold: float = 0.5
) -> float:
    """F1 of ``found`` against ``reference``: a detection matches an unmatched reference
    box of the same class with IoU >= ``iou_threshold`` (greedy, best score first).
    1.0 when both are empty: agreeing that nothing is there is agreement."""
    if not found and not reference:
        return 1.0
    unmatched = list(reference)
    hits = 0
    for detection in sorted(found, key=lambda d: -d.score):
        candidates = [
            (iou(detection.box, r.box), i)
            for i, r in enumerate(unmatched)
            if r.name == detection.name
        ]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= iou_threshold:
            hits += 1
            unmatched.pop(best[1])
    return 2 * hits / (len(found) + len(reference))
