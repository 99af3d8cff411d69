"""Dynamic thresholds, by hand: the share quantile, the AIMD objective, the policy."""

from __future__ import annotations

import math
from collections import deque

import pytest

from edge_node.local_model import LocalOutput
from edge_node.policies import Route
from edge_node.thresholds import (
    AdaptiveThreshold,
    LatencyObjective,
    adaptive_threshold,
    share_threshold,
)
from pipeline.config import load_config
from pipeline.errors import ConfigError

TEN = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95]


def _local(confidence: float) -> LocalOutput:
    return LocalOutput(label=1, confidence=confidence, activation=None)


@pytest.mark.parametrize(
    ("share", "threshold", "offloaded"),
    [
        (0.0, -math.inf, 0),
        (0.1, 0.15, 1),  # the least confident frame, and only it, is below 0.15
        (0.3, 0.35, 3),
        (0.25, 0.35, 3),  # ceil(2.5) = 3 frames
        (0.9, 0.95, 9),
        (1.0, math.inf, 10),
    ],
)
def test_share_threshold_offloads_the_share_asked_for(
    share: float, threshold: float, offloaded: int
) -> None:
    got = share_threshold(TEN, share)
    assert got == threshold
    assert sum(1 for c in TEN if c < got) == offloaded


def test_share_threshold_of_no_samples() -> None:
    assert share_threshold(deque(), 0.5) == math.inf
    assert share_threshold([], 0.0) == -math.inf


def test_target_share_follows_the_scene() -> None:
    policy = AdaptiveThreshold(initial_threshold=0.8, share=0.2, min_samples=10, window=10)
    for c in TEN[:9]:
        policy.observe_local(_local(c))
    assert policy.threshold == 0.8  # under min_samples: the configured threshold
    policy.observe_local(_local(TEN[9]))
    assert policy.threshold == 0.25  # 2 of 10 below
    assert policy.route(_local(0.15)) is Route.OFFLOAD
    assert policy.route(_local(0.25)) is Route.LOCAL
    # The scene gets easier: every confidence is 0.9x; the window forgets the old ones.
    for c in TEN:
        policy.observe_local(_local(0.9 + c / 10))
    assert policy.threshold == pytest.approx(0.925)  # still the least confident 20%
    assert policy.route(None) is Route.OFFLOAD


def test_latency_objective_backs_off_fast_and_probes_slowly() -> None:
    objective = LatencyObjective(slo_ms=100, share=0.5, window=4)
    for _ in range(4):
        objective.record(120, answered=True)  # p95 120 > 100: x min(0.7, 100/120) = 0.7
    assert objective.share == pytest.approx(0.35)
    for _ in range(4):
        objective.record(90, answered=True)  # between 80 (headroom) and 100: hold
    assert objective.share == pytest.approx(0.35)
    for _ in range(4):
        objective.record(20, answered=True)  # well under: + 0.02
    assert objective.share == pytest.approx(0.37)
    for _ in range(4):
        objective.record(200, answered=True)  # twice the objective: x 100/200 = 0.5
    assert objective.share == pytest.approx(0.185)
    for _ in range(4):
        objective.record(1000, answered=True)  # ten times: x the floor, 0.25
    assert objective.share == pytest.approx(0.04625)
    for latency in (10, 10, 10):
        objective.record(latency, answered=True)
    objective.record(10, answered=False)  # a refused or timed-out frame: x 0.5
    assert objective.share == pytest.approx(0.023125)


def test_latency_objective_stays_within_bounds() -> None:
    objective = LatencyObjective(slo_ms=100, share=0.99, window=1, max_share=1.0)
    for _ in range(3):
        objective.record(1, answered=True)
    assert objective.share == 1.0
    objective = LatencyObjective(slo_ms=100, share=0.1, window=1)
    for _ in range(10):
        objective.record(1000, answered=True)
    assert objective.share == 0.02  # never nothing: the trickle that notices a recovery
    with pytest.raises(ConfigError):
        LatencyObjective(slo_ms=100, share=0.1, floor=0.8, decrease=0.7)


def test_the_threshold_follows_the_objective() -> None:
    objective = LatencyObjective(slo_ms=100, share=0.3, window=2)
    policy = AdaptiveThreshold(
        initial_threshold=0.8, share=0.3, objective=objective, min_samples=10, window=10
    )
    for c in TEN:
        policy.observe_local(_local(c))
    assert policy.threshold == 0.35  # 30%
    policy.observe_offload(125, answered=True)
    policy.observe_offload(125, answered=True)
    assert policy.share == pytest.approx(0.21)  # x 0.7
    assert policy.threshold == 0.35  # ceil(2.1) = 3 frames still
    policy.observe_offload(125, answered=True)
    policy.observe_offload(125, answered=True)
    assert policy.share == pytest.approx(0.147)
    assert policy.threshold == 0.25  # 2 frames


def test_config_selects_the_controller() -> None:
    def cfg(*extra: str):  # type: ignore[no-untyped-def]
        return load_config(
            env={},
            overrides=["edge.local_model=fmnist_exit_resnet", "edge.policy=threshold", *extra],
        ).edge

    assert adaptive_threshold(cfg()) is None
    share = adaptive_threshold(cfg("edge.threshold_mode=target-share"))
    assert share is not None
    assert share.share == 0.3
    slo = adaptive_threshold(
        cfg("edge.threshold_mode=latency-slo", "edge.latency_slo_ms=120",
            "edge.target_offload_share=0.4")
    )  # fmt: skip
    assert slo is not None
    assert slo.share == 0.4


def test_config_refuses_a_controller_without_the_threshold_policy() -> None:
    with pytest.raises(ConfigError, match="threshold_mode"):
        load_config(env={}, overrides=["edge.threshold_mode=target-share"])
    with pytest.raises(ConfigError, match="target_offload_share"):
        load_config(
            env={},
            overrides=[
                "edge.local_model=fmnist_exit_resnet", "edge.policy=threshold",
                "edge.target_offload_share=1.5",
            ],
        )  # fmt: skip
