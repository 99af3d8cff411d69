"""A ResNet-style early-exit network for small images, splittable at stage boundaries.

Layout (CIFAR-style: 3x3 stem, no max-pool, a stride-2 first block in every stage but
the first)::

    image -> stem -> stage 1 -> stage 2 -> ... -> stage N -> final head -> logits N
                        |           |                 |
                      exit 1      exit 2      ...   exit N-1   (early-exit heads)

A *split point* ``k`` (0 <= k <= N) is the boundary after stage ``k``. The edge part
runs stem .. stage k and exit k; the cloud part continues from that intermediate
tensor with stage k+1 .. the final head. Both parts share the parent's modules, so
``cloud(edge(x).activation)`` is, up to float rounding, the full network's final
logits. Plain ``nn.Module``s, no I/O: loading weights is :mod:`pipeline.models.weights`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention
from torch import nn

from pipeline.errors import ModelError

__all__ = [
    "CloudPart",
    "EarlyExitConfig",
    "EarlyExitResNet",
    "EdgeOutput",
    "EdgePart",
    "FinalExit",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyExitConfig:
    """The architecture; stored in every weights manifest and checked on load."""

    in_channels: int = 1
    num_classes: int = 10
    input_size: int = 28
    widths: tuple[int, ...] = (48, 96, 192, 256)  # the committed Fashion-MNIST model
    blocks: tuple[int, ...] = (1, 1, 1, 1)

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or len(self.widths) != len(self.blocks):
            raise ModelError(
                f"need >= 2 stages and one block count per stage, got widths={self.widths} "
                f"blocks={self.blocks}"
            )
        if min(self.widths) < 1 or min(self.blocks) < 1 or self.num_classes < 2:
            raise ModelError(f"widths, blocks and num_classes must be positive: {self}")

    @property
    def num_stages(self) -> int:
        return len(self.widths)

    def to_dict(self) -> dict[str, Any]:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EarlyExitConfig:
        try:
            return cls(
                in_channels=int(data["in_channels"]),
                num_classes=int(data["num_classes"]),
                input_size=int(data["input_size"]),
                widths=tuple(int(w) for w in data["widths"]),
                blocks=tuple(int(b) for b in data["blocks"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad architecture description {data!r}: {exc}") from exc


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _exit_head(channels: int, num_classes: int) -> nn.Sequential:
    # A pooled linear layer alone is too weak on early, wide-but-shallow features; one
    # strided conv doubles the channels and halves the map before pooling, for a few
    # percent of the stage's cost.
    return nn.Sequential(
        nn.Conv2d(channels, 2 * channels, 3, 2, 1, bias=False),
        nn.BatchNorm2d(2 * channels),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * channels, num_classes),
    )


def _final_head(channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


class EarlyExitResNet(nn.Module):
    """Stem, residual stages, an exit head after each early stage and the final head."""

    def __init__(self, config: EarlyExitConfig) -> None:
        super().__init__()
        self.config = config
        first = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, first, 3, 1, 1, bias=False),
            nn.BatchNorm2d(first),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_channels = first
        for index, (width, count) in enumerate(zip(config.widths, config.blocks, strict=True)):
            blocks = []
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        heads = [_exit_head(width, config.num_classes) for width in config.widths[:-1]]
        heads.append(_final_head(config.widths[-1], config.num_classes))
        self.exits = nn.ModuleList(heads)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last BN of each residual branch: every block starts as identity,
        # which trains faster and better at these depths (Goyal et al., 2017).
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits at every exit, earliest first; the last entry is the final classifier."""
        x = self.stem(x)
        logits = []
        for stage, head in zip(self.stages, self.exits, strict=True):
            x = stage(x)
            logits.append(head(x))
        return logits

    def check_split(self, split: int) -> None:
        if not 0 <= split <= self.config.num_stages:
            raise ModelError(
                f"split point {split} is outside 0..{self.config.num_stages} for this network"
            )

    def edge_part(self, split: int) -> EdgePart:
        self.check_split(split)
        return EdgePart(self, split)

    def cloud_part(self, split: int) -> CloudPart:
        self.check_split(split)
        return CloudPart(self, split)

    def final_exit(self) -> FinalExit:
        return FinalExit(self)


class EdgeOutput(NamedTuple):
    activation: torch.Tensor  # what the cloud part continues from
    logits: torch.Tensor | None  # exit ``split``'s logits; None at split 0 (no exit yet)


class EdgePart(nn.Module):
    """Stem .. stage ``split`` and exit ``split``: the part that runs on the device."""

    def __init__(self, network: EarlyExitResNet, split: int) -> None:
        super().__init__()
        self.split = split
        self.stem = network.stem
        self.stages = nn.ModuleList(list(network.stages)[:split])
        self.head = network.exits[split - 1] if split > 0 else None

    def forward(self, x: torch.Tensor) -> EdgeOutput:
        if self.split == 0:
            return EdgeOutput(x, None)  # nothing runs on the device: the image is sent
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        assert self.head is not None
        return EdgeOutput(x, self.head(x))


class CloudPart(nn.Module):
    """Stage ``split + 1`` .. the final head, from the edge's intermediate tensor."""

    def __init__(self, network: EarlyExitResNet, split: int) -> None:
        super().__init__()
        self.split = split
        self.stem = network.stem if split == 0 else None
        self.stages = nn.ModuleList(list(network.stages)[split:])
        self.head = network.exits[-1]

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        x = activation
        if self.stem is not None:
            x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        logits: torch.Tensor = self.head(x)
        return logits


class FinalExit(nn.Module):
    """The whole network with only its final classifier: the cloud's image model."""

    def __init__(self, network: EarlyExitResNet) -> None:
        super().__init__()
        self.stem = network.stem
        self.stages = network.stages
        self.head = network.exits[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        logits: torch.Tensor = self.head(x)
        return logits
