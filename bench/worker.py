"""Throughput of one cloud worker vs batch size and max wait, side by side in one run.

A real Mosquitto on 127.0.0.1, a real CloudWorker serving the committed Fashion-MNIST
model, and a load generator that keeps a bounded window of JPEG-encoded test images
in flight (as many edges would) and counts the replies. Every configuration runs in
the same process, one after the other, on the same images; the ratio column is
throughput over the max_batch=1 row of this run.

    .venv/bin/python bench/worker.py [--frames 2000] [--window 256] [--model fmnist_exit_resnet]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import time
import uuid

import aiomqtt
import numpy as np

from broker import mosquitto_broker
from camoffload.perf.workload import make_workload
from cloud_worker import CloudWorker
from pipeline.config import Config, load_config
from pipeline.inference import Classifier
from pipeline.mqtt import make_client
from pipeline.protocol import Result, decode_reply

EDGE_ID = "bench-edge"
SETTINGS = ((1, 0.0), (8, 2.0), (32, 5.0), (64, 5.0), (64, 20.0))  # (max_batch, max_wait_ms)


@dataclasses.dataclass
class Row:
    max_batch: int
    max_wait_ms: float
    frames_per_s: float
    answered: int
    errors: int
    accuracy: float
    mean_batch: float


async def _drive(
    config: Config, requests: list[bytes], labels: np.ndarray, window: int
) -> tuple[float, int, int, int, float]:
    topics = config.topics
    client_id = f"bench-{uuid.uuid4().hex[:8]}"
    async with make_client(config.broker, client_id=client_id) as client:
        await client.subscribe(topics.results(EDGE_ID), qos=1)
        slots = asyncio.Semaphore(window)
        done = asyncio.Event()
        answered = errors = correct = 0
        batch_sizes: list[int] = []

        async def receive(client: aiomqtt.Client) -> None:
            nonlocal answered, errors, correct
            async for message in client.messages:
                reply = decode_reply(message.payload)  # type: ignore[arg-type]
                if isinstance(reply, Result):
                    answered += 1
                    batch_sizes.append(reply.batch_size)
                    correct += int(reply.label == labels[int(reply.frame_id.rsplit("-", 1)[1])])
                else:
                    errors += 1
                slots.release()
                if answered + errors == len(requests):
                    done.set()
                    return

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            group.create_task(receive(client))
            for data in requests:
                await slots.acquire()
                await client.publish(topics.frames(EDGE_ID), data, qos=1)
            await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = time.perf_counter() - started
    mean_batch = float(np.mean(batch_sizes)) if batch_sizes else 0.0
    return len(requests) / elapsed, answered, errors, correct, mean_batch


async def _run(args: argparse.Namespace) -> list[Row]:
    classifier = Classifier.by_name(args.model, "cpu")  # loaded once, shared by every row
    workload = make_workload("jpeg", classifier, args.frames)  # JPEG q90, as edges send
    warm_up = dataclasses.replace(workload, payloads=workload.payloads[:256])
    rows = []
    with mosquitto_broker(port=0) as info:
        for max_batch, max_wait_ms in SETTINGS:
            config = load_config(
                env={},
                overrides=[
                    f"broker.url={info.url}",
                    f"prefix=bench-{uuid.uuid4().hex[:8]}",
                    f"worker.model={args.model}",
                    f"worker.max_batch={max_batch}",
                    f"worker.max_wait_ms={max_wait_ms}",
                    f"worker.max_queue={max(args.window, 1) * 2}",
                ],
            )
            worker = CloudWorker(config, classifier=classifier)
            ready = asyncio.Event()
            task = asyncio.create_task(worker.run(ready=ready))
            await asyncio.wait_for(ready.wait(), timeout=60)
            try:
                # Warm-up pass (allocator, oneDNN kernel choice) outside the timing.
                warm = warm_up.requests(EDGE_ID, "warm")
                await _drive(config, warm, workload.labels, args.window)
                requests = workload.requests(EDGE_ID, "run")
                fps, answered, errors, correct, mean_batch = await _drive(
                    config, requests, workload.labels, args.window
                )
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            rows.append(
                Row(
                    max_batch,
                    max_wait_ms,
                    fps,
                    answered,
                    errors,
                    correct / len(requests),
                    mean_batch,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--window", type=int, default=256, help="requests in flight")
    parser.add_argument("--model", default="fmnist_exit_resnet")
    args = parser.parse_args()
    rows = asyncio.run(_run(args))
    base = rows[0].frames_per_s
    print(
        f"{args.frames} JPEG Fashion-MNIST test images (quality 90), {args.window} in "
        f"flight, model {args.model}, CPU, QoS 1 both ways\n"
    )
    print(
        "| max_batch | max_wait_ms | frames/s | vs batch 1 | mean batch | answered | errors "
        "| top-1 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.max_batch} | {row.max_wait_ms:g} | {row.frames_per_s:.0f} | "
            f"{row.frames_per_s / base:.2f}x | {row.mean_batch:.1f} | {row.answered} | "
            f"{row.errors} | {row.accuracy:.2%} |"
        )


if __name__ == "__main__":
    main()
