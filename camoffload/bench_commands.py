"""``camoffload bench``: the pipeline against the seed's HTTP design and the model alone.

::

    camoffload bench                     # the short version: JPEG frames, ~2 minutes
    camoffload bench --full              # every payload kind and load (bench/pipeline_bench.py)
    camoffload bench --payloads raw,tensor --workers 2

Starts its own Mosquitto, worker processes and HTTP server on 127.0.0.1 and stops them
by pid. Prints Markdown tables, then one ``RATIO`` line per payload kind, last.
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
from typing import Any

from camoffload.lifecycle import run_with_signals
from camoffload.perf.report import format_report
from camoffload.perf.run import QUICK, BenchSettings, run_bench
from camoffload.perf.workload import PAYLOADS, PayloadKind

__all__ = ["add_bench_command", "bench_settings", "run_bench_command"]

logger = logging.getLogger("camoffload")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def _payloads(text: str) -> tuple[PayloadKind, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in PAYLOADS]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"payload kinds are {', '.join(PAYLOADS)}")
    return kinds  # type: ignore[return-value]  # checked against PAYLOADS above


def add_bench_options(p: argparse.ArgumentParser) -> None:
    """The options shared by ``camoffload bench`` and ``bench/pipeline_bench.py``."""
    p.add_argument(
        "--model",
        help="registry model (default fmnist_exit_resnet); null: a free model, for the "
        "transport ceiling (CEILING lines last)",
    )
    p.add_argument("--payloads", type=_payloads, help=f"some of {','.join(PAYLOADS)}")
    p.add_argument("--workers", type=_ints, help="worker counts to run (default 1,2)")
    p.add_argument("--frames", type=int, help="frames per saturated run")
    p.add_argument("--rates", type=_ints, help="offered loads, frames/s (default 100,250,500,1000)")
    p.add_argument("--window", type=int, help="frames in flight when saturated (default 256)")
    p.add_argument("--max-batch", type=int, help="the workers' max_batch (default 32)")
    p.add_argument("--concurrency", type=_ints, help="HTTP requests in flight (default 1,8,32)")
    p.add_argument("--rounds", type=int, help="model-alone vs pipeline rounds (default 3)")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP baseline")
    p.add_argument("--no-pin", action="store_true", help="do not pin workers to cores")
    p.add_argument(
        "--worker-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a worker setting for every bench worker, e.g. worker.frozen=false (repeatable)",
    )
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"])


def add_bench_command(sub: Any) -> None:  # argparse's subparsers action type is private
    p = sub.add_parser(
        "bench",
        help="measure the pipeline against the seed's HTTP design and the model alone",
        description="Frames/s and latency of the MQTT pipeline (1 and 2 worker processes, "
        "rising offered load, saturated), the FastAPI baseline and the model alone, side "
        "by side; ratios last. The short version unless --full.",
    )
    p.add_argument("--full", action="store_true", help="every payload kind and offered load")
    add_bench_options(p)


def bench_settings(args: argparse.Namespace, base: BenchSettings) -> BenchSettings:
    """``base`` with the options given on the command line."""
    changes: dict[str, object] = {}
    for option, name in (
        ("model", "model"),
        ("payloads", "payloads"),
        ("workers", "workers"),
        ("frames", "frames"),
        ("window", "window"),
        ("max_batch", "max_batch"),
        ("concurrency", "http_concurrency"),
        ("rounds", "rounds"),
    ):
        if getattr(args, option) is not None:
            changes[name] = getattr(args, option)
    if args.rates is not None:
        changes["rates"] = tuple(float(rate) for rate in args.rates)
    if args.no_http:
        changes["http"] = False
    if args.no_pin:
        changes["pin"] = False
    if args.worker_set:
        changes["worker_settings"] = tuple(args.worker_set)
    settings = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
    if settings.frames < 2 * settings.max_batch or settings.window < 1 or settings.rounds < 1:
        raise SystemExit("--frames must be at least two batches; --window, --rounds positive")
    return settings


def run_bench_command(args: argparse.Namespace) -> int:
    settings = bench_settings(args, BenchSettings() if args.full else QUICK)

    def progress(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    async def main(stop: asyncio.Event) -> int:
        bench = asyncio.create_task(run_bench(settings, progress=progress))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({bench, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not bench.done():
            bench.cancel()  # every child process is stopped by pid on the way out
            with contextlib.suppress(asyncio.CancelledError):
                await bench
            return 130
        stopped.cancel()
        print(format_report(settings, bench.result()), flush=True)
        return 0

    return run_with_signals(main)
