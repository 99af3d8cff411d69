"""CPU time each process of a run spent, per frame: where the cores went.

psutil reads it (the ``bench`` extra); without it the breakdown says so and the rest of
the benchmark runs.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CpuMeter"]


class CpuMeter:
    """CPU seconds (user + system) of named pids between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            self._processes = {}
            self.available = False
        else:
            self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
            self.available = True
        self._started: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {}
        for name, process in self._processes.items():
            times = process.cpu_times()
            out[name] = times.user + times.system
        return out

    def start(self) -> None:
        self._started = self._now()

    def stop(self) -> dict[str, float]:
        """CPU seconds per process since :meth:`start` (empty without psutil)."""
        now = self._now()
        return {name: now[name] - self._started[name] for name in now}
