"""Helpers for tests that run real components against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import numpy as np

from cloud_worker import CloudWorker
from pipeline.codecs import encode_jpeg
from pipeline.config import Config
from pipeline.inference import Classifier
from pipeline.mqtt import make_client
from pipeline.protocol import FrameRequest, PayloadCodec, TensorDType
from pipeline.tasks import cancel_and_wait


@contextlib.asynccontextmanager
async def running_worker(
    config: Config, classifier: Classifier | None = None, *, timeout_s: float = 60
) -> AsyncIterator[CloudWorker]:
    """A real worker task, ready (subscribed) on entry, cancelled and awaited on exit."""
    worker = CloudWorker(config, classifier=classifier)
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run(ready=ready))
    ready_task = asyncio.create_task(ready.wait())
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.wait({task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises the worker's error
        yield worker
    finally:
        await cancel_and_wait([ready_task, task])
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # the worker died during the test


def detecting(config: Config, **edge: object) -> Config:
    """``config`` as a security camera: ssdlite_person at the edge, nanodet_coco on the
    worker (one onnxruntime thread: tests share the box), ``edge`` settings on top."""
    return dataclasses.replace(
        config,
        edge=dataclasses.replace(
            config.edge,
            task="detect",
            local_model="ssdlite_person",
            model="nanodet_coco",
            **edge,  # type: ignore[arg-type]
        ),
        worker=dataclasses.replace(config.worker, model="nanodet_coco", threads=1),
    )


@contextlib.asynccontextmanager
async def client(config: Config) -> AsyncIterator[aiomqtt.Client]:
    async with make_client(config.broker, client_id=f"test-{uuid.uuid4().hex[:8]}") as c:
        yield c


def jpeg_request(
    image: np.ndarray,
    *,
    frame_id: str = "f1",
    edge_id: str = "cam-1",
    model: str = "efficientnet_lite0",
    deadline_s: float = 10.0,
    quality: int = 85,
) -> FrameRequest:
    now = time.time()
    return FrameRequest(
        frame_id=frame_id,
        edge_id=edge_id,
        seq=0,
        capture_ts=now,
        deadline_ts=now + deadline_s,
        codec=PayloadCodec.JPEG,
        quality=quality,
        shape=tuple(image.shape),
        dtype=TensorDType.UINT8,
        payload=encode_jpeg(image, quality),
        model=model,
    )


def raw_request(
    frame_id: str,
    *,
    edge_id: str = "cam-1",
    pixels: bytes = bytes(784),
    model: str = "fmnist_exit_resnet",
) -> FrameRequest:
    """A Fashion-MNIST-sized frame of raw uint8 pixels, due in 30 s."""
    now = time.time()
    return FrameRequest(
        frame_id=frame_id,
        edge_id=edge_id,
        seq=0,
        capture_ts=now,
        deadline_ts=now + 30,
        codec=PayloadCodec.RAW,
        shape=(28, 28, 1),
        dtype=TensorDType.UINT8,
        payload=pixels,
        model=model,
    )


async def next_message(c: aiomqtt.Client, timeout_s: float = 20) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(c.messages))


class LoopLag:
    """Samples event-loop lag (how late a 5 ms sleep wakes) until stopped; ``max_ms``."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._done.is_set():
            start = loop.time()
            await asyncio.sleep(0.005)
            self.lags.append(loop.time() - start - 0.005)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> float:
        """Stop sampling; the largest lag seen, in ms."""
        self._done.set()
        if self._task is not None:
            await self._task
        return max(self.lags) * 1000


async def eventually(check: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait until ``check()`` holds, polling: for counters that have no event to await."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polling a plain counter is the point
            await asyncio.sleep(0.01)


def with_thresholds(manifest: Path, thresholds: list[float], name: str) -> Path:
    """A copy of a specialized model's ``manifest`` beside it (the same, verified
    weights) with these exit thresholds; the model keeps its name."""
    data = json.loads(manifest.read_text())
    for entry, threshold in zip(data["exits"], thresholds, strict=True):
        entry["threshold"] = threshold
    copy = manifest.with_name(f"{name}.json")
    copy.write_text(json.dumps(data))
    return copy
