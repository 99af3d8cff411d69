"""Launching a real Mosquitto with a generated development configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

from broker.process import HOST, BrokerProcess

__all__ = ["dev_config", "find_mosquitto", "mosquitto_broker"]

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


def dev_config(port: int) -> str:
    """Loopback-only, anonymous: for development and tests, never for deployment."""
    return "\n".join(
        [
            f"listener {port} {HOST}",
            "allow_anonymous true",
            "persistence false",
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


def mosquitto_broker(*, port: int = 0, binary: str | None = None) -> BrokerProcess:
    """A :class:`BrokerProcess` running Mosquitto on 127.0.0.1 (``port=0``: ephemeral)."""
    exe = binary or find_mosquitto()
    if exe is None:
        from pipeline.errors import BrokerError

        raise BrokerError(
            "mosquitto not found on PATH or in /usr/sbin; install it "
            "(apt-get install mosquitto, brew install mosquitto) or use the embedded broker"
        )

    def argv_for(port: int, workdir: Path) -> list[str]:
        conf = workdir / "mosquitto.conf"
        conf.write_text(dev_config(port), encoding="utf-8")
        return [exe, "-c", str(conf)]

    return BrokerProcess(
        kind="mosquitto",
        argv_for=argv_for,
        port=port,
        protocol="5",
        shared_subscriptions=True,
    )
