"""A bundle as one unit: its answers as columns (the wire, by hand), its frames as one
queued unit (the worker's backlog), and a real worker answering a columns bundle
through a real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import msgspec
import numpy as np
import pytest

from cloud_worker.backlog import Backlog
from cloud_worker.processing import Pending
from edge_node.replies import ReplyRouter
from pipeline.config import Config
from pipeline.datasets import DEBIAN_FASHION_MNIST, load_fashion_mnist
from pipeline.errors import ProtocolError
from pipeline.inference import Classifier
from pipeline.protocol import (
    ErrorCode,
    ErrorReply,
    FrameBundle,
    FrameRequest,
    Result,
    ResultColumns,
    ResultRow,
    decode_frames,
    decode_replies,
    frames_per_message,
)
from pipeline.topics import ReplyTarget
from tests._helpers import client, raw_request, running_worker

MODEL = "fmnist_exit_resnet"
EDGE = "cam-1"


def _row(i: int, **changes: object) -> ResultRow:
    row = ResultRow(
        frame_id=f"f{i}",
        label=i % 10,
        label_name=f"class {i % 10}",
        topk_labels=(i % 10, 7, 1),
        topk_scores=(0.7, 0.2, 0.1),
        model=MODEL,
        model_version="3",
        queue_ms=1.5 + i,
        decode_ms=0.02,
        inference_ms=4.0,
        batch_size=32,
    )
    return row._replace(**changes)  # type: ignore[arg-type]


def _result(row: ResultRow) -> Result:
    """What a worker sends for ``row`` alone."""
    return Result(
        frame_id=row.frame_id,
        worker_id="w1",
        label=row.label,
        label_name=row.label_name,
        topk_labels=row.topk_labels,
        topk_scores=row.topk_scores,
        model=row.model,
        model_version=row.model_version,
        queue_ms=row.queue_ms,
        decode_ms=row.decode_ms,
        inference_ms=row.inference_ms,
        batch_size=row.batch_size,
    )


# --------------------------------------------------------------------------- wire


def test_columns_decode_to_the_results_a_worker_would_send_one_by_one() -> None:
    rows = [_row(i) for i in range(32)]
    data = ResultColumns.of_rows(rows, worker_id="w1").to_bytes()
    replies, errors = decode_replies(data)
    assert errors == []
    assert replies == [_result(row) for row in rows]
    # The shared fields travel once: smaller than the 32 results as bundle members.
    assert len(data) < sum(len(_result(row).to_bytes()) for row in rows) / 2


def test_columns_in_another_key_order_decode_the_same_on_the_checked_path() -> None:
    data = ResultColumns.of_rows([_row(i) for i in range(3)], worker_id="w1").to_bytes()
    fields = msgspec.msgpack.decode(data)
    reordered = msgspec.msgpack.encode(dict(reversed(list(fields.items()))))
    assert decode_replies(reordered) == decode_replies(data)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"labels": (1, 2)}, "per-frame column"),
        ({"queue_ms": (1.0, 2.0, -1.0)}, "negative"),
        ({"topk_scores": (0.7, 0.2, 1.5) * 3}, "topk_scores"),
        ({"topk_labels": (1, 2) * 3}, "topk_labels"),
        ({"labels": (1, -2, 3)}, "class index"),
        ({"batch_sizes": (1, 0, 1)}, "batch_sizes"),
        ({"frame_ids": ("f0", "a/b", "f2")}, "valid id"),
        ({"topk": 0}, "topk_labels"),
    ],
)
def test_broken_columns_are_refused_with_what_is_wrong(change: dict[str, object], why: str) -> None:
    columns = ResultColumns.of_rows([_row(i) for i in range(3)], worker_id="w1")
    fields = msgspec.msgpack.decode(columns.to_bytes())
    fields.update(change)
    with pytest.raises(ProtocolError, match=why) as refused:
        decode_replies(msgspec.msgpack.encode(fields))
    assert refused.value.reason == "bad_value"


def test_rows_of_two_models_or_top_k_lengths_make_no_columns() -> None:
    with pytest.raises(ProtocolError, match="one model"):
        ResultColumns.of_rows([_row(0), _row(1, model="other")], worker_id="w1")
    with pytest.raises(ProtocolError, match="top-k"):
        ResultColumns.of_rows(
            [_row(0), _row(1, topk_labels=(1, 2), topk_scores=(0.6, 0.4))], worker_id="w1"
        )


def test_a_columns_message_holds_as_many_frames_as_its_top_k_arrays_allow() -> None:
    assert frames_per_message(1) == 256  # a bundle's most
    assert frames_per_message(5) == 204  # 1,020 of the 1,024 items an array may hold
    rows = [_row(i, topk_labels=(1,) * 5, topk_scores=(0.2,) * 5) for i in range(204)]
    assert len(decode_replies(ResultColumns.of_rows(rows, worker_id="w1").to_bytes())[0]) == 204


def test_a_bundle_asks_for_columns_and_one_without_the_field_is_as_before() -> None:
    member = _raw("f0").to_bytes()
    plain = FrameBundle(edge_id=EDGE, frames=(member,) * 2)
    assert b"columns" not in plain.to_bytes()  # what edges before columns sent
    assert not decode_frames(plain.to_bytes()).columns
    asking = FrameBundle(edge_id=EDGE, frames=(member,) * 2, columns=True)
    assert decode_frames(asking.to_bytes()).columns


# --------------------------------------------------------------------------- backlog


def _raw(frame_id: str, *, edge_id: str = EDGE, pixels: bytes = bytes(784)) -> FrameRequest:
    return raw_request(frame_id, edge_id=edge_id, pixels=pixels, model=MODEL)


def _unit(name: str, frames: int) -> list[Pending]:
    target = ReplyTarget(f"r/{EDGE}", None)
    return [Pending(_raw(f"{name}{i}"), target, time.monotonic()) for i in range(frames)]


def _ids(units: list[list[Pending]]) -> list[str]:
    return [p.request.frame_id for unit in units for p in unit]


def test_a_batch_takes_whole_units_and_one_that_would_overflow_waits() -> None:
    async def run() -> None:
        backlog = Backlog(capacity=100)
        for name, frames in (("a", 20), ("b", 10), ("c", 8), ("d", 2)):
            backlog.put(_unit(name, frames))
        assert (backlog.room(), backlog.waiting()) == (60, 40)
        first = await backlog.next_batch(max_batch=32, max_wait_s=0.0)
        assert _ids(first) == _ids([_unit("a", 20), _unit("b", 10)])  # c's 8 would overflow
        assert backlog.waiting() == 10  # c (carried) and d, still counted
        second = await backlog.next_batch(max_batch=32, max_wait_s=0.0)
        assert _ids(second) == _ids([_unit("c", 8), _unit("d", 2)])
        assert (backlog.queued, backlog.room()) == (0, 100)

    asyncio.run(run())


def test_a_batch_gathering_cancelled_loses_nothing() -> None:
    async def run() -> None:
        backlog = Backlog(capacity=100)
        backlog.put(_unit("a", 3))
        gathering = asyncio.create_task(backlog.next_batch(max_batch=32, max_wait_s=60))
        await asyncio.sleep(0.05)  # a taken, waiting for more
        gathering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gathering
        assert backlog.waiting() == 3
        backlog.put(_unit("b", 1))
        batch = await backlog.next_batch(max_batch=32, max_wait_s=0.0)
        assert _ids(batch) == _ids([_unit("a", 3), _unit("b", 1)])

    asyncio.run(run())


def test_a_goodbye_takes_every_unit_not_yet_computing() -> None:
    async def run() -> None:
        backlog = Backlog(capacity=100)
        for name, frames in (("a", 30), ("b", 5), ("c", 1)):
            backlog.put(_unit(name, frames))
        await backlog.next_batch(max_batch=32, max_wait_s=0.0)  # a; b carried
        taken = backlog.take_all()
        assert sorted(p.request.frame_id for p in taken) == sorted(
            _ids([_unit("b", 5), _unit("c", 1)])
        )
        assert (backlog.waiting(), backlog.queue.qsize()) == (0, 0)

    asyncio.run(run())


# --------------------------------------------------------------------------- worker

needs_fmnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist is not installed"
)


@needs_fmnist
def test_a_worker_answers_a_columns_bundle_in_one_message_and_refuses_only_bad_members(
    config: Config,
) -> None:
    asyncio.run(_a_worker_answers_a_columns_bundle(config))


async def _a_worker_answers_a_columns_bundle(config: Config) -> None:
    config = dataclasses.replace(
        config, worker=dataclasses.replace(config.worker, model=MODEL, max_batch=64)
    )
    test = load_fashion_mnist(split="test").head(30)
    requests = [_raw(f"f{i}", pixels=img.tobytes()) for i, img in enumerate(test.images)]
    wrong_edge = _raw("other", edge_id="cam-2")
    members = [r.to_bytes() for r in requests] + [wrong_edge.to_bytes()]
    router = ReplyRouter(EDGE)
    waiting = {r.frame_id: router.expect(r.frame_id) for r in [*requests, wrong_edge]}
    kinds: list[str] = []
    async with (
        running_worker(config, Classifier.by_name(MODEL, "cpu")),
        client(config) as edge,
    ):
        await edge.subscribe(config.topics.results(EDGE), qos=1)
        bundle = FrameBundle(edge_id=EDGE, frames=tuple(members), columns=True)
        await edge.publish(config.topics.frames(EDGE), bundle.to_bytes(), qos=1)
        async with asyncio.timeout(30):
            async for message in edge.messages:
                assert isinstance(message.payload, bytes)
                kinds.append(msgspec.msgpack.decode(message.payload)["t"])
                router.on_message(message)
                if all(f.done() for f in waiting.values()):
                    break
    answers = {fid: f.result() for fid, f in waiting.items()}
    results = [answers[r.frame_id] for r in requests]
    assert all(isinstance(r, Result) and r.model == MODEL for r in results)
    labels = np.array([r.label for r in results if isinstance(r, Result)])
    assert (labels == test.labels).mean() > 0.8
    refused = answers["other"]
    assert isinstance(refused, ErrorReply)
    assert refused.code is ErrorCode.BAD_REQUEST
    assert router.bad_replies == 0
    # The refusal at admission, then the 30 results as columns of one batch.
    assert kinds == ["error", "result_columns"]
