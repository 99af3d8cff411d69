"""Reading an incoming PUBLISH without copying its payload again and again.

paho-mqtt 2.x (``paho.mqtt._packet.decode_publish``) peels a PUBLISH apart with
``struct.unpack(f"!H{n}s", packet)``, which copies everything after the field it reads,
once per field (topic length, topic, packet id), and ``Properties.unpack`` slices the
rest of the packet once per property: a 600 KB bundle of split activations was copied
~7 times before our code saw it. Both on the same packets: 1,313 -> 38 us for 600 KB
on the 2-core box (``bench/paho_publish.py``, since removed, still in commit e6dd3de).

:func:`install` swaps in :func:`decode_publish`, which reads the same fields at offsets
in a ``memoryview`` and copies the topic, the properties and the payload once each. It
returns the same ``PublishPacket``, and raises paho's ``MalformedPacket`` where paho
does (tests/test_paho_publish.py checks both against paho's own decoder). It installs
only over the paho release it was checked against: any other release keeps its own,
with a warning. pyproject.toml bounds paho-mqtt to the checked releases
(``>=2.2,<2.3``), and tests/test_paho_publish.py fails on any other, so a new paho
release is a loud CI failure to check and add here, never a silent slow path.
"""

from __future__ import annotations

import logging
import struct

import paho.mqtt
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import VariableByteIntegers

__all__ = [
    "CHECKED_PAHO_VERSIONS",
    "checked_release",
    "decode_publish",
    "install",
    "installed",
    "paho_decode_publish",
]

logger = logging.getLogger(__name__)

CHECKED_PAHO_VERSIONS = frozenset({"2.2.0"})
"""paho releases whose ``decode_publish`` this one was checked against, field by field."""

_MAX_VBI_BYTES = 4  # a variable byte integer is 1-4 bytes (MQTT 5, 1.5.5)

_paho_decode_publish = _packet.decode_publish


def _decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> _packet.PublishPacket:
    dup = ((header & 0x08) >> 3) != 0
    qos = (header & 0x06) >> 1
    retain = (header & 0x01) != 0
    with memoryview(packet) as view:
        (topic_len,) = struct.unpack_from("!H", view, 0)
        pos = 2 + topic_len
        if pos > len(view):
            raise struct.error(f"a topic of {topic_len} bytes runs past the packet")
        topic = bytes(view[2:pos])
        if protocol != MQTTProtocolVersion.MQTTv5 and topic_len == 0:
            raise MalformedPacket("topic can't be empty in MQTTv3")
        mid = 0
        if qos > 0:
            (mid,) = struct.unpack_from("!H", view, pos)
            pos += 2
        properties = None
        if protocol == MQTTProtocolVersion.MQTTv5:
            # Hand Properties.unpack the properties alone: given the whole rest of the
            # packet, it copies the payload along with every property it strips.
            props_len, vbi_len = VariableByteIntegers.decode(  # type: ignore[no-untyped-call]
                bytes(view[pos : pos + _MAX_VBI_BYTES])
            )
            end = pos + vbi_len + props_len
            if end > len(view):
                raise struct.error(f"properties of {props_len} bytes run past the packet")
            # paho's name for the class, which pipeline.paho_properties may have made
            # the fast one.
            properties = _packet.Properties(PacketTypes.PUBLISH)  # type: ignore[attr-defined,no-untyped-call]
            _, used = properties.unpack(bytes(view[pos:end]))  # type: ignore[no-untyped-call]
            pos += used
        payload = bytes(view[pos:])
    return _packet.PublishPacket(
        dup=dup,
        qos=qos,
        retain=retain,
        topic=topic,
        mid=mid,
        properties=properties,
        payload=payload,
    )


decode_publish = _packet.convert_exception(_decode_publish)
"""A drop-in for paho's ``decode_publish``: its errors become ``MalformedPacket`` alike."""


def checked_release(keeping: str) -> bool:
    """Whether this paho is a release the project's patches were checked against; if
    not, say once per patch what paho's own way, ``keeping``, costs."""
    if paho.mqtt.__version__ in CHECKED_PAHO_VERSIONS:
        return True
    # Loud on purpose: pyproject bounds paho to the checked releases, so this runs only
    # where someone forced another release in (and tests fail there).
    logger.warning(
        "paho-mqtt %s is not a release camoffload was checked against (%s): keeping %s",
        paho.mqtt.__version__,
        ", ".join(sorted(CHECKED_PAHO_VERSIONS)),
        keeping,
    )
    return False


def install() -> bool:
    """Use :func:`decode_publish` for every paho client in this process; True if it is
    in use, False where this paho release is not one it was checked against."""
    if _packet.decode_publish is decode_publish:
        return True
    if not checked_release("paho's own PUBLISH decoder, which copies large payloads ~7 times"):
        return False
    # client.py calls it as _packet.decode_publish, so the module attribute is the seam.
    _packet.decode_publish = decode_publish
    return True


def installed() -> bool:
    return _packet.decode_publish is decode_publish


def paho_decode_publish(
    header: int, packet: bytes | bytearray, protocol: MQTTProtocolVersion
) -> _packet.PublishPacket:
    """paho's own decoder, whether or not :func:`install` ran (for tests and the bench)."""
    return _paho_decode_publish(header, packet, protocol)
