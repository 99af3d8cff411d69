"""Driving the MQTT pipeline: an edge's transport, at a fixed window or offered rate.

The load is what an edge node's offload path does after it has encoded a frame: the
edge's own :class:`~edge_node.sender.FrameSender` (frames ready together share a
message) and :class:`~edge_node.replies.ReplyRouter` (replies matched to frames by id),
over one MQTT connection, to workers in their own processes behind Mosquitto. No task
per frame: a frame's reply future carries a callback, so the driver's own CPU cost per
frame stays near what the transport costs.

Two shapes of load:

* closed (``window``): keep ``window`` frames in flight; the saturated throughput;
* open (``rate``): send frame i at ``i / rate`` s whether or not earlier ones are back
  (at most ``max_in_flight`` outstanding); latency counts from the scheduled time, so
  a backlog shows as latency instead of hiding (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from functools import partial

import aiomqtt
import numpy as np

from camoffload.perf.cpu import CpuMeter
from camoffload.perf.workload import Workload
from edge_node.replies import ReplyRouter
from edge_node.sender import FrameSender
from pipeline.config import Config
from pipeline.mqtt import make_client
from pipeline.protocol import Reply, Result

__all__ = ["LoadResult", "drive_pipeline"]

EDGE_ID = "bench-edge"
_REPLY_TIMEOUT_S = 60.0


@dataclass(slots=True)
class LoadResult:
    """What one load run measured."""

    frames: int
    elapsed_s: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0  # error replies and frames never answered
    correct: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    inference_ms_per_frame: list[float] = field(default_factory=list)
    inference_ms_batch1: list[float] = field(default_factory=list)
    messages_out: int = 0  # MQTT messages the edge published
    messages_in: int = 0  # MQTT messages that came back
    cpu_s: dict[str, float] = field(default_factory=dict)  # by process, while it ran

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @property
    def fps(self) -> float:
        return self.answered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    def mean(self, values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")


async def drive_pipeline(
    config: Config,
    workload: Workload,
    *,
    window: int | None = None,
    rate: float | None = None,
    max_in_flight: int = 1024,
    bundle: bool = True,
    meter: CpuMeter | None = None,
) -> LoadResult:
    """Send every frame of ``workload`` once (``window`` xor ``rate``) and collect.

    ``meter`` runs from the first frame sent to the last answer, so it counts what the
    load costs each process, not building the requests or connecting."""
    if (window is None) == (rate is None):
        raise ValueError("give a window (closed loop) or a rate (open loop)")
    topics = config.topics
    run = uuid.uuid4().hex[:8]
    requests = workload.requests(EDGE_ID, run)
    router = ReplyRouter(EDGE_ID)
    sender = FrameSender(
        edge_id=EDGE_ID,
        topic=topics.frames(EDGE_ID),
        response_topic=topics.results(EDGE_ID),
        mqtt5=config.broker.protocol == "5",
        qos=config.edge.qos,
        bundle=bundle,
    )
    result = LoadResult(frames=len(requests), elapsed_s=0.0)
    slots = asyncio.Semaphore(window if window is not None else max_in_flight)
    outstanding = 0
    all_done = asyncio.Event()

    def finished(index: int, start: float, future: asyncio.Future[Reply]) -> None:
        nonlocal outstanding
        outstanding -= 1
        slots.release()
        router.forget(f"{run}-{index}")
        if future.cancelled() or future.exception() is not None:
            result.errors += 1
        else:
            _record(result, future.result(), workload, index, start)
        if outstanding == 0 and sending_done.is_set():
            all_done.set()

    sending_done = asyncio.Event()
    async with make_client(config.broker, client_id=f"{EDGE_ID}-{run}") as client:
        await client.subscribe(topics.results(EDGE_ID), qos=config.edge.qos)
        receiver = asyncio.create_task(_receive(client, router, result))
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        try:
            for index, data in enumerate(requests):
                if rate is not None:
                    scheduled = started + index / rate
                    if (wait := scheduled - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                await slots.acquire()
                if rate is None:
                    scheduled = time.perf_counter()  # closed loop: from when it may go
                outstanding += 1
                frame_id = f"{run}-{index}"
                reply = router.expect(frame_id)
                reply.add_done_callback(partial(finished, index, scheduled))
                sent = sender.submit(client, frame_id, data)
                sent.add_done_callback(partial(_publish_failed, reply=reply))
            sending_done.set()
            if outstanding == 0:
                all_done.set()
            try:
                async with asyncio.timeout(_REPLY_TIMEOUT_S):
                    await all_done.wait()
            except TimeoutError:
                router.fail_all("no reply within the benchmark's timeout")
                await asyncio.sleep(0)
            result.elapsed_s = time.perf_counter() - started
            if meter is not None:
                result.cpu_s = meter.stop()
        finally:
            receiver.cancel()
            await sender.close()
    result.messages_out = sender.messages
    return result


def _publish_failed(sent: asyncio.Future[None], *, reply: asyncio.Future[Reply]) -> None:
    if reply.done():
        return
    if sent.cancelled():
        reply.cancel()
    elif (exc := sent.exception()) is not None:
        reply.set_exception(exc)


async def _receive(client: aiomqtt.Client, router: ReplyRouter, result: LoadResult) -> None:
    async for message in client.messages:
        result.messages_in += 1
        router.on_message(message)


def _record(result: LoadResult, reply: Reply, workload: Workload, index: int, start: float) -> None:
    if not isinstance(reply, Result):
        result.errors += 1
        return
    result.latencies_ms.append((time.perf_counter() - start) * 1000)
    result.correct += int(reply.label == int(workload.labels[index]))
    result.batch_sizes.append(reply.batch_size)
    result.queue_ms.append(reply.queue_ms)
    result.decode_ms.append(reply.decode_ms)
    result.inference_ms_per_frame.append(reply.inference_ms / reply.batch_size)
    if reply.batch_size == 1:
        result.inference_ms_batch1.append(reply.inference_ms)
