"""The edge's policies and payloads side by side: accuracy, offload share, bytes, latency.

One real Mosquitto on 127.0.0.1, one real CloudWorker serving ``fmnist_exit_resnet``,
and an EdgeNode replaying the Fashion-MNIST test split with the same network's exit 1
as its local model. Every row replays the same frames in one run:

    local-only            exit 1 answers every frame; nothing is sent
    cloud-only jpeg       every frame as a JPEG (quality 90) to the whole network
    threshold T jpeg      offload when exit 1's confidence < T, as a JPEG
    threshold T tensor    the same frames, as the split-1 activation (float16)

    .venv/bin/python bench/edge_policies.py [--frames 2000] [--threshold 0.8]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
import uuid

from broker import mosquitto_broker
from cloud_worker import CloudWorker
from edge_node import DatasetSource, EdgeNode, Ledger, LedgerSummary
from pipeline.config import Config, load_config
from pipeline.inference import Classifier
from pipeline.tasks import cancel_and_wait

MODEL = "fmnist_exit_resnet"


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    summary: LedgerSummary
    wall_s: float


async def _replay(config: Config, frames: int) -> tuple[LedgerSummary, float]:
    started = time.perf_counter()
    summary = await EdgeNode(config, DatasetSource(limit=frames), Ledger()).run()
    return summary, time.perf_counter() - started


async def _run(args: argparse.Namespace) -> list[Row]:
    rows = []
    with mosquitto_broker(port=0) as info:
        base = load_config(
            env={},
            overrides=[
                f"broker.url={info.url}",
                f"prefix=bench-{uuid.uuid4().hex[:8]}",
                f"worker.model={MODEL}",
                "worker.max_batch=32",
                f"edge.model={MODEL}",
                f"edge.local_model={MODEL}",
                "edge.deadline_ms=10000",
                "edge.max_in_flight=32",
            ],
        )
        worker = CloudWorker(base, classifier=Classifier.by_name(MODEL))
        ready = asyncio.Event()
        task = asyncio.create_task(worker.run(ready=ready))
        await asyncio.wait_for(ready.wait(), timeout=60)
        t = args.threshold
        settings = [
            ("local-only", {"policy": "local-only"}),
            ("cloud-only jpeg", {"policy": "cloud-only", "payload": "jpeg"}),
            (f"threshold {t:g} jpeg", {"policy": "threshold", "confidence_threshold": t}),
            (
                f"threshold {t:g} tensor",
                {"policy": "threshold", "confidence_threshold": t, "payload": "tensor"},
            ),
        ]
        try:
            await _replay(base, 200)  # warm-up: model kernels, connections
            for name, changes in settings:
                config = dataclasses.replace(base, edge=dataclasses.replace(base.edge, **changes))
                summary, wall_s = await _replay(config, args.frames)
                rows.append(Row(name, summary, wall_s))
        finally:
            await cancel_and_wait([task])
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()
    rows = asyncio.run(_run(args))
    print(
        f"{args.frames} Fashion-MNIST test images, local model: exit 1 of {MODEL}, "
        "cloud: the whole network, one worker (max_batch 32), 32 frames in flight\n"
    )
    print(
        "| policy | accuracy | offloaded | bytes/frame | rtt p50 ms | rtt p95 ms | frames/s "
        "| decided once |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        s = row.summary
        once = "yes" if s.decided == s.captured and s.undecided == 0 else "NO"
        print(
            f"| {row.name} | {s.accuracy or 0:.2%} | {s.offload_share or 0:.1%} | "
            f"{s.bytes_sent / max(1, s.captured):.0f} | {_ms(s.rtt_ms_p50)} | "
            f"{_ms(s.rtt_ms_p95)} | {s.captured / row.wall_s:.0f} | {once} |"
        )


if __name__ == "__main__":
    main()
