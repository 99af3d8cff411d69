"""Per-exit predictions and accuracy of an early-exit network on a labelled set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from pipeline.datasets import LabelledImages
from pipeline.models.early_exit import EarlyExitResNet

__all__ = ["ExitPredictions", "normalised_batch", "predict_exits"]


def normalised_batch(
    images: npt.NDArray[np.uint8], mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """N x H x W x C uint8 -> N x C x H x W float32, scaled to [0, 1] and normalised."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    return (tensor - mean_t) / std_t


@dataclass(frozen=True, slots=True)
class ExitPredictions:
    """Softmax confidence and predicted class at every exit, for every image."""

    confidence: npt.NDArray[np.float32]  # exits x N
    predicted: npt.NDArray[np.int64]  # exits x N
    labels: npt.NDArray[np.int64]  # N

    def accuracy(self) -> list[float]:
        return [float(np.mean(row == self.labels)) for row in self.predicted]

    def at_threshold(self, exit_index: int, threshold: float) -> tuple[float, float]:
        """(share of images whose confidence at this exit >= threshold, their accuracy)."""
        taken = self.confidence[exit_index] >= threshold
        share = float(np.mean(taken))
        if not taken.any():
            return share, float("nan")
        hits = self.predicted[exit_index][taken] == self.labels[taken]
        return share, float(np.mean(hits))


def predict_exits(
    model: EarlyExitResNet,
    data: LabelledImages,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device | None = None,
    batch_size: int = 500,
) -> ExitPredictions:
    device = device or torch.device("cpu")
    model = model.to(device).eval()
    confidences: list[torch.Tensor] = []
    predictions: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            batch = normalised_batch(data.images[start : start + batch_size], mean, std)
            logits = torch.stack(model(batch.to(device))).float()  # exits x B x classes
            confidence, predicted = torch.softmax(logits, dim=2).max(dim=2)
            confidences.append(confidence.cpu())
            predictions.append(predicted.cpu())
    return ExitPredictions(
        confidence=torch.cat(confidences, dim=1).numpy(),
        predicted=torch.cat(predictions, dim=1).numpy(),
        labels=data.labels,
    )
