"""A worker's object detections for one frame: the reply to a ``detect`` request.

Columns, not a list of objects: ``labels``, ``label_names`` and ``scores`` hold one
entry per detection, and ``boxes`` four, ``(x1, y1, x2, y2)`` normalised to the frame
(0..1, so they hold whatever size the edge sent and whatever size it shows). Flat
tuples are what msgspec checks in C and MessagePack packs without a map per box.
No detections is a valid answer: a frame with nothing in it.
"""

from __future__ import annotations

import operator
from typing import ClassVar, Literal

from pipeline.errors import ProtocolError
from pipeline.protocol import _wire
from pipeline.protocol._checks import (
    MAX_LABEL,
    MAX_REPLY_BYTES,
    check_id,
    check_range,
    safe_id,
)

__all__ = ["MAX_DETECTIONS", "MAX_LABEL_NAME_CHARS", "DetectionResult"]

MAX_DETECTIONS = 100
"""Most detections in one reply: what a detector keeps after NMS (torchvision's
``detections_per_img`` default). It keeps a full reply far below ``MAX_REPLY_BYTES``."""

MAX_LABEL_NAME_CHARS = 64


class DetectionResult(_wire.WireMessage, frozen=True, kw_only=True):
    """A worker's detections for one frame, with the timings the edge needs to adapt."""

    MESSAGE_TYPE: ClassVar[str] = "detections"
    MAX_BYTES: ClassVar[int] = MAX_REPLY_BYTES

    _t: Literal["detections"] = _wire.type_field(MESSAGE_TYPE)
    frame_id: _wire.Str
    worker_id: _wire.Str
    labels: _wire.Ints
    label_names: _wire.Strs
    scores: _wire.Floats
    boxes: _wire.Floats  # 4 per detection: x1, y1, x2, y2 in 0..1
    model: _wire.Str
    model_version: _wire.Str
    queue_ms: _wire.Float
    decode_ms: _wire.Float
    inference_ms: _wire.Float
    batch_size: int

    def __post_init__(self) -> None:
        fid = safe_id(self.frame_id)
        if fid is None:
            check_id(self.frame_id, "frame_id")  # raises: the id is not valid
        check_id(self.worker_id, "worker_id", fid)
        count = len(self.labels)
        if count > MAX_DETECTIONS:
            raise ProtocolError(
                f"{count} detections is more than {MAX_DETECTIONS}",
                reason="oversize",
                frame_id=fid,
            )
        if len(self.label_names) != count or len(self.scores) != count:
            raise ProtocolError(
                "'labels', 'label_names' and 'scores' must be of equal length",
                reason="bad_value",
                frame_id=fid,
            )
        if len(self.boxes) != 4 * count:
            raise ProtocolError(
                f"'boxes' holds 4 coordinates per detection: {4 * count}, not {len(self.boxes)}",
                reason="bad_value",
                frame_id=fid,
            )
        if count:
            self._check_detections(fid)
        if self.batch_size < 1:
            raise ProtocolError("'batch_size' must be >= 1", reason="bad_value", frame_id=fid)
        # `not >= 0`, not `< 0`: a reply built here (not decoded) may hold NaN.
        if not (self.queue_ms >= 0 and self.decode_ms >= 0 and self.inference_ms >= 0):
            for field in ("queue_ms", "decode_ms", "inference_ms"):
                value = getattr(self, field)
                if not value >= 0:
                    raise ProtocolError(
                        f"field {field!r}: {value!r} is not a non-negative number",
                        reason="bad_value",
                        frame_id=fid,
                    )

    def _check_detections(self, fid: str | None) -> None:
        # min/max/sum first: every reply passes through here, and they run in C. The
        # decoder refuses NaN, but a reply built here is checked here only, and min and
        # max skip a NaN; a sum does not.
        for field, values in (("scores", self.scores), ("boxes", self.boxes)):
            total = sum(values)
            if min(values) < 0.0 or max(values) > 1.0 or total != total:
                for value in values:
                    check_range(value, f"{field}[]", 0.0, 1.0, fid)  # refuses NaN too
        boxes = self.boxes
        if not all(map(operator.le, boxes[0::4], boxes[2::4])) or not all(
            map(operator.le, boxes[1::4], boxes[3::4])
        ):
            for i, box in enumerate(self.boxes_xyxy()):
                x1, y1, x2, y2 = box
                if x1 > x2 or y1 > y2:
                    raise ProtocolError(
                        f"field 'boxes': box {i} {box!r} needs x1 <= x2 and y1 <= y2",
                        reason="bad_value",
                        frame_id=fid,
                    )
        labels = self.labels
        if min(labels) < 0 or max(labels) > MAX_LABEL:
            for label in labels:
                if not 0 <= label <= MAX_LABEL:
                    raise ProtocolError(
                        f"label {label} is not a class index (0..{MAX_LABEL})",
                        reason="bad_value",
                        frame_id=fid,
                    )
        sizes = tuple(map(len, self.label_names))
        if min(sizes) < 1 or max(sizes) > MAX_LABEL_NAME_CHARS:
            raise ProtocolError(
                f"field 'label_names[]': a name needs 1-{MAX_LABEL_NAME_CHARS} chars",
                reason="bad_value",
                frame_id=fid,
            )

    @property
    def confidence(self) -> float:
        """The best detection's score, or 0.0 for none: the edge reads every reply's
        confidence the same way, and an empty frame is no evidence of anything."""
        return max(self.scores, default=0.0)

    def boxes_xyxy(self) -> list[tuple[float, float, float, float]]:
        """``boxes`` as one ``(x1, y1, x2, y2)`` per detection."""
        b = self.boxes
        return list(zip(b[0::4], b[1::4], b[2::4], b[3::4], strict=True))
