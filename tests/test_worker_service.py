"""The worker as a production service, against a real Mosquitto: load sharing between
workers, deadlines, back-pressure, the three kinds of request, metrics, and how it
dies (SIGKILL -> last will) and stops (SIGTERM -> drain)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from pipeline.codecs import Image
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST, load_fashion_mnist
from pipeline.inference import Classifier, Prediction
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameRequest,
    PayloadCodec,
    Result,
    TensorDType,
    WorkerStatus,
    decode_reply,
)
from tests._helpers import LoopLag, client, jpeg_request, next_message, running_worker

pytestmark = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)

MODEL = "fmnist_exit_resnet"


@pytest.fixture(scope="module")
def fmnist_images() -> list[np.ndarray]:
    test = load_fashion_mnist(split="test").head(256)
    return [test.images[i] for i in range(len(test.images))]


@pytest.fixture
def fmnist_config(config: Config) -> Config:
    return dataclasses.replace(config, worker=dataclasses.replace(config.worker, model=MODEL))


def _fresh_classifier() -> Classifier:
    # One per worker: a classifier belongs to one inference thread (its staging buffers).
    return Classifier.by_name(MODEL, "cpu")


class _SlowClassifier(Classifier):
    """The real model with a fixed extra delay per batch, counting what it computed."""

    def __init__(self, real: Classifier, delay_s: float) -> None:
        self.__dict__.update(real.__dict__)
        self.delay_s = delay_s
        self.computed = 0

    def predict(self, images: Sequence[Image]) -> list[Prediction]:
        time.sleep(self.delay_s)
        self.computed += len(images)
        return super().predict(images)


def _request(image: np.ndarray, frame_id: str, *, deadline_s: float = 10.0) -> FrameRequest:
    return jpeg_request(image, frame_id=frame_id, model=MODEL, deadline_s=deadline_s)


def _reply(message: object) -> Result | ErrorReply:
    payload = message.payload  # type: ignore[attr-defined]
    assert isinstance(payload, bytes)
    return decode_reply(payload)


async def _collect(edge: object, count: int, timeout_s: float = 60) -> list[Result | ErrorReply]:
    replies = []
    async with asyncio.timeout(timeout_s):
        async for message in edge.messages:  # type: ignore[attr-defined]
            replies.append(_reply(message))
            if len(replies) == count:
                break
    return replies


def test_two_workers_share_the_load_and_no_frame_is_answered_twice(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    frames = 240
    first = dataclasses.replace(fmnist_config.worker, worker_id="share-a", max_batch=4)
    second = dataclasses.replace(first, worker_id="share-b")

    async def scenario() -> list[Result | ErrorReply]:
        topics = fmnist_config.topics
        async with (
            running_worker(dataclasses.replace(fmnist_config, worker=first), _fresh_classifier()),
            running_worker(dataclasses.replace(fmnist_config, worker=second), _fresh_classifier()),
            client(fmnist_config) as edge,
        ):
            await edge.subscribe(topics.results("cam-1"), qos=1)
            collecting = asyncio.create_task(_collect(edge, frames))
            for i in range(frames):
                image = fmnist_images[i % len(fmnist_images)]
                await edge.publish(
                    topics.frames("cam-1"), _request(image, f"s{i}").to_bytes(), qos=1
                )
            replies = await collecting
            # Nothing more arrives: a duplicate would show up here.
            with pytest.raises(TimeoutError):
                await next_message(edge, timeout_s=0.5)
            return replies

    replies = asyncio.run(scenario())
    assert all(isinstance(r, Result) for r in replies), [
        r for r in replies if isinstance(r, ErrorReply)
    ][:3]
    ids = Counter(r.frame_id for r in replies)
    assert len(ids) == frames
    assert max(ids.values()) == 1
    shares = Counter(r.worker_id for r in replies)
    assert set(shares) == {"share-a", "share-b"}
    assert min(shares.values()) >= 0.3 * frames, shares


def test_a_frame_that_would_miss_its_deadline_is_answered_expired_and_not_computed(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    slow = _SlowClassifier(_fresh_classifier(), delay_s=0.3)
    cfg = dataclasses.replace(
        fmnist_config,
        worker=dataclasses.replace(fmnist_config.worker, max_batch=1, max_wait_ms=0),
    )

    async def scenario() -> tuple[list[Result | ErrorReply], int]:
        topics = cfg.topics
        async with running_worker(cfg, slow), client(cfg) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            # Teach the worker its speed: one frame takes ~300 ms.
            await edge.publish(
                topics.frames("cam-1"), _request(fmnist_images[0], "warm").to_bytes(), qos=1
            )
            warm = _reply(await next_message(edge))
            assert isinstance(warm, Result)
            computed_before = slow.computed
            # 100 ms is not enough for a 300 ms frame: refused at once, never computed.
            doomed = _request(fmnist_images[1], "doomed", deadline_s=0.1)
            await edge.publish(topics.frames("cam-1"), doomed.to_bytes(), qos=1)
            replies = [_reply(await next_message(edge))]
            # Two frames with 450 ms: the first fits, the second would wait behind it.
            for i in range(2):
                late = _request(fmnist_images[2 + i], f"queue{i}", deadline_s=0.45)
                await edge.publish(topics.frames("cam-1"), late.to_bytes(), qos=1)
            replies += await _collect(edge, 2)
            return replies, slow.computed - computed_before

    replies, computed = asyncio.run(scenario())
    by_id = {r.frame_id: r for r in replies}
    doomed = by_id["doomed"]
    assert isinstance(doomed, ErrorReply)
    assert doomed.code is ErrorCode.EXPIRED
    assert "needs ~" in doomed.message
    assert isinstance(by_id["queue0"], Result)
    late = by_id["queue1"]
    assert isinstance(late, ErrorReply)
    assert late.code is ErrorCode.EXPIRED
    assert computed == 1  # only queue0 ran


def test_a_full_queue_answers_busy_at_once_and_every_frame_gets_one_reply(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    slow = _SlowClassifier(_fresh_classifier(), delay_s=0.2)
    cfg = dataclasses.replace(
        fmnist_config,
        worker=dataclasses.replace(fmnist_config.worker, max_batch=1, max_wait_ms=0, max_queue=2),
    )
    sent = 10

    async def scenario() -> tuple[list[Result | ErrorReply], float]:
        topics = cfg.topics
        async with running_worker(cfg, slow), client(cfg) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            start = time.monotonic()
            for i in range(sent):
                request = _request(fmnist_images[i], f"b{i}")
                await edge.publish(topics.frames("cam-1"), request.to_bytes(), qos=1)
            replies = []
            first_busy_s = 0.0
            async with asyncio.timeout(30):
                async for message in edge.messages:
                    reply = _reply(message)
                    if isinstance(reply, ErrorReply) and not first_busy_s:
                        first_busy_s = time.monotonic() - start
                    replies.append(reply)
                    if len(replies) == sent:
                        break
            return replies, first_busy_s

    replies, first_busy_s = asyncio.run(scenario())
    assert sorted(r.frame_id or "" for r in replies) == sorted(f"b{i}" for i in range(sent))
    busy = [r for r in replies if isinstance(r, ErrorReply)]
    done = [r for r in replies if isinstance(r, Result)]
    assert busy
    assert all(r.code is ErrorCode.BUSY for r in busy)
    # One in the inference thread, one decoded waiting for it, one decoding (or
    # waiting to hand over), two queued: the worker holds max_queue + 2 batches at most.
    assert 3 <= len(done) <= 5, (len(done), len(busy))
    assert first_busy_s < 0.2  # back-pressure is immediate, not after a batch


def test_tensor_and_intermediate_requests_continue_where_the_edge_stopped(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    classifier = _fresh_classifier()
    network = classifier.network
    assert network is not None
    images = fmnist_images[:6]
    reference = [p.label for p in classifier.predict(images)]
    inputs = classifier.preprocess(images).cpu().numpy()  # normalised (N, 1, 28, 28)
    requests = []
    now = time.time()
    common = {"edge_id": "cam-1", "seq": 0, "capture_ts": now, "deadline_ts": now + 10}
    for i in range(len(images)):
        requests.append(
            FrameRequest(
                frame_id=f"raw{i}",
                codec=PayloadCodec.RAW,
                shape=(1, 28, 28),
                dtype=TensorDType.FLOAT32,
                payload=inputs[i].astype(np.float32).tobytes(),
                model=MODEL,
                **common,  # type: ignore[arg-type]
            )
        )
        for split in (1, 2, 3, 4):
            with torch.inference_mode():
                activation = network.edge_part(split)(torch.from_numpy(inputs[i : i + 1]))[0]
            requests.append(
                FrameRequest(
                    frame_id=f"t{split}-{i}",
                    codec=PayloadCodec.TENSOR,
                    split_stage=split,
                    shape=tuple(activation.shape[1:]),
                    dtype=TensorDType.FLOAT16,
                    payload=activation[0].numpy().astype(np.float16).tobytes(),
                    model=MODEL,
                    **common,  # type: ignore[arg-type]
                )
            )
    wrong_split = msgspec.structs.replace(requests[1], frame_id="bad-split", split_stage=2)
    unknown_split = msgspec.structs.replace(requests[1], frame_id="split-9", split_stage=9)
    requests += [wrong_split, unknown_split]

    async def scenario() -> list[Result | ErrorReply]:
        topics = fmnist_config.topics
        async with running_worker(fmnist_config, classifier), client(fmnist_config) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            for request in requests:
                await edge.publish(topics.frames("cam-1"), request.to_bytes(), qos=1)
            return await _collect(edge, len(requests))

    by_id = {r.frame_id: r for r in asyncio.run(scenario())}
    for i, label in enumerate(reference):
        for fid in (f"raw{i}", *(f"t{s}-{i}" for s in (1, 2, 3, 4))):
            result = by_id[fid]
            assert isinstance(result, Result), result
            assert result.label == label, fid
    bad = by_id["bad-split"]
    assert isinstance(bad, ErrorReply)
    assert bad.code is ErrorCode.BAD_REQUEST
    assert "(96, 14, 14) at split 2" in bad.message
    unknown = by_id["split-9"]
    assert isinstance(unknown, ErrorReply)
    assert "not 9" in unknown.message


def test_loop_lag_stays_under_50ms_while_a_batch_of_64_runs(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    cfg = dataclasses.replace(
        fmnist_config,
        worker=dataclasses.replace(fmnist_config.worker, max_batch=64, max_wait_ms=200),
    )

    async def scenario() -> tuple[float, list[Result | ErrorReply]]:
        lag = LoopLag()

        topics = cfg.topics
        async with running_worker(cfg, _fresh_classifier()), client(cfg) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            payloads = [_request(fmnist_images[i], f"lag{i}").to_bytes() for i in range(128)]
            lag.start()
            await asyncio.gather(
                *(edge.publish(topics.frames("cam-1"), p, qos=1) for p in payloads)
            )
            replies = await _collect(edge, len(payloads))
            max_lag_ms = await lag.stop()
        return max_lag_ms, replies

    max_lag_ms, replies = asyncio.run(scenario())
    results = [r for r in replies if isinstance(r, Result)]
    assert len(results) == 128
    assert max(r.batch_size for r in results) == 64
    assert max_lag_ms < 50, max_lag_ms


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_endpoint_counts_requests_batches_and_refusals(
    fmnist_config: Config, fmnist_images: list[np.ndarray]
) -> None:
    cfg = dataclasses.replace(
        fmnist_config,
        worker=dataclasses.replace(fmnist_config.worker, metrics_port=0, max_batch=8),
    )

    async def scenario() -> dict[str, float]:
        topics = cfg.topics
        async with running_worker(cfg, _fresh_classifier()) as worker, client(cfg) as edge:
            await edge.subscribe(topics.results("cam-1"), qos=1)
            for i in range(20):
                await edge.publish(
                    topics.frames("cam-1"), _request(fmnist_images[i], f"m{i}").to_bytes(), qos=1
                )
            expired = _request(fmnist_images[0], "gone", deadline_s=-1)
            await edge.publish(topics.frames("cam-1"), expired.to_bytes(), qos=1)
            await edge.publish(topics.frames("cam-1"), b"not msgpack", qos=1)
            await _collect(edge, 22)
            assert worker.metrics_port
            return await asyncio.to_thread(_scrape, worker.metrics_port)

    samples = asyncio.run(scenario())

    def value(name: str, **extra: str) -> float:
        labels = {"model": MODEL, "worker": "worker-1", **extra}
        return samples[(name, frozenset(labels.items()))]

    assert value("camoffload_worker_requests_total", outcome="ok") == 20
    assert value("camoffload_worker_requests_total", outcome="expired") == 1
    assert value("camoffload_worker_requests_total", outcome="error") == 1
    assert value("camoffload_worker_errors_total", code="bad_request") == 1
    assert value("camoffload_worker_inferences_total") == 20
    batches = value("camoffload_worker_batches_total")
    assert 3 <= batches <= 20  # batch size 8 at most
    assert value("camoffload_worker_queue_duration_seconds_count") == 20
    assert value("camoffload_worker_compute_duration_seconds_count") == batches


# -- the real command in its own process: how it dies and how it stops ------------------


@pytest.fixture
def worker_process(fmnist_config: Config, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    argv = [
        sys.executable,
        "-m",
        "camoffload",
        "worker",
        "--broker",
        fmnist_config.broker.url,
        "--set",
        f"prefix={fmnist_config.prefix}",
        "--set",
        "worker.status_interval_s=0.2",
        "--model",
        MODEL,
        "--worker-id",
        "proc-1",
        "--max-batch",
        "16",
        "--max-queue",
        "1024",
    ]
    # A file, not a pipe: a pipe nobody reads would block a chatty worker.
    with (tmp_path / "worker.log").open("w+") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
        process.log = log  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def _wait_status(edge: object, online: bool, timeout_s: float = 60) -> WorkerStatus:
    async with asyncio.timeout(timeout_s):
        async for message in edge.messages:  # type: ignore[attr-defined]
            status = WorkerStatus.from_bytes(message.payload)
            if status.online == online:
                return status
    raise AssertionError("unreachable")


def test_a_sigkilled_worker_shows_offline_through_its_last_will(
    fmnist_config: Config, worker_process: subprocess.Popen[str]
) -> None:
    async def scenario() -> WorkerStatus:
        async with client(fmnist_config) as edge:
            await edge.subscribe(fmnist_config.topics.worker_status("proc-1"), qos=1)
            await _wait_status(edge, online=True)
            worker_process.send_signal(signal.SIGKILL)
            return await _wait_status(edge, online=False, timeout_s=10)

    offline = asyncio.run(scenario())
    assert offline.worker_id == "proc-1"
    assert not offline.online
    assert worker_process.wait(timeout=10) == -signal.SIGKILL


def test_sigterm_drains_the_queue_answers_everything_and_goes_offline(
    fmnist_config: Config,
    fmnist_images: list[np.ndarray],
    worker_process: subprocess.Popen[str],
) -> None:
    sent = 1500

    async def scenario() -> tuple[list[Result | ErrorReply], WorkerStatus]:
        topics = fmnist_config.topics
        async with client(fmnist_config) as edge, client(fmnist_config) as watcher:
            await watcher.subscribe(topics.worker_status("proc-1"), qos=1)
            await _wait_status(watcher, online=True)
            await edge.subscribe(topics.results("cam-1"), qos=1)
            payloads = [
                _request(fmnist_images[i % len(fmnist_images)], f"d{i}", deadline_s=60).to_bytes()
                for i in range(sent)
            ]
            collecting = asyncio.create_task(_collect(edge, sent, timeout_s=90))
            await asyncio.gather(
                *(edge.publish(topics.frames("cam-1"), p, qos=1) for p in payloads)
            )
            # SIGTERM once the worker holds every frame: frames the broker still held
            # for a group with no member left would be dropped, which is the edge's
            # deadline fallback to handle, not the worker's drain.
            async with asyncio.timeout(30):
                while True:
                    status = await _wait_status(watcher, online=True)
                    seen = status.frames_done + status.frames_rejected + status.queue_depth
                    if seen >= sent - 16 and status.queue_depth > 0:
                        break
            worker_process.send_signal(signal.SIGTERM)
            replies = await collecting
            return replies, await _wait_status(watcher, online=False, timeout_s=30)

    replies, offline = asyncio.run(scenario())
    code = worker_process.wait(timeout=30)
    log_file = worker_process.log  # type: ignore[attr-defined]
    log_file.seek(0)
    log = log_file.read()
    assert code == 0, log
    assert not offline.online
    ids = Counter(r.frame_id for r in replies)
    assert len(ids) == sent
    assert max(ids.values()) == 1
    kinds = Counter("result" if isinstance(r, Result) else r.code.value for r in replies)
    assert set(kinds) <= {"result", "busy", "shutting_down"}, kinds
    drained = re.search(r"draining (\d+) queued frames", log)
    assert drained, log
    # Frames queued when SIGTERM came were computed, not refused.
    queued = int(drained.group(1))
    assert queued > 0
    assert kinds["shutting_down"] < queued, (kinds, queued)
