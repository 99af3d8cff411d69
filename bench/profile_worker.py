"""Where a worker's CPU goes, one frame per message or bundled: cProfile on the worker's
event loop (its main thread) under the pipeline bench's own load generator.

    .venv/bin/python bench/profile_worker.py --frames 20000 [--bundle] [--top 40]

A local Mosquitto and one ``camoffload worker --model null`` (a free model: the
profile is the transport's alone) run as processes; the load is
``camoffload.perf.mqtt_load.drive_pipeline`` with 512 frames in flight, as
``camoffload bench`` drives it. Prints frames/s, the worker's CPU per frame (from
/proc, profiler overhead included) and the functions with the most own time.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import torch

from broker import mosquitto_broker
from camoffload.perf.cpu import CpuMeter
from camoffload.perf.mqtt_load import drive_pipeline
from camoffload.perf.workload import make_workload
from pipeline.children import supervised, supervised_child
from pipeline.config import load_config
from pipeline.inference import Classifier
from pipeline.models import get_model_spec
from pipeline.mqtt import make_client, payload_bytes
from pipeline.protocol import WorkerStatus


async def _online(config_url: str, prefix: str) -> None:
    config = load_config(env={}, overrides=[f"broker.url={config_url}", f"prefix={prefix}"])
    async with make_client(config.broker, client_id=f"watch-{prefix}") as c:
        await c.subscribe(config.topics.worker_status_filter, qos=1)
        async with asyncio.timeout(120):
            async for message in c.messages:
                if WorkerStatus.from_bytes(payload_bytes(message)).online:
                    return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--bundle", action="store_true", help="bundled (default: 1 frame/message)")
    parser.add_argument("--payload", choices=["jpeg", "raw"], default="jpeg")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="the same run, unprofiled")
    args = parser.parse_args()
    prefix = f"prof-{uuid.uuid4().hex[:8]}"
    profile = Path(tempfile.mkdtemp()) / "worker.prof"
    print(f"profile: {profile}")
    with mosquitto_broker(port=0) as info:
        config = load_config(
            env={}, overrides=[f"broker.url={info.url}", f"prefix={prefix}", "edge.qos=1"]
        )
        profiler = [] if args.no_profile else ["-m", "cProfile", "-o", str(profile)]
        argv = [
            sys.executable, *profiler, "-m", "camoffload", "worker", "--broker", info.url,
            "--model", "null", "--set", f"prefix={prefix}", "--log-level", "WARNING",
            # Room for everything in flight: a frame refused busy costs little and
            # would flatter the figure.
            "--max-batch", "128", "--set", "worker.max_queue=2048",
        ]  # fmt: skip
        worker = subprocess.Popen(supervised(argv))
        try:
            asyncio.run(_online(info.url, prefix))
            workload = make_workload(
                args.payload, Classifier(get_model_spec("null"), torch.device("cpu")), args.frames
            )
            meter = CpuMeter({"worker": supervised_child(worker.pid)})
            result = asyncio.run(
                drive_pipeline(config, workload, window=512, bundle=args.bundle, meter=meter)
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    cpu = result.cpu_s or {}
    path = "bundled" if args.bundle else "one frame per message"
    worker_us = 1e6 * cpu.get("worker", 0.0) / result.frames
    mean_batch = sum(result.batch_sizes) / max(1, len(result.batch_sizes))
    print(
        f"{args.payload}, {path}: {result.answered}/{result.frames} answered, "
        f"{result.fps:,.0f} frames/s, worker CPU {worker_us:.0f} us/frame, "
        f"mean batch {mean_batch:.1f}"
    )
    if not args.no_profile:
        stats = pstats.Stats(str(profile))
        stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
