"""``camoffload replay``: a recorded video, image folder or labelled data set through the
pipeline, with a progress bar, a ledger file and a summary.

By default it starts what it needs: a local broker (Mosquitto when installed) and one
cloud worker as a child process. With ``--broker`` it uses a running broker and the
workers already serving it (``--workers N`` starts N more). ``--link`` puts an emulated
link (a shaping proxy, see docs/network-emulation.md) between the edge and the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from broker import BrokerKind, local_broker
from camoffload.links import shaped_link
from camoffload.processes import WorkerGroup, WorkerSettings
from edge_node import EdgeNode, FrameSource, Ledger, LedgerSummary, open_source
from edge_node.sources import skip_frames
from edge_node.stats import format_status_line
from pipeline.config import Config
from pipeline.errors import CamoffloadError
from pipeline.tasks import cancel_and_wait

__all__ = ["ReplayOptions", "ReplayOutcome", "default_ledger_path", "run_replay"]

logger = logging.getLogger(__name__)

_PROGRESS_PERIOD_S = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayOptions:
    source: str
    frames: int | None = None
    broker_url: str | None = None  # None: start a local broker
    broker_kind: BrokerKind = "auto"
    workers: int | None = None  # None: 1 with a started broker, 0 with --broker
    link: str | None = None  # a link profile between the edge and the broker
    progress: bool = True
    start: int = 0  # skip this many frames of the source first


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    summary: LedgerSummary
    ledger_path: Path
    broker: str
    workers_started: int


def default_ledger_path(source: str, now: datetime | None = None) -> Path:
    """``results/replay-<source name>-<UTC time>.sqlite``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    stem = Path(source.rstrip("/")).stem or "source"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in stem)[:40]
    return Path("results") / f"replay-{safe}-{stamp}.sqlite"


async def run_replay(
    config: Config, options: ReplayOptions, *, stop: asyncio.Event | None = None
) -> ReplayOutcome:
    ledger_path = Path(config.edge.ledger_path or default_ledger_path(options.source))
    ledger_path.parent.mkdir(parents=True, exist_ok=True)
    workers = options.workers
    if workers is None:
        workers = 0 if options.broker_url else 1
    async with _broker(config, options) as (config, broker_desc):
        if workers == 0 and options.broker_url is None:
            raise CamoffloadError("a replay on its own broker needs --workers >= 1")
        async with _workers(config, workers):
            source = await asyncio.to_thread(open_source, options.source)
            if options.start:
                try:
                    await asyncio.to_thread(skip_frames, source, options.start)
                except BaseException:
                    source.close()
                    raise
            async with shaped_link(config, options.link) as edge_config:
                ledger = Ledger(ledger_path)
                try:
                    node = EdgeNode(edge_config, source, ledger)
                    summary = await _run_with_progress(node, source, options, stop)
                finally:
                    ledger.close()
    return ReplayOutcome(summary, ledger_path, broker_desc, workers)


@contextlib.asynccontextmanager
async def _broker(config: Config, options: ReplayOptions) -> AsyncIterator[tuple[Config, str]]:
    if options.broker_url is not None:
        yield config, options.broker_url
        return
    process = local_broker(options.broker_kind)
    info = await asyncio.to_thread(process.start)
    try:
        config = dataclasses.replace(
            config,
            broker=dataclasses.replace(config.broker, url=info.url, protocol=info.protocol),
            worker=dataclasses.replace(
                config.worker, shared_subscription=info.shared_subscriptions
            ),
        )
        yield config, f"{info.kind} ({info.url})"
    finally:
        await asyncio.to_thread(process.stop)


@contextlib.asynccontextmanager
async def _workers(config: Config, count: int) -> AsyncIterator[None]:
    if count <= 0:
        yield
        return
    settings = WorkerSettings(
        model=config.edge.model,
        count=count,
        max_batch=config.worker.max_batch,
        group_tag=f"replay-{config.edge.edge_id}",
    )
    logger.info("starting %d worker(s) for %s", count, settings.model)
    group = WorkerGroup(config, settings)
    await group.start()
    try:
        yield
    finally:
        await group.stop()


async def _run_with_progress(
    node: EdgeNode, source: FrameSource, options: ReplayOptions, stop: asyncio.Event | None
) -> LedgerSummary:
    total = operator.length_hint(source, 0) or None
    if total is not None and options.frames is not None:
        total = min(total, options.frames)
    elif options.frames is not None:
        total = options.frames
    bar = tqdm(
        total=total,
        unit="frame",
        desc=Path(options.source).name or options.source,
        file=sys.stderr,
        disable=not options.progress,
        dynamic_ncols=True,
    )

    async def follow() -> None:
        while True:
            await asyncio.sleep(_PROGRESS_PERIOD_S)
            _advance(bar, node)

    follower = asyncio.create_task(follow(), name="replay-progress")
    try:
        summary = await node.run(max_frames=options.frames, stop=stop)
    finally:
        await cancel_and_wait([follower])
        _advance(bar, node)
        bar.close()
    return summary


def _advance(bar: tqdm, node: EdgeNode) -> None:
    decided = node.ledger.counts().decided
    if decided > bar.n:
        bar.update(decided - bar.n)
    bar.set_postfix_str(format_status_line(node.stats.snapshot()), refresh=False)
