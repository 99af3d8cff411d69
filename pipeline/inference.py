"""Batched classification of decoded images with a registered model.

Synchronous and CPU/GPU-bound on purpose: the worker calls :meth:`Classifier.predict`
from a thread so its event loop never waits on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from pipeline.codecs import Image
from pipeline.errors import ModelError
from pipeline.models import ModelSpec, get_model_spec

__all__ = ["Classifier", "Prediction", "resolve_device"]


@dataclass(frozen=True, slots=True)
class Prediction:
    label: int
    topk_labels: tuple[int, ...]
    topk_scores: tuple[float, ...]


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when available, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


class Classifier:
    """A model from the registry, on a device, with its own preprocessing."""

    def __init__(self, spec: ModelSpec, device: torch.device, *, topk: int = 5) -> None:
        self.spec = spec
        self.device = device
        self.topk = min(topk, len(spec.labels))
        self._model = spec.build().to(device)
        self._mean = torch.tensor(spec.mean, device=device).view(1, spec.channels, 1, 1)
        self._std = torch.tensor(spec.std, device=device).view(1, spec.channels, 1, 1)

    @classmethod
    def by_name(cls, name: str, device: str = "cpu") -> Classifier:
        return cls(get_model_spec(name), resolve_device(device))

    def preprocess(self, images: Sequence[Image]) -> torch.Tensor:
        """BGR (or grey) uint8 HxWxC images -> a normalised float NCHW batch.

        Colour is converted to what the model takes: grey models get luma, RGB models
        get grey images replicated across channels.
        """
        height, width = self.spec.input_size
        channels = self.spec.channels
        batch = np.empty((len(images), height, width, channels), dtype=np.uint8)
        for i, image in enumerate(images):
            if image.ndim == 3 and image.shape[2] == 1:
                image = image[:, :, 0]
            resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            if channels == 1:
                batch[i, :, :, 0] = (
                    resized if resized.ndim == 2 else cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)
                )
            elif resized.ndim == 2:
                batch[i] = resized[:, :, None]
            else:
                batch[i] = resized[:, :, ::-1]  # BGR -> RGB
        tensor = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return (tensor - self._mean) / self._std

    def predict(self, images: Sequence[Image]) -> list[Prediction]:
        """Classify a batch; one :class:`Prediction` per image, in order."""
        if not images:
            return []
        try:
            with torch.inference_mode():
                logits = self._model(self.preprocess(images))
                probs = torch.softmax(logits.float(), dim=1)
                scores, labels = probs.topk(self.topk, dim=1)
        except (RuntimeError, ValueError, cv2.error) as exc:
            # torch reports shape, dtype and out-of-memory failures as RuntimeError.
            raise ModelError(f"{self.spec.name} failed on a batch of {len(images)}: {exc}") from exc
        scores_list = scores.cpu().tolist()
        labels_list = labels.cpu().tolist()
        return [
            Prediction(
                label=int(lab[0]),
                topk_labels=tuple(int(x) for x in lab),
                topk_scores=tuple(min(1.0, max(0.0, float(s))) for s in sc),
            )
            for lab, sc in zip(labels_list, scores_list, strict=True)
        ]
