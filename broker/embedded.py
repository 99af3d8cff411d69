"""The embedded broker (amqtt, pure Python) for machines without Mosquitto.

amqtt speaks MQTT 3.1.1 only and has no shared subscriptions: clients fall back to
``{prefix}/results/{edge_id}`` for replies, and only one worker may serve the frames.
Run as ``python -m broker.embedded --port N``; :func:`embedded_broker` does that as a
child process so that the broker never competes with the caller's event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from broker.process import HOST, BrokerProcess

__all__ = ["EMBEDDED_LIMITATIONS", "embedded_broker"]

EMBEDDED_LIMITATIONS = (
    "MQTT 3.1.1 only (no response topics or correlation data: replies go to "
    "{prefix}/results/{edge_id}), no shared subscriptions (one worker only), "
    "pure Python (slower than Mosquitto)"
)


def embedded_broker(*, port: int = 0) -> BrokerProcess:
    def argv_for(port: int, workdir: Path) -> list[str]:
        return [sys.executable, "-m", "broker.embedded", "--port", str(port)]

    return BrokerProcess(
        kind="embedded",
        argv_for=argv_for,
        port=port,
        protocol="3.1.1",
        shared_subscriptions=False,
        limitations=EMBEDDED_LIMITATIONS,
    )


async def _serve(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="camoffload's embedded MQTT 3.1.1 broker")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s embedded-broker %(message)s")
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
