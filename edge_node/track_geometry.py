"""Where a tracked box should be now, and how far a detection is from it.

The tracker's second matching pass (edge_node/tracker.py) pairs what IoU could not: a
walker missed for a few frames has moved more than their own width, so no box overlaps
the last one. Moving the last box by the object's velocity and measuring centres in
units of its height gives a gate that means the same for a far walker and a near one.
"""

from __future__ import annotations

from pipeline.detection import Box

__all__ = ["MAX_PREDICTION_S", "centre", "height_distance", "predicted_box"]

# Beyond this, a guess of where someone walked is worth less than where they were.
MAX_PREDICTION_S = 2.0


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def predicted_box(box: Box, velocity: tuple[float, float], elapsed_s: float) -> Box:
    """``box`` moved at ``velocity`` (frame units per second) for ``elapsed_s``."""
    dt = min(elapsed_s, MAX_PREDICTION_S)
    dx, dy = velocity[0] * dt, velocity[1] * dt
    x1, y1, x2, y2 = box
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def height_distance(last: Box, predicted: Box, found: Box) -> float:
    """Distance from ``predicted``'s centre to ``found``'s, in units of ``last``'s height."""
    (px, py), (fx, fy) = centre(predicted), centre(found)
    height = max(last[3] - last[1], 1e-3)
    return float(((px - fx) ** 2 + (py - fy) ** 2) ** 0.5 / height)
