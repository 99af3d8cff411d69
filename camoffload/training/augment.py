"""Batched data augmentation on tensors: no per-image Python, no data-loader workers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the torch convention

__all__ = ["random_crop_flip"]


def _pad(batch: torch.Tensor, padding: int, fill: float | Sequence[float]) -> torch.Tensor:
    if isinstance(fill, int | float):
        return F.pad(batch, (padding, padding, padding, padding), value=float(fill))
    count, channels, height, width = batch.shape
    values = tuple(float(value) for value in fill)
    if len(values) == 1:
        return F.pad(batch, (padding, padding, padding, padding), value=values[0])
    if len(values) != channels:
        raise ValueError(f"{len(values)} fill values for {channels}-channel images")
    padded = batch.new_empty(count, channels, height + 2 * padding, width + 2 * padding)
    padded.copy_(torch.tensor(values, dtype=batch.dtype).view(1, channels, 1, 1))
    padded[:, :, padding : padding + height, padding : padding + width] = batch
    return padded


def random_crop_flip(
    batch: torch.Tensor,
    *,
    padding: int,
    fill: float | Sequence[float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Pad by ``padding``, crop back to size at a random offset, mirror half the images.

    ``fill`` is the padding's value: one for every channel, or one per channel (a
    normalised black differs per channel once the channels' means and stds differ).
    The offsets come from ``generator`` only, so a fixed seed gives the same stream of
    augmented batches on every run and device.
    """
    count, _, height, width = batch.shape
    padded = _pad(batch, padding, fill)
    span = 2 * padding + 1
    rows = torch.randint(0, span, (count,), generator=generator)
    cols = torch.randint(0, span, (count,), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    # Gather the crop with index arithmetic: one advanced-indexing op for the batch.
    row_index = (rows.view(count, 1) + torch.arange(height)).to(batch.device)
    col_index = (cols.view(count, 1) + torch.arange(width)).to(batch.device)
    col_index = torch.where(flips.view(count, 1).to(batch.device), col_index.flip(1), col_index)
    n = torch.arange(count, device=batch.device).view(count, 1, 1)
    cropped = padded.permute(0, 2, 3, 1)[
        n, row_index.view(count, height, 1), col_index.view(count, 1, width)
    ]
    return cropped.permute(0, 3, 1, 2).contiguous()
