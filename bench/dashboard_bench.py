"""The dashboard under a fleet: how late a status reaches the screen, and whether the
page keeps up.

Starts a Mosquitto on an ephemeral port, ``camoffload dashboard`` as its own process
and headless Chromium on the page. Then ``--edges`` edges and ``--workers`` workers
(one MQTT client each) publish a retained status every second, and every edge a
decision event ``--events`` times a second, for ``--seconds``. Each status carries the
time it was made; the page notes, for each new status it shows, how long ago that was
(MQTT publish -> broker -> dashboard -> batched server-sent event -> parsed -> on
screen). The page's main thread is sampled every 100 ms for lag (a timer that fires
late means the page was busy). Prints Markdown.

    .venv/bin/python bench/dashboard_bench.py [--edges 8] [--workers 4] [--seconds 60]

Needs Chromium (Debian's ``chromium``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker import mosquitto_broker
from pipeline.protocol import Decision, EdgeStatus, Event, WorkerStatus
from pipeline.topics import Topics
from tests.chromium import Chromium

PREFIX = "bench"
LAG_PROBE = """(() => {
  window.lags = [];
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    window.lags.push(now - last - 100);
    last = now;
  }, 100);
  return true;
})()"""


async def _edge(host: str, port: int, edge_id: str, seconds: float, events_per_s: float) -> int:
    topics = Topics(PREFIX)
    sent = 0
    async with aiomqtt.Client(host, port, identifier=f"bench-{edge_id}") as client:
        started = time.monotonic()
        seq, next_status = 0, 0.0
        while (elapsed := time.monotonic() - started) < seconds:
            if elapsed >= next_status:
                status = EdgeStatus(
                    edge_id=edge_id, online=True, ts=time.time(), captured=seq, decided=seq,
                    offloaded=seq // 3, capture_fps=events_per_s, offload_share=0.33,
                    rtt_ms_p50=40.0, rtt_ms_p95=90.0, bytes_per_s=250_000.0,
                )  # fmt: skip
                await client.publish(
                    topics.edge_status(edge_id), status.to_bytes(), qos=1, retain=True
                )
                next_status += 1.0
                sent += 1
            event = Event(
                edge_id=edge_id, frame_id=f"{edge_id}-{seq}", seq=seq, ts=time.time(),
                decision=Decision.CLOUD if seq % 3 == 0 else Decision.LOCAL, latency_ms=35.0,
            )  # fmt: skip
            await client.publish(topics.events(edge_id), event.to_bytes(), qos=0)
            seq += 1
            await asyncio.sleep(1 / events_per_s)
    return sent


async def _worker(host: str, port: int, worker_id: str, seconds: float) -> int:
    topics = Topics(PREFIX)
    sent = 0
    async with aiomqtt.Client(host, port, identifier=f"bench-{worker_id}") as client:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            status = WorkerStatus(
                worker_id=worker_id, online=True, ts=time.time(), models=("nanodet_coco",),
                queue_depth=sent % 7, queue_capacity=256, mean_batch_size=3.0,
                throughput_fps=60.0, frames_done=sent * 60,
            )  # fmt: skip
            await client.publish(
                topics.worker_status(worker_id), status.to_bytes(), qos=1, retain=True
            )
            sent += 1
            await asyncio.sleep(1.0)
    return sent


async def _fleet(host: str, port: int, args: argparse.Namespace) -> int:
    jobs = [_edge(host, port, f"cam-{i}", args.seconds, args.events) for i in range(args.edges)]
    jobs += [_worker(host, port, f"worker-{i}", args.seconds) for i in range(args.workers)]
    return sum(await asyncio.gather(*jobs))


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--events", type=float, default=10.0, help="decisions a second an edge")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker(port=0) as broker:
        log = Path(tmp) / "dashboard.log"
        with log.open("wb") as out:
            dashboard = subprocess.Popen(
                [sys.executable, "-m", "camoffload", "dashboard", "--broker", broker.url,
                 "--set", f"prefix={PREFIX}", "--port", "0", "--log-level", "WARNING"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not (found := re.search(r"(http://\S+)", log.read_text())):
                if dashboard.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the dashboard did not start:\n{log.read_text()}")
                time.sleep(0.1)
            with Chromium(width=1400, height=1250) as browser:
                browser.goto(found.group(1))
                browser.evaluate(LAG_PROBE)
                statuses = asyncio.run(_fleet("127.0.0.1", broker.port, args))
                browser.wait_for(f"window.camoffload.latencies.length >= {statuses} * 0.9", 30)
                shown = browser.evaluate(
                    "({lat: window.camoffload.latencies, lags: window.lags,"
                    " patches: window.camoffload.patches, fulls: window.camoffload.fulls,"
                    " edges: document.querySelectorAll('[data-edge]').length,"
                    " workers: document.querySelectorAll('[data-worker]').length})"
                )
        finally:
            os.killpg(dashboard.pid, signal.SIGTERM)
            dashboard.wait(timeout=30)
    latencies = [v * 1000 for v in shown["lat"]]
    lags = shown["lags"]
    print(f"{args.edges} edges and {args.workers} workers, a status a second each, and "
          f"{args.events:g} decisions a second an edge, for {args.seconds:g} s\n")  # fmt: skip
    print("| statuses published | shown on the page | patches | cards | rows |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {statuses} | {len(latencies)} | {shown['patches']} | {shown['edges']} | "
          f"{shown['workers']} |\n")  # fmt: skip
    print("| MQTT to screen, ms | p50 | p95 | max |")
    print("|---|---:|---:|---:|")
    print(
        f"| status | {_pct(latencies, 50):.0f} | {_pct(latencies, 95):.0f} | {max(latencies):.0f} |"
    )
    print(f"| page main-thread lag (100 ms timer) | {_pct(lags, 50):.0f} | {_pct(lags, 95):.0f} | "
          f"{max(lags):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
