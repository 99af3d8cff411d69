"""The worker's CPU/GPU side: decode a batch of requests and classify it.

Runs in the worker's inference thread, never on the event loop. One bad payload gets
its own error reply; it never fails the rest of the batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

from pipeline.codecs import Image, decode_jpeg, tensor_from_bytes
from pipeline.errors import CodecError, ModelError
from pipeline.inference import Classifier
from pipeline.protocol import ErrorCode, ErrorReply, FrameRequest, PayloadCodec, Result
from pipeline.protocol import Reply as ReplyMessage
from pipeline.topics import ReplyTarget

__all__ = ["Pending", "process_batch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """A validated request waiting in the worker's queue."""

    request: FrameRequest
    target: ReplyTarget
    received_mono: float  # time.monotonic() on arrival, for queue time


def _decode(request: FrameRequest) -> Image:
    if request.codec is PayloadCodec.JPEG:
        return decode_jpeg(request.payload, expected_shape=request.shape)
    if request.codec is PayloadCodec.RAW:
        if (
            len(request.shape) != 3
            or request.shape[2] not in (1, 3)
            or request.dtype.value != "uint8"
        ):
            raise CodecError("a raw frame must be uint8 with shape (height, width, 1 or 3)")
        return cast(Image, tensor_from_bytes(request.payload, request.shape, request.dtype))
    raise CodecError(
        f"this worker classifies whole images; {request.codec.value!r} payloads need a "
        "split model (see the models issue)"
    )


def process_batch(
    batch: list[Pending], classifier: Classifier, worker_id: str
) -> list[tuple[ReplyTarget, ReplyMessage]]:
    """Decode and classify ``batch``; one reply per request, in order of the batch."""
    started = time.monotonic()
    replies: list[tuple[ReplyTarget, ReplyMessage] | None] = [None] * len(batch)
    images: list[Image] = []
    decoded_index: list[int] = []
    for i, item in enumerate(batch):
        try:
            images.append(_decode(item.request))
            decoded_index.append(i)
        except CodecError as exc:
            replies[i] = (
                item.target,
                ErrorReply(
                    frame_id=item.request.frame_id,
                    worker_id=worker_id,
                    code=ErrorCode.BAD_REQUEST,
                    message=str(exc)[:1000],
                ),
            )
    decoded = time.monotonic()
    try:
        predictions = classifier.predict(images)
    except ModelError as exc:
        # A model failure answers this batch with errors; it never takes the worker down.
        logger.exception("inference failed for a batch of %d", len(images))
        for i in decoded_index:
            replies[i] = (
                batch[i].target,
                ErrorReply(
                    frame_id=batch[i].request.frame_id,
                    worker_id=worker_id,
                    code=ErrorCode.INTERNAL,
                    message=f"inference failed: {exc}"[:1000],
                ),
            )
        return [r for r in replies if r is not None]
    finished = time.monotonic()
    decode_ms = (decoded - started) * 1000 / max(1, len(batch))
    inference_ms = (finished - decoded) * 1000
    spec = classifier.spec
    for i, prediction in zip(decoded_index, predictions, strict=True):
        item = batch[i]
        replies[i] = (
            item.target,
            Result(
                frame_id=item.request.frame_id,
                worker_id=worker_id,
                label=prediction.label,
                label_name=spec.labels[prediction.label],
                topk_labels=prediction.topk_labels,
                topk_scores=prediction.topk_scores,
                model=spec.name,
                model_version=spec.version,
                queue_ms=max(0.0, (started - item.received_mono) * 1000),
                decode_ms=decode_ms,
                inference_ms=inference_ms,
                batch_size=len(images),
            ),
        )
    return [r for r in replies if r is not None]
