"""Dynamic confidence thresholds: hold an offload share, or a latency objective, online.

The seed study's future work: a fixed threshold offloads a fixed share of frames
whatever the server's load and the link are doing. Two controllers move it instead:

* **target share** (``edge.threshold_mode = "target-share"``): the threshold is the
  ``target_offload_share`` quantile of the local exit's recent confidences (a sliding
  window), so the least confident ``share`` of frames go, however confident the scene
  makes the model. It only holds the share: it does not watch the cloud.
* **latency objective** (``"latency-slo"``): the share itself moves by additive
  increase / multiplicative decrease (TCP's rule, for the same reason: back off fast
  on congestion, probe slowly). After every ``window`` offloads it looks at their p95
  capture-to-decision latency. Above ``latency_slo_ms`` it multiplies the share by
  ``slo / p95`` (the further over, the harder the cut), at most ``decrease`` and at
  least ``floor``; a refused or timed-out frame in the window halves it at least.
  Under ``headroom`` of the objective it adds ``increase``. The threshold then follows
  the share as above. A busy server or a slow link so shrinks offloading to what still
  answers in time, and an idle one gets it back. The share never drops below
  ``min_share`` (2%): with nothing offloaded nothing would be measured, and a server
  that recovered would never be noticed.

Both are plain objects driven by the node's event loop. The node reports each frame's
local confidence (:meth:`AdaptiveThreshold.observe_local`) and each offloaded frame's
outcome (:meth:`AdaptiveThreshold.observe_offload`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_node.local_model import LocalOutput
from edge_node.policies import Route
from pipeline.config import EdgeConfig
from pipeline.errors import ConfigError

__all__ = ["AdaptiveThreshold", "LatencyObjective", "adaptive_threshold", "share_threshold"]


def share_threshold(confidences: deque[float] | list[float], share: float) -> float:
    """The threshold under which ``share`` of ``confidences`` fall (offload below it).

    ``share`` 0 offloads nothing (``-inf``), 1 everything (``inf``). The quantile is
    the "lower" one: exactly the ``ceil(share * n)`` least confident frames of the
    window are under the next value up, so a window of distinct values offloads the
    share asked for, not one frame more.
    """
    if share <= 0.0 or not confidences:
        return -math.inf if share <= 0.0 else math.inf
    if share >= 1.0:
        return math.inf
    ordered = sorted(confidences)
    count = math.ceil(share * len(ordered))  # frames to offload
    if count >= len(ordered):
        return math.inf
    return ordered[count]  # those strictly below the (count+1)-th least confident


@dataclass(slots=True)
class LatencyObjective:
    """AIMD on the offload share against a p95 latency objective (see the module)."""

    slo_ms: float
    share: float
    window: int = 8
    increase: float = 0.02
    decrease: float = 0.7
    floor: float = 0.25
    headroom: float = 0.8
    min_share: float = 0.02
    max_share: float = 1.0
    _latencies: list[float] = field(default_factory=list, init=False, repr=False)
    _trouble: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.slo_ms <= 0 or self.window < 1:
            raise ConfigError("edge.latency_slo_ms must be > 0", key="edge.latency_slo_ms")
        if not (0 < self.floor <= self.decrease < 1 and 0 < self.headroom <= 1):
            raise ConfigError("latency objective: 0 < floor <= decrease < 1, headroom 0-1")
        if self.increase <= 0 or not 0 <= self.min_share <= self.max_share <= 1:
            raise ConfigError("latency objective: increase > 0, 0 <= min <= max share <= 1")

    def record(self, latency_ms: float, *, answered: bool) -> None:
        self._latencies.append(latency_ms)
        self._trouble = self._trouble or not answered
        if len(self._latencies) < self.window:
            return
        p95 = float(np.percentile(self._latencies, 95))
        if self._trouble or p95 > self.slo_ms:
            factor = min(self.decrease, max(self.floor, self.slo_ms / p95))
            if self._trouble:
                factor = min(factor, 0.5)
            self.share = max(self.min_share, self.share * factor)
        elif p95 < self.headroom * self.slo_ms:
            self.share = min(self.max_share, self.share + self.increase)
        self._latencies.clear()
        self._trouble = False


class AdaptiveThreshold:
    """The ``threshold`` policy with a threshold that follows an offload share."""

    name = "threshold"
    needs_local_model = True

    def __init__(
        self,
        *,
        initial_threshold: float,
        share: float,
        objective: LatencyObjective | None = None,
        window: int = 256,
        min_samples: int = 20,
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ConfigError(
                "edge.target_offload_share must be 0-1", key="edge.target_offload_share"
            )
        self._share = share
        self._objective = objective
        self._confidences: deque[float] = deque(maxlen=window)
        self._min_samples = min_samples
        self._initial = initial_threshold
        self.threshold = initial_threshold

    @property
    def share(self) -> float:
        """The offload share being held (the objective's, when there is one)."""
        return self._objective.share if self._objective is not None else self._share

    def observe_local(self, local: LocalOutput) -> None:
        self._confidences.append(local.confidence)
        self._update()

    def observe_offload(self, latency_ms: float, *, answered: bool) -> None:
        if self._objective is not None:
            self._objective.record(latency_ms, answered=answered)
            self._update()

    def _update(self) -> None:
        # Until the window says something about the scene, the configured threshold.
        if len(self._confidences) >= self._min_samples:
            self.threshold = share_threshold(self._confidences, self.share)
        else:
            self.threshold = self._initial

    def route(self, local: LocalOutput | None) -> Route:
        if local is None or local.confidence < self.threshold:
            return Route.OFFLOAD
        return Route.LOCAL


def adaptive_threshold(cfg: EdgeConfig) -> AdaptiveThreshold | None:
    """The controller ``edge.threshold_mode`` asks for; None for a fixed threshold."""
    if cfg.threshold_mode == "fixed":
        return None
    objective = None
    if cfg.threshold_mode == "latency-slo":
        objective = LatencyObjective(slo_ms=cfg.latency_slo_ms, share=cfg.target_offload_share)
    return AdaptiveThreshold(
        initial_threshold=cfg.confidence_threshold,
        share=cfg.target_offload_share,
        objective=objective,
    )
