"""Where to cut the network, per frame: a Neurosurgeon-style partition (Kang et al.,
ASPLOS 2017).

Every point of the early-exit network is a candidate:

* ``0``: send the image (a JPEG) and let the worker run all of it;
* ``k`` (1 .. stages-1): run stages 1..k here and send that float16 activation; the
  worker continues from stage k+1 (``cloud_part(k)``), and exit k's answer is the
  fallback if no reply comes in time;
* ``stages``: run the whole network here and send nothing.

For each, the latency is predicted from what the edge knows now:

    edge_ms(k)                 this device's own time for stages 1..k, measured at start
                               (times ``edge.device_slowdown``, the emulation knob)
  + network_ms(bytes(k))       the link estimator's round trip for a message that size
  + wait_ms                    the workers' queue, from their retained status
  + per_image_ms * cloud_share(k)   the worker's time per full image, scaled to the
                               share of the network's MACs left after k

and the smallest wins. Neurosurgeon predicts per-layer latencies from regression
models of each device; here the edge measures its own stages and the worker reports
its own time per image, which is what its status already carries.

Without a measurement of the link the network term is 0 (or the prior ``edge.
link_kbps``) and offloading looks cheap: the first offloads then measure it. So that a
link that got faster is noticed even while every frame stays local, the planner sends
one frame by the best offloading point every ``probe_interval_s`` when no offload has
been measured in that time (a probe, as Neurosurgeon's periodic bandwidth probes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["PartitionPlanner", "Plan", "SplitPoint"]


@dataclass(frozen=True, slots=True)
class SplitPoint:
    """One place to cut: ``point`` 0 sends the image, ``last`` keeps everything local."""

    point: int
    edge_ms: float  # this device's compute up to the point
    upload_bytes: float  # the request's size on the wire (0 when nothing is sent)
    cloud_share: float  # share of the network's MACs the worker still has to do


@dataclass(frozen=True, slots=True)
class Plan:
    point: int
    edge_ms: float
    network_ms: float
    worker_ms: float
    probe: bool = False  # chosen to measure the link, not because it is predicted best

    @property
    def total_ms(self) -> float:
        return self.edge_ms + self.network_ms + self.worker_ms


class PartitionPlanner:
    """The argmin of predicted latency over the split points (see the module)."""

    def __init__(
        self,
        points: Sequence[SplitPoint],
        *,
        probe_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not points:
            raise ValueError("a partition needs at least one split point")
        self.points = tuple(points)
        self.local_point = max(p.point for p in self.points)
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._last_measured: float | None = None

    def predict(
        self,
        network_ms_for: Callable[[float], float],
        *,
        wait_ms: float,
        per_image_ms: float,
    ) -> list[Plan]:
        plans = []
        for p in self.points:
            if p.point == self.local_point:
                plans.append(Plan(p.point, p.edge_ms, 0.0, 0.0))
            else:
                worker_ms = wait_ms + per_image_ms * p.cloud_share
                plans.append(Plan(p.point, p.edge_ms, network_ms_for(p.upload_bytes), worker_ms))
        return plans

    def choose(
        self,
        network_ms_for: Callable[[float], float],
        *,
        wait_ms: float,
        per_image_ms: float,
    ) -> Plan:
        plans = self.predict(network_ms_for, wait_ms=wait_ms, per_image_ms=per_image_ms)
        best = min(plans, key=lambda plan: (plan.total_ms, -plan.point))
        if best.point != self.local_point or self._probe_interval_s <= 0:
            return best
        now = self._clock()
        if self._last_measured is None or now - self._last_measured >= self._probe_interval_s:
            offloading = [plan for plan in plans if plan.point != self.local_point]
            if offloading:
                self._last_measured = now  # one probe per interval, answered or not
                probe = min(offloading, key=lambda plan: plan.total_ms)
                return Plan(probe.point, probe.edge_ms, probe.network_ms, probe.worker_ms, True)
        return best

    def measured(self) -> None:
        """An offload was answered: the link estimate is fresh."""
        self._last_measured = self._clock()
