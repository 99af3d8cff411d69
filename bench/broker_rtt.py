"""MQTT request/reply round trips through each broker set-up of docs/deployment.md.

One requester and one echo responder (the shape of an edge and a worker), QoS 1 both
ways, MQTT 5 response topic + correlation data, sequential requests, all on 127.0.0.1:

* dev: the loopback, anonymous Mosquitto (``camoffload broker``);
* hardened: TLS, passwords and ACLs (``camoffload broker --config hardened``);
* bridge: the requester on an edge-site Mosquitto bridged over TLS to the hardened one.

Prints Markdown: p50 / p95 round-trip milliseconds per payload size.

    .venv/bin/python bench/broker_rtt.py [--requests 300] [--sizes 1000,50000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt

from broker import (
    BridgeSettings,
    bridge_broker,
    free_port,
    hardened_broker,
    identities_from,
    init_broker_folder,
    mosquitto_broker,
)
from pipeline.config import BrokerConfig, load_config
from pipeline.mqtt import make_client
from pipeline.topics import Topics, reply_target, request_properties

PREFIX = "bench"


async def _echo(worker: aiomqtt.Client, topics: Topics) -> None:
    async for message in worker.messages:
        target = reply_target(topics, message.topic.value, message.properties)
        if target is not None and isinstance(message.payload, bytes):
            await worker.publish(target.topic, message.payload, qos=1, properties=target.properties)


@contextlib.asynccontextmanager
async def _responder(broker: BrokerConfig, topics: Topics) -> AsyncIterator[None]:
    async with make_client(broker, client_id="worker1") as worker:
        await worker.subscribe(topics.frames_filter, qos=1)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(_echo(worker, topics), name="echo")
            try:
                yield
            finally:
                task.cancel()


async def _round_trips(
    edge_broker: BrokerConfig, worker_broker: BrokerConfig, size: int, n: int
) -> list[float]:
    topics = Topics(PREFIX)
    payload = b"x" * size
    out: list[float] = []
    async with (
        _responder(worker_broker, topics),
        make_client(edge_broker, client_id="cam1") as edge,
    ):
        await edge.subscribe(topics.results("cam1"), qos=1)
        replies = aiter(edge.messages)
        await asyncio.sleep(1.0)  # let a bridge finish connecting and subscribing
        for i in range(n + 10):
            started = time.perf_counter()
            props = request_properties(topics.results("cam1"), str(i).encode())
            await edge.publish(topics.frames("cam1"), payload, qos=1, properties=props)
            async with asyncio.timeout(10):
                await anext(replies)
            if i >= 10:  # warm-up
                out.append(1000 * (time.perf_counter() - started))
    return out


def _row(name: str, size: int, samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=20)
    return f"| {name} | {size:,} | {statistics.median(samples):.2f} | {q[18]:.2f} |"


async def _main(n: int, sizes: list[int]) -> None:
    rows = ["| set-up | payload bytes | p50 ms | p95 ms |", "| --- | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        done = init_broker_folder(
            Path(tmp) / "b",
            identities_from(devices=["cam1"], workers=["worker1"], sites=[("lobby", ["cam1"])]),
            prefix=PREFIX,
            port=port,
        )

        def cfg(name: str) -> BrokerConfig:
            return load_config(done.client(name).config_file, env={}).broker

        with mosquitto_broker() as dev:
            plain = BrokerConfig(url=dev.url)
            for size in sizes:
                rows.append(_row("dev", size, await _round_trips(plain, plain, size, n)))
        with hardened_broker(done.files.folder, port=port):
            for size in sizes:
                samples = await _round_trips(cfg("cam1"), cfg("worker1"), size, n)
                rows.append(_row("hardened (TLS)", size, samples))
            settings = BridgeSettings(cloud=cfg("lobby"), prefix=PREFIX, devices=("cam1",))
            with bridge_broker(settings) as site:
                for size in sizes:
                    samples = await _round_trips(
                        BrokerConfig(url=site.url), cfg("worker1"), size, n
                    )
                    rows.append(_row("site bridge -> hardened", size, samples))
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sizes", default="1000,50000")
    args = parser.parse_args()
    asyncio.run(_main(args.requests, [int(s) for s in args.sizes.split(",")]))


if __name__ == "__main__":
    main()
