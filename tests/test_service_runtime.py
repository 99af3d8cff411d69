"""The service runtime the edge and the worker share, and the pure steps split out of
them: the broker link, the retained status, the metrics endpoint, the deadline, the
worker's admission and the edge's triage (no broker needed for the last three)."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request

import aiomqtt
import pytest
from prometheus_client import CollectorRegistry, Counter

from cloud_worker.admission import Admission
from cloud_worker.stats import WorkerStats
from edge_node.estimators import LinkEstimator, WorkerLoad
from edge_node.sources import DatasetSource
from edge_node.triage import Decided, OffloadPlan, Triage
from pipeline.config import Config, load_config
from pipeline.deadline import Deadline
from pipeline.errors import TransportError
from pipeline.protocol import Decision, ErrorCode, FrameRequest, PayloadCodec, TensorDType
from pipeline.service import BrokerLink, MetricsEndpoint, RetainedStatus
from pipeline.topics import ReplyTarget
from tests._helpers import client, next_message


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Deadline --------------------------------------------------------------------------


def test_a_deadline_answers_every_question_one_way() -> None:
    deadline = Deadline.after(1000.0, 250)
    assert deadline.ts == pytest.approx(1000.25)
    assert deadline.remaining_ms(1000.05) == pytest.approx(200)
    assert not deadline.passed(1000.2499)
    assert deadline.passed(1000.25)
    assert deadline.met_by(1000.2)
    assert not deadline.met_by(1000.25)


def test_a_deadline_on_the_loop_clock_is_never_in_the_past() -> None:
    async def scenario() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        ahead = Deadline(time.time() + 5).loop_time()
        behind = Deadline(time.time() - 5).loop_time()
        return now, ahead, behind

    now, ahead, behind = asyncio.run(scenario())
    assert 4 < ahead - now < 6
    assert 0 <= behind - now < 1


# -- the worker's admission ------------------------------------------------------------


def _request(
    config: Config, *, deadline_in_s: float, edge_id: str = "cam1", model: str | None = None
) -> FrameRequest:
    now = time.time()
    return FrameRequest(
        frame_id="f1",
        edge_id=edge_id,
        seq=0,
        capture_ts=now,
        deadline_ts=now + deadline_in_s,
        model=model or config.worker.model,
        codec=PayloadCodec.RAW,
        shape=(2, 2, 1),
        dtype=TensorDType.UINT8,
        payload=bytes(4),
    )


def test_admission_refuses_by_name_and_owns_the_one_estimate() -> None:
    config = load_config(env={}, overrides=[])
    stats = WorkerStats()
    admission = Admission(config.topics, stats, served_model=lambda: config.worker.model)
    topic = config.topics.frames("cam1")
    target = ReplyTarget(config.topics.results("cam1"), None)

    def check(request: FrameRequest, **kw: object) -> ErrorCode | None:
        options: dict[str, object] = {"draining": False, "frames_ahead": 0} | kw
        refused = admission.check(topic, options.pop("target", target), request, **options)  # type: ignore[arg-type]
        return None if refused is None else refused.code

    fine = _request(config, deadline_in_s=1.0)
    assert check(fine) is None
    assert check(fine, target=None) is ErrorCode.BAD_REQUEST
    assert check(fine, draining=True) is ErrorCode.SHUTTING_DOWN
    assert check(_request(config, deadline_in_s=1.0, edge_id="cam2")) is ErrorCode.BAD_REQUEST
    assert check(_request(config, deadline_in_s=1.0, model="other")) is ErrorCode.UNKNOWN_MODEL
    assert check(_request(config, deadline_in_s=-0.1)) is ErrorCode.EXPIRED
    # 10 ms an image measured: 200 frames ahead need ~2 s, more than the 1 s left.
    stats.record_batch(10, 100.0)
    assert check(fine, frames_ahead=50) is None
    assert check(fine, frames_ahead=200) is ErrorCode.EXPIRED
    # The batch-time check asks the same estimate.
    assert admission.late_in_batch(fine, batch_frames=50) is None
    late = admission.late_in_batch(fine, batch_frames=200)
    assert late is not None
    assert "before this batch finishes" in late.message
    gone = admission.late_in_batch(_request(config, deadline_in_s=-0.1), batch_frames=1)
    assert gone is not None
    assert "passed in the queue" in gone.message


# -- the edge's triage, no broker ------------------------------------------------------


def test_triage_decides_or_plans_without_a_broker() -> None:
    config = load_config(
        env={},
        overrides=[
            "edge.local_model=fmnist_exit_resnet",
            "edge.model=fmnist_exit_resnet",
            "edge.policy=threshold",
            "edge.confidence_threshold=0.9",
        ],
    )

    async def scenario() -> list[Decided | OffloadPlan]:
        triage = Triage(config.edge, link=LinkEstimator(), worker_load=WorkerLoad())
        await triage.load()
        source = DatasetSource(limit=60)
        verdicts = []
        while (frame := source.read()) is not None:
            verdicts.append(await triage.triage(frame))
        return verdicts

    verdicts = asyncio.run(scenario())
    decided = [v for v in verdicts if isinstance(v, Decided)]
    planned = [v for v in verdicts if isinstance(v, OffloadPlan)]
    assert decided
    assert planned
    assert all(v.outcome.decision is Decision.LOCAL for v in decided)
    assert all(v.local is not None and v.local.confidence >= 0.9 for v in decided)
    for plan in planned:
        assert plan.local is not None
        assert plan.local.confidence < 0.9
        assert plan.local_name == "fmnist_exit_resnet"
        assert plan.deadline.remaining_ms() <= config.edge.deadline_ms


# -- the broker link, the retained status, the metrics endpoint ------------------------


def test_a_broker_that_is_not_there_is_a_transport_error_on_time() -> None:
    config = load_config(
        env={},
        overrides=[f"broker.url=mqtt://127.0.0.1:{_closed_port()}", "broker.connect_timeout_s=1"],
    )

    async def scenario() -> None:
        link = BrokerLink(config.broker, client_id="nobody", what="test link")

        async def session(client: aiomqtt.Client) -> None:
            raise AssertionError("never connected")

        await link.run(session)

    started = time.monotonic()
    with pytest.raises(TransportError, match="cannot connect to the broker at"):
        asyncio.run(scenario())
    assert time.monotonic() - started < 30  # the 1 s budget, not a hang


def test_a_stopped_link_stops_waiting_for_its_broker() -> None:
    config = load_config(env={}, overrides=[f"broker.url=mqtt://127.0.0.1:{_closed_port()}"])

    async def scenario() -> None:
        link = BrokerLink(config.broker, client_id="nobody", what="test link")
        stop = asyncio.Event()

        async def session(client: aiomqtt.Client) -> None:
            raise AssertionError("never connected")

        stop.set()
        async with asyncio.timeout(30):
            await link.run(session, stop=stop)

    asyncio.run(scenario())


def test_a_lost_session_reconnects_and_the_status_says_online_then_offline(
    config: Config,
) -> None:
    async def scenario() -> tuple[int, list[bytes]]:
        topic = f"{config.prefix}/status/test"
        status = RetainedStatus(topic, lambda online: b"on" if online else b"off", interval_s=0.05)
        link = BrokerLink(
            config.broker, client_id=f"{config.prefix}-svc", what="svc", will=status.will
        )
        sessions = 0

        async def session(client: aiomqtt.Client) -> None:
            nonlocal sessions
            sessions += 1
            await status.publish(client, online=True)
            if sessions == 1:
                raise aiomqtt.MqttError("pretend the connection dropped")
            await status.publish(client, online=False)

        seen: list[bytes] = []
        async with client(config) as watcher:
            await watcher.subscribe(topic, qos=1)
            await link.run(session)
            while len(seen) < 3:
                message = await next_message(watcher)
                assert isinstance(message.payload, bytes)
                seen.append(message.payload)
        return link.reconnects, seen

    reconnects, seen = asyncio.run(scenario())
    assert reconnects == 1
    assert seen == [b"on", b"on", b"off"]


def test_the_metrics_endpoint_serves_and_closes_its_thread() -> None:
    registry = CollectorRegistry()
    Counter("camoffload_test_things", "things", registry=registry).inc(3)
    endpoint = MetricsEndpoint(registry)
    port = endpoint.serve(0)
    assert endpoint.port == port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert "camoffload_test_things_total 3.0" in response.read().decode()
    endpoint.close()
    assert endpoint.port is None
    endpoint.close()  # twice is fine
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
