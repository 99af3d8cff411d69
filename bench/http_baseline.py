"""The seed study's HTTP design alone: FastAPI + uvicorn, binary frames in, JSON out.

The server and client live in ``camoffload/perf/http_baseline.py`` (``camoffload bench``
and ``bench/pipeline_bench.py`` run them beside the MQTT pipeline); this script runs only the
baseline, at each concurrency, on one payload kind:

    .venv/bin/python bench/http_baseline.py [--frames 2000] [--concurrency 1,8,32,64] \\
        [--model fmnist_exit_resnet] [--payload jpeg|raw|tensor|split|split16] [--processes 1]

``--processes 2`` runs two server processes, each pinned to its share of the cores
with one torch thread per core, and spreads the requests over them.

Prints a Markdown table; the last line, ``RESULT http_fps_max=...``, is the best
throughput over the concurrencies.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from camoffload.perf.http_baseline import Row, drive_http, http_servers
from camoffload.perf.workload import PAYLOADS, Workload, make_workload
from pipeline.inference import Classifier


def _concurrency(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


async def _run(workload: Workload, model: str, concurrency: list[int], processes: int) -> list[Row]:
    rows = []
    async with http_servers(model, processes) as urls:
        for window in concurrency:
            # Warm-up (connections, allocator, oneDNN kernel choice) outside the timing.
            warm = dataclasses.replace(workload, payloads=workload.payloads[: max(64, 2 * window)])
            await drive_http(urls, warm, window)
            rows.append(await drive_http(urls, workload, window))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--concurrency", type=_concurrency, default=[1, 8, 32, 64])
    parser.add_argument("--model", default="fmnist_exit_resnet")
    parser.add_argument("--payload", choices=PAYLOADS, default="raw")
    parser.add_argument("--processes", type=int, default=1, help="server processes (pinned)")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error("--processes must be >= 1")
    workload = make_workload(args.payload, Classifier.by_name(args.model, "cpu"), args.frames)
    rows = asyncio.run(_run(workload, args.model, args.concurrency, args.processes))
    print(
        f"{args.frames} Fashion-MNIST test images as {args.payload} payloads "
        f"({workload.payload_bytes:.0f} bytes), one POST each, model {args.model}, CPU, "
        f"batch 1, FastAPI + uvicorn ({args.processes} process) on 127.0.0.1, httpx client\n"
    )
    print("| in flight | frames/s | p50 ms | p95 ms | p99 ms | answered | errors | top-1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.concurrency} | {row.frames_per_s:.0f} | {row.p50_ms:.1f} | "
            f"{row.p95_ms:.1f} | {row.p99_ms:.1f} | {row.answered} | {row.errors} | "
            f"{row.accuracy:.2%} |"
        )
    best = max(rows, key=lambda row: row.frames_per_s)
    print(f"\nRESULT http_fps_max={best.frames_per_s:.0f} concurrency={best.concurrency}")


if __name__ == "__main__":
    main()
