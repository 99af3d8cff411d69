"""The per-frame quality chooser (hand-computed cases), the link and load estimators,
and an edge choosing its JPEG quality per frame against a real worker and broker."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path

import msgspec
import pytest

from edge_node import EdgeNode, Ledger, LedgerSummary
from edge_node.estimators import DecayingAverage, LinkEstimate, LinkEstimator, WorkerLoad
from edge_node.local_model import LocalOutput
from edge_node.quality import Conditions, FixedQuality, GompertzQuality
from edge_node.sources import DatasetSource
from pipeline.calibration import (
    Calibration,
    ConfidenceBin,
    FittedCurve,
    OperatingPoint,
    save_calibration,
)
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST
from pipeline.gompertz import GompertzCurve
from pipeline.inference import Classifier
from pipeline.protocol import PayloadCodec, WorkerStatus
from tests._helpers import running_worker

MODEL = "fmnist_exit_resnet"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fitted(a: float, b: float, c: float) -> FittedCurve:
    return FittedCurve(
        curve=GompertzCurve(a, b, c), r2_fit=0.99, r2_heldout=0.98, rmse_heldout=0.01
    )


def _point(quality: int, size: float, frontier: bool = True) -> OperatingPoint:
    return OperatingPoint(
        quality=quality,
        scale=1.0,
        bytes=size,
        x=size / 1000,
        accuracy=0.9,
        accuracy_heldout=0.9,
        frontier=frontier,
    )


# Overall curve: a=0.95, b=4, c=10. Bins: unsure frames (conf < 0.5) are right 60% of
# the time locally, and the cloud curve there tops out at 0.85; sure frames (>= 0.5)
# are right 97% locally and the cloud's asymptote is 0.98.
CALIBRATION = Calibration(
    model=MODEL,
    model_version="v",
    codec="jpeg-abbrev",
    reference_quality=90,
    reference_bytes=1000.0,
    local_model=MODEL,
    local_split=1,
    dataset="hand-made",
    images_fit=100,
    images_heldout=100,
    command="none",
    points=(
        _point(10, 100.0),  # x = 0.1
        _point(30, 200.0),  # x = 0.2
        _point(60, 400.0),  # x = 0.4
        _point(95, 900.0),  # x = 0.9
        _point(70, 950.0, frontier=False),  # dominated: never chosen
    ),
    curve=_fitted(0.95, 4.0, 10.0),
    bins=(
        ConfidenceBin(
            low=0.0, high=0.5, frames=50, local_accuracy=0.6, curve=_fitted(0.85, 4.0, 10.0)
        ),
        ConfidenceBin(
            low=0.5, high=1.0, frames=50, local_accuracy=0.97, curve=_fitted(0.98, 4.0, 10.0)
        ),
    ),
)


def _g(x: float, a: float) -> float:
    return a * math.exp(-4.0 * math.exp(-10.0 * x))


# The bin curve a=0.85 at the frontier's x: 0.1 -> 0.1951, 0.2 -> 0.4947, 0.4 -> 0.7900,
# 0.9 -> 0.8496.
UNSURE = LocalOutput(label=3, confidence=0.3, activation=None)
SURE = LocalOutput(label=3, confidence=0.9, activation=None)
FAST = Conditions(
    time_left_ms=1000.0, link=LinkEstimate(10.0, 500.0, 10.0, 100_000.0), worker_ms=5.0
)


def test_hand_computed_curve_values() -> None:
    assert _g(0.1, 0.85) == pytest.approx(0.1951, abs=1e-4)
    assert _g(0.2, 0.85) == pytest.approx(0.4947, abs=1e-4)
    assert _g(0.4, 0.85) == pytest.approx(0.7900, abs=1e-4)
    assert _g(0.9, 0.85) == pytest.approx(0.8496, abs=1e-4)
    assert _g(0.4, 0.98) == pytest.approx(0.9108, abs=1e-4)
    assert _g(0.9, 0.98) == pytest.approx(0.9795, abs=1e-4)


def test_fixed_is_all_or_nothing() -> None:
    choice = FixedQuality(90).choose(UNSURE, FAST)
    assert (choice.offload, choice.codec, choice.quality, choice.scale) == (
        True,
        PayloadCodec.JPEG,
        90,
        1.0,
    )


def test_max_accuracy_takes_the_cheapest_point_within_the_slack() -> None:
    # Unsure frame: best is q95 (0.8496); within 0.005 of it only q95 (0.7900 is far).
    choice = GompertzQuality(CALIBRATION, slack=0.005).choose(UNSURE, FAST)
    assert (choice.offload, choice.quality, choice.codec) == (True, 95, PayloadCodec.JPEG_ABBREV)
    assert choice.expected_accuracy == pytest.approx(0.8496, abs=1e-4)
    # A slack of 0.07 admits q60 (0.7900 >= 0.8496 - 0.07 = 0.7796), the cheaper one.
    assert GompertzQuality(CALIBRATION, slack=0.07).choose(UNSURE, FAST).quality == 60


def test_a_sure_frame_stays_local_when_the_cloud_adds_less_than_the_slack() -> None:
    # Sure frame: local 0.97; best cloud 0.9795; 0.97 >= 0.9795 - 0.01, so keep it.
    choice = GompertzQuality(CALIBRATION, slack=0.01).choose(SURE, FAST)
    assert not choice.offload
    assert choice.expected_accuracy == pytest.approx(0.97)
    # With no slack the 0.95-point gain is worth q95.
    assert GompertzQuality(CALIBRATION, slack=0.0).choose(SURE, FAST).quality == 95


def test_a_target_takes_the_fewest_bytes_that_reach_it() -> None:
    # Unsure frame, target 0.75: q60 gives 0.7900, q30 only 0.4947.
    assert GompertzQuality(CALIBRATION, target_accuracy=0.75).choose(UNSURE, FAST).quality == 60
    # Sure frame, target 0.95: the local answer (0.97) already reaches it: send nothing.
    assert not GompertzQuality(CALIBRATION, target_accuracy=0.95).choose(SURE, FAST).offload
    # Unreachable target (0.9 > 0.8496): falls back to the best within the slack.
    choice = GompertzQuality(CALIBRATION, target_accuracy=0.9).choose(UNSURE, FAST)
    assert choice.quality == 95
    assert "within" in choice.reason


def test_a_slow_link_rules_out_the_big_points() -> None:
    # 10 kB/s, recent 500-byte messages took 50 ms; the budget is 0.8 x 100 ms = 80 ms.
    # q95 (900 B + 100 B overhead): 50 + (1000 - 500) / 10 kB/s = 100 ms + 5 ms: late.
    # q60 (400 + 100): 50 + 0 + 5 = 55 ms: on time (0.7900), the best on-time choice.
    slow = Conditions(
        time_left_ms=100.0,
        link=LinkEstimate(50.0, 500.0, 20.0, 10_000.0),
        worker_ms=5.0,
        overhead_bytes=100.0,
    )
    options = {o.quality: o for o in GompertzQuality(CALIBRATION).options(UNSURE, slow)}
    assert not options[95].on_time
    assert options[95].expected == pytest.approx(0.6)  # late: the local answer
    assert options[60].on_time
    assert GompertzQuality(CALIBRATION, slack=0.005).choose(UNSURE, slow).quality == 60


def test_when_nothing_arrives_in_time_the_frame_stays_local() -> None:
    hopeless = Conditions(
        time_left_ms=50.0, link=LinkEstimate(400.0, 500.0, 300.0, 10_000.0), worker_ms=5.0
    )
    choice = GompertzQuality(CALIBRATION).choose(UNSURE, hopeless)
    assert not choice.offload
    assert "deadline" in choice.reason


def test_without_bins_the_overall_curve_and_the_local_confidence_are_used() -> None:
    unbinned = GompertzQuality(CALIBRATION, use_bins=False)
    options = {o.quality: o for o in unbinned.options(UNSURE, FAST)}
    assert options[0].expected == pytest.approx(0.3)  # the local confidence
    assert options[60].predicted == pytest.approx(_g(0.4, 0.95))
    assert 70 not in options  # off the frontier


def test_the_decaying_average_by_hand() -> None:
    clock = Clock()
    avg = DecayingAverage(1.0, min_weight=0.1, clock=clock)
    assert avg.value is None
    assert avg.update(10.0) == 10.0
    clock.now = 1.0  # one half-life: weight 0.5
    assert avg.update(20.0) == pytest.approx(15.0)
    clock.now = 1.0  # no time passed: the minimum weight 0.1
    assert avg.update(25.0) == pytest.approx(16.0)


def test_the_link_estimator_learns_base_time_and_bandwidth() -> None:
    clock = Clock()
    link = LinkEstimator(half_life_s=1.0, clock=clock, prior_bytes_per_s=50_000.0)
    assert link.estimate().network_ms_for(1000) == pytest.approx(20.0)  # the prior alone
    link.record(message_bytes=200, rtt_ms=15.0, worker_ms=5.0)  # 10 ms on the network
    first = link.estimate()
    assert (first.network_ms, first.base_ms, first.bytes_per_s) == (10.0, 10.0, 50_000.0)
    clock.now = 1.0
    link.record(message_bytes=1200, rtt_ms=30.0, worker_ms=0.0)  # 30 ms: 20 above base
    second = link.estimate()
    assert second.base_ms == 10.0
    assert second.bytes_per_s == pytest.approx(60_000.0)  # 1200 B / 20 ms
    assert second.network_ms == pytest.approx(20.0)  # halfway, one half-life later
    assert second.message_bytes == pytest.approx(700.0)
    # 1300 B: 20 ms + (1300 - 700) / 60 kB/s = 30 ms; never below the base.
    assert second.network_ms_for(1300) == pytest.approx(30.0)
    assert second.network_ms_for(0) == pytest.approx(10.0)


def test_worker_load_from_retained_status() -> None:
    clock = Clock()
    load = WorkerLoad(fresh_s=5.0, clock=clock)
    assert load.estimated_ms() == 0.0
    status = WorkerStatus(
        worker_id="w1", online=True, ts=0.0, queue_depth=3, latency_ms_per_image=2.0
    )
    load.on_status(status)
    load.on_status(msgspec.structs.replace(status, worker_id="w2", queue_depth=0))
    assert load.estimated_ms() == pytest.approx(((3 + 1) * 2.0 + 1 * 2.0) / 2)  # 5 ms
    load.on_status(msgspec.structs.replace(status, worker_id="w2", online=False))
    assert load.estimated_ms() == pytest.approx(8.0)
    clock.now = 10.0  # stale
    assert load.estimated_ms() == 0.0


# -- an edge choosing per frame, against a real worker --------------------------------


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="needs dataset-fashion-mnist")
def test_an_edge_sends_abbreviated_jpegs_at_the_chosen_quality(
    config: Config, tmp_path: Path
) -> None:
    path = save_calibration(CALIBRATION, tmp_path / "cal.json")
    base = dataclasses.replace(
        config,
        edge=dataclasses.replace(
            config.edge, model=MODEL, local_model=MODEL, deadline_ms=5000.0, max_in_flight=8
        ),
        worker=dataclasses.replace(config.worker, model=MODEL, max_batch=8),
    )
    fixed = dataclasses.replace(base.edge, policy="cloud-only")
    gompertz = dataclasses.replace(
        fixed, quality_policy="gompertz", calibration=str(path), accuracy_slack=0.07
    )

    async def scenario() -> tuple[LedgerSummary, LedgerSummary, EdgeNode]:
        async with running_worker(base, Classifier.by_name(MODEL)):
            first = await EdgeNode(
                dataclasses.replace(base, edge=fixed), DatasetSource(limit=40), Ledger()
            ).run()
            node = EdgeNode(
                dataclasses.replace(base, edge=gompertz), DatasetSource(limit=40), Ledger()
            )
            return first, await node.run(), node

    fixed_summary, summary, node = asyncio.run(scenario())
    assert fixed_summary.by_decision == {"cloud": 40}
    assert summary.captured == summary.decided == 40
    # Unsure frames (conf < 0.5) go as jpeg-abbrev q60; sure ones stay local
    # (0.97 local >= 0.9795 - 0.07).
    assert set(node.quality_choices) <= {"jpeg-abbrev q60 x1"}
    assert summary.by_decision.get("cloud", 0) == sum(node.quality_choices.values())
    assert summary.bytes_sent < fixed_summary.bytes_sent / 2
    assert summary.accuracy is not None
    assert summary.accuracy >= 0.75


def test_without_a_local_answer_a_frame_that_cannot_arrive_in_time_is_not_sent() -> None:
    """No local model (or a detector, whose answer the calibration does not price):
    sending costs bytes for an answer that would come too late, so the frame stays."""
    hopeless = Conditions(
        time_left_ms=50.0, link=LinkEstimate(400.0, 500.0, 300.0, 10_000.0), worker_ms=5.0
    )
    choice = GompertzQuality(CALIBRATION).choose(None, hopeless)
    assert not choice.offload
    assert "deadline" in choice.reason
    assert GompertzQuality(CALIBRATION).choose(None, FAST).offload  # in time: sent


def test_timeouts_teach_the_link_estimate_that_the_link_is_slow() -> None:
    clock = Clock()
    link = LinkEstimator(clock=clock)
    assert link.estimate().network_ms_for(30_000) == 0.0  # nothing known: optimistic
    for _ in range(3):
        clock.now += 1.0
        link.record_timeout(message_bytes=30_000, waited_ms=1000.0)
    assert link.estimate().network_ms_for(30_000) >= 1000.0


def test_a_link_judged_hopeless_is_probed_again() -> None:
    clock = Clock()
    link = LinkEstimator(clock=clock, probe_after_s=5.0)
    link.record_timeout(message_bytes=30_000, waited_ms=1000.0)
    assert link.estimate().network_ms_for(30_000) >= 1000.0
    clock.now += 6.0  # nothing sent, nothing measured since
    assert link.estimate().network_ms_for(30_000) == 0.0  # one probe goes
    assert link.estimate().network_ms_for(30_000) >= 1000.0  # the rest wait for it
