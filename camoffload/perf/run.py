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
import dataclasses
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import cast

from camoffload.perf.ceiling import model_alone_fps_in_processes
from camoffload.perf.cpu import CpuMeter
from camoffload.perf.layout import BenchLayout, bench_broker, bench_layout, usable_cores
from camoffload.perf.mqtt_load import LoadResult, drive_pipeline
from camoffload.perf.results import (
    QUICK,
    BenchSettings,
    Measured,
    PayloadReport,
    Row,
    median,
)
from camoffload.perf.workload import Workload, make_workload
from pipeline.codecs import Image, encode_jpeg
from pipeline.heap import freeze_heap
from pipeline.inference import Classifier

# The settings and result types, and the layouts, are re-exported: callers import them
# from here, where a run is.
__all__ = [
    "QUICK",
    "BenchLayout",
    "BenchSettings",
    "Measured",
    "PayloadReport",
    "Row",
    "bench_broker",
    "bench_layout",
    "median",
    "run_bench",
]

logger = logging.getLogger(__name__)


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
    cores = usable_cores()
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
    cores = usable_cores()
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
    kinds = settings.payloads
    if classifier.network is None:  # no early-exit network: nothing to split
        kinds = tuple(k for k in kinds if not k.startswith("split"))
        for kind in sorted(set(settings.payloads) - set(kinds)):
            progress(f"{kind}: skipped, {settings.model} has no split points")
    workloads = {
        kind: await asyncio.to_thread(make_workload, kind, classifier, settings.frames)
        for kind in kinds
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
        for kind in kinds:
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
