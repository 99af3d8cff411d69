"""Launching a real Mosquitto with a generated development configuration."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

from broker.process import HOST, BrokerProcess

__all__ = ["MAX_PACKET_SIZE", "dev_config", "find_mosquitto", "mosquitto_broker"]

MAX_PACKET_SIZE = 17 * 1024 * 1024
"""The dev broker's ``max_packet_size``: the protocol's 16 MiB ``MAX_MESSAGE_BYTES``
plus 1 MiB for the MQTT header, topic and properties. A client that sends a bigger
packet is disconnected by the broker (MQTT 5 clients are told the limit in CONNACK);
anything under it but over a frame's own limit (8 MiB payload + 64 KiB envelope) reaches
the worker, which refuses it with an ``oversize`` error reply."""

_SEARCH_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """The mosquitto binary on PATH or in the usual sbin folders, or ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _SEARCH_PATHS:
        if Path(candidate).is_file():
            return candidate
    return None


def dev_config(
    port: int, *, persistence_dir: Path | None = None, max_packet_size: int = MAX_PACKET_SIZE
) -> str:
    """Loopback-only, anonymous: for development and tests, never for deployment.

    With ``persistence_dir`` Mosquitto keeps retained messages, durable sessions and
    their queued QoS 1 messages in ``mosquitto.db`` there (saved every 1-2 s and on
    shutdown), so a broker restarted on the same folder picks them up again.
    """
    if persistence_dir is None:
        persistence = ["persistence false"]
    else:
        persistence = [
            # Started as root, Mosquitto drops to the 'mosquitto' user, who cannot write
            # our folder: it stays whoever started it (no effect for a non-root user).
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "persistence true",
            f"persistence_location {persistence_dir.resolve()}/",
            "autosave_interval 1",
        ]
    return "\n".join(
        [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            *persistence,
            f"max_packet_size {max_packet_size}",
            # Nagle's algorithm meets delayed ACKs: ~90 ms per request/reply without this.
            "set_tcp_nodelay true",
            # The default of 1000 silently drops messages (QoS 1 included) for a
            # subscriber that falls behind; edges bound what they have in flight, so a
            # larger queue only absorbs bursts from many edges.
            "max_queued_messages 10000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
            "",
        ]
    )


def mosquitto_broker(
    *,
    port: int = 0,
    binary: str | None = None,
    persistence_dir: str | Path | None = None,
    max_packet_size: int = MAX_PACKET_SIZE,
) -> BrokerProcess:
    """A :class:`BrokerProcess` running Mosquitto on 127.0.0.1 (``port=0``: ephemeral).

    ``persistence_dir`` (created if missing, never deleted) turns persistence on; it
    outlives the broker, so :meth:`BrokerProcess.restart` finds the saved state there.
    """
    exe = binary or find_mosquitto()
    if exe is None:
        from pipeline.errors import BrokerError

        raise BrokerError(
            "mosquitto not found on PATH or in /usr/sbin; install it "
            "(apt-get install mosquitto, brew install mosquitto) or use the embedded broker"
        )

    persist = None if persistence_dir is None else Path(persistence_dir)
    if persist is not None:
        persist.mkdir(parents=True, exist_ok=True)

    def argv_for(port: int, workdir: Path) -> list[str]:
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            dev_config(port, persistence_dir=persist, max_packet_size=max_packet_size),
            encoding="utf-8",
        )
        return [exe, "-c", str(conf)]

    return BrokerProcess(
        kind="mosquitto",
        argv_for=argv_for,
        port=port,
        protocol="5",
        shared_subscriptions=True,
        keep_freed_memory=True,
    )
