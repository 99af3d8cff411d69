"""What a suite's measured edges talk to: the suite's broker, and for each data set and
load the workers (warmed up) and the background load.

Workers and background load connect to the broker directly: they are "in the cloud".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from broker import local_broker
from camoffload.eval.cell import edge_config
from camoffload.eval.frames import PacedFrames, PreparedData, resolve_source
from camoffload.eval.load import LoadProcess
from camoffload.eval.suite import LoadSpec, Suite
from camoffload.processes import WorkerGroup, WorkerSettings
from edge_node import EdgeNode, Ledger
from pipeline.config import Config, load_config
from pipeline.errors import CamoffloadError

__all__ = ["serve_load", "suite_broker"]

_WARMUP_FRAMES = 24  # through each new worker group first, so no cell pays its start-up


@contextlib.asynccontextmanager
async def suite_broker(url: str | None) -> AsyncIterator[Config]:
    """A config pointing at the broker at ``url``, or at a local one started for the
    suite (Mosquitto when installed) and stopped when the block ends."""
    if url is not None:
        yield load_config(env={}, overrides=[f"broker.url={url}"])
        return
    process = local_broker("auto")
    info = await asyncio.to_thread(process.start)
    try:
        yield load_config(
            env={},
            overrides=[
                f"broker.url={info.url}",
                f"broker.protocol={info.protocol}",
                f"worker.shared_subscription={info.shared_subscriptions}",
            ],
        )
    finally:
        await asyncio.to_thread(process.stop)


@contextlib.asynccontextmanager
async def serve_load(
    base: Config, suite: Suite, data: PreparedData, load: LoadSpec, say: Callable[[str], None]
) -> AsyncIterator[LoadProcess | None]:
    """Workers for ``data``'s model under ``load``, warmed up, and the background load
    (whose counts are on the yielded process once the block ends)."""
    spec = data.spec
    settings = WorkerSettings(
        model=spec.cloud_model,
        count=suite.run.workers,
        max_batch=suite.run.max_batch,
        slowdown=load.slowdown,
        group_tag=f"{spec.name}-{load.name}",
    )
    say(f"starting {settings.count} worker(s) for {spec.cloud_model} ({load.name})")
    workers = WorkerGroup(base, settings)
    await workers.start()
    background: LoadProcess | None = None
    try:
        await _warm_up(base, data, suite)
        if load.edges:
            background = LoadProcess(
                broker_url=base.broker.url,
                prefix=base.prefix,
                edges=load.edges,
                rate=load.rate,
                # Other cameras' frames: the training split where there is one.
                source=resolve_source(spec.source.replace(":test", ":train")),
                model=spec.cloud_model,
                deadline_ms=suite.run.deadline_ms,
                max_in_flight=suite.run.max_in_flight,
            )
            background.start()
            await asyncio.sleep(suite.run.warmup_s)
            if not background.running:
                raise CamoffloadError(f"background load stopped: {background.exit_message()}")
        yield background
    finally:
        try:
            if background is not None:
                await asyncio.to_thread(background.stop)
        finally:
            await workers.stop()


async def _warm_up(base: Config, data: PreparedData, suite: Suite) -> None:
    """A few frames through the new workers (torch's first batches are slow)."""
    n = min(_WARMUP_FRAMES, len(data.images))
    warm = PreparedData(data.spec, data.images[:n], data.labels[:n])
    config = edge_config(base, suite, data.spec, {"policy": "cloud-only"}, edge_id="warmup")
    ledger = Ledger()
    try:
        await EdgeNode(config, PacedFrames(warm, 50.0), ledger).run()
    finally:
        ledger.close()
