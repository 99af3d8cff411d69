"""The broker launcher runs real brokers, on ephemeral ports, and stops them by pid."""

from __future__ import annotations

import asyncio
import os

import pytest

from broker import BrokerInfo, embedded_broker, mosquitto_broker
from pipeline.config import load_config
from pipeline.errors import BrokerError
from tests._helpers import client, next_message


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); the launcher reaps its child, so check /proc too.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def _pub_sub(info: BrokerInfo) -> bytes:
    config = load_config(
        env={}, overrides=[f"broker.url={info.url}", f"broker.protocol={info.protocol}"]
    )
    async with client(config) as sub, client(config) as pub:
        await sub.subscribe("t/x", qos=1)
        await pub.publish("t/x", b"hello", qos=1)
        message = await next_message(sub)
        assert isinstance(message.payload, bytes)
        return message.payload


@pytest.mark.parametrize("factory", [mosquitto_broker, embedded_broker])
def test_launcher_starts_serves_and_stops(factory: object) -> None:
    proc = factory()  # type: ignore[operator]
    info = proc.start()
    pid = proc.pid
    assert pid is not None
    assert _alive(pid)
    try:
        assert info.port > 0
        assert asyncio.run(_pub_sub(info)) == b"hello"
    finally:
        proc.stop()
    assert not _alive(pid)
    proc.stop()  # idempotent


def test_port_in_use_is_a_clear_error(mosquitto: BrokerInfo) -> None:
    with pytest.raises(BrokerError, match="already in use"):
        mosquitto_broker(port=mosquitto.port).start()


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(BrokerError, match="cannot run"):
        mosquitto_broker(binary="/nonexistent/mosquitto").start()


def test_mosquitto_info(mosquitto: BrokerInfo) -> None:
    assert mosquitto.kind == "mosquitto"
    assert mosquitto.protocol == "5"
    assert mosquitto.shared_subscriptions
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
