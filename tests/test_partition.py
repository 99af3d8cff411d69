"""The partition planner's decisions, by hand; the partitioned model on real weights."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import numpy as np
import pytest

from camoffload.links import shaped_link
from edge_node import EdgeNode, Ledger, open_source
from edge_node.estimators import LinkEstimate, WorkerLoad
from edge_node.partition import PartitionPlanner, SplitPoint
from edge_node.partition_model import REQUEST_OVERHEAD_BYTES, PartitionedModel
from pipeline.config import Config, load_config
from pipeline.errors import ConfigError, ModelError
from pipeline.protocol import WorkerStatus
from pipeline.quantize import QuantizedTensor
from tests._helpers import running_worker

# Send the image (1 kB), cut after stage 1 (50 kB, half the work left), all local.
POINTS = [
    SplitPoint(0, edge_ms=0.0, upload_bytes=1_000, cloud_share=1.0),
    SplitPoint(1, edge_ms=10.0, upload_bytes=50_000, cloud_share=0.5),
    SplitPoint(2, edge_ms=40.0, upload_bytes=0.0, cloud_share=0.0),
]


def _link(rtt_ms: float, bytes_per_s: float) -> LinkEstimate:
    # network time = rtt + size / bandwidth (base and recent both the round trip)
    return LinkEstimate(network_ms=rtt_ms, message_bytes=0.0, base_ms=rtt_ms,
                        bytes_per_s=bytes_per_s)  # fmt: skip


def test_fast_link_idle_worker_sends_the_image() -> None:
    planner = PartitionPlanner(POINTS)
    # 0: 0 + (5 + 1000/1e6 s = 1 ms) + 2 = 8; 1: 10 + (5 + 50) + 1 = 66; 2: 40.
    plans = planner.predict(_link(5, 1e6).network_ms_for, wait_ms=0.0, per_image_ms=2.0)
    assert [round(p.total_ms, 3) for p in plans] == [8.0, 66.0, 40.0]
    assert planner.choose(_link(5, 1e6).network_ms_for, wait_ms=0.0, per_image_ms=2.0).point == 0


def test_slow_link_keeps_it_local() -> None:
    planner = PartitionPlanner(POINTS, probe_interval_s=0)
    # 100 kB/s: 0: 50 + 10 + 2 = 62; 1: 10 + 550 + 1 = 561; 2: 40.
    plan = planner.choose(_link(50, 1e5).network_ms_for, wait_ms=0.0, per_image_ms=2.0)
    assert plan.point == 2
    assert plan.total_ms == 40.0


def test_a_busy_worker_keeps_it_local() -> None:
    planner = PartitionPlanner(POINTS, probe_interval_s=0)
    fast = _link(5, 1e6).network_ms_for
    assert planner.choose(fast, wait_ms=0.0, per_image_ms=2.0).point == 0
    # 50 ms of queue: 0: 6 + 52 = 58 > 40.
    assert planner.choose(fast, wait_ms=50.0, per_image_ms=2.0).point == 2


def test_a_split_wins_when_the_activation_is_small_and_the_worker_fast() -> None:
    points = [
        SplitPoint(0, 0.0, 200_000, 1.0),  # a big image
        SplitPoint(1, 5.0, 10_000, 0.2),  # a small activation
        SplitPoint(2, 100.0, 0.0, 0.0),
    ]
    planner = PartitionPlanner(points)
    # 1 MB/s: 0: 200 + 10 = 210 + 10 = 220; 1: 5 + 10 + 10 + 2 = 27; 2: 100.
    plan = planner.choose(_link(10, 1e6).network_ms_for, wait_ms=0.0, per_image_ms=10.0)
    assert plan.point == 1
    assert plan.total_ms == pytest.approx(27.0)


def test_a_tie_goes_to_the_more_local_point() -> None:
    points = [SplitPoint(0, 0.0, 0.0, 1.0), SplitPoint(1, 10.0, 0.0, 0.0)]
    planner = PartitionPlanner(points, probe_interval_s=0)
    assert planner.choose(lambda _size: 5.0, wait_ms=0.0, per_image_ms=5.0).point == 1


def test_staying_local_probes_the_link_once_per_interval() -> None:
    now = [0.0]
    planner = PartitionPlanner(POINTS, probe_interval_s=2.0, clock=lambda: now[0])
    slow = _link(50, 1e5).network_ms_for
    first = planner.choose(slow, wait_ms=0.0, per_image_ms=2.0)
    assert first.probe
    assert first.point == 0  # the best offloading point
    now[0] = 1.0
    assert planner.choose(slow, wait_ms=0.0, per_image_ms=2.0).point == 2
    now[0] = 2.5
    assert planner.choose(slow, wait_ms=0.0, per_image_ms=2.0).probe
    planner.measured()  # an answered offload refreshes the estimate
    now[0] = 4.0
    assert not planner.choose(slow, wait_ms=0.0, per_image_ms=2.0).probe


def test_the_partitioned_model_profiles_and_runs_every_point() -> None:
    model = PartitionedModel("fmnist_exit_resnet")
    points = model.profile(900.0, repeats=3)
    assert [p.point for p in points] == [0, 1, 2, 3, 4]
    shares = [p.cloud_share for p in points]
    assert shares == sorted(shares, reverse=True)
    assert shares[0] == 1.0
    assert shares[-1] == 0.0
    times = [p.edge_ms for p in points]
    assert times == sorted(times)  # a longer prefix never costs less
    assert points[1].upload_bytes > points[3].upload_bytes > points[0].upload_bytes
    image = np.zeros((28, 28, 1), np.uint8)
    split = model.run(2, image)
    assert isinstance(split.activation, QuantizedTensor)  # uint8 codes by default
    assert split.activation.shape == (96, 14, 14)
    assert points[2].upload_bytes == 96 * 14 * 14 + REQUEST_OVERHEAD_BYTES
    whole = model.run(model.local_point, image)
    assert whole.activation is None
    with pytest.raises(ModelError, match="no split point 7"):
        model.run(7, image)


def test_a_float16_partition_sends_and_plans_twice_the_bytes() -> None:
    model = PartitionedModel("fmnist_exit_resnet", tensor_dtype="float16")
    points = model.profile(900.0, repeats=1)
    assert points[2].upload_bytes == 2 * 96 * 14 * 14 + REQUEST_OVERHEAD_BYTES
    split = model.run(2, np.zeros((28, 28, 1), np.uint8))
    assert isinstance(split.activation, np.ndarray)
    assert split.activation.dtype == np.float16


def test_partition_needs_cloud_only_and_an_early_exit_model() -> None:
    with pytest.raises(ConfigError, match=r"edge\.partition"):
        load_config(env={}, overrides=["edge.partition=auto"])
    cfg = load_config(
        env={},
        overrides=["edge.partition=auto", "edge.local_model=fmnist_exit_resnet"],
    ).edge
    assert cfg.partition == "auto"
    with pytest.raises(ConfigError, match="device_slowdown"):
        load_config(env={}, overrides=["edge.device_slowdown=0.5"])


def test_an_edge_partitions_by_its_link(config: Config) -> None:
    """Through Mosquitto and the shaping proxy: a fast link sends images, a slow one keeps
    frames local (a 40x slower edge device, so the worker is worth asking even when a
    loaded machine makes the worker and the link look slow)."""
    config = load_config(
        env={},
        overrides=[
            f"broker.url={config.broker.url}", f"prefix={config.prefix}",
            "worker.model=fmnist_exit_resnet", "edge.model=fmnist_exit_resnet",
            "edge.local_model=fmnist_exit_resnet", "edge.partition=auto",
            "edge.device_slowdown=40", "edge.max_in_flight=1",
        ],
    )  # fmt: skip

    async def replay(link: str) -> tuple[dict[int, int], int]:
        async with shaped_link(config, link) as edge_config:
            ledger = Ledger()
            try:
                node = EdgeNode(edge_config, open_source("fashion-mnist:test:40"), ledger)
                summary = await node.run()
            finally:
                ledger.close()
        return dict(node.partition_choices), summary.decided

    async def scenario() -> tuple[tuple[dict[int, int], int], tuple[dict[int, int], int]]:
        async with running_worker(config):
            return await replay("rate=100mbit,delay=1ms"), await replay("rate=64kbit,delay=150ms")

    (fast, fast_decided), (slow, slow_decided) = asyncio.run(scenario())
    assert fast_decided == slow_decided == 40
    print(f"fast link: {fast}; slow link: {slow}")
    assert fast.get(0, 0) > 30  # the image, to the worker
    # All local, but for the planner's probes of other splits, which come by the clock:
    # a slow device (or a loaded machine) stretches the run and so gets more of them.
    assert slow.get(4, 0) > 20, slow
    assert slow.get(0, 0) < 5, slow  # the image rarely crosses the slow link


def test_worker_wait_and_time_per_image_from_status() -> None:
    now = [0.0]
    load = WorkerLoad(fresh_s=5.0, clock=lambda: now[0])
    assert load.wait_and_per_image_ms() == (0.0, 0.0)
    status = WorkerStatus(
        worker_id="w1", online=True, ts=0.0, queue_depth=3, latency_ms_per_image=2.0
    )
    load.on_status(status)
    load.on_status(msgspec.structs.replace(status, worker_id="w2", queue_depth=1,
                                           latency_ms_per_image=4.0))  # fmt: skip
    # waits 3 x 2 = 6 and 1 x 4 = 4 -> 5; per image (2 + 4) / 2 = 3
    assert load.wait_and_per_image_ms() == (5.0, 3.0)
    now[0] = 6.0  # both stale
    assert load.wait_and_per_image_ms() == (0.0, 0.0)


def test_a_point_that_keeps_disappointing_stops_being_chosen() -> None:
    planner = PartitionPlanner(POINTS, probe_interval_s=0, correction_weight=0.5)
    fast = _link(5, 1e6).network_ms_for
    plan = planner.choose(fast, wait_ms=0.0, per_image_ms=2.0)
    assert (plan.point, plan.total_ms) == (0, 8.0)
    planner.observe(plan, 48.0)  # the first gap is taken whole: +40
    assert planner.correction_ms(0) == 40.0
    plan = planner.choose(fast, wait_ms=0.0, per_image_ms=2.0)
    assert plan.point == 2  # 8 + 40 = 48 > 40: all local now
    planner.observe(plan, 40.0)  # local as predicted: no gap
    assert planner.correction_ms(2) == 0.0
    planner.observe(dataclasses.replace(plan, point=0, edge_ms=0.0, network_ms=6.0,
                                        worker_ms=2.0), 8.0)  # fmt: skip
    assert planner.correction_ms(0) == 20.0  # 40 + 0.5 x (0 - 40)
    assert planner.choose(fast, wait_ms=0.0, per_image_ms=2.0).point == 0  # 28 < 40
