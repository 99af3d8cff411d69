"""The envelopes' base: msgspec Structs, framed as the protocol always has been.

Every envelope is a frozen :class:`msgspec.Struct` subclass of :class:`WireMessage`;
its type hints are the schema. On the wire it is one MessagePack map: the schema
version ``"v"`` first (the struct tag), the message type ``"t"`` second (the private
field ``_t``), then the fields in declaration order. An optional field at ``None`` is
left out; every other field is always written (:func:`written`).

Decoding has two paths with one outcome. A message that starts exactly as this
encoder writes one goes through msgspec's typed decoder, one C call that checks every
field's type, then the envelope's ``__post_init__`` (its invariants). Anything else
(another key order, a field msgspec refuses) takes the checked path, :mod:`._checked`:
it decodes a valid message in any key order to the same value and refuses a broken
one with the :class:`ProtocolError` that names what is wrong. Valid messages are the
hot path: ``decode_frames`` of one JPEG frame request takes 2.9 us, 1.3 us of it the
request's own invariants, against 6.5 us for the hand-written checkers and generated
decoders this replaced; ``Result.to_bytes`` 0.2 us against 1.7
(``.venv/bin/python bench/wire.py``, both on the same 2-core dev box in one session).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Self, TypeVar

import msgspec

from pipeline.errors import ProtocolError
from pipeline.protocol import _checked
from pipeline.protocol._checked import (
    MAX_ARRAY_ITEMS,
    MAX_STR_CHARS,
    SCHEMA_VERSION,
    TYPE_KEY,
    VERSION_KEY,
    Buffer,
)

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_MESSAGE_BYTES",
    "MAX_STR_CHARS",
    "SCHEMA_VERSION",
    "Blobs",
    "Float",
    "Floats",
    "Ints",
    "Str",
    "Strs",
    "WireMessage",
    "decode_as",
    "decode_fast",
    "message_type",
    "type_field",
    "unpack_map",
    "written",
]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Hard ceiling on an encoded message: anything bigger is refused before unpacking."""

# The field types msgspec checks in C, with the limits the protocol has always set: a
# string of at most MAX_STR_CHARS, an array of at most MAX_ARRAY_ITEMS, a finite float.
Str = Annotated[str, msgspec.Meta(max_length=MAX_STR_CHARS)]
Float = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
_ARRAY = msgspec.Meta(max_length=MAX_ARRAY_ITEMS)
Ints = Annotated[tuple[int, ...], _ARRAY]
Floats = Annotated[tuple[Float, ...], _ARRAY]
Strs = Annotated[tuple[Str, ...], _ARRAY]
Blobs = Annotated[tuple[bytes, ...], _ARRAY]

unpack_map = _checked.unpack_map
message_type = _checked.message_type

T = TypeVar("T")
M = TypeVar("M", bound="WireMessage")

_ENCODER = msgspec.msgpack.Encoder()
# What msgspec raises on a message it refuses: its own errors, UnicodeDecodeError for a
# string that is not UTF-8, RecursionError for nesting deeper than Python's stack; and
# a ProtocolError, as msgspec builds a message, and so runs its invariants, before it
# finds trailing bytes, which the checked path refuses first.
_STEP_ASIDE = (msgspec.DecodeError, ValueError, TypeError, RecursionError, ProtocolError)
_V_THEN_T = b"\xa1v\x01\xa1t"  # "v": 1, "t"
_BY_TYPE: dict[bytes, type[WireMessage]] = {}  # by "t" as a MessagePack fixstr
_DECODERS: dict[type, Callable[[Buffer], Any]] = {}


def written(default: T) -> T:
    """A field default that is still written when the field holds it.

    ``omit_defaults`` leaves out a field whose value *is* its default object; a value
    from a factory never is (msgspec special-cases only empty list/dict/set factories).
    The protocol leaves out only optional fields at ``None``, so every other default
    goes through here and stays on the wire, as it always has."""
    return msgspec.field(default_factory=lambda: default)


def type_field(message_type: str) -> Any:
    """The ``"t"`` key, second in the map: a private field with a factory default, so
    it is always written and never passed by callers."""
    return msgspec.field(default_factory=lambda: message_type, name=TYPE_KEY)


class WireMessage(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    forbid_unknown_fields=True,
    tag_field=VERSION_KEY,
    tag=SCHEMA_VERSION,
):
    """Base of every envelope: ``to_bytes()`` and a strict ``from_bytes()``.

    Subclasses set ``MESSAGE_TYPE`` and ``MAX_BYTES``, declare ``_t`` with
    :func:`type_field` first, and pass ``kw_only=True`` (msgspec applies it per class).
    """

    MESSAGE_TYPE: ClassVar[str]
    MAX_BYTES: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.MESSAGE_TYPE.encode()
        if len(name) >= 32:  # canonical_type reads it as a fixstr
            raise TypeError(f"message type {cls.MESSAGE_TYPE!r} is longer than 31 bytes")
        _BY_TYPE[bytes((0xA0 | len(name),)) + name] = cls

    def to_bytes(self) -> bytes:
        data = _ENCODER.encode(self)
        if data[0] == 0xDE and data[1] == 0 and data[2] < 16:
            # msgspec sizes a map header for every field a struct could write (a
            # frame request: 19) and then stores the count it wrote; the protocol has
            # always used the shortest header, a fixmap up to 15 keys. One copy, so
            # only where it differs.
            return bytes((0x80 | data[2],)) + memoryview(data)[3:]
        return data

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        """Decode and validate; raises :class:`ProtocolError` on anything wrong."""
        message = decode_fast(data, (cls,))
        if message is None:
            message = decode_as(cls, unpack_map(data, max_bytes=cls.MAX_BYTES))
        return message

    def __repr__(self) -> str:
        # As the dataclasses these were printed: the fields, not the "t" key.
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name != "_t"
        )
        return f"{type(self).__name__}({fields})"


def _typed_decoder(cls: type[M]) -> Callable[[Buffer], M]:
    decode = _DECODERS.get(cls)
    if decode is None:
        decode = _DECODERS[cls] = msgspec.msgpack.Decoder(cls).decode
    return decode


def canonical_type(data: Buffer) -> type[WireMessage] | None:
    """The envelope type of a message that starts exactly as this encoder writes one
    (a map, of at most 64 keys, whose first keys are ``"v": 1`` and ``"t"``), else
    ``None``. On every message: slices and one dict lookup."""
    try:
        if data[1:6] == _V_THEN_T:  # after a fixmap's one byte
            at = 6
        elif data[3:8] == _V_THEN_T and data[0] == 0xDE and data[1] == 0 and data[2] <= 64:
            at = 8  # after a map 16's three
        else:
            return None
        return _BY_TYPE.get(bytes(data[at : at + 1 + (data[at] & 0x1F)]))
    except (TypeError, IndexError):  # not bytes, or too short to hold a message
        return None


def decode_fast(
    data: Buffer, accept: tuple[type[M], ...], max_bytes: int | None = None
) -> M | None:
    """``data`` as one of the ``accept`` types, if it is one exactly as this encoder
    writes it and msgspec's typed decoder takes it (invariants included); ``None``
    where the checked path must decide, and say why. What it returns, the checked path
    would return. A message that starts right but is not a map, or not one of ours,
    msgspec refuses."""
    cls = canonical_type(data)
    if cls not in accept:
        return None
    if len(data) > (cls.MAX_BYTES if max_bytes is None else max_bytes):
        return None
    try:
        return _typed_decoder(cls)(data)
    except _STEP_ASIDE:
        return None


def decode_as(cls: type[M], obj: dict[str, object]) -> M:
    """Validate an unpacked map (see :func:`unpack_map`) against ``cls`` and build it."""
    return _checked.decode_as(cls, obj, _typed_decoder(cls), _ENCODER.encode)
