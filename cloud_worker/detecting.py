"""The worker's detection side: a detector's batch, answered with :class:`DetectionResult`.

A worker serves one model, so it knows its task: a detector takes images (JPEG or raw
uint8 pixels) and answers detections; a classifier answers labels. A request that asks
for the other task is refused with a ``bad_request`` that says so: an edge from before
detection existed, which asks a detector for a label, gets an error reply it can read,
never a reply type it cannot.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pipeline.detection import Detection, Detector
from pipeline.errors import ModelError
from pipeline.protocol import MAX_DETECTIONS, DetectionResult, ErrorCode, ErrorReply, FrameRequest
from pipeline.protocol import Reply as ReplyMessage

if TYPE_CHECKING:
    from cloud_worker.processing import DecodedBatch, Pending
    from pipeline.codecs import Image

__all__ = ["detect_batch", "task_mismatch"]

logger = logging.getLogger(__name__)


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


def _result(
    detections: list[Detection],
    item: Pending,
    worker_id: str,
    detector: Detector,
    **timings: float,
) -> DetectionResult:
    return DetectionResult(
        frame_id=item.request.frame_id,
        worker_id=worker_id,
        labels=tuple(d.label for d in detections),
        label_names=tuple(d.name for d in detections),
        scores=tuple(d.score for d in detections),
        boxes=tuple(v for d in detections for v in d.box),
        model=detector.spec.name,
        model_version=detector.spec.version,
        queue_ms=timings["queue_ms"],
        decode_ms=timings["decode_ms"],
        inference_ms=timings["inference_ms"],
        batch_size=int(timings["batch_size"]),
    )


def detect_batch(
    decoded: DecodedBatch,
    members: list[tuple[int, Image]],
    detector: Detector,
    worker_id: str,
) -> list[ReplyMessage | None]:
    """Detect on ``members`` (batch index, decoded image); the replies in batch order
    (None where decoding already answered)."""
    batch, replies = decoded.batch, list(decoded.replies)
    if not members:
        return replies
    started = time.monotonic()
    try:
        found = detector.detect([array for _, array in members])
    except ModelError as exc:
        logger.exception("detection failed for a batch of %d", len(members))
        for i, _ in members:
            replies[i] = ErrorReply(
                frame_id=batch[i].request.frame_id,
                worker_id=worker_id,
                code=ErrorCode.INTERNAL,
                message=f"detection failed: {exc}"[:1000],
            )
        return replies
    inference_ms = (time.monotonic() - started) * 1000
    for (i, _), detections in zip(members, found, strict=True):
        item = batch[i]
        # The wire carries at most MAX_DETECTIONS: the best of a crowded frame.
        best = sorted(detections, key=lambda d: -d.score)[:MAX_DETECTIONS]
        replies[i] = _result(
            best,
            item,
            worker_id,
            detector,
            queue_ms=max(0.0, (decoded.started - item.received_mono) * 1000),
            decode_ms=decoded.decode_ms,
            inference_ms=inference_ms,
            batch_size=len(members),
        )
    return replies
