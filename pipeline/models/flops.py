"""Multiply-accumulate counts, from torch's own operator-level flop counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "macs_per_exit"]


def count_macs(module: nn.Module, example: torch.Tensor) -> int:
    """MACs of one forward pass of ``module`` on ``example``, per image in the batch.

    Counts convolutions and matrix products (torch counts 2 flops per MAC); batch norm,
    activations and pooling are memory-bound and left out, as is usual for MACs.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(example)
    return counter.get_total_flops() // 2 // max(1, example.shape[0])


def macs_per_exit(network: nn.Module, example: torch.Tensor) -> list[int]:
    """MACs to reach each exit of an :class:`~pipeline.models.EarlyExitResNet`."""
    from pipeline.models.early_exit import EarlyExitResNet

    assert isinstance(network, EarlyExitResNet)
    counts = [
        count_macs(network.edge_part(split), example)
        for split in range(1, network.config.num_stages)
    ]
    counts.append(count_macs(network.final_exit(), example))
    return counts
