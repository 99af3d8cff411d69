"""What a benchmark run is asked to do (:class:`BenchSettings`) and what it measured
(rows, pipeline runs, per payload kind): what :mod:`camoffload.perf.run` fills in and
:mod:`camoffload.perf.report` reads."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from camoffload.perf.mqtt_load import LoadResult
from camoffload.perf.workload import PAYLOADS, PayloadKind

__all__ = ["QUICK", "BenchSettings", "Measured", "PayloadReport", "Row", "median"]


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


def median(values: list[float]) -> float:
    """The median; NaN when nothing was measured."""
    return statistics.median(values) if values else float("nan")
