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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from camoffload.security import COUNT_MIN_SCORE
from camoffload.specialize.build import Specialization, build_specialized
from camoffload.specialize.calibrate import Objective, exit_outputs, exit_scores
from camoffload.specialize.data import TeacherDetections, read_teaching
from camoffload.specialize.train import TrainOptions
from edge_node.ledger_rows import FrameRecord
from pipeline.models.specialized import SpecializedConfig
from pipeline.models.specialized_weights import load_specialized, read_specialized_manifest

__all__ = [
    "TRAINED",
    "Taught",
    "exit_shares",
    "offline_exits",
    "teach",
    "teacher_answers",
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


@dataclass(frozen=True, slots=True)
class Taught:
    """The model a data set taught, and what the report says of it."""

    manifest: Path
    exits: int
    start: int  # the first frame measured: the second half's
    meta: dict[str, Any]


def teach(
    name: str,
    source: Path,
    reference: Sequence[Sequence[Mapping[str, Any]]],
    out_dir: Path,
    *,
    reference_model: str,
) -> Taught:
    """Teach a model on the first half of ``reference``'s frames, and measure each exit
    alone on the second half."""
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
    manifest = read_specialized_manifest(built.manifest)
    meta = {
        "manifest": str(built.manifest.relative_to(out_dir)),
        "train_frames": list(manifest.train_frames),
        "held_out_frames": list(manifest.held_out_frames),
        "evaluated_frames": [half, len(reference)],
        "params": built.params,
        "train_wall_s": manifest.train_wall_s,
        "held_out_exits": [msgspec.to_builtins(e) for e in manifest.exits],
        "held_out_offload_share": manifest.offload_share,
        "second_half_exits": offline_exits(built.manifest, source, reference, half),
    }
    return Taught(built.manifest, len(manifest.exits), half, meta)


def with_trained(settings: Mapping[str, Any], taught: Taught | None) -> dict[str, Any]:
    """A strategy's settings with ``specialized = "trained"`` made the trained model's path."""
    out = dict(settings)
    if out.get("specialized") == TRAINED:
        if taught is None:
            raise ValueError("a strategy asks for the trained model, but none was trained")
        out["specialized"] = str(taught.manifest)
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
    truth_counts, truth_cells = teaching.counts.numpy(), teaching.cells.numpy()
    out = []
    waiting = np.ones(len(teaching), dtype=bool)  # not answered by an earlier exit
    for answers, threshold in zip(exit_outputs(network, teaching), loaded.thresholds, strict=True):
        answered = waiting & (np.array([a.sureness for a in answers]) >= threshold)
        waiting &= ~answered
        there = exit_scores(
            [a for a, yes in zip(answers, answered, strict=True) if yes],
            truth_counts[answered],
            truth_cells[answered],
        )
        out.append(
            {
                **exit_scores(answers, truth_counts, truth_cells),
                # The frames this exit answers in the cascade, and how right it is there.
                "answered_share": float(np.mean(answered)),
                "answered_cell_recall": there["cell_recall"],
                "answered_count_mae": there["count_mae"],
            }
        )
    return out
