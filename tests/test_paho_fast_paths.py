"""The worker's two paho fast paths behave as paho does: MQTT 5 properties built from
shared tables (pipeline/paho_properties.py) and socket reads served from a buffer
(pipeline/paho_socket.py)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import paho.mqtt
import pytest
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pipeline import paho_properties, paho_socket
from pipeline.paho_properties import FastProperties
from pipeline.paho_publish import CHECKED_PAHO_VERSIONS

pytestmark = pytest.mark.skipif(
    paho.mqtt.__version__ not in CHECKED_PAHO_VERSIONS, reason="a paho release not checked"
)

# Every property, with a value it takes.
VALUES: dict[str, Any] = {
    "PayloadFormatIndicator": 1,
    "MessageExpiryInterval": 60,
    "ContentType": "application/msgpack",
    "ResponseTopic": "p/results/cam",
    "CorrelationData": b"frame-1",
    "SubscriptionIdentifier": 7,
    "SessionExpiryInterval": 30,
    "AssignedClientIdentifier": "c1",
    "ServerKeepAlive": 20,
    "AuthenticationMethod": "m",
    "AuthenticationData": b"d",
    "RequestProblemInformation": 1,
    "WillDelayInterval": 5,
    "RequestResponseInformation": 0,
    "ResponseInformation": "r",
    "ServerReference": "s",
    "ReasonString": "why",
    "ReceiveMaximum": 64,
    "TopicAliasMaximum": 0,
    "TopicAlias": 3,
    "MaximumQoS": 1,
    "RetainAvailable": 1,
    "UserProperty": ("k", "v"),
    "MaximumPacketSize": 1 << 20,
    "WildcardSubscriptionAvailable": 1,
    "SubscriptionIdentifierAvailable": 1,
    "SharedSubscriptionAvailable": 1,
}
BAD: list[tuple[str, Any]] = [
    ("NoSuchProperty", 1),
    ("ReceiveMaximum", 0),
    ("TopicAlias", 70000),
    ("TopicAliasMaximum", -1),
    ("MaximumPacketSize", 0),
    ("SubscriptionIdentifier", 1 << 28),
    ("PayloadFormatIndicator", 2),
]


def _outcome(cls: type[Properties], packet: int, name: str, value: Any) -> tuple[str, Any]:
    props = cls(packet)
    try:
        setattr(props, name, value)
        setattr(props, name, value)  # twice: a multiple one appends
    except (MQTTException, IndexError) as exc:  # paho names packet 99 (a will) thus
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", (props.pack(), props.json(), str(props), props.isEmpty()))


PACKETS = [
    PacketTypes.CONNECT, PacketTypes.CONNACK, PacketTypes.PUBLISH, PacketTypes.PUBACK,
    PacketTypes.PUBREC, PacketTypes.PUBREL, PacketTypes.PUBCOMP, PacketTypes.SUBSCRIBE,
    PacketTypes.SUBACK, PacketTypes.UNSUBSCRIBE, PacketTypes.UNSUBACK,
    PacketTypes.DISCONNECT, PacketTypes.AUTH, PacketTypes.WILLMESSAGE,
]  # fmt: skip


@pytest.mark.parametrize("packet", PACKETS)
def test_fast_properties_accept_refuse_and_pack_as_pahos_do(packet: int) -> None:
    for name, value in [*VALUES.items(), *BAD]:
        assert _outcome(FastProperties, packet, name, value) == _outcome(
            Properties, packet, name, value
        ), name


def test_fast_properties_unpack_what_paho_packs() -> None:
    ours = FastProperties(PacketTypes.PUBLISH)
    ours.ResponseTopic = "p/results/cam"
    ours.CorrelationData = b"\x00\x01frame"
    ours.UserProperty = [("a", "1"), ("b", "2")]
    packed = ours.pack()
    theirs = Properties(PacketTypes.PUBLISH)
    theirs.unpack(packed)
    back = FastProperties(PacketTypes.PUBLISH)
    back.unpack(packed)
    assert back.json() == theirs.json() == ours.json()


def _unpacked(cls: type[Properties], data: bytes) -> tuple[str, Any]:
    props = cls(PacketTypes.PUBLISH)
    try:
        _, used = props.unpack(data)
    except (MQTTException, UnicodeDecodeError, struct.error) as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", (props.json(), used))


def _utf8_property(ident: int, raw: bytes, *, claimed: int | None = None) -> bytes:
    body = bytes([ident]) + struct.pack("!H", len(raw) if claimed is None else claimed) + raw
    return bytes([len(body)]) + body


@pytest.mark.parametrize(
    "data",
    [
        _utf8_property(8, b"p/results/cam-1"),  # ResponseTopic
        _utf8_property(8, "größe/é".encode()),
        _utf8_property(8, b""),
        _utf8_property(8, b"a\x00b"),
        _utf8_property(8, "a\ufeffb".encode()),
        _utf8_property(8, "x\ufeff\x00".encode()),  # both: paho names the first it meets
        _utf8_property(8, "x\x00\ufeff".encode()),
        _utf8_property(8, b"\xed\xa0\x80"),  # an encoded surrogate: not UTF-8
        _utf8_property(8, b"\xff"),
        _utf8_property(8, b"abc", claimed=9),  # longer than the properties
        bytes([1, 8]),  # no room for the length
        _utf8_property(38, b"\x00\x01k\x00\x01v"),  # UserProperty, a pair
        _utf8_property(38, b"\x00\x01k\x00\x05v"),  # its value runs past
        _utf8_property(38, b"\x00\x01k\x00\x01\x00"),
        bytes([3, 1, 1, 9]),  # PayloadFormatIndicator then an id with no value
    ],
)
def test_fast_properties_read_strings_and_refuse_what_paho_refuses(data: bytes) -> None:
    assert _unpacked(FastProperties, data) == _unpacked(Properties, data)


def test_installed_properties_are_the_ones_paho_makes() -> None:
    assert paho_properties.install()
    assert isinstance(paho_properties.new_properties(PacketTypes.PUBLISH), FastProperties)
    from paho.mqtt import _packet

    assert _packet.Properties is FastProperties  # type: ignore[attr-defined]


class _Chunks:
    """A socket that hands out what was queued, a chunk a recv, then would block."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.recvs = 0

    def recv(self, bufsize: int) -> bytes:
        self.recvs += 1
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks.pop(0)
        if len(chunk) > bufsize:
            self.chunks.insert(0, chunk[bufsize:])
            chunk = chunk[:bufsize]
        return chunk

    def close(self) -> None:
        self.chunks.clear()


def _client_on(sock: object) -> PahoClient:
    client = PahoClient(CallbackAPIVersion.VERSION2)
    client._sock = sock  # type: ignore[assignment]
    return client


def test_small_reads_come_from_one_recv() -> None:
    assert paho_socket.install()
    sock = _Chunks(b"\x40\x02\x00\x01" * 3)  # three PUBACKs in one segment
    client = _client_on(sock)
    got = b"".join(client._sock_recv(1) for _ in range(12))
    assert got == b"\x40\x02\x00\x01" * 3
    assert sock.recvs == 1
    with pytest.raises(BlockingIOError):
        client._sock_recv(1)


def test_a_new_socket_starts_with_an_empty_buffer() -> None:
    assert paho_socket.install()
    client = _client_on(_Chunks(b"abcdef"))
    assert client._sock_recv(2) == b"ab"
    client._sock = _Chunks(b"xyz")  # type: ignore[assignment]  # a reconnect's new socket
    assert client._sock_recv(2) == b"xy"


def test_loop_read_empties_the_buffer() -> None:
    """Whole packets left in the buffer are handled before loop_read returns: the
    socket will not say it is readable for them again."""
    assert paho_socket.install()
    left, right = socket.socketpair()
    left.setblocking(False)
    try:
        client = _client_on(left)
        handled: list[int] = []

        def handle(*_args: Any) -> MQTTErrorCode:
            handled.append(client._in_packet["command"])
            return MQTTErrorCode.MQTT_ERR_SUCCESS

        client._packet_handle = handle  # type: ignore[method-assign]
        # Five PINGRESPs (0xD0 0x00) at once; paho reads one packet per in-flight
        # message (here none: one) per loop_read call.
        right.send(b"\xd0\x00" * 5)
        assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert handled == [0xD0] * 5
    finally:
        left.close()
        right.close()


def test_a_large_payload_reads_whole() -> None:
    assert paho_socket.install()
    big = bytes(range(256)) * 4096  # 1 MB, four chunks
    sock = _Chunks(b"\x30" + big)
    client = _client_on(sock)
    assert client._sock_recv(1) == b"\x30"
    got = bytearray()
    while len(got) < len(big):
        got += client._sock_recv(len(big) - len(got))
    assert bytes(got) == big
    assert sock.recvs <= 5


class _Sent:
    """A socket that records each send (and takes it whole)."""

    def __init__(self) -> None:
        self.sends: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sends.append(bytes(data))
        return len(data)

    def close(self) -> None:
        pass


def test_queued_packets_go_in_one_send_but_a_qos0_publish_keeps_its_callback() -> None:
    assert paho_socket.install()
    sock = _Sent()
    client = _client_on(sock)
    published: list[int] = []
    client.on_publish = lambda *args: published.append(args[2])
    # As under aiomqtt: queued packets wait for the event loop to write them.
    client.on_socket_register_write = lambda *_args: None
    pubacks = [bytes([0x40, 0x02, 0x00, i]) for i in range(1, 4)]
    for i, packet in enumerate(pubacks, start=1):
        client._packet_queue(0x40, packet, i, 1)
    info = client.publish("t", b"x", qos=0)
    client._packet_queue(0x40, bytes([0x40, 0x02, 0x00, 9]), 9, 1)
    assert client._packet_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    # The three PUBACKs in one send; the QoS 0 PUBLISH on its own (paho calls its
    # on_publish once written); the last PUBACK alone after it.
    assert sock.sends[0] == b"".join(pubacks)
    assert len(sock.sends) == 3
    assert sock.sends[2] == bytes([0x40, 0x02, 0x00, 9])
    assert published == [info.mid]
    assert info.is_published()
