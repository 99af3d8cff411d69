"""The edge's specialized model: its camera's own early-exit network (``edge.specialized``).

Each frame goes through the network one stage at a time and stops at the first exit
sure of every watched label (its calibrated threshold, from the manifest); the next
stage runs only when this exit is unsure, so an empty hallway costs one exit. What no
exit is sure of goes to the cloud, with the last exit's answer as the fallback should
the cloud not answer in time.

The answer is counts, not boxes: ``counted`` holds one ``(label, presence)`` per object
counted. The ledger keeps them as detections without a box; the tracker reads them as
"still there" for objects it follows (``edge_node/objects.py``).

Synchronous and CPU-bound: the edge calls :meth:`SpecializedModel.answer` from a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.codecs import Image
from pipeline.models.specialized import ExitAnswer, exit_answers, frame_tensor
from pipeline.models.specialized_weights import load_specialized

__all__ = ["SpecializedAnswer", "SpecializedModel"]


@dataclass(frozen=True, slots=True)
class SpecializedAnswer:
    answer: ExitAnswer  # the last exit run
    sure: bool  # that exit reached its threshold
    labels: tuple[str, ...]

    @property
    def counted(self) -> tuple[tuple[str, float], ...]:
        """One (label, presence probability) per object counted."""
        return tuple(
            (label, round(presence, 3))
            for label, count, presence in zip(
                self.labels, self.answer.counts, self.answer.presence, strict=True
            )
            for _ in range(count)
        )

    @property
    def detail(self) -> str:
        state = "sure" if self.sure else "unsure"
        counts = ", ".join(
            f"{n} {label}" for label, n in zip(self.labels, self.answer.counts, strict=True)
        )
        return f"exit {self.answer.exit + 1} {state} ({self.answer.sureness:.2f}): {counts}"


class SpecializedModel:
    def __init__(self, manifest_path: str | Path) -> None:
        self.manifest, self._network = load_specialized(Path(manifest_path))
        self.config = self._network.config
        self.labels = self.config.labels
        self.thresholds = self.manifest.thresholds
        self.name = f"specialized:{self.manifest.name}"
        self.exits_taken = [0] * self.config.exits  # frames answered at each exit

    def answer(self, image: Image) -> SpecializedAnswer:
        x = frame_tensor(image, self.config.input_size)[None]
        with torch.inference_mode():
            features = self._network.stem_features(x)
            for index, threshold in enumerate(self.thresholds):
                features, counts, cells = self._network.step(index, features)
                found = exit_answers(index, counts, cells, self.config.max_count)[0]
                if found.sureness >= threshold:
                    self.exits_taken[index] += 1
                    return SpecializedAnswer(found, True, self.labels)
        return SpecializedAnswer(found, False, self.labels)
