"""Acknowledged means handled: the MQTT client's manual acknowledgement and overflow
path through a real Mosquitto, and refusals logged as summaries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging

import aiomqtt
import pytest

from broker import BrokerInfo, mosquitto_broker
from pipeline.config import Config
from pipeline.mqtt import acknowledge, make_client
from pipeline.ratelog import RateLimitedLog
from tests._helpers import eventually

pytestmark = pytest.mark.timeout(120)


def test_a_full_queue_hands_messages_to_the_overflow_and_loses_none(
    config: Config, mosquitto: BrokerInfo, prefix: str
) -> None:
    sent = 40

    async def scenario() -> tuple[int, int, int, int]:
        overflow: list[aiomqtt.Message] = []
        client = make_client(
            config.broker, client_id=f"{prefix}-sub", manual_ack=True, max_queued_incoming=3
        )
        async with client:
            client.on_overflow = overflow.append
            await client.subscribe(f"{prefix}/t", qos=1)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
                for i in range(sent):
                    await publisher.publish(f"{prefix}/t", str(i).encode(), qos=1)
            # Nothing reads the queue yet: what does not fit must reach the overflow.
            await eventually(lambda: len(overflow) == sent - 3)
            queued = []
            async with asyncio.timeout(30):
                async for message in client.messages:
                    queued.append(message)
                    acknowledge(client, message)
                    if len(queued) == 3:
                        break
            return len(queued), len(overflow), client.overflowed, client.discarded

    queued, overflowed, counted, discarded = asyncio.run(scenario())
    assert queued + overflowed == sent
    assert counted == overflowed
    assert discarded == 0


def test_a_client_without_an_overflow_counts_what_it_discards(
    config: Config, mosquitto: BrokerInfo, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> int:
        client = make_client(config.broker, client_id=f"{prefix}-sub", max_queued_incoming=2)
        async with client:
            await client.subscribe(f"{prefix}/t", qos=1)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as publisher:
                for i in range(12):
                    await publisher.publish(f"{prefix}/t", str(i).encode(), qos=1)
            await eventually(lambda: client.discarded == 10)
            return client.discarded

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == 10
    # One line for the first, not one per message.
    assert sum("discarded" in r.getMessage() for r in caplog.records) == 1


def test_refusals_are_logged_once_per_reason_then_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog(logging.getLogger("test.ratelog"), "worker w1", interval_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for _ in range(500):
            log.note("bad message (not_msgpack)", "on p/frames/cam: garbage")
        for _ in range(3):
            log.note("busy: receive queue full")
        assert len(caplog.records) == 2  # the first of each reason, with its detail
        assert "garbage" in caplog.records[0].getMessage()
        log.flush()
    summary = caplog.records[-1].getMessage()
    assert "503 in the last" in summary
    assert "bad message (not_msgpack) 500" in summary
    assert "busy: receive queue full 3" in summary
    assert log.total == {"bad message (not_msgpack)": 500, "busy: receive queue full": 3}
    caplog.clear()
    log.flush()  # nothing new: no line
    assert caplog.records == []


def test_a_broker_gone_first_leaves_no_unretrieved_future(
    config: Config, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker goes away, then the client is closed: aiomqtt's future holding the
    disconnection error is read, so asyncio has nothing to complain about at exit."""

    async def scenario() -> None:
        broker = mosquitto_broker(port=0)
        broker.start()
        try:
            cfg = dataclasses.replace(
                config, broker=dataclasses.replace(config.broker, url=broker.info.url)
            )
            client = make_client(cfg.broker, client_id=f"{prefix}-gone")
            await client.__aenter__()
            broker.stop()
            await eventually(lambda: client._disconnected.done())
            with contextlib.suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)
        finally:
            broker.stop()
        gc.collect()  # an unretrieved future's complaint comes when it is collected

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
