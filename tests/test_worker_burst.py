"""A burst no worker can keep up with, and nothing lost inside it.

One paho client publishes 20,000 frame requests at QoS 1 as fast as it can (one in five
malformed) at one ``camoffload worker`` process. The worker acknowledges a request to
the broker only once it has queued, answered or refused it, and stops reading while
too many wait (pipeline/mqtt.py), so every request the broker handed over ends in
exactly one reply; what the broker could not hold it counts in ``$SYS``. The worker's
log holds summaries, not a line per refusal. Prints the report:

    .venv/bin/python -m pytest -m slow tests/test_worker_burst.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiomqtt
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker import BrokerInfo, mosquitto_broker
from pipeline.datasets import load_fashion_mnist
from pipeline.protocol import ErrorReply, Result, WorkerStatus, decode_reply
from pipeline.topics import Topics
from tests._helpers import jpeg_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REQUESTS = 20_000
MALFORMED_EVERY = 5
PREFIX = "burst"
EDGE = "burst-edge"
DROPPED = "$SYS/broker/publish/messages/dropped"


def _payloads() -> list[bytes]:
    images = load_fashion_mnist(split="test").head(64).images
    out = []
    for i in range(REQUESTS):
        if i % MALFORMED_EVERY == 0:
            out.append(b"\x93not a frame " + i.to_bytes(4, "big"))  # msgpack, but not ours
        else:
            request = jpeg_request(
                np.asarray(images[i % 64]), frame_id=f"b{i}", edge_id=EDGE,
                model="fmnist_exit_resnet", deadline_s=120,
            )  # fmt: skip
            out.append(request.to_bytes())
    return out


def _publish_all(broker: BrokerInfo, topic: str, payloads: list[bytes]) -> float:
    """Publish everything at QoS 1 from one client, as fast as it goes; seconds taken
    until the broker acknowledged the last one."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="burst-publisher")
    client.max_inflight_messages_set(0)  # no limit: as fast as one client can
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        started = time.monotonic()
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(timeout=120)
        return time.monotonic() - started
    finally:
        client.loop_stop()
        client.disconnect()


async def _listen(
    broker: BrokerInfo,
    replies: list[Result | ErrorReply],
    dropped: list[int],
    ready: asyncio.Event,
    sys_update: asyncio.Event,
) -> None:
    topics = Topics(PREFIX)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="burst-listener") as c:
        await c.subscribe(topics.results(EDGE), qos=1)
        await c.subscribe(DROPPED, qos=0)
        ready.set()
        async for message in c.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            if message.topic.value == DROPPED:
                dropped.append(int(payload))
                sys_update.set()
            else:
                reply = decode_reply(payload)
                assert isinstance(reply, Result | ErrorReply)
                replies.append(reply)


def test_a_burst_of_20000_requests_ends_in_one_reply_each_or_a_broker_drop(tmp_path: Path) -> None:
    payloads = _payloads()
    topics = Topics(PREFIX)
    with mosquitto_broker(port=0) as broker:
        log_path = tmp_path / "worker.log"
        argv = [sys.executable, "-m", "camoffload", "worker", "--broker", broker.url,
                "--set", f"prefix={PREFIX}", "--model", "fmnist_exit_resnet",
                "--worker-id", "burst-1", "--max-queue", "256", "--max-batch", "32",
                "--set", "worker.threads=1", "--set", "worker.status_interval_s=0.5"]  # fmt: skip
        with log_path.open("w") as log:
            worker = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            report = asyncio.run(_scenario(broker, topics, payloads))
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            code = worker.wait(timeout=60)
    log_text = log_path.read_text()
    replies, dropped, seconds = report
    valid = Counter(r.frame_id for r in replies if r.frame_id is not None)
    malformed_replies = sum(1 for r in replies if r.frame_id is None)
    kinds = Counter("result" if not isinstance(r, ErrorReply) else r.code.value for r in replies)
    refusal_lines = [line for line in log_text.splitlines() if "bad message" in line]
    print(f"\n{REQUESTS:,} requests ({REQUESTS // MALFORMED_EVERY:,} malformed) published in "
          f"{seconds:.1f} s; replies {len(replies):,}: {dict(kinds)}; broker drops ($SYS) "
          f"{dropped:,}; worker log: {len(log_text.splitlines())} lines, "
          f"{len(refusal_lines)} about bad messages")  # fmt: skip
    assert code == 0, log_text[-3000:]
    assert max(valid.values()) == 1  # nothing answered twice
    # Every request ended in exactly one reply, or the broker says it dropped it.
    assert len(replies) + dropped == REQUESTS, (len(replies), dropped)
    assert malformed_replies <= REQUESTS // MALFORMED_EVERY
    assert "discarded" not in log_text, log_text[-3000:]
    assert len(refusal_lines) < 20, refusal_lines[:5]  # summaries, not 4,000 lines
    assert len(log_text.splitlines()) < 60, log_text[-3000:]


async def _scenario(
    broker: BrokerInfo, topics: Topics, payloads: list[bytes]
) -> tuple[list[Result | ErrorReply], int, float]:
    replies: list[Result | ErrorReply] = []
    dropped: list[int] = []
    ready, sys_update = asyncio.Event(), asyncio.Event()
    listener = asyncio.create_task(_listen(broker, replies, dropped, ready, sys_update))
    await asyncio.wait_for(ready.wait(), 30)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="burst-watch") as watch:
        await watch.subscribe(topics.worker_status("burst-1"), qos=1)
        async with asyncio.timeout(120):  # the worker loads its model
            async for message in watch.messages:
                assert isinstance(message.payload, bytes)
                if WorkerStatus.from_bytes(message.payload).online:
                    break
    # $SYS values are retained: the current count arrives on subscribing.
    await asyncio.wait_for(sys_update.wait(), 30)
    before = dropped[-1]
    seconds = await asyncio.to_thread(_publish_all, broker, topics.frames(EDGE), payloads)
    # Wait until every request is answered or dropped, or nothing moves for 30 s.
    last, still_since = -1, time.monotonic()
    while time.monotonic() - still_since < 30:
        now_dropped = (dropped[-1] if dropped else 0) - before
        if len(replies) + now_dropped >= REQUESTS:
            break
        if len(replies) != last:
            last, still_since = len(replies), time.monotonic()
        await asyncio.sleep(0.2)
    # Mosquitto publishes $SYS every 10 s, and a value only when it changed: wait one
    # period for a newer count; none means no drop since.
    sys_update.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sys_update.wait(), 12)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
    return replies, dropped[-1] - before, seconds
