"""Building MQTT clients the way this project needs them, and translating their errors.

Every client gets TCP_NODELAY (paho and aiomqtt leave Nagle on, which costs ~90 ms per
request/reply on loopback when it meets delayed ACKs), a bounded incoming queue
(aiomqtt's is unbounded by default), TLS and credentials from the config, and a PUBLISH
decoder that copies a payload once instead of ~7 times (:mod:`pipeline.paho_publish`).
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator

import aiomqtt
from aiomqtt import ProtocolVersion, TLSParameters, Will

from pipeline import paho_publish
from pipeline.config import BrokerConfig
from pipeline.errors import ProtocolError

__all__ = [
    "DEFAULT_INCOMING_QUEUE",
    "backoff_delays",
    "make_client",
    "payload_bytes",
]

logger = logging.getLogger(__name__)

DEFAULT_INCOMING_QUEUE = 1000
"""Last-resort bound on aiomqtt's own queue, which drops (with a warning) what does not
fit. Components drain it into their own bounded queues and answer 'busy'; but paho
reads a burst from the socket in one go, before the draining coroutine runs, so a
component sizes it to the bursts it expects (the worker: 4x its own queue)."""


PENDING_PUBLISH_WARNING = 4096
"""Unacknowledged publishes past which aiomqtt logs a warning (its default is 10)."""


def make_client(
    broker: BrokerConfig,
    *,
    client_id: str,
    will: Will | None = None,
    max_queued_incoming: int = DEFAULT_INCOMING_QUEUE,
) -> aiomqtt.Client:
    """An aiomqtt client for ``broker``; call from inside the running event loop."""
    paho_publish.install()
    tls_params = None
    if broker.tls:
        tls_params = TLSParameters(
            ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file
        )
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=client_id,
        username=broker.user,
        password=broker.read_password(),
        protocol=ProtocolVersion.V5 if broker.protocol == "5" else ProtocolVersion.V311,
        keepalive=broker.keepalive_s,
        will=will,
        tls_params=tls_params,
        max_queued_incoming_messages=max_queued_incoming,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        timeout=10,
    )
    # aiomqtt warns on every publish past 10 unacknowledged ones. Our components bound
    # their own (an edge's frames in flight, a worker's background replies), so the
    # warning would only fire, once per message, under the load they are built for.
    client.pending_calls_threshold = PENDING_PUBLISH_WARNING
    return client


def payload_bytes(message: aiomqtt.Message) -> bytes | bytearray:
    """A received message's payload; anything but binary is a :class:`ProtocolError`."""
    payload = message.payload
    if not isinstance(payload, (bytes, bytearray)):
        raise ProtocolError(
            f"payload is {type(payload).__name__}, not binary", reason="not_msgpack"
        )
    return payload


def backoff_delays(*, base_s: float = 0.2, cap_s: float = 10.0) -> Iterator[float]:
    """Full-jitter exponential backoff: many clients reconnecting do not stampede."""
    attempt = 0
    while True:
        yield random.uniform(0, min(cap_s, base_s * 2**attempt))
        attempt += 1
