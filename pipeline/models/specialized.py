"""A camera's own early-exit network: what it watches for, per frame, in ~1 ms of CPU.

NoScope (Kang et al., VLDB 2017) and FilterForward (MLSys 2019) answer most frames of
one fixed camera with a tiny model trained for that camera alone. This is ours: a
downscaled frame goes through a stem and three stages, and after each stage an exit
says, for each watched label (``person``),

* how many there are, counted where they stand: at every place of the stage's map
  (a 4x4-pixel patch of the shrunk frame at exit 1, 16x16 at exit 3) a class over
  0, 1, 2, 3+ box centres. The count is the sum of the places' expected counts, and
  the exit is as sure as the chance that the sum rounds right (a normal over the
  places' variances). Counting by place, as crowd-counting density maps do, learns
  from every person in every frame: a few hundred frames teach it, where one class
  per frame would need thousands;
* where they are: one presence logit per cell of a coarse ``grid`` (rows x columns),
  a cell holding an object when the object's box centre falls in it.

An exit is as sure as its least sure yes/no (each label there or not, in the frame
and in each cell): what a security camera's user watches for is presence, and where.

A plain ``nn.Module`` with no I/O; the weights and their manifest are
:mod:`pipeline.models.specialized_weights`, training is ``camoffload specialize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

__all__ = [
    "PLACE_CLASSES",
    "ExitAnswer",
    "SpecializedConfig",
    "SpecializedNet",
    "exit_answers",
    "frame_tensor",
]


PLACE_CLASSES = 4  # box centres at one place of an exit's map: 0, 1, 2, 3 or more


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecializedConfig:
    labels: tuple[str, ...] = ("person",)
    input_size: tuple[int, int] = (96, 128)  # (height, width) the frame is shrunk to
    widths: tuple[int, ...] = (16, 32, 64, 128)  # the stem's, then each stage's
    max_count: int = 8  # counts above are reported as this
    grid: tuple[int, int] = (2, 2)  # (rows, columns) of presence cells: the zones

    def __post_init__(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be distinct and not empty, got {self.labels}")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths need a stem and at least one stage, got {self.widths}")
        if self.max_count < 1 or min(self.grid) < 1:
            raise ValueError("max_count and grid must be >= 1")
        stride = self.stride(self.exits)
        if min(self.input_size) < stride or any(v % stride for v in self.input_size):
            raise ValueError(
                f"the input size must be a multiple of {stride}, got {self.input_size}"
            )

    @property
    def exits(self) -> int:
        return len(self.widths) - 1

    @staticmethod
    def stride(exit_number: int) -> int:
        """Input pixels per place of exit ``exit_number``'s map (1-based): the stem and
        each stage halve it."""
        return int(2 ** (exit_number + 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "input_size": list(self.input_size),
            "widths": list(self.widths),
            "max_count": self.max_count,
            "grid": list(self.grid),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpecializedConfig:
        height, width = (int(v) for v in data["input_size"])
        rows, columns = (int(v) for v in data["grid"])
        return cls(
            labels=tuple(str(v) for v in data["labels"]),
            input_size=(height, width),
            widths=tuple(int(v) for v in data["widths"]),
            max_count=int(data["max_count"]),
            grid=(rows, columns),
        )


def _conv(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _Exit(nn.Module):
    """A count class per label at every place of this stage's map (its density), and
    the zone cells from the map pooled to the grid."""

    def __init__(self, channels: int, config: SpecializedConfig) -> None:
        super().__init__()
        labels = len(config.labels)
        self.density = nn.Conv2d(channels, labels * PLACE_CLASSES, 1)
        self.cells = nn.Conv2d(channels, labels, 1)
        self.grid = nn.AdaptiveMaxPool2d(config.grid)
        self._labels = labels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, height, width = x.shape
        density = self.density(x).view(n, self._labels, PLACE_CLASSES, height, width)
        return density, self.cells(self.grid(x))


class SpecializedNet(nn.Module):
    """Frames (N, 3, H, W) in 0..1 to, per exit, density logits (N, labels,
    PLACE_CLASSES, h, w) at that stage's resolution and cell logits (N, labels, rows,
    columns)."""

    def __init__(self, config: SpecializedConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        # The camera's empty scene, learned at training (the median frame): the stem
        # sees each frame beside its difference from it, as NoScope's difference
        # detectors do. What moves stands out at every stage, even the first.
        self.register_buffer("scene", torch.zeros(3, *config.input_size))
        self.stem = _conv(6, widths[0], 2)
        self.stages = nn.ModuleList(
            nn.Sequential(
                _conv(widths[i], widths[i + 1], 2), _conv(widths[i + 1], widths[i + 1], 1)
            )
            for i in range(config.exits)
        )
        self.exits = nn.ModuleList(_Exit(w, config) for w in widths[1:])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every exit's output (training, calibration)."""
        x = self.stem_features(x)
        out = []
        for stage, head in zip(self.stages, self.exits, strict=True):
            x = stage(x)
            out.append(head(x))
        return out

    @property
    def background(self) -> torch.Tensor:
        return self.get_buffer("scene")

    def stem_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(torch.cat([x, x - self.background], dim=1))  # type: ignore[no-any-return]

    def step(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage ``index`` on the features before it: its features and its exit's output,
        so an edge pays for the next stage only when this exit is unsure."""
        features = self.stages[index](x)
        counts, cells = self.exits[index](features)
        return features, counts, cells


@dataclass(frozen=True, slots=True)
class ExitAnswer:
    """One exit's answer for one frame, per watched label (in the config's order)."""

    exit: int  # 0-based
    counts: tuple[int, ...]  # per label: the places' expected counts, summed and rounded
    presence: tuple[float, ...]  # per label: 1 - P(no place holds one)
    cells: np.ndarray  # (labels, rows, columns) presence probabilities

    @property
    def sureness(self) -> float:
        """How sure the exit is of the least sure yes/no it answers: each label there
        or not, and in each grid cell."""
        frame = min(max(p, 1.0 - p) for p in self.presence)
        cells = float(np.min(np.maximum(self.cells, 1.0 - self.cells)))
        return min(frame, cells)


def exit_answers(
    index: int, density: torch.Tensor, cells: torch.Tensor, max_count: int
) -> list[ExitAnswer]:
    """Each frame's :class:`ExitAnswer` from one exit's logits."""
    probs = torch.softmax(density.float(), dim=2)  # (N, labels, classes, h, w)
    values = torch.arange(PLACE_CLASSES, dtype=torch.float32).view(1, 1, -1, 1, 1)
    expected = (probs * values).sum(dim=(2, 3, 4)).round().clamp(0, max_count)
    presence = 1.0 - torch.exp(torch.log(probs[:, :, 0].clamp_min(1e-12)).sum(dim=(2, 3)))
    # The count agrees with the yes/no: none unless a label is more likely there than
    # not, and then at least one.
    counts = torch.where(presence >= 0.5, expected.clamp_min(1), torch.zeros_like(expected))
    cell_p = torch.sigmoid(cells.float()).cpu().numpy()
    return [
        ExitAnswer(
            index,
            tuple(int(v) for v in counts[i].tolist()),
            tuple(float(v) for v in presence[i].tolist()),
            cell_p[i],
        )
        for i in range(density.shape[0])
    ]


def frame_tensor(image: np.ndarray, input_size: tuple[int, int]) -> torch.Tensor:
    """A BGR (or grey) uint8 frame as the network's (3, H, W) float input in 0..1.
    INTER_AREA averages the pixels a shrunk one covers, as a camera's downscale would."""
    if image.ndim == 2 or image.shape[2] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    height, width = input_size
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(small[:, :, ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb).float().div_(255.0)
