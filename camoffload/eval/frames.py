"""The frames an experiment replays: the same ones for every cell, paced like a camera.

Each data set is read once (the first ``frames`` frames of its source) and held in
memory, with the label a decision is scored against: the data set's own label, or, for
unlabelled video (``reference = "cloud"``), the cloud model's answer on the untouched
frame. Cells then replay them through :class:`PacedFrames`, a live source that yields a
frame every 1/rate seconds whether or not the edge is ready, as a camera does: an edge
that falls behind must decide locally or drop, and its latency counts from the moment
the frame was "captured", not from when the edge got round to it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from camoffload.eval.suite import DataSpec
from edge_node import CapturedFrame, LocalModel, open_source
from pipeline.codecs import Image
from pipeline.errors import SourceError
from pipeline.inference import Classifier

__all__ = [
    "PacedFrames",
    "PreparedData",
    "local_confidences",
    "prepare_data",
    "resolve_source",
]

# Suites name OpenCV's sample clip by this, wherever it is installed on a machine.
SAMPLE_VIDEO = "vtest"


def resolve_source(source: str) -> str:
    """A suite's source as a replay source: ``vtest`` is OpenCV's sample clip."""
    if source == SAMPLE_VIDEO:
        from camoffload.demo import default_video

        return str(default_video())
    return source


_REFERENCE_BATCH = 16


@dataclass(frozen=True, slots=True)
class PreparedData:
    spec: DataSpec
    images: tuple[Image, ...]
    labels: tuple[int, ...]  # what a decision is scored against, per frame


def prepare_data(spec: DataSpec, frames: int) -> PreparedData:
    """Read the first ``frames`` frames of ``spec.source`` (blocking: call in a thread)."""
    source = open_source(resolve_source(spec.source))
    images: list[Image] = []
    labels: list[int | None] = []
    try:
        while len(images) < frames and (frame := source.read()) is not None:
            images.append(np.array(frame.image))  # own copy: sources may reuse buffers
            labels.append(frame.true_label)
    finally:
        source.close()
    if not images:
        raise SourceError(f"data {spec.name}: {spec.source} gave no frames")
    if spec.reference == "cloud":
        labels = list(_cloud_answers(spec.cloud_model, images))
    missing = sum(1 for label in labels if label is None)
    if missing:
        raise SourceError(
            f"data {spec.name}: {missing} of {len(labels)} frames have no label; "
            'use a labelled source or reference = "cloud"'
        )
    return PreparedData(
        spec, tuple(images), tuple(int(label) for label in labels if label is not None)
    )


def _cloud_answers(model: str, images: list[Image]) -> list[int]:
    classifier = Classifier.by_name(model, "cpu")
    answers: list[int] = []
    for start in range(0, len(images), _REFERENCE_BATCH):
        batch = images[start : start + _REFERENCE_BATCH]
        answers.extend(p.label for p in classifier.predict(batch))
    return answers


def local_confidences(model: LocalModel, images: tuple[Image, ...]) -> np.ndarray:
    """The local exit's confidence on each frame (for coverage targets)."""
    return np.array([model.classify(image).confidence for image in images], dtype=np.float64)


class PacedFrames:
    """A live source over in-memory frames: one every ``1/fps`` s on a fixed grid; with
    ``fps=None`` a file-like source instead (not live, no pacing: the edge reads the
    next frame when it is ready for one)."""

    def __init__(self, data: PreparedData, fps: float | None, *, name: str = "") -> None:
        self.name = name or f"eval:{data.spec.name}"
        self.fps: float | None = fps
        self.live = fps is not None
        self._data = data
        self._next = 0
        self._interval = 0.0 if fps is None else 1.0 / fps
        self._start: float | None = None
        self._closed = threading.Event()

    def read(self) -> CapturedFrame | None:
        index = self._next
        if index >= len(self._data.images) or self._closed.is_set():
            return None
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + index * self._interval
        # Sleep on the event, so close() ends a wait at once.
        if self._closed.wait(max(0.0, due - time.monotonic())):
            return None
        self._next += 1
        return CapturedFrame(
            image=self._data.images[index],
            capture_ts=time.time(),
            index=index,
            true_label=self._data.labels[index],
        )

    def close(self) -> None:
        self._closed.set()
