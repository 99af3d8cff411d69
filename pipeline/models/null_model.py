"""``null``: a model that costs nothing, for measuring what everything else costs.

A benchmark tool, never a model to serve: it reads one value of each image (so the
input has to arrive and be decoded) and answers class 0 for every frame. With it,
``camoffload bench --model null`` measures the transport ceiling: the frames a second
the pipeline moves when inference is free, the bound of a worker box whose GPU is never
the limit. Its input is Fashion-MNIST's (28x28 grey), so the bench's frames fit it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NULL_CLASSES", "NullNet"]

NULL_CLASSES = 10


class NullNet(nn.Module):
    def __init__(self, classes: int = NULL_CLASSES) -> None:
        super().__init__()
        answer = torch.zeros(classes)
        answer[0] = 1.0  # a fixed label, with a finite softmax
        self.register_buffer("answer", answer)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # One value of each image, times zero: the batch is read, nothing is computed.
        first: torch.Tensor = images.flatten(1)[:, :1] * 0.0
        answer: torch.Tensor = self.answer  # type: ignore[assignment]
        return first + answer
