"""Running load figures of a worker: for its retained status and its deadline estimates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["WorkerStats"]

_EWMA_ALPHA = 0.2  # weight of the newest batch: smooth, but follows a load change in ~5


@dataclass(slots=True)
class WorkerStats:
    frames_done: int = 0
    frames_rejected: int = 0
    mean_batch_size: float = 0.0
    latency_ms_per_image: float = 0.0  # batch wall time (decode + inference) / batch size
    _window_start: float = field(default_factory=time.monotonic)
    _window_frames: int = 0
    _throughput_fps: float = 0.0

    def record_batch(self, size: int, compute_ms: float) -> None:
        """A batch of ``size`` requests took ``compute_ms`` in the inference thread."""
        per_image = compute_ms / size
        if self.frames_done == 0:
            self.mean_batch_size, self.latency_ms_per_image = float(size), per_image
        else:
            a = _EWMA_ALPHA
            self.mean_batch_size = a * size + (1 - a) * self.mean_batch_size
            self.latency_ms_per_image = a * per_image + (1 - a) * self.latency_ms_per_image
        self.frames_done += size
        self._window_frames += size

    def record_rejected(self) -> None:
        self.frames_rejected += 1

    def estimated_ms(self, images: int) -> float:
        """How long computing ``images`` more should take at the recent per-image rate.

        0 until the first batch is measured: before that the worker has no evidence
        and computes rather than guesses a frame into ``expired``.
        """
        return self.latency_ms_per_image * images

    def throughput_fps(self) -> float:
        """Frames/s since the previous call (the status interval), then restart the window."""
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed > 0:
            self._throughput_fps = self._window_frames / elapsed
        self._window_start, self._window_frames = now, 0
        return self._throughput_fps
