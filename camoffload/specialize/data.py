"""What a specialized network learns from: a camera's frames, shrunk, and a teacher's
answers for them, turned into counts and grid cells per watched label.

The teacher is either the reference detector run here over the full-quality frames
(``reference:nanodet_coco``: what the cloud would say with nothing in the way) or the
cloud's answers kept in a run's ledger (``ledger:<file>``: frames the cloud answered;
frame i of the ledger's run must be frame i of the source, as a replay from its start
makes it). Only the shrunk frames stay in memory: 37 KB each at 96x128.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge_node.ledger_rows import iter_frames
from edge_node.sources import open_source
from pipeline.detection import VEHICLES, Detector
from pipeline.errors import CamoffloadError
from pipeline.models.specialized import SpecializedConfig, frame_tensor

__all__ = ["TeacherDetections", "Teaching", "count_and_cells", "read_teaching"]

# One frame's teacher answer: (label, score, box x1 y1 x2 y2 normalised).
TeacherDetections = Sequence[tuple[str, float, tuple[float, float, float, float]]]


@dataclass(frozen=True, slots=True)
class Teaching:
    frames: torch.Tensor  # (N, 3, H, W) float 0..1
    counts: torch.Tensor  # (N, labels) int64, clipped to max_count
    cells: torch.Tensor  # (N, labels, rows, columns) float 0/1
    places: torch.Tensor  # (N, labels, H/4, W/4) int64: box centres at each place of exit 1
    indices: tuple[int, ...]  # each row's frame index in the source
    fps: float | None

    def __len__(self) -> int:
        return len(self.indices)

    def span(self, first: int, end: int) -> Teaching:
        """The rows whose frame index is in [first, end)."""
        rows = [i for i, index in enumerate(self.indices) if first <= index < end]
        pick = torch.tensor(rows, dtype=torch.long)
        return Teaching(
            self.frames[pick],
            self.counts[pick],
            self.cells[pick],
            self.places[pick],
            tuple(self.indices[i] for i in rows),
            self.fps,
        )


def _matches(label: str, watched: str) -> bool:
    """A watched ``vehicle`` is any of COCO's vehicles; anything else is itself."""
    return label in VEHICLES if watched == "vehicle" else label == watched


def count_and_cells(
    detections: TeacherDetections, config: SpecializedConfig, min_score: float
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Per watched label: how many (clipped to max_count), which grid cells hold a box
    centre, and how many centres each place of exit 1's map holds."""
    rows, columns = config.grid
    stride = config.stride(1)
    height, width = config.input_size[0] // stride, config.input_size[1] // stride
    counts = [0] * len(config.labels)
    cells = np.zeros((len(config.labels), rows, columns), np.float32)
    places = np.zeros((len(config.labels), height, width), np.int64)
    for label, score, (x1, y1, x2, y2) in detections:
        if score < min_score:
            continue
        for i, watched in enumerate(config.labels):
            if _matches(label, watched):
                counts[i] = min(config.max_count, counts[i] + 1)
                row = min(rows - 1, max(0, int((y1 + y2) / 2 * rows)))
                column = min(columns - 1, max(0, int((x1 + x2) / 2 * columns)))
                cells[i, row, column] = 1.0
                y = min(height - 1, max(0, int((y1 + y2) / 2 * height)))
                x = min(width - 1, max(0, int((x1 + x2) / 2 * width)))
                places[i, y, x] += 1
    return counts, cells, places


def _ledger_teacher(path: Path) -> dict[int, TeacherDetections]:
    """Frame index -> the cloud's detections, for each frame the cloud answered."""
    answers: dict[int, TeacherDetections] = {}
    for record in iter_frames(path):
        if record.decision != "cloud" or record.detections is None:
            continue
        found = []
        for d in record.detections:
            box, score = d.get("box"), d.get("score")
            if isinstance(box, list) and len(box) == 4 and isinstance(score, int | float):
                x1, y1, x2, y2 = (float(v) for v in box)
                found.append((str(d.get("label")), float(score), (x1, y1, x2, y2)))
        answers[record.seq] = found
    if not answers:
        raise CamoffloadError(f"{path}: no frame answered by the cloud to learn from")
    return answers


def read_teaching(
    source: str,
    config: SpecializedConfig,
    *,
    end: int,
    first: int = 0,
    teacher: str,
    min_score: float,
    answers: Mapping[int, TeacherDetections] | None = None,
    progress: Callable[[int], None] = lambda _n: None,
) -> Teaching:
    """Frames [first, end) of ``source`` with ``teacher``'s answers (see the module doc);
    frames the teacher has no answer for are left out. ``answers`` given: the reference
    teacher's answers, already computed."""
    kind, _, what = teacher.partition(":")
    if kind not in ("reference", "ledger") or not what:
        raise CamoffloadError(
            f"teacher {teacher!r}: expected reference:<detector> or ledger:<file>"
        )
    detector: Detector | None = None
    known: Mapping[int, TeacherDetections] = {}
    if answers is not None:
        known = answers
    elif kind == "reference":
        detector = Detector.by_name(what, min_score=min_score)
    else:
        known = _ledger_teacher(Path(what))
    frames: list[torch.Tensor] = []
    counts: list[list[int]] = []
    cells: list[np.ndarray] = []
    places: list[np.ndarray] = []
    indices: list[int] = []
    reader = open_source(source)
    try:
        fps = reader.fps
        while (frame := reader.read()) is not None:
            index = frame.index
            if index >= end:
                break
            if index < first:
                continue
            if detector is not None:
                found: TeacherDetections | None = [
                    (d.name, d.score, d.box) for d in detector.detect_one(frame.image)
                ]
            else:
                found = known.get(index)
            progress(1)
            if found is None:
                continue
            count, cell, place = count_and_cells(found, config, min_score)
            frames.append(frame_tensor(frame.image, config.input_size))
            counts.append(count)
            cells.append(cell)
            places.append(place)
            indices.append(index)
    finally:
        reader.close()
    if not indices:
        raise CamoffloadError(f"{source}: no frame with a teacher's answer in frames 0..{end - 1}")
    return Teaching(
        torch.stack(frames),
        torch.tensor(counts, dtype=torch.long),
        torch.from_numpy(np.stack(cells)),
        torch.from_numpy(np.stack(places)),
        tuple(indices),
        fps,
    )
