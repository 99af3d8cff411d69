"""Broker tooling: launch a real Mosquitto (or the embedded fallback) on 127.0.0.1."""

from broker.choose import BrokerKind, local_broker
from broker.embedded import EMBEDDED_LIMITATIONS, embedded_broker
from broker.mosquitto import dev_config, find_mosquitto, mosquitto_broker
from broker.process import BrokerInfo, BrokerProcess, free_port

__all__ = [
    "EMBEDDED_LIMITATIONS",
    "BrokerInfo",
    "BrokerKind",
    "BrokerProcess",
    "dev_config",
    "embedded_broker",
    "find_mosquitto",
    "free_port",
    "local_broker",
    "mosquitto_broker",
]
