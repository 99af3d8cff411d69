"""From frames and a teacher to a calibrated specialized model on disk, in one call:
what ``camoffload specialize`` and the ``specialize`` eval suite both run."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from camoffload.specialize.calibrate import Objective, calibrate_exits
from camoffload.specialize.data import TeacherDetections, read_teaching
from camoffload.specialize.train import TrainOptions, count_parameters, train_specialized
from camoffload.training.progress import Progress
from edge_node.sources import open_source
from pipeline.errors import CamoffloadError
from pipeline.models.specialized import SpecializedConfig
from pipeline.models.specialized_weights import ExitMetrics, save_specialized

__all__ = ["Built", "Specialization", "build_specialized"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Specialization:
    source: str
    out: Path
    name: str
    config: SpecializedConfig
    teacher: str  # "reference:<detector>" or "ledger:<file>"
    min_score: float
    frames: int | None  # use frames 0..frames-1 (None: all)
    held_out: float  # the later share of them kept for thresholds and metrics
    options: TrainOptions
    objective: Objective
    command: str


@dataclass(frozen=True, slots=True)
class Built:
    manifest: Path
    exits: list[ExitMetrics]
    offload_share: float
    params: int
    trained: int
    held: int


def build_specialized(
    job: Specialization,
    *,
    answers: Mapping[int, TeacherDetections] | None = None,
    show_progress: bool = True,
) -> Built:
    """Read, train, calibrate and save; ``answers`` (frame index -> detections) stand in
    for running the reference teacher when the caller already has them."""
    if not 0.0 < job.held_out < 1.0:
        raise CamoffloadError(f"held-out share must be between 0 and 1, not {job.held_out}")
    started = time.perf_counter()
    end = job.frames if job.frames is not None else 1 << 30

    def bar(total: int, label: str) -> Callable[..., None]:
        if not show_progress:
            return lambda *_args, **_fields: None
        return Progress(total, label).update

    teaching = read_teaching(
        job.source,
        job.config,
        end=end,
        teacher=job.teacher,
        min_score=job.min_score,
        answers=answers,
        progress=bar(job.frames or _frames_in(job.source), f"frames ({job.teacher})"),
    )
    first, last = teaching.indices[0], teaching.indices[-1]
    first_held = first + round((last + 1 - first) * (1 - job.held_out))
    train = teaching.span(0, first_held)
    held_out = teaching.span(first_held, last + 1)
    if len(train) < 8 or len(held_out) < 4:
        raise CamoffloadError(
            f"{job.source}: {len(teaching)} frames with answers is too few to train on "
            f"({len(train)}) and hold out ({len(held_out)})"
        )
    epoch = bar(job.options.epochs, f"train {len(train)} frames")
    network = train_specialized(
        train, job.config, job.options, progress=lambda loss: epoch(loss=loss)
    )
    exits, offload_share = calibrate_exits(network, held_out, job.objective)
    fps = teaching.fps or 0.0
    path = save_specialized(
        network,
        job.out,
        job.name,
        {
            "camera": Path(job.source.rstrip("/")).name,
            "train_frames": (train.indices[0], train.indices[-1] + 1),
            "held_out_frames": (held_out.indices[0], held_out.indices[-1] + 1),
            "time_span_s": (
                round(first / fps, 2) if fps else 0.0,
                round(last / fps, 2) if fps else 0.0,
            ),
            "teacher": job.teacher,
            "min_score": job.min_score,
            "objective": job.objective.as_dict(),
            "exits": tuple(exits),
            "offload_share": round(offload_share, 4),
            "seed": job.options.seed,
            "epochs": job.options.epochs,
            "command": job.command,
            "torch_version": str(torch.__version__),
            "train_wall_s": round(time.perf_counter() - started, 1),
        },
    )
    return Built(path, exits, offload_share, count_parameters(network), len(train), len(held_out))


def _frames_in(source: str) -> int:
    """The source's frame count as its header says (0: unknown), for the progress bar."""
    reader = open_source(source)
    try:
        return operator.length_hint(reader, 0)
    finally:
        reader.close()
