"""A labelled image set in memory, the one shape every data-set reader returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pipeline.errors import DatasetError

__all__ = ["LabelledImages", "Split"]

Split = Literal["train", "test"]


@dataclass(frozen=True, slots=True)
class LabelledImages:
    images: npt.NDArray[np.uint8]  # N x H x W x C
    labels: npt.NDArray[np.int64]  # N
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise DatasetError(
                f"{len(self.images)} images of shape {self.images.shape[1:]} do not match "
                f"{len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, count: int | None) -> LabelledImages:
        """The first ``count`` examples (all when None): a deterministic subset."""
        if count is None or count >= len(self):
            return self
        return LabelledImages(self.images[:count], self.labels[:count], self.classes)
