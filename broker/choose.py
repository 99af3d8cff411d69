"""Choosing which local broker to run: Mosquitto when installed, else the embedded one."""

from __future__ import annotations

import logging
from typing import Literal

from broker.embedded import embedded_broker
from broker.mosquitto import find_mosquitto, mosquitto_broker
from broker.process import BrokerProcess

__all__ = ["BrokerKind", "local_broker"]

logger = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "embedded"]


def local_broker(kind: BrokerKind = "auto", *, port: int = 0) -> BrokerProcess:
    """A not-yet-started local broker of ``kind``; ``auto`` prefers Mosquitto."""
    if kind == "mosquitto" or (kind == "auto" and find_mosquitto() is not None):
        return mosquitto_broker(port=port)
    if kind == "auto":
        logger.warning("mosquitto is not installed: using the embedded broker")
    return embedded_broker(port=port)
