"""The shipped detectors, their decoders and the edge's detection policy, on real
frames of the shipped clip; broken files and a missing runtime fail in one line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from camoffload.security import SecuritySummary, draw_detections, format_security
from edge_node.detection_policy import DetectionPolicy
from edge_node.ledger_rows import FrameRecord
from pipeline.detection import (
    Detection,
    Detector,
    default_detectors_dir,
    get_detector_spec,
    iou,
    non_max_suppression,
)
from pipeline.detection.decoders import decode_nanodet
from pipeline.errors import ModelError


@pytest.fixture(scope="module")
def edge_detector() -> Detector:
    return Detector.by_name("ssdlite_person", min_score=0.2, threads=1)


@pytest.fixture(scope="module")
def cloud_detector() -> Detector:
    return Detector.by_name("nanodet_coco", min_score=0.35, threads=1)


def _people(detections: list[Detection], min_score: float) -> list[Detection]:
    return [d for d in detections if d.name == "person" and d.score >= min_score]


def test_the_cloud_detector_sees_the_people_and_the_parked_vehicles(
    cloud_detector: Detector, frames: list[np.ndarray]
) -> None:
    for image in frames[:4]:
        found = cloud_detector.detect_one(image)
        people = _people(found, 0.35)
        # Counted by eye on these frames: 4-5 people walking, the van and the car
        # parked at the top right.
        assert 3 <= len(people) <= 7
        vehicles = [d for d in found if d.name in ("car", "truck", "bus")]
        assert any(d.box[0] > 0.8 and d.box[3] < 0.25 for d in vehicles)
        for d in found:
            x1, y1, x2, y2 = d.box
            assert 0 <= x1 <= x2 <= 1
            assert 0 <= y1 <= y2 <= 1
            assert 0.35 <= d.score <= 1


def test_sure_edge_detections_are_people_the_cloud_also_finds(
    edge_detector: Detector, cloud_detector: Detector, frames: list[np.ndarray]
) -> None:
    """The reference is the cloud detector at full quality: every person the edge is
    sure of (>= 0.7) is one the reference finds too (IoU >= 0.4)."""
    sure_total = 0
    for image in frames[:6]:
        reference = _people(cloud_detector.detect_one(image), 0.35)
        sure = _people(edge_detector.detect_one(image), 0.7)
        sure_total += len(sure)
        for d in sure:
            assert max((iou(d.box, r.box) for r in reference), default=0.0) >= 0.4, d
    assert sure_total >= 6  # at least one sure person a frame


def test_grey_frames_are_detected_too(edge_detector: Detector, frames: list[np.ndarray]) -> None:
    grey = frames[0].mean(axis=2).astype(np.uint8)
    assert _people(edge_detector.detect_one(grey[:, :, None]), 0.5)


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array(
        [[0.1, 0.1, 0.3, 0.5], [0.11, 0.1, 0.31, 0.5], [0.1, 0.1, 0.3, 0.5], [0.6, 0.6, 0.7, 0.9]],
        dtype=np.float32,
    )
    scores = np.array([0.6, 0.9, 0.5, 0.4], dtype=np.float32)
    labels = np.array([0, 0, 2, 0])
    assert non_max_suppression(boxes, scores, labels, iou_threshold=0.5) == [1, 2, 3]


def test_nanodet_decoding_puts_a_box_around_the_hot_cell() -> None:
    """One hot cell at stride 8, each side's distance distribution peaked at bin 2:
    a 32x32-pixel box centred on that cell's centre."""
    size, classes, bins = 416, 80, 11
    outputs = []
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2
        outputs.append(np.zeros((1, cells, classes), np.float32))
        outputs.append(np.full((1, cells, 4 * bins), -50.0, np.float32))
    cell = 10 * 52 + 20  # row 10, column 20 of the 52x52 grid
    outputs[0][0, cell, 2] = 0.9  # "car"
    for side in range(4):
        outputs[1][0, cell, side * bins + 2] = 50.0
    found = decode_nanodet(outputs, tuple(str(i) for i in range(classes)), 0.35, size)
    assert len(found) == 1
    (d,) = found
    assert d.label == 2
    assert d.score == pytest.approx(0.9)
    cx, cy = (20 + 0.5) * 8, (10 + 0.5) * 8
    expected = ((cx - 16) / size, (cy - 16) / size, (cx + 16) / size, (cy + 16) / size)
    assert d.box == pytest.approx(expected, abs=1e-4)


def _copy_detectors(tmp_path: Path) -> Path:
    folder = tmp_path / "detectors"
    shutil.copytree(default_detectors_dir(), folder)
    return folder


def test_a_detector_file_loads_only_with_its_sha256(tmp_path: Path) -> None:
    folder = _copy_detectors(tmp_path)
    onnx = folder / "ssdlite_person.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256") as refused:
        Detector(get_detector_spec("ssdlite_person", detectors_dir=folder))
    assert "\n" not in str(refused.value)


def test_a_missing_detector_file_is_one_clear_line(tmp_path: Path) -> None:
    folder = _copy_detectors(tmp_path)
    (folder / "nanodet_coco.onnx").unlink()
    with pytest.raises(ModelError, match=r"nanodet_coco\.onnx is missing"):
        Detector(get_detector_spec("nanodet_coco", detectors_dir=folder))
    (folder / "nanodet_coco.json").unlink()
    with pytest.raises(ModelError, match=r"manifest .* is missing"):
        get_detector_spec("nanodet_coco", detectors_dir=folder)
    with pytest.raises(ModelError, match="known detectors: ssdlite_person, nanodet_coco"):
        get_detector_spec("yolo")


def test_a_missing_onnxruntime_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ModelError, match="onnxruntime is not installed"):
        Detector.by_name("ssdlite_person")


def _person(score: float) -> Detection:
    return Detection(0, "person", score, (0.1, 0.1, 0.2, 0.4))


@pytest.mark.parametrize(
    ("detections", "offload", "why"),
    [
        ([], False, "nothing above"),
        ([_person(0.25), _person(0.1)], False, "nothing above"),
        ([_person(0.95), _person(0.8)], False, "sure: 2"),
        ([_person(0.95), _person(0.1)], False, "sure: 1"),
        ([_person(0.95), _person(0.45)], True, "unsure: person 0.45"),
        ([_person(0.3)], True, "unsure"),  # low is inclusive
        ([_person(0.7)], False, "sure"),  # high is inclusive
    ],
)
def test_the_detection_policy_keeps_what_the_edge_is_sure_of(
    detections: list[Detection], offload: bool, why: str
) -> None:
    policy = DetectionPolicy(low=0.3, high=0.7, wanted=("person",), local_labels=("person",))
    route = policy.route(detections)
    assert route.offload is offload
    assert why in route.reason


def test_classes_the_edge_cannot_see_go_to_the_cloud_and_modes_override() -> None:
    wants_cars = DetectionPolicy(
        low=0.3, high=0.7, wanted=("person", "car"), local_labels=("person",)
    )
    route = wants_cars.route([_person(0.95)])
    assert route.offload
    assert "car" in route.reason
    for mode, offload in (("cloud-only", True), ("local-only", False)):
        policy = DetectionPolicy(
            low=0.3, high=0.7, wanted=("car",), local_labels=("person",), mode=mode
        )
        assert policy.route([_person(0.5)]).offload is offload
    with pytest.raises(ValueError, match="low <= high"):
        DetectionPolicy(low=0.8, high=0.7, wanted=(), local_labels=())


def _record(seq: int, detections: list[dict[str, object]] | None) -> FrameRecord:
    return FrameRecord(
        run_id="r", frame_id=f"f{seq}", seq=seq, capture_ts=0.0, true_label=None,
        decision="local", decided_ts=0.0, label=None, confidence=None, bytes_sent=0,
        rtt_ms=None, detail=None, model=None, local_label=None, local_confidence=None,
        payload=None, detections=detections,
    )  # fmt: skip


def test_the_security_summary_counts_people_and_vehicles_and_says_when() -> None:
    box = [0.1, 0.1, 0.2, 0.4]
    records = [
        _record(0, []),
        _record(1, [{"label": "person", "score": 0.9, "box": box},
                    {"label": "person", "score": 0.2, "box": box}]),  # noise: not counted
        _record(2, [{"label": "person", "score": 0.8, "box": box},
                    {"label": "person", "score": 0.5, "box": box},
                    {"label": "truck", "score": 0.4, "box": box}]),
        _record(3, None),  # a classification frame: nothing to count
    ]  # fmt: skip
    summary = SecuritySummary.from_records(records, fps=10.0)
    assert summary.people == (0, 1, 2, 0)
    assert summary.vehicles == (0, 0, 1, 0)
    assert summary.busiest_seq == 2
    assert summary.when(summary.people) == "0.1-0.2 s (2 frames)"
    assert SecuritySummary.from_records(records[:1], fps=None).busiest_seq is None
    text = format_security(summary, Path("/x/frame-00002.jpg"), offloaded=1, bytes_sent=40_000)
    assert "1 of 4 frames (25%), 10.0 kB a frame" in text
    assert "up to 2 at once, 0.1-0.2 s" in text
    assert "/x/frame-00002.jpg" in text


def test_detections_are_drawn_on_a_copy() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = draw_detections(image, [{"label": "person", "score": 0.9, "box": [0.1, 0.1, 0.5, 0.9]}])
    assert not image.any()  # the original is untouched
    assert tuple(drawn[50, 20]) == (0, 0, 255)  # the box's left edge, in red
