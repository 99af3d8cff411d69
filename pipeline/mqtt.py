"""Building MQTT clients the way this project needs them, and translating their errors.

Every client gets TCP_NODELAY (paho and aiomqtt leave Nagle on, which costs ~90 ms per
request/reply on loopback when it meets delayed ACKs), a bounded incoming queue
(aiomqtt's is unbounded by default), TLS and credentials from the config, and a PUBLISH
decoder that copies a payload once instead of ~7 times (:mod:`pipeline.paho_publish`).

A service that must not lose what it was sent (the worker) asks for *manual
acknowledgement*: paho then sends a QoS 1 message's PUBACK only when the service calls
:func:`acknowledge`, after it has queued, answered or refused the message, and the
client stops reading its socket while too many wait (:class:`Client`). What the broker
cannot hold beyond its own queue limit it drops and counts in ``$SYS``, where an
operator sees it, instead of the client dropping it after saying it had it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt import ProtocolVersion, TLSParameters, Will
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pipeline import paho_properties, paho_publish, paho_socket
from pipeline.config import BrokerConfig
from pipeline.errors import ProtocolError
from pipeline.ratelog import RateLimitedLog

__all__ = [
    "DEFAULT_INCOMING_QUEUE",
    "Client",
    "acknowledge",
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


PENDING_PUBLISH_WARNING = 65536
"""Unacknowledged publishes past which aiomqtt logs a warning, once per publish (its
default is 10). A worker refusing a burst has one small reply in flight per refused
request (tests/test_worker_burst.py: ~5,000 for 20,000 requests); the warning would
turn each into a log line."""


class Client(aiomqtt.Client):
    """aiomqtt's client, with manual acknowledgement when asked for.

    With ``manual_ack`` nothing is acknowledged before :meth:`acknowledge`. When the
    incoming queue is full, a message is handed to ``on_overflow`` at once (the worker
    refuses it with ``busy`` there, so the receive path never falls behind) and then
    acknowledged: it is answered, not dropped. A broker's in-flight limit (MQTT 5's
    Receive Maximum) would keep the queue from filling at all, but Mosquitto 2.0.11
    (Debian 12, Raspberry Pi OS) exceeds it once acknowledgements flow
    (bench/receive_maximum.py).

    Without ``on_overflow`` (edges, the dashboard), a full queue discards the message,
    counted in ``discarded`` and summarised in the log rather than a line each."""

    def __init__(self, *args: Any, manual_ack: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.manual_ack = manual_ack
        self._client.manual_ack_set(manual_ack)
        self.on_overflow: Callable[[aiomqtt.Message], None] | None = None
        self.overflowed = 0  # handed to on_overflow
        self.discarded = 0  # dropped: must stay 0 where messages matter
        self._discards = RateLimitedLog(logger, f"mqtt client {self.identifier}")
        self._unacked: dict[int, asyncio.Future[None]] = {}  # publish_soon's, by mid
        self._loop_thread = threading.get_ident()  # built inside the running loop
        self._flush_soon = False

    # aiomqtt's private hook, the one place a message enters its queue (the same in
    # aiomqtt 2.3 to 2.5): here without its warning per discarded message.
    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        received = aiomqtt.Message._from_paho_message(message)
        if not self._queue.full():
            self._queue.put_nowait(received)  # the loop's one thread: no race to full
            return
        if self.on_overflow is None:
            self.discarded += 1
            self._discards.note("incoming queue full: message discarded")
            return
        self.overflowed += 1
        try:
            self.on_overflow(received)
        finally:
            self.acknowledge(received)

    def acknowledge(self, message: aiomqtt.Message) -> None:
        if self.manual_ack and message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def publish_soon(
        self, topic: str, payload: bytes, *, qos: int, properties: Properties | None = None
    ) -> asyncio.Future[None]:
        """Publish now and return at once: the future is done when the broker has it
        (its PUBACK for QoS 1 and 2, written for QoS 0), and fails if the connection
        ends first. aiomqtt's ``publish`` makes a task, an event and a timeout for each
        message and scans its pending calls twice: a fifth of a worker's CPU when it
        answers one frame per message (bench/profile_worker.py)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        info = self._client.publish(topic, payload, qos, False, properties)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            future.set_exception(aiomqtt.MqttCodeError(info.rc, "Could not publish message"))
        elif qos == 0 or info.is_published():
            future.set_result(None)
        else:
            self._unacked[info.mid] = future
        return future

    @property
    def messages(self) -> _QueuedMessages:  # type: ignore[override]
        """aiomqtt's view of the incoming queue, without a task and a wait per message
        when one is already there."""
        return _QueuedMessages(self)

    # aiomqtt's private hooks for paho's callbacks (the same in aiomqtt 2.3 to 2.5).
    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # From the loop's own thread (every publish and acknowledgement once connected):
        # write at the end of this turn of the loop, with whatever else is queued by
        # then. aiomqtt's way, a thread-safe call (a write to the loop's self-pipe) to
        # add a writer and remove it again, cost a system call and two epoll updates a
        # packet.
        if threading.get_ident() != self._loop_thread:
            super()._on_socket_register_write(client, userdata, sock)
        elif not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush, client, userdata, sock)

    def _flush(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._flush_soon = False
        try:
            client.loop_write()
        except Exception as exc:  # noqa: BLE001 - as aiomqtt's writer: the connection broke
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)
            return
        if client.want_write():  # the socket is full: wait until it drains, as aiomqtt does
            super()._on_socket_register_write(client, userdata, sock)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        future = self._unacked.pop(mid, None)
        if future is None:
            super()._on_publish(client, userdata, mid, reason_code, properties)
        elif not future.done():
            future.set_result(None)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any = None,
    ) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        unacked, self._unacked = self._unacked, {}
        for future in unacked.values():
            if not future.done():
                future.set_exception(aiomqtt.MqttError("the connection ended before the PUBACK"))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(exc_type, exc, tb)
        finally:
            # A broker that went away first left aiomqtt's "disconnected" future holding
            # its error, which aiomqtt's exit does not read: asyncio would print
            # "Future exception was never retrieved" at shutdown. It is read here.
            ended = self._disconnected
            if ended.done() and not ended.cancelled() and (why := ended.exception()):
                logger.debug("mqtt client %s: the connection had ended: %s", self.identifier, why)


class _QueuedMessages:
    """A message already queued is returned at once; only an empty queue waits, with
    aiomqtt's own iterator (its task and its watch for a disconnection). Not a subclass:
    aiomqtt 2.3 nests its iterator class in ``Client``, 2.5 does not."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._waiting: AsyncIterator[aiomqtt.Message] = aiomqtt.Client.messages.fget(client)  # type: ignore[attr-defined]

    def __aiter__(self) -> _QueuedMessages:
        return self

    async def __anext__(self) -> aiomqtt.Message:
        queue = self._client._queue
        if not queue.empty():
            return queue.get_nowait()
        return await anext(self._waiting)

    def __len__(self) -> int:
        return self._client._queue.qsize()


def acknowledge(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Tell the broker ``message`` is taken care of (a no-op without manual acks)."""
    if isinstance(client, Client):
        client.acknowledge(message)


def make_client(
    broker: BrokerConfig,
    *,
    client_id: str,
    will: Will | None = None,
    max_queued_incoming: int = DEFAULT_INCOMING_QUEUE,
    manual_ack: bool = False,
    receive_maximum: int | None = None,
) -> Client:
    """A client for ``broker``; call from inside the running event loop. With
    ``manual_ack``, call :func:`acknowledge` for each message; ``receive_maximum`` (MQTT
    5) bounds how many the broker sends unacknowledged."""
    paho_publish.install()
    paho_socket.install()
    paho_properties.install()
    tls_params = None
    if broker.tls:
        tls_params = TLSParameters(
            ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file
        )
    v5 = broker.protocol == "5"
    properties = None
    if v5 and receive_maximum is not None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.ReceiveMaximum = receive_maximum
    client = Client(
        broker.host,
        broker.port,
        identifier=client_id,
        username=broker.user,
        password=broker.read_password(),
        protocol=ProtocolVersion.V5 if v5 else ProtocolVersion.V311,
        keepalive=broker.keepalive_s,
        will=will,
        tls_params=tls_params,
        max_queued_incoming_messages=max_queued_incoming,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        timeout=10,
        properties=properties,
        manual_ack=manual_ack,
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
