"""The ``specialize`` suite's own steps, beside the security suite's replays.

For each data set the suite teaches a specialized model on the first half of the
frames (the reference's answers are the teacher: what the cloud would say), then
replays the second half through the real broker once per strategy. A strategy with
``specialized = "trained"`` gets that model. Besides the security measures, a cell
here reports the share of frames each exit answered, and the suite measures each exit
alone on the second half, offline, where the ledger cannot tell: presence per grid
cell, against the reference, over every frame and over the frames it answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from camoffload.security import COUNT_MIN_SCORE
from camoffload.specialize.build import Specialization, build_specialized
from camoffload.specialize.calibrate import Objective, exit_outputs
from camoffload.specialize.data import TeacherDetections, read_teaching
from camoffload.specialize.train import TrainOptions
from edge_node.ledger_rows import FrameRecord
from pipeline.models.specialized import SpecializedConfig
from pipeline.models.specialized_weights import load_specialized

__all__ = [
    "TRAINED",
    "exit_shares",
    "offline_exits",
    "teacher_answers",
    "train_for_data",
    "with_trained",
]

TRAINED = "trained"  # a strategy's ``specialized`` setting: the model this run trains
TRAIN_SHARE = 0.5  # the split: learn the first half, be measured on the second
HELD_OUT = 0.25  # of the first half: the later quarter sets the thresholds
GRID = (2, 2)
EPOCHS = 40

_EXIT = re.compile(r"^exit (\d+) sure")


def teacher_answers(
    reference: Sequence[Sequence[Mapping[str, Any]]],
) -> dict[int, TeacherDetections]:
    """The reference's per-frame detections (the suite's JSON form) as a teacher's."""
    out: dict[int, TeacherDetections] = {}
    for index, found in enumerate(reference):
        out[index] = [
            (str(d["label"]), float(d["score"]), tuple(float(v) for v in d["box"]))  # type: ignore[misc]
            for d in found
        ]
    return out


def train_for_data(
    name: str,
    source: Path,
    reference: Sequence[Sequence[Mapping[str, Any]]],
    out_dir: Path,
    *,
    reference_model: str,
) -> tuple[Path, dict[str, Any]]:
    """Teach a model on the first half of ``reference``'s frames; its manifest and what
    the report says of it."""
    half = int(len(reference) * TRAIN_SHARE)
    job = Specialization(
        source=str(source),
        out=out_dir / "models",
        name=f"{name}_specialized",
        config=SpecializedConfig(grid=GRID),
        teacher=f"reference:{reference_model}",
        min_score=COUNT_MIN_SCORE,
        frames=half,
        held_out=HELD_OUT,
        options=TrainOptions(epochs=EPOCHS),
        objective=Objective(),
        command="camoffload eval --suite specialize",
    )
    built = build_specialized(job, answers=teacher_answers(reference[:half]), show_progress=False)
    manifest, _ = load_specialized(built.manifest)
    return built.manifest, {
        "manifest": str(built.manifest.relative_to(out_dir)),
        "train_frames": list(manifest.train_frames),
        "held_out_frames": list(manifest.held_out_frames),
        "evaluated_frames": [half, len(reference)],
        "params": built.params,
        "train_wall_s": manifest.train_wall_s,
        "held_out_exits": [msgspec.to_builtins(e) for e in manifest.exits],
        "held_out_offload_share": manifest.offload_share,
    }


def with_trained(settings: Mapping[str, Any], manifest: Path | None) -> dict[str, Any]:
    """A strategy's settings with ``specialized = "trained"`` made the trained model's path."""
    out = dict(settings)
    if out.get("specialized") == TRAINED:
        if manifest is None:
            raise ValueError("a strategy asks for the trained model, but none was trained")
        out["specialized"] = str(manifest)
    return out


def exit_shares(records: Iterable[FrameRecord], exits: int, frames: int) -> list[float]:
    """The share of ``frames`` each exit answered on the camera (from the decision's detail)."""
    counts = [0] * exits
    for record in records:
        if record.decision != "local" or record.detail is None:
            continue
        match = _EXIT.match(record.detail.removeprefix("local-only: "))
        if match and 1 <= int(match.group(1)) <= exits:
            counts[int(match.group(1)) - 1] += 1
    return [c / frames if frames else 0.0 for c in counts]


def offline_exits(
    manifest: Path, source: Path, reference: Sequence[Sequence[Mapping[str, Any]]], start: int
) -> list[dict[str, float | None]]:
    """Each exit alone on frames ``start``.. of ``source`` against the reference: presence
    F1 per grid cell and in the frame, and the count's mean absolute error."""
    loaded, network = load_specialized(manifest)
    config = network.config
    teaching = read_teaching(
        str(source),
        config,
        first=start,
        end=len(reference),
        teacher=loaded.teacher,
        min_score=loaded.min_score,
        answers=teacher_answers(reference),
    )
    truth_counts = teaching.counts.numpy()
    truth_cells = teaching.cells.numpy() >= 0.5
    out = []
    waiting = np.ones(len(teaching), dtype=bool)  # not answered by an earlier exit
    for answers, threshold in zip(exit_outputs(network, teaching), loaded.thresholds, strict=True):
        counts = np.array([a.counts for a in answers])
        cells = np.stack([a.cells for a in answers]) >= 0.5
        answered = waiting & (np.array([a.sureness for a in answers]) >= threshold)
        waiting &= ~answered
        out.append(
            {
                "presence_f1": _f1(counts > 0, truth_counts > 0),
                "cell_f1": _f1(cells, truth_cells),
                "cell_recall": _recall(cells, truth_cells),
                "count_mae": float(np.mean(np.abs(counts - truth_counts))),
                # The frames this exit answers in the cascade, and how right it is there.
                "answered_share": float(np.mean(answered)),
                "answered_cell_recall": _recall(cells[answered], truth_cells[answered]),
                "answered_count_mae": (
                    float(np.mean(np.abs(counts[answered] - truth_counts[answered])))
                    if answered.any()
                    else None
                ),
            }
        )
    return out


def _f1(ours: np.ndarray, truth: np.ndarray) -> float | None:
    tp, fp, fn = int(np.sum(ours & truth)), int(np.sum(ours & ~truth)), int(np.sum(~ours & truth))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None


def _recall(ours: np.ndarray, truth: np.ndarray) -> float | None:
    positives = int(np.sum(truth))
    return int(np.sum(ours & truth)) / positives if positives else None
