"""Where a benchmark's pipeline runs: its own Mosquitto, and worker layouts (how many
worker processes, how many torch threads each, pinned or not) sharing the cores."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from broker import mosquitto_broker
from camoffload.perf.results import BenchSettings
from camoffload.processes import WorkerGroup, WorkerSettings
from pipeline.config import Config, load_config

__all__ = ["BenchLayout", "bench_broker", "bench_layout", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    threads = max(1, usable_cores() // workers)
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
