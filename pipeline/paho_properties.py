"""MQTT 5 properties without rebuilding paho's tables for every packet.

paho-mqtt's ``Properties.__init__`` builds two dictionaries of 27 entries (names, and
ids with their types) for every object, and each attribute set compares the name with
every known one, stripping spaces from all 27 each time. A worker answering one frame
per message makes three such objects a frame (the request's, its reply's, the reply's
PUBACK's): in a profile of 10,000 frames that was ~1.2 s of the worker's 9.9 s, about
2 million ``str.replace`` calls (``bench/profile_worker.py``).

:class:`FastProperties` is paho's class with those tables built once, per class: the
same attributes, the same checks, errors and bytes, in dictionary lookups (``pack`` and
``clear`` too, which paho's walk all 27 names, stripping spaces, for every packet).
Reading is paho's ``unpack`` over two faster steps: the name of a property id from a
dictionary (paho walks all 27 names for each property), and a UTF-8 string checked for
the characters MQTT forbids by ``str.find`` (paho tests each character in Python: a
response topic cost ~0.1 ms a frame in a worker). ``json``, ``isEmpty`` and ``__str__``
are paho's, over the shared tables; nothing writes to them.
:func:`install` makes it the ``Properties`` that paho's client and packet decoders and
this project create. Installed only over paho releases it was checked against, like
:mod:`pipeline.paho_publish`.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt import _packet
from paho.mqtt import client as paho_client
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers, readInt16

from pipeline.paho_publish import checked_release

__all__ = ["FastProperties", "install", "installed", "new_properties"]

_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho is untyped
_IDENT = {name.replace(" ", ""): ident for name, ident in _TABLES.names.items()}
_IN_ORDER = tuple(_IDENT)  # paho's order: what pack() writes first
# paho's getNameFromIdent returns the last name with the id: the dict keeps the last.
_NAME_OF = {ident: name for name, ident in _TABLES.names.items()}
_UTF8 = _TABLES.types.index("UTF-8 Encoded String")
_UTF8_PAIR = _TABLES.types.index("UTF-8 String Pair")
# What MQTT forbids in a string that UTF-8 decoding lets through, with paho's words
# (D800-DFFF, the third, never decodes: Python's strict UTF-8 refuses surrogates).
_FORBIDDEN = (
    ("\x00", "[MQTT-1.5.4-2] Null found in UTF-8 data"),
    ("\ufeff", "[MQTT-1.5.4-3] U+FEFF in UTF-8 data"),
)
_PRIVATE = frozenset({"packetType", "types", "names", "properties"})
_RANGES = {
    "ReceiveMaximum": (1, 65535),
    "TopicAlias": (1, 65535),
    "TopicAliasMaximum": (0, 65535),
    "MaximumPacketSize": (1, 268435455),
    "SubscriptionIdentifier": (1, 268435455),
}
_FLAGS = frozenset(
    {"RequestResponseInformation", "RequestProblemInformation", "PayloadFormatIndicator"}
)
_MULTIPLE = frozenset({11, 38})


class FastProperties(Properties):
    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's own name
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", _TABLES.types)
        object.__setattr__(self, "names", _TABLES.names)
        object.__setattr__(self, "properties", _TABLES.properties)

    def clear(self) -> None:
        for name in _IN_ORDER:
            if name in self.__dict__:
                object.__delattr__(self, name)

    def pack(self) -> bytes:
        buffer = b""
        for name in _IN_ORDER:
            if name not in self.__dict__:
                continue
            ident = _IDENT[name]
            kind = self.properties[ident][0]
            values = self.__dict__[name] if ident in _MULTIPLE else [self.__dict__[name]]
            for value in values:
                buffer += self.writeProperty(ident, kind, value)  # type: ignore[no-untyped-call]
        encoded: bytes = VariableByteIntegers.encode(len(buffer))  # type: ignore[no-untyped-call]
        return encoded + buffer

    def getNameFromIdent(self, identifier: int) -> str | None:  # noqa: N802 - paho's name
        return _NAME_OF.get(identifier)

    def readProperty(  # noqa: N802 - paho's name, and its argument names
        self, buffer: bytes, type: int, propslen: int
    ) -> tuple[Any, int]:
        if type == _UTF8:
            return _read_utf(buffer, propslen)
        if type == _UTF8_PAIR:
            key, used = _read_utf(buffer, propslen)
            value, used_too = _read_utf(buffer[used:], propslen - used)
            return (key, value), used + used_too
        paho_read = super().readProperty
        read: tuple[Any, int] = paho_read(buffer, type, propslen)  # type: ignore[no-untyped-call]
        return read

    def getIdentFromName(self, compressedName: str) -> int:  # noqa: N802, N803
        return _IDENT.get(compressedName, -1)

    def allowsMultiple(self, compressedName: str) -> bool:  # noqa: N802, N803
        return _IDENT.get(compressedName, -1) in _MULTIPLE

    def __setattr__(self, name: str, value: Any) -> None:
        name = name.replace(" ", "")
        if name in _PRIVATE:
            object.__setattr__(self, name, value)
            return
        ident = _IDENT.get(name)
        if ident is None:
            raise MQTTException(f"Property name must be one of {self.names.keys()}")
        if self.packetType not in self.properties[ident][1]:
            raise MQTTException(
                f"Property {name} does not apply to packet type "
                f"{PacketTypes.Names[self.packetType]}"
            )
        if not isinstance(value, list):
            if name in _RANGES:
                low, high = _RANGES[name]
                if value < low or value > high:
                    raise MQTTException(f"{name} property value must be in the range {low}-{high}")
            elif name in _FLAGS and value not in (0, 1):
                raise MQTTException(f"{name} property value must be 0 or 1")
        if ident in _MULTIPLE:
            if not isinstance(value, list):
                value = [value]
            if hasattr(self, name):
                value = object.__getattribute__(self, name) + value
        object.__setattr__(self, name, value)


def _read_utf(buffer: bytes, maxlen: int) -> tuple[str, int]:
    """paho's ``readUTF``: the same string, length and errors, in C-speed steps."""
    if maxlen < 2:
        raise MalformedPacket("Not enough data to read string length")
    length: int = readInt16(buffer)  # type: ignore[no-untyped-call]
    if length > maxlen - 2:
        raise MalformedPacket("Length delimited string too long")
    text = buffer[2 : 2 + length].decode("utf-8")
    found = [(at, why) for char, why in _FORBIDDEN if (at := text.find(char)) >= 0]
    if found:
        raise MalformedPacket(min(found)[1])  # paho names the first it meets
    return text, length + 2


def install() -> bool:
    """Make :class:`FastProperties` the ``Properties`` paho creates; True if in use."""
    if installed():
        return True
    if not checked_release("paho's MQTT 5 properties, which rebuild their tables per packet"):
        return False
    # Both modules call it by the name they imported: the module attributes are the seam.
    paho_client.Properties = FastProperties  # type: ignore[attr-defined]
    _packet.Properties = FastProperties  # type: ignore[attr-defined]
    return True


def installed() -> bool:
    return paho_client.Properties is FastProperties  # type: ignore[attr-defined]


def new_properties(packet_type: int) -> Properties:
    """Properties for a packet of ``packet_type``: the fast kind once installed."""
    cls = FastProperties if installed() else Properties
    return cls(packet_type)
