"""From each detector's raw outputs to :class:`Detection` lists (boxes normalised).

* ``ssd``: the TF Object Detection API's outputs, NMS already done in the graph:
  ``detection_boxes`` (y1, x1, y2, x2, normalised), ``detection_scores``,
  ``detection_classes`` (1-based) and ``num_detections``.
* ``nanodet``: NanoDet's GFL head, per stride (8, 16, 32): sigmoid class scores
  (cells, classes) and, per side, a distribution over ``bins`` distances (cells,
  4 * bins). A side's distance is the distribution's expectation in stride units,
  measured from the cell's centre; then per-class NMS.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.detection.boxes import Detection, non_max_suppression
from pipeline.errors import ModelError

__all__ = ["decode_nanodet", "decode_ssd"]

NANODET_STRIDES = (8, 16, 32)
NANODET_IOU = 0.5
MAX_CANDIDATES = 1000  # per frame, before NMS: bounds the work on a noisy frame


def decode_ssd(
    outputs: Sequence[np.ndarray], labels: Sequence[str], min_score: float
) -> list[Detection]:
    boxes, scores, classes, count = outputs
    found = []
    for i in range(min(int(count.reshape(-1)[0]), boxes.shape[1])):
        score = float(scores[0, i])
        label = int(classes[0, i]) - 1
        if score < min_score or not 0 <= label < len(labels):
            continue
        y1, x1, y2, x2 = (min(1.0, max(0.0, float(v))) for v in boxes[0, i])
        found.append(Detection(label, labels[label], score, (x1, y1, x2, y2)))
    return found


def decode_nanodet(
    outputs: Sequence[np.ndarray], labels: Sequence[str], min_score: float, input_size: int
) -> list[Detection]:
    per_stride = _by_stride(outputs, len(labels), input_size)
    all_boxes, all_scores, all_labels = [], [], []
    for stride, (cls, reg) in zip(NANODET_STRIDES, per_stride, strict=True):
        cells = cls.shape[0]
        best = cls.max(axis=1)
        chosen = np.nonzero(best >= min_score)[0]
        if chosen.size == 0:
            continue
        bins = reg.shape[1] // 4
        logits = reg[chosen].reshape(-1, 4, bins)
        weights = np.exp(logits - logits.max(axis=2, keepdims=True))
        weights /= weights.sum(axis=2, keepdims=True)
        distance = (weights * np.arange(bins, dtype=np.float32)).sum(axis=2) * stride
        side = round(cells**0.5)
        cx = (chosen % side + 0.5) * stride
        cy = (chosen // side + 0.5) * stride
        box = np.stack(
            [cx - distance[:, 0], cy - distance[:, 1], cx + distance[:, 2], cy + distance[:, 3]],
            axis=1,
        )
        all_boxes.append(np.clip(box / input_size, 0.0, 1.0).astype(np.float32))
        all_scores.append(best[chosen])
        all_labels.append(cls[chosen].argmax(axis=1))
    if not all_boxes:
        return []
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores).astype(np.float32)
    classes = np.concatenate(all_labels).astype(np.int64)
    if len(scores) > MAX_CANDIDATES:
        top = np.argsort(-scores)[:MAX_CANDIDATES]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    keep = non_max_suppression(boxes, scores, classes, iou_threshold=NANODET_IOU)
    return [
        Detection(
            int(classes[i]),
            labels[int(classes[i])],
            min(1.0, float(scores[i])),
            (float(boxes[i, 0]), float(boxes[i, 1]), float(boxes[i, 2]), float(boxes[i, 3])),
        )
        for i in keep
    ]


def _by_stride(
    outputs: Sequence[np.ndarray], classes: int, input_size: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scores, distances) per stride, found by their shapes: the graph's output order
    is the converter's, not NanoDet's."""
    pairs = []
    for stride in NANODET_STRIDES:
        cells = (input_size // stride) ** 2
        cls = [o[0] for o in outputs if o.shape[1] == cells and o.shape[2] == classes]
        reg = [o[0] for o in outputs if o.shape[1] == cells and o.shape[2] != classes]
        if len(cls) != 1 or len(reg) != 1 or reg[0].shape[1] % 4:
            shapes = [o.shape for o in outputs]
            raise ModelError(f"NanoDet outputs {shapes} do not match stride {stride}")
        pairs.append((cls[0], reg[0]))
    return pairs
