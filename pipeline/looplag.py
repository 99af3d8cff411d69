"""Event-loop lag: how late a sleeping task wakes up, sampled all the time.

A coroutine sleeps ``interval_s`` again and again; whatever it oversleeps is time the
loop spent on something else without yielding: a blocking call, a long callback, a
starved process. Workers and edges export it (Prometheus histograms) so a soak or a
dashboard can prove the loop is never blocked, not just assume it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["LAG_BUCKETS_S", "watch_loop_lag"]

# Seconds: a healthy loop stays under a millisecond or two; 100 ms is a visible stall.
LAG_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


async def watch_loop_lag(observe: Callable[[float], None], *, interval_s: float = 0.05) -> None:
    """Report each wake-up's lag in seconds to ``observe``, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, loop.time() - due))
