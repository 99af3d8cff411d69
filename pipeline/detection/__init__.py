"""Object detection: the shipped ONNX detectors, their decoders, and box arithmetic."""

from pipeline.detection.boxes import (
    Box,
    Detection,
    agreement,
    count_by_name,
    iou,
    non_max_suppression,
)
from pipeline.detection.coco import COCO_LABELS, VEHICLES
from pipeline.detection.detectors import (
    DETECTORS,
    Detector,
    DetectorSpec,
    default_detectors_dir,
    get_detector_spec,
    is_detector,
)

__all__ = [
    "COCO_LABELS",
    "DETECTORS",
    "VEHICLES",
    "Box",
    "Detection",
    "Detector",
    "DetectorSpec",
    "agreement",
    "count_by_name",
    "default_detectors_dir",
    "get_detector_spec",
    "iou",
    "is_detector",
    "non_max_suppression",
]
