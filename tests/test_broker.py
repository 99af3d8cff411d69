"""The broker launcher runs real brokers, on ephemeral ports, and stops them by pid."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from broker import BrokerInfo, BrokerProcess, embedded_broker, mosquitto_broker
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


def test_mosquitto_keeps_freed_memory_and_the_embedded_broker_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Mosquitto mallocs a buffer per packet: glibc's thresholds reach it only through
    # its environment. A user's own malloc tunable wins over ours.
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    tunables = mosquitto_broker().child_environ()["GLIBC_TUNABLES"].split(":")
    assert tunables[0] == "glibc.malloc.trim_threshold=1048576"
    assert [t.partition("=")[0] for t in tunables[1:]] == ["glibc.malloc.mmap_threshold"]
    assert embedded_broker().child_environ()["GLIBC_TUNABLES"] == (
        "glibc.malloc.trim_threshold=1048576"
    )


def test_the_child_starts_with_the_environment_the_launcher_names(tmp_path: Path) -> None:
    # A stand-in broker that writes down the tunables it was started with, then accepts.
    seen = tmp_path / "tunables"
    code = (
        "import os, socket, sys, time\n"
        f"open({str(seen)!r}, 'w').write(os.environ['GLIBC_TUNABLES'])\n"
        "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "time.sleep(60)\n"
    )
    proc = BrokerProcess(
        kind="probe",
        argv_for=lambda port, _: [sys.executable, "-c", code, str(port)],
        protocol="5",
        shared_subscriptions=True,
        keep_freed_memory=True,
    )
    proc.start()
    try:
        assert seen.read_text() == proc.child_environ()["GLIBC_TUNABLES"]
        assert "glibc.malloc.mmap_threshold=" in seen.read_text()
    finally:
        proc.stop()
