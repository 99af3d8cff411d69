"""Replay pacing: as fast as possible, at the source's own frame rate, or at N frames/s."""

from __future__ import annotations

import asyncio

__all__ = ["Pacer", "frames_per_second"]


def frames_per_second(rate: str, source_fps: float | None) -> float | None:
    """``None`` means no pacing. ``real`` with a source that has no rate runs at max."""
    if rate == "max":
        return None
    if rate == "real":
        return source_fps
    return float(rate)


class Pacer:
    """Schedules ticks on a fixed grid, so a slow tick does not shift every later one."""

    def __init__(self, fps: float | None) -> None:
        self._interval = None if fps is None else 1.0 / fps
        self._next: float | None = None

    async def wait(self) -> None:
        if self._interval is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next is None or self._next < now - self._interval:
            self._next = now  # first tick, or we fell behind: restart the grid
        self._next += self._interval
        await asyncio.sleep(max(0.0, self._next - now))
