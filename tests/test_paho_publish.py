"""pipeline.paho_publish: the same PUBLISH as paho's own decoder reads, copied once."""

from __future__ import annotations

import asyncio
import random
import struct

import aiomqtt
import paho.mqtt
import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from pipeline import paho_publish
from pipeline.config import Config
from pipeline.topics import request_properties
from tests._helpers import client, next_message

V5 = MQTTProtocolVersion.MQTTv5
V311 = MQTTProtocolVersion.MQTTv311


def test_installed_paho_is_a_checked_release() -> None:
    """A paho release nobody checked the decoder against fails here, loudly, in CI."""
    assert paho.mqtt.__version__ in paho_publish.CHECKED_PAHO_VERSIONS, (
        f"paho-mqtt {paho.mqtt.__version__} is installed, but pipeline/paho_publish.py was "
        f"checked against {sorted(paho_publish.CHECKED_PAHO_VERSIONS)} only: compare "
        "paho.mqtt._packet.decode_publish with ours, then add the release there and "
        "widen the paho-mqtt bound in pyproject.toml"
    )
    assert paho_publish.install()
    assert paho_publish.installed()


def _properties(rng: random.Random) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if rng.random() < 0.6:
        props.ResponseTopic = "camoffload/results/" + "e" * rng.randint(1, 40)
    if rng.random() < 0.5:
        props.CorrelationData = rng.randbytes(rng.randint(0, 64))
    if rng.random() < 0.3:
        props.UserProperty = [(f"k{i}", "v" * i) for i in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        props.ContentType = "application/msgpack"
    if rng.random() < 0.3:
        props.MessageExpiryInterval = rng.randint(0, 2**32 - 1)
    if rng.random() < 0.2:
        props.SubscriptionIdentifier = [rng.randint(1, 2**28 - 1)]
    if rng.random() < 0.2:
        props.PayloadFormatIndicator = 0
    return props


def _packet_body(
    rng: random.Random, protocol: MQTTProtocolVersion, qos: int, payload_len: int
) -> bytearray:
    """A PUBLISH after its fixed header, as paho's reader hands it over."""
    topic_len = rng.randint(0 if protocol == V5 else 1, 60)
    body = bytearray(struct.pack("!H", topic_len) + b"t" * topic_len)
    if qos:
        body += struct.pack("!H", rng.randint(1, 65535))
    if protocol == V5:
        body += _properties(rng).pack()  # type: ignore[no-untyped-call]
    body += rng.randbytes(payload_len)
    return body


def _properties_cut_short(body: bytearray, protocol: MQTTProtocolVersion) -> bool:
    """MQTT 5 properties (after a QoS 1 packet id) declared longer than what is left."""
    if protocol != V5:
        return False
    (topic_len,) = struct.unpack_from("!H", body)
    start = 2 + topic_len + 2
    length, vbi_len = VariableByteIntegers.decode(bytes(body[start : start + 4]))  # type: ignore[no-untyped-call]
    return bool(start + vbi_len + length > len(body))


def _same(a: _packet.PublishPacket, b: _packet.PublishPacket) -> None:
    assert (a.dup, a.qos, a.retain, a.topic, a.mid) == (b.dup, b.qos, b.retain, b.topic, b.mid)
    assert str(a.properties) == str(b.properties)
    assert a.payload == b.payload
    assert type(b.payload) is bytes


@pytest.mark.parametrize("protocol", [V5, V311])
def test_every_field_matches_what_paho_reads(protocol: MQTTProtocolVersion) -> None:
    rng = random.Random(1)
    for case in range(400):
        qos = case % 3
        header = 0x30 | (qos << 1) | rng.choice((0, 1)) | rng.choice((0, 0x08))
        size = rng.choice((0, 1, 200, 37_632, 600_000 if case % 50 == 0 else 4096))
        body = _packet_body(rng, protocol, qos, size)
        _same(
            paho_publish.paho_decode_publish(header, body, protocol),
            paho_publish.decode_publish(header, body, protocol),
        )


@pytest.mark.parametrize("protocol", [V5, V311])
def test_a_truncated_packet_is_malformed_wherever_paho_says_so(
    protocol: MQTTProtocolVersion,
) -> None:
    rng = random.Random(2)
    stricter = 0
    for _ in range(30):
        body = _packet_body(rng, protocol, 1, 8)
        for cut in range(len(body)):
            piece = bytearray(body[:cut])
            try:
                expected = paho_publish.paho_decode_publish(0x32, piece, protocol)
            except MalformedPacket:
                with pytest.raises(MalformedPacket):
                    paho_publish.decode_publish(0x32, piece, protocol)
                continue
            if _properties_cut_short(piece, protocol):
                # paho reads properties cut short as shorter values; their declared
                # length says they run past the packet, and so do we.
                stricter += 1
                with pytest.raises(MalformedPacket, match="run past the packet"):
                    paho_publish.decode_publish(0x32, piece, protocol)
            else:
                _same(expected, paho_publish.decode_publish(0x32, piece, protocol))
    assert stricter == 0 or protocol == V5


def test_properties_that_claim_more_than_the_packet_holds_are_malformed() -> None:
    body = bytearray(struct.pack("!H", 1) + b"t" + b"\x7f" + b"\x01\x00")
    with pytest.raises(MalformedPacket):
        paho_publish.decode_publish(0x30, body, V5)


def test_install_keeps_paho_s_own_decoder_on_a_release_it_was_not_checked_against(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_packet, "decode_publish", paho_publish.paho_decode_publish)
    monkeypatch.setattr(paho.mqtt, "__version__", "9.0.0")
    assert not paho_publish.install()
    assert not paho_publish.installed()


def test_a_large_payload_and_its_properties_cross_a_real_broker(config: Config) -> None:
    payload = random.Random(3).randbytes(1_500_000)
    topic = f"{config.prefix}/paho-publish"

    async def scenario() -> aiomqtt.Message:
        async with client(config) as sub, client(config) as pub:
            # make_client put it in, over the paho release it was checked against.
            checked = paho.mqtt.__version__ in paho_publish.CHECKED_PAHO_VERSIONS
            assert paho_publish.installed() == checked
            await sub.subscribe(topic, qos=1)
            await pub.publish(
                topic, payload, qos=1, properties=request_properties("r/edge-7", b"frame-42")
            )
            return await next_message(sub)

    message = asyncio.run(scenario())
    assert message.payload == payload
    assert message.properties is not None
    assert message.properties.ResponseTopic == "r/edge-7"  # type: ignore[attr-defined]
    assert message.properties.CorrelationData == b"frame-42"  # type: ignore[attr-defined]
