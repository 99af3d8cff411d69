"""Host buffers for batches on their way to the model's device.

On CUDA a host-to-device copy from pageable memory goes through a hidden pinned bounce
buffer, and pinning a fresh buffer per batch (cudaHostAlloc) costs more than the copy.
So a worker keeps one pinned buffer per dtype, grows it to the largest batch seen, and
fills batches in place. On the CPU the buffer is plain memory and the upload is free.

Not thread-safe: one inference thread owns one :class:`HostStaging`. A buffer is reused
only after the previous batch's results were copied back, which synchronises the stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["HostStaging"]


class HostStaging:
    """Reusable (pinned, on CUDA) host buffers that batches are assembled in."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._buffers: dict[torch.dtype, torch.Tensor] = {}

    def buffer(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A host tensor of ``shape`` to fill in place (contents undefined)."""
        needed = math.prod(shape)
        current = self._buffers.get(dtype)
        if current is None or current.numel() < needed:
            current = torch.empty(needed, dtype=dtype, pin_memory=self.pinned)
            self._buffers[dtype] = current
        return current[:needed].view(shape)

    def array(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`buffer` and a NumPy view of the same memory, for OpenCV to write into."""
        tensor = self.buffer(shape, dtype)
        return tensor, tensor.numpy()

    def upload(self, host: torch.Tensor) -> torch.Tensor:
        """``host`` on the model's device; asynchronous from pinned memory."""
        if self.device.type == "cpu":
            return host
        return host.to(self.device, non_blocking=self.pinned)
