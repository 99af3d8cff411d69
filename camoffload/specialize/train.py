"""Training a camera's specialized network: every exit learns the teacher's counts and
cells at once.

Seeded and reproducible: the seed fixes the initialisation, the order of the frames
and every augmentation, and training runs on one CPU thread with torch's deterministic
algorithms, so the same frames and seed give the same weights, byte for byte. One
thread costs little here: the network is ~30 M multiply-adds a frame.

Augmentation is what a fixed camera's frames vary by: light (brightness and contrast)
and, with the grid cells mirrored too, left for right. Later exits weigh more, as
BranchyNet weighs its exits; the count is a class (0..max_count), the cells are
independent yes/no.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from camoffload.specialize.data import Teaching
from pipeline.models.specialized import PLACE_CLASSES, SpecializedConfig, SpecializedNet

__all__ = ["TrainOptions", "train_specialized"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainOptions:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    cell_weight: float = 0.5  # the cells' loss beside the count's


def _augment(
    frames: torch.Tensor, cells: torch.Tensor, places: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = frames.shape[0]
    gain = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.4  # contrast +-20 %
    shift = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2  # brightness +-0.1
    mean = frames.mean(dim=(1, 2, 3), keepdim=True)
    frames = ((frames - mean) * gain + mean + shift).clamp(0.0, 1.0)
    flip = torch.rand(n, generator=generator) < 0.5
    frames = torch.where(flip[:, None, None, None], frames.flip(3), frames)
    cells = torch.where(flip[:, None, None, None], cells.flip(3), cells)
    places = torch.where(flip[:, None, None, None], places.flip(3), places)
    return frames, cells, places


_VALUES = torch.arange(PLACE_CLASSES, dtype=torch.float32).view(1, 1, -1, 1, 1)


def _loss(
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    places: torch.Tensor,
    cells: torch.Tensor,
    cell_weight: float,
) -> torch.Tensor:
    exits = len(outputs)
    total = torch.zeros(())
    target = places
    for i, (density, cell_logits) in enumerate(outputs):
        if i:  # each stage halves the map: a place holds its four places' centres
            target = functional.avg_pool2d(target.float(), 2).mul(4).round().long()
        weight = (i + 1) / exits
        classes = target.clamp(max=PLACE_CLASSES - 1)
        # Classes second, as cross_entropy wants: (N, K, L, h, w) against (N, L, h, w).
        place_loss = functional.cross_entropy(density.transpose(1, 2), classes)
        cell_loss = functional.binary_cross_entropy_with_logits(cell_logits, cells)
        # Most places hold nobody, so the places alone learn "nobody anywhere"; the
        # frame's count, the sum of the places' expected counts, holds them to the crowd.
        probs = torch.softmax(density, dim=2)
        expected = (probs * _VALUES).sum(dim=(2, 3, 4))
        count_loss = functional.smooth_l1_loss(expected, target.sum(dim=(2, 3)).float())
        total = total + weight * (place_loss + count_loss + cell_weight * cell_loss)
    return total


def train_specialized(
    teaching: Teaching,
    config: SpecializedConfig,
    options: TrainOptions,
    *,
    progress: Callable[[float], None] = lambda _loss: None,
) -> SpecializedNet:
    """A network trained on ``teaching``; ``progress`` gets each epoch's mean loss."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(teaching, config, options, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(
    teaching: Teaching,
    config: SpecializedConfig,
    options: TrainOptions,
    progress: Callable[[float], None],
) -> SpecializedNet:
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    network = SpecializedNet(config)
    # The median of the training frames: people walk through, the scene stays.
    network.background.copy_(teaching.frames.median(dim=0).values)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    steps_per_epoch = max(1, -(-len(teaching) // options.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=options.lr, total_steps=options.epochs * steps_per_epoch
    )
    network.train()
    for _ in range(options.epochs):
        order = torch.randperm(len(teaching), generator=generator)
        losses = []
        for start in range(0, len(teaching), options.batch_size):
            pick = order[start : start + options.batch_size]
            if len(pick) < 2:
                continue  # batch norm needs two frames to learn from
            frames, cells, places = _augment(
                teaching.frames[pick], teaching.cells[pick], teaching.places[pick], generator
            )
            loss = _loss(network(frames), places, cells, options.cell_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        progress(sum(losses) / max(1, len(losses)))
    return network.eval()


def count_parameters(network: nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())
