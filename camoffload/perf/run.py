"""One benchmark run: the model alone, the HTTP baseline and the MQTT pipeline, per
payload kind, one after the other on the same machine and frames.

For each payload kind:

1. the model alone (:mod:`camoffload.perf.ceiling`), as one process with every core's
   threads and as one process per worker: the ceiling;
2. the seed's HTTP design (:mod:`camoffload.perf.http_baseline`) at each concurrency;
3. the pipeline (:mod:`camoffload.perf.mqtt_load`) with 1 and 2 worker processes
   (``cores / workers`` torch threads each), at rising offered load and saturated (a
   window of frames in flight), bundled and one frame per message.

Nothing else of the benchmark runs while one contender is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from broker import mosquitto_broker
from camoffload.perf.ceiling import model_alone_fps_in_processes
from camoffload.perf.cpu import CpuMeter
from camoffload.perf.mqtt_load import LoadResult, drive_pipeline
from camoffload.perf.workload import PAYLOADS, PayloadKind, Workload, make_workload
from camoffload.processes import WorkerGroup, WorkerSettings
from pipeline.codecs import Image, encode_jpeg
from pipeline.config import Config, load_config
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier

__all__ = [
    "QUICK",
    "BenchLayout",
    "BenchSettings",
    "Measured",
    "PayloadReport",
    "Row",
    "bench_broker",
    "bench_layout",
    "run_bench",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BenchSettings:
    model: str = "fmnist_exit_resnet"
    payloads: tuple[PayloadKind, ...] = PAYLOADS
    frames: int = 6000  # per saturated run: long enough that filling and draining the
    # window (256 frames each way) is a small part of it
    low_load_frames: int = 200  # one at a time: the low-load latency
    workers: tuple[int, ...] = (1, 2)
    rates: tuple[float, ...] = (100.0, 250.0, 500.0, 1000.0)  # offered frames/s
    window: int = 256  # frames in flight when saturated
    http_concurrency: tuple[int, ...] = (1, 8, 32)
    max_batch: int = 32
    ceiling_seconds: float = 3.0
    rounds: int = 3  # model alone vs saturated pipeline, alternated
    http: bool = True
    pin: bool = True  # several workers: each on its own share of the cores
    worker_settings: tuple[str, ...] = ()  # more "worker.key=value" for every worker


QUICK = BenchSettings(
    payloads=("jpeg",),
    frames=5000,
    rates=(250.0, 1000.0),
    # 8 in flight is where both HTTP layouts peaked in every full run (32 queues up
    # behind batch-1 inference and loses a third): the short version must not
    # understate the baseline.
    http_concurrency=(1, 8),
    ceiling_seconds=2.0,
)


@dataclass(slots=True)
class Row:
    """One measured line of the table."""

    contender: str  # "model alone", "HTTP", "MQTT"
    setup: str
    load: str
    fps: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    answered: int | None = None
    errors: int | None = None
    top1: float | None = None
    mean_batch: float | None = None
    messages_per_frame: float | None = None
    saturated: bool = False  # counts toward the saturated comparison


@dataclass(slots=True)
class Measured:
    """A pipeline run with what it cost each process."""

    workers: int
    result: LoadResult
    cpu_s: dict[str, float]


@dataclass(slots=True)
class PayloadReport:
    kind: PayloadKind
    payload_bytes: float
    encode_us: dict[str, float]  # edge-side encoding per frame, by step
    rows: list[Row] = field(default_factory=list)
    saturated: list[Measured] = field(default_factory=list)  # bundled, per worker count
    low_load: Measured | None = None
    round_ratios: list[float] = field(default_factory=list)  # best pipeline / best alone
    unbundled: list[Measured] = field(default_factory=list)  # saturated, 1 frame/message

    def best(self, contender: str) -> Row | None:
        rows = [r for r in self.rows if r.contender == contender and r.saturated]
        return max(rows, key=lambda r: r.fps, default=None)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _per_frame_us(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1e6 / count


def _encode_costs(workload: Workload, classifier: Classifier) -> dict[str, float]:
    """What an edge spends per frame before publishing: the payload, the envelope."""
    n = min(workload.count, 500)
    now = time.time()

    def envelopes() -> None:
        # One at a time and dropped, as an edge encodes: keeping them all would time
        # the kernel handing out fresh pages (~2 us each here), not the encoding.
        for i in range(n):
            workload.request(i, "e", "x", now=now, deadline_s=600.0)

    costs = {"envelope": _per_frame_us(envelopes, n)}
    if workload.kind == "jpeg":
        images = cast(list[Image], workload.model_inputs[:n])
        costs["jpeg"] = _per_frame_us(lambda: [encode_jpeg(i, 90) for i in images], n)
    return costs


def _row_from(result: LoadResult, setup: str, load: str, *, saturated: bool) -> Row:
    return Row(
        "MQTT",
        setup,
        load,
        result.fps,
        result.percentile(50),
        result.percentile(95),
        result.percentile(99),
        result.answered,
        result.errors,
        result.correct / result.frames,
        result.mean([float(b) for b in result.batch_sizes]),
        (result.messages_out + result.messages_in) / max(1, result.frames),
        saturated=saturated,
    )


async def _http_rows(settings: BenchSettings, workload: Workload, report: PayloadReport) -> None:
    try:
        from camoffload.perf.http_baseline import drive_http, http_servers
    except ImportError as exc:  # the bench extra is not installed
        logger.warning("HTTP baseline skipped (%s): pip install 'camoffload[bench]'", exc)
        return
    cores = _cores()
    # One uvicorn process with every core's threads (the seed's deployment), and, for
    # each multi-worker layout of the pipeline, as many pinned processes: batch 1 on one
    # process leaves cores idle, and the baseline should be the design at its best.
    for processes in sorted({1, *settings.workers}):
        threads = max(1, cores // processes)
        pinned = ", pinned" if processes > 1 and settings.pin else ""
        setup = f"{processes} process x {threads} thread{pinned}, batch 1"
        async with http_servers(settings.model, processes, pin=settings.pin) as urls:
            for concurrency in settings.http_concurrency:
                warm = dataclasses.replace(workload, payloads=workload.payloads[:64])
                await drive_http(urls, warm, concurrency)
                row = await drive_http(urls, workload, concurrency)
                report.rows.append(
                    Row(
                        "HTTP", setup, f"{concurrency} in flight",
                        row.frames_per_s, row.p50_ms, row.p95_ms, row.p99_ms, row.answered,
                        row.errors, row.accuracy, 1.0, 2.0, saturated=True,
                    )
                )  # fmt: skip


@contextlib.contextmanager
def bench_broker() -> Iterator[tuple[str, int]]:
    """A Mosquitto of the bench's own on an ephemeral port: its URL and pid."""
    process = mosquitto_broker(port=0)
    with process as info:
        assert process.pid is not None
        yield info.url, process.pid


@dataclass(slots=True)
class BenchLayout:
    """One worker layout: ``workers`` processes with ``threads`` torch threads each, on
    a prefix of its own (layouts run side by side without sharing frames)."""

    workers: int
    threads: int
    pinned: bool
    config: Config
    processes: WorkerGroup

    @property
    def setup(self) -> str:
        pinned = ", pinned" if self.pinned else ""
        return f"{self.workers} worker x {self.threads} thread{pinned}"


def bench_layout(url: str, settings: BenchSettings, workers: int) -> BenchLayout:
    """``workers`` bench worker processes (not started) on ``url``, on a prefix of their
    own, sharing the cores among them (pinned, when ``settings.pin`` and more than one)."""
    config = load_config(
        env={}, overrides=[f"broker.url={url}", f"prefix=bench-{uuid.uuid4().hex[:8]}"]
    )
    threads = max(1, _cores() // workers)
    worker_settings = WorkerSettings(
        model=settings.model,
        count=workers,
        max_batch=settings.max_batch,
        group_tag=f"bench{workers}",  # client ids stay unique across layouts
        pin=settings.pin and workers > 1,  # worker i on the i-th share of the cores
        settings=(
            f"worker.threads={threads}",
            "worker.max_wait_ms=0",
            "worker.max_queue=1024",
            *settings.worker_settings,
        ),
    )
    return BenchLayout(
        workers, threads, worker_settings.pin, config, WorkerGroup(config, worker_settings)
    )


async def _load_rows(
    settings: BenchSettings, group: BenchLayout, workload: Workload, report: PayloadReport
) -> None:
    """One frame at a time (the low-load latency), then rising offered load."""
    warm = dataclasses.replace(workload, payloads=workload.payloads[:400])
    await drive_pipeline(group.config, warm, window=64)  # traces, allocators, caches
    low = dataclasses.replace(workload, payloads=workload.payloads[: settings.low_load_frames])
    result = await drive_pipeline(group.config, low, window=1)
    report.rows.append(_row_from(result, group.setup, "1 in flight", saturated=False))
    if report.low_load is None:
        report.low_load = Measured(group.workers, result, {})
    for rate in settings.rates:
        frames = max(settings.low_load_frames, min(workload.count, int(rate * 4)))
        load = dataclasses.replace(workload, payloads=workload.payloads[:frames])
        result = await drive_pipeline(group.config, load, rate=rate)
        report.rows.append(_row_from(result, group.setup, f"{rate:g}/s offered", saturated=False))


async def _side_by_side(
    settings: BenchSettings,
    groups: list[BenchLayout],
    workload: Workload,
    report: PayloadReport,
    pids: dict[str, int],
) -> None:
    """Rounds of: the model alone in every layout, then the saturated pipeline in every
    layout. This machine's speed wanders by tens of percent over a minute, so each
    round compares runs seconds apart, and the ratio is the median over rounds."""
    cores = _cores()
    # The ceiling is the best of: one process with every core, and one process per
    # worker of each layout, pinned as those workers are and not (the strictest).
    layouts = sorted(
        {(1, cores, False)}
        | {(g.workers, g.threads, pin) for g in groups if g.workers > 1 for pin in (False, True)}
    )
    alone: dict[tuple[int, int, bool], list[float]] = {layout: [] for layout in layouts}
    runs: dict[int, list[Measured]] = {g.workers: [] for g in groups}
    for _ in range(settings.rounds):
        ceiling = 0.0
        for processes, threads, pin in layouts:
            fps = await asyncio.to_thread(
                model_alone_fps_in_processes, settings.model, workload.kind, settings.max_batch,
                processes=processes, threads=threads, seconds=settings.ceiling_seconds,
                pin=pin,
            )  # fmt: skip
            alone[(processes, threads, pin)].append(fps)
            ceiling = max(ceiling, fps)
        best = 0.0
        for group in groups:
            result = await drive_pipeline(
                group.config, workload, window=settings.window, meter=CpuMeter(pids)
            )
            runs[group.workers].append(Measured(group.workers, result, result.cpu_s))
            best = max(best, result.fps)
        report.round_ratios.append(best / ceiling)
    for (processes, threads, pin), values in alone.items():
        pinned = ", pinned" if pin else ""
        report.rows.append(
            Row(
                "model alone", f"{processes} process x {threads} thread{pinned}",
                f"batch {settings.max_batch}, median of {len(values)}",
                statistics.median(values), saturated=True,
            )
        )  # fmt: skip
    for group in groups:
        ordered = sorted(runs[group.workers], key=lambda m: m.result.fps)
        middle = ordered[len(ordered) // 2]
        report.saturated.append(middle)
        report.rows.append(
            _row_from(
                middle.result,
                group.setup,
                f"{settings.window} in flight, bundled, median of {len(ordered)}",
                saturated=True,
            )
        )
        result = await drive_pipeline(
            group.config, workload, window=settings.window, bundle=False, meter=CpuMeter(pids)
        )
        report.unbundled.append(Measured(group.workers, result, result.cpu_s))
        report.rows.append(
            _row_from(
                result, group.setup, f"{settings.window} in flight, 1 frame/message", saturated=True
            )
        )


async def run_bench(
    settings: BenchSettings, *, progress: Callable[[str], None] = lambda _: None
) -> list[PayloadReport]:
    """Measure every contender for every payload kind; rows in the order measured."""
    classifier = await asyncio.to_thread(Classifier.by_name, settings.model, "cpu")
    workloads = {
        kind: await asyncio.to_thread(make_workload, kind, classifier, settings.frames)
        for kind in settings.payloads
    }
    reports = {
        kind: PayloadReport(kind, w.payload_bytes, _encode_costs(w, classifier))
        for kind, w in workloads.items()
    }
    del classifier
    # The load generators (HTTP and MQTT alike) run in this process, as an edge does:
    # freeze the workloads and imports as an edge freezes its start-up heap, so a full
    # collection (100-210 ms logged in this process) does not stall the loop mid-run.
    freeze_heap()
    if settings.http:
        for kind in settings.payloads:
            progress(f"{kind}: the HTTP baseline")
            await _http_rows(settings, workloads[kind], reports[kind])
    with bench_broker() as (url, broker_pid):
        groups = [bench_layout(url, settings, workers) for workers in settings.workers]
        try:
            for group in groups:
                progress(f"starting {group.setup}")
                await group.processes.start()
            pids = {"edge": os.getpid(), "broker": broker_pid}
            for group in groups:
                pids.update(group.processes.pids)
            for kind, workload in workloads.items():
                for group in groups:
                    progress(f"{kind}: the pipeline, {group.setup}, low and rising load")
                    await _load_rows(settings, group, workload, reports[kind])
                progress(f"{kind}: the model alone and the saturated pipeline, side by side")
                await _side_by_side(settings, groups, workload, reports[kind], pids)
        finally:
            for group in groups:
                await group.processes.stop()
    return list(reports.values())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
