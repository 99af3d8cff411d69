"""The worker's detection side: which task a request asks for, and the detection reply.

A worker serves one model, so it knows its task: a detector takes images (JPEG or raw
uint8 pixels) and answers detections; a classifier answers labels. A request that asks
for the other task is refused with a ``bad_request`` that says so: an edge from before
detection existed, which asks a detector for a label, gets an error reply it can read,
never a reply type it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.detection import Detection, DetectorSpec
from pipeline.protocol import MAX_DETECTIONS, DetectionResult, FrameRequest

__all__ = ["detection_result", "task_mismatch"]


def task_mismatch(request: FrameRequest, serves_detector: bool, model: str) -> str | None:
    """Why this worker cannot answer ``request``'s task, or None when it can."""
    if request.wants_detection and not serves_detector:
        return f"model {model} classifies; it cannot answer a detection request"
    if not request.wants_detection and serves_detector:
        return (
            f"model {model} detects objects; ask with task 'detect' (an edge from before "
            "detection cannot use this worker: point it at a classifier)"
        )
    return None


def detection_result(
    detections: Sequence[Detection],
    spec: DetectorSpec,
    *,
    frame_id: str,
    worker_id: str,
    queue_ms: float,
    decode_ms: float,
    inference_ms: float,
    batch_size: int,
) -> DetectionResult:
    # The wire carries at most MAX_DETECTIONS: the best of a crowded frame.
    best = sorted(detections, key=lambda d: -d.score)[:MAX_DETECTIONS]
    return DetectionResult(
        frame_id=frame_id,
        worker_id=worker_id,
        labels=tuple(d.label for d in best),
        label_names=tuple(d.name for d in best),
        scores=tuple(d.score for d in best),
        boxes=tuple(v for d in best for v in d.box),
        model=spec.name,
        model_version=spec.version,
        queue_ms=queue_ms,
        decode_ms=decode_ms,
        inference_ms=inference_ms,
        batch_size=batch_size,
    )
