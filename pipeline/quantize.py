"""uint8 split activations: an edge part's output at half the bytes of float16.

An activation is coded per frame as ``round((x - offset) / scale)`` in 0-255, with
``offset`` its minimum and ``scale`` its range over 255, and sent with the two numbers;
the worker computes ``codes * scale + offset``. The error is at most ``scale / 2`` per
element. The cloud part does not notice it: on the Fashion-MNIST test set (10,000
images, the committed ``fmnist_exit_resnet``), top-1 after split 1 was 94.73% from uint8
codes against 94.71% from float16 and from float32 (2 labels of 10,000 changed), and
the same 94.71% at splits 2 and 3 (measured with ``bench/split_quantization.py``, since
removed, still in commit e6dd3de; docs/performance.md has the table).

Halving the bytes halves what every copy on the way costs (the edge's encoding, the
broker's two copies and the kernel's four, the worker's receive and decode), and what
a slow uplink costs, which is what a split is for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = [
    "QuantizedTensor",
    "TensorWireDType",
    "dequantize_batch",
    "quantize",
    "wire_activation",
]

LEVELS = 255

TensorWireDType = Literal["uint8", "float16"]
"""How an edge sends a split activation: uint8 codes (the default) or float16."""


@dataclass(frozen=True, slots=True)
class QuantizedTensor:
    """One frame's activation as uint8 codes: ``value = codes * scale + offset``."""

    codes: np.ndarray  # uint8, the activation's shape
    scale: float  # > 0
    offset: float

    def __post_init__(self) -> None:
        if self.codes.dtype != np.uint8:
            raise ValueError(f"quantised codes are uint8, not {self.codes.dtype}")
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.offset)):
            raise ValueError(
                f"a quantised tensor needs a finite scale > 0 and a finite offset, "
                f"not {self.scale!r} and {self.offset!r}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    def dequantize(self) -> np.ndarray:
        """The float32 values the codes stand for."""
        return self.codes.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)


def quantize(activation: torch.Tensor) -> QuantizedTensor:
    """One frame's activation (any float dtype, any device) as uint8 codes on the host.

    A constant activation gets scale 1 (every code 0); one holding NaN or inf raises
    ``ValueError``: it has no range to code, and no answer worth asking for.
    """
    values = activation.detach().float()
    low, high = (float(v) for v in torch.aminmax(values))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("the activation holds NaN or infinite values")
    scale = (high - low) / LEVELS if high > low else 1.0
    codes = values.sub(low).div_(scale).round_().clamp_(0, LEVELS).to(torch.uint8)
    return QuantizedTensor(codes.cpu().numpy(), scale, low)


def dequantize_batch(
    codes: torch.Tensor, tensors: Sequence[QuantizedTensor], dtype: torch.dtype
) -> torch.Tensor:
    """``codes`` (a uint8 batch of ``tensors``' codes, on any device) as ``dtype``
    values, with each frame's scale and offset: one vectorised pass for the batch."""
    view = (len(tensors),) + (1,) * (codes.dim() - 1)
    scales = torch.tensor([t.scale for t in tensors], dtype=torch.float32).view(view)
    offsets = torch.tensor([t.offset for t in tensors], dtype=torch.float32).view(view)
    # In float32 whatever the model's dtype: scale * 255 + offset must not round twice.
    values = codes.to(torch.float32).mul_(scales.to(codes.device)).add_(offsets.to(codes.device))
    return values if dtype == torch.float32 else values.to(dtype)


def wire_activation(
    activation: torch.Tensor, dtype: TensorWireDType
) -> np.ndarray | QuantizedTensor:
    """One frame's activation as an edge sends it: uint8 codes, or a float16 array.

    An activation holding NaN or inf has no codes; it goes as float16, which the worker
    refuses by name (``bad_request``), so the edge keeps its local answer instead of
    failing the frame here."""
    if dtype == "uint8":
        try:
            return quantize(activation)
        except ValueError:
            pass
    return activation.detach().to(torch.float16).cpu().numpy()
