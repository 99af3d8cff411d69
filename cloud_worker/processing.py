"""The worker's CPU/GPU side: decode a batch of requests and classify it.

Runs in the worker's threads, never on the event loop: decoding in its decode thread,
classifying in its inference thread. A batch may mix the
three kinds of request; each kind (and each split point) runs as its own forward pass:

    image   a JPEG frame (full or abbreviated), or raw uint8 pixels (height, width, 1 or 3)
    input   a raw float tensor already normalised to the model's (channels, h, w)
    split   an early-exit edge part's activation, continued from ``split_stage``

One bad payload gets its own error reply; it never fails the rest of the batch.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from cloud_worker.detecting import detection_result, task_mismatch
from pipeline.codecs import Image, decode_jpeg, decode_jpeg_abbreviated, tensor_from_bytes
from pipeline.detection import Detection, Detector
from pipeline.errors import CodecError, ModelError
from pipeline.inference import Classifier, Prediction
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameRequest,
    PayloadCodec,
    Result,
    ResultRow,
    TensorDType,
)
from pipeline.protocol import Reply as ReplyMessage
from pipeline.quantize import QuantizedTensor
from pipeline.topics import ReplyTarget

__all__ = [
    "DecodedBatch",
    "Packing",
    "Pending",
    "ServedModel",
    "WorkerReply",
    "classify_batch",
    "decode_batch",
    "process_batch",
]

logger = logging.getLogger(__name__)


class Packing(enum.Enum):
    """How a request's answer travels, as the message it came in asks."""

    ALONE = "alone"  # a message of its own, with the request's correlation data
    MEMBERS = "members"  # a member of one ReplyBundle per batch
    COLUMNS = "columns"  # results as one ResultColumns per batch; the rest as members


@dataclass(frozen=True, slots=True)
class Pending:
    """A validated request waiting in the worker's queue."""

    request: FrameRequest
    target: ReplyTarget
    received_mono: float  # time.monotonic() on arrival, for queue time
    packing: Packing = Packing.ALONE


# What the inference thread hands back per request: a reply envelope, or a result as a
# row of columns (built without a Result per frame).
WorkerReply = ReplyMessage | ResultRow


_IMAGE = -1  # group key of whole images; split points are >= 1
_INPUT = 0  # group key of normalised input tensors (a split at 0 is the input itself)


Decoded = np.ndarray | QuantizedTensor  # a decoded payload, as the model's call takes it

# What a worker serves: a classifier (labels) or a detector (objects); one per worker.
ServedModel = Classifier | Detector


def _group_and_decode(request: FrameRequest, model: ServedModel) -> tuple[int, Decoded]:
    """(group key, decoded array) of one request; :class:`CodecError` if unusable."""
    mismatch = task_mismatch(request, isinstance(model, Detector), model.spec.name)
    if mismatch is not None:
        raise CodecError(mismatch)
    image = _decode_image(request)
    if image is not None:
        return _IMAGE, image
    if isinstance(model, Detector):
        raise CodecError(f"{model.spec.name} detects on images (JPEG or raw uint8), not tensors")
    return _decode_tensor(request, model)


def _decode_image(request: FrameRequest) -> Image | None:
    """The picture a JPEG or raw uint8 request carries; None for a float tensor."""
    if request.codec is PayloadCodec.JPEG:
        return decode_jpeg(request.payload, expected_shape=request.shape)
    if request.codec is PayloadCodec.JPEG_ABBREV:
        assert request.quality is not None  # FrameRequest guarantees it for jpeg kinds
        height, width, channels = request.shape  # FrameRequest checked (h, w, 1 or 3)
        return decode_jpeg_abbreviated(
            request.payload, request.quality, expected_shape=(height, width, channels)
        )
    if request.codec is PayloadCodec.RAW and request.dtype is TensorDType.UINT8:
        if len(request.shape) != 3 or request.shape[2] not in (1, 3):
            raise CodecError("raw uint8 pixels need shape (height, width, 1 or 3)")
        return cast(Image, tensor_from_bytes(request.payload, request.shape, request.dtype))
    return None


def _decode_tensor(request: FrameRequest, classifier: Classifier) -> tuple[int, Decoded]:
    """A normalised input (raw float) or an edge part's activation (tensor)."""
    if request.codec is PayloadCodec.RAW:
        if request.shape != classifier.input_shape:
            raise CodecError(
                f"a raw {request.dtype.value} tensor for {classifier.spec.name} is a "
                f"normalised input of shape {classifier.input_shape}, not {request.shape}"
            )
        return _INPUT, _finite(tensor_from_bytes(request.payload, request.shape, request.dtype))
    split = request.split_stage
    assert split is not None  # FrameRequest guarantees it for tensor payloads
    try:
        expected = classifier.activation_shape(split)
    except ModelError as exc:
        raise CodecError(str(exc)) from exc
    if request.shape != expected:
        raise CodecError(
            f"{classifier.spec.name} expects an activation of shape {expected} at split "
            f"{split}, not {request.shape}"
        )
    codes = tensor_from_bytes(request.payload, request.shape, request.dtype)
    if request.dtype is TensorDType.UINT8:
        scale, offset = request.tensor_scale, request.tensor_offset
        assert scale is not None  # FrameRequest guarantees both for uint8 tensors
        assert offset is not None
        return split, QuantizedTensor(codes, scale, offset)  # every code is finite
    return split, _finite(codes)


_FLOAT16_EXPONENT = 0x7C00  # all five exponent bits set: inf or NaN (IEEE 754 binary16)


def _finite(tensor: np.ndarray) -> np.ndarray:
    """A float tensor with NaN or inf in it has no answer: classifying it would return
    a confident-looking label from garbage (every score 0, label by argmax of NaN)."""
    if tensor.dtype == np.float16:
        # numpy's float16 isfinite is emulated: 63 us for a 75 KB split activation,
        # against 7 us for this test of the exponent bits.
        bits = tensor.view(np.uint16) & _FLOAT16_EXPONENT
        finite = bool((bits != _FLOAT16_EXPONENT).all())
    else:
        finite = bool(np.isfinite(tensor).all())
    if not finite:
        raise CodecError("the tensor holds NaN or infinite values")
    return tensor


Answer = Prediction | list[Detection]  # one image's answer: a label, or objects


def _forward(model: ServedModel, key: int) -> Callable[[Sequence[Decoded]], Sequence[Answer]]:
    # Each group holds one kind (see _group_and_decode): only split groups hold
    # QuantizedTensors, and a detector's hold only images.
    if isinstance(model, Detector):
        return lambda arrays: model.detect(cast(Sequence[Image], arrays))
    if key == _IMAGE:
        return lambda arrays: model.predict(cast(Sequence[Image], arrays))
    if key == _INPUT:
        return lambda arrays: model.predict_inputs(cast(Sequence[np.ndarray], arrays))
    return lambda arrays: model.predict_from_split(key, arrays)


def _reply(
    model: ServedModel, answer: Answer, item: Pending, worker_id: str, **timings: Any
) -> WorkerReply:
    """The reply carrying ``answer``: a :class:`Result` (a row, for a columns reply) or
    a :class:`DetectionResult`."""
    frame_id = item.request.frame_id
    if isinstance(model, Detector):
        assert isinstance(answer, list)
        return detection_result(
            answer, model.spec, frame_id=frame_id, worker_id=worker_id, **timings
        )
    assert isinstance(answer, Prediction)
    spec = model.spec
    if item.packing is Packing.COLUMNS:
        return ResultRow(
            frame_id,
            answer.label,
            spec.labels[answer.label],
            answer.topk_labels,
            answer.topk_scores,
            spec.name,
            spec.version,
            timings["queue_ms"],
            timings["decode_ms"],
            timings["inference_ms"],
            timings["batch_size"],
        )
    return Result(
        frame_id=frame_id,
        worker_id=worker_id,
        label=answer.label,
        label_name=spec.labels[answer.label],
        topk_labels=answer.topk_labels,
        topk_scores=answer.topk_scores,
        model=spec.name,
        model_version=spec.version,
        **timings,
    )


def _error(item: Pending, worker_id: str, code: ErrorCode, message: str) -> ErrorReply:
    return ErrorReply(
        frame_id=item.request.frame_id, worker_id=worker_id, code=code, message=message[:1000]
    )


@dataclass(slots=True)
class DecodedBatch:
    """A batch after decoding: arrays grouped by forward pass, and the errors so far."""

    batch: list[Pending]
    replies: list[WorkerReply | None]  # an error for each request that did not decode
    groups: dict[int, list[tuple[int, Decoded]]]  # group key -> (index, array)
    started: float  # time.monotonic() when decoding began: the end of queueing
    decode_ms: float  # per request
    units: int = 1  # queue items (one message's frames each) the batch was taken as


def decode_batch(batch: list[Pending], classifier: ServedModel, worker_id: str) -> DecodedBatch:
    """Decode every request of ``batch``; one that does not decode gets its error."""
    started = time.monotonic()
    replies: list[WorkerReply | None] = [None] * len(batch)
    groups: dict[int, list[tuple[int, Decoded]]] = {}
    for i, item in enumerate(batch):
        try:
            key, array = _group_and_decode(item.request, classifier)
        except CodecError as exc:
            replies[i] = _error(item, worker_id, ErrorCode.BAD_REQUEST, str(exc))
            continue
        groups.setdefault(key, []).append((i, array))
    decode_ms = (time.monotonic() - started) * 1000 / max(1, len(batch))
    return DecodedBatch(batch, replies, groups, started, decode_ms)


def classify_batch(
    decoded: DecodedBatch, classifier: ServedModel, worker_id: str
) -> list[tuple[ReplyTarget, WorkerReply]]:
    """Run each group's forward pass; one reply per request, in order of the batch."""
    batch, replies = decoded.batch, decoded.replies
    for key, members in decoded.groups.items():
        forward_started = time.monotonic()
        try:
            answers = _forward(classifier, key)([array for _, array in members])
        except ModelError as exc:
            # A model failure answers this group with errors; it never takes the worker down.
            logger.exception("inference failed for a batch of %d", len(members))
            for i, _ in members:
                replies[i] = _error(
                    batch[i], worker_id, ErrorCode.INTERNAL, f"inference failed: {exc}"
                )
            continue
        inference_ms = (time.monotonic() - forward_started) * 1000
        for (i, _), answer in zip(members, answers, strict=True):
            item = batch[i]
            replies[i] = _reply(
                classifier,
                answer,
                item,
                worker_id,
                queue_ms=max(0.0, (decoded.started - item.received_mono) * 1000),
                decode_ms=decoded.decode_ms,
                inference_ms=inference_ms,
                batch_size=len(members),
            )
    return [(item.target, reply) for item, reply in zip(batch, replies, strict=True) if reply]


def process_batch(
    batch: list[Pending], classifier: ServedModel, worker_id: str
) -> list[tuple[ReplyTarget, WorkerReply]]:
    """Decode and classify ``batch``; one reply per request, in order of the batch."""
    return classify_batch(decode_batch(batch, classifier, worker_id), classifier, worker_id)
