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

What the terms leave out (time queued in the broker or in the worker's client, a CPU
that the edge shares with other work) shows up as the gap between a plan's prediction
and the latency the frame then had. The planner keeps that gap per point (an
exponentially weighted average, ``correction_weight``) and adds it to the point's
next prediction, so a point that keeps disappointing stops being chosen.

Without a measurement of the link the network term is 0 (or the prior ``edge.
link_kbps``) and offloading looks cheap: the first offloads then measure it. So that a
link that got faster is noticed even while every frame stays local, the planner sends
one frame by the best offloading point every ``probe_interval_s`` when no offload has
been measured in that time (a probe, as Neurosurgeon's periodic bandwidth probes).
"""

from __future__ import annotations

import dataclasses
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
    correction_ms: float = 0.0  # the point's recent gap between prediction and outcome
    probe: bool = False  # chosen to measure the link, not because it is predicted best

    @property
    def model_ms(self) -> float:
        """The prediction from the terms alone."""
        return self.edge_ms + self.network_ms + self.worker_ms

    @property
    def total_ms(self) -> float:
        return self.model_ms + self.correction_ms


class PartitionPlanner:
    """The argmin of predicted latency over the split points (see the module)."""

    def __init__(
        self,
        points: Sequence[SplitPoint],
        *,
        probe_interval_s: float = 2.0,
        correction_weight: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not points:
            raise ValueError("a partition needs at least one split point")
        if not 0.0 <= correction_weight <= 1.0:
            raise ValueError("correction_weight must be 0-1")
        self._weight = correction_weight
        self._corrections: dict[int, float] = {}
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
            correction = self._corrections.get(p.point, 0.0)
            if p.point == self.local_point:
                plans.append(Plan(p.point, p.edge_ms, 0.0, 0.0, correction))
            else:
                worker_ms = wait_ms + per_image_ms * p.cloud_share
                network_ms = network_ms_for(p.upload_bytes)
                plans.append(Plan(p.point, p.edge_ms, network_ms, worker_ms, correction))
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
                return dataclasses.replace(probe, probe=True)
        return best

    def measured(self) -> None:
        """An offload was answered: the link estimate is fresh."""
        self._last_measured = self._clock()

    def observe(self, plan: Plan, actual_ms: float) -> None:
        """The latency a frame planned as ``plan`` had: updates the point's correction."""
        gap = actual_ms - plan.model_ms
        old = self._corrections.get(plan.point)
        self._corrections[plan.point] = gap if old is None else old + self._weight * (gap - old)

    def correction_ms(self, point: int) -> float:
        return self._corrections.get(point, 0.0)
