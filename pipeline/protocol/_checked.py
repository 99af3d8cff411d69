"""The framing rules every envelope shares, and the checked path that enforces them.

msgspec's typed decoder (:mod:`._wire`) takes the messages this encoder writes. This
path decides everything else, in the order the protocol has always checked it:

1. the bytes: one MessagePack value within the unpack limits below (``not_msgpack``),
   a map (``not_a_map``) with ``"v": 1`` (``bad_version``);
2. the envelope: a string ``"t"`` (``missing_field``) naming the expected type
   (``wrong_message_type``), no unknown keys (``unknown_field``), no missing ones
   (``missing_field``);
3. each field against its declared type, in declaration order (``wrong_type``,
   ``oversize``, ``bad_value``): msgspec's typed decoder again, on the fields
   re-encoded in that order, so the first field it refuses is the first one declared;
4. the envelope's own invariants (its ``__post_init__``).

So a valid message in another key order decodes to the same value, and a broken one
gets the :class:`ProtocolError` that says what is wrong, with the frame id attached
when the message has a valid one. Only refused or unusual messages come here.
"""

from __future__ import annotations

import enum
import functools
import math
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar, cast

import msgspec

from pipeline.errors import ProtocolError
from pipeline.protocol._checks import safe_id

__all__ = [
    "MAX_ARRAY_ITEMS",
    "MAX_MAP_ITEMS",
    "MAX_STR_CHARS",
    "SCHEMA_VERSION",
    "TYPE_KEY",
    "VERSION_KEY",
    "Buffer",
    "decode_as",
    "message_type",
    "unpack_map",
]

SCHEMA_VERSION = 1
"""Wire schema version; bumped on any incompatible change to any envelope."""

VERSION_KEY = "v"
TYPE_KEY = "t"

# Unpack limits: a string of at most MAX_STR_CHARS characters (a field) and
# MAX_STR_BYTES bytes (anything), arrays and maps of at most these many items.
MAX_STR_CHARS = 4096
MAX_STR_BYTES = MAX_STR_CHARS * 4
MAX_ARRAY_ITEMS = 1024
MAX_MAP_ITEMS = 64

Buffer = bytes | bytearray | memoryview


class _Envelope(Protocol):
    MESSAGE_TYPE: ClassVar[str]


E = TypeVar("E", bound=_Envelope)

_UNTYPED = msgspec.msgpack.Decoder()
# A field error's place in msgspec's message: "... - at `$.shape[2]`".
_AT = re.compile(r" - at `\$\.([^`\[]+)(?:\[(\d+)\])?`$")


def unpack_map(data: Buffer, *, max_bytes: int) -> dict[str, object]:
    """Unpack ``data`` as one MessagePack map with a known version, untyped."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}", reason="not_msgpack")
    if len(data) > max_bytes:
        raise ProtocolError(
            f"message of {len(data)} bytes exceeds the limit of {max_bytes}", reason="oversize"
        )
    try:
        obj = _UNTYPED.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
        # Truncation, trailing bytes, bad UTF-8, an unhashable map key (msgspec < 0.19),
        # nesting past the stack: all of them mean "not one of our messages".
        raise ProtocolError(f"not a MessagePack message: {exc}", reason="not_msgpack") from exc
    beyond = _beyond_limits(obj)
    if beyond is not None:
        raise ProtocolError(f"not a MessagePack message: {beyond}", reason="not_msgpack")
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"expected a MessagePack map, got {type(obj).__name__}", reason="not_a_map"
        )
    version = obj.get(VERSION_KEY)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"unsupported schema version {_as_tuples(version)!r} "
            f"(this build speaks {SCHEMA_VERSION})",
            reason="bad_version",
        )
    return obj


def _beyond_limits(obj: object) -> str | None:
    """What in ``obj`` is past the unpack limits, or ``None``.

    Anywhere in the message, as the unpacker always refused it: long strings, long
    arrays and maps, map keys that are not strings or binary, extension types."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_STR_CHARS and len(value.encode()) > MAX_STR_BYTES:
                return f"a string of {len(value.encode())} bytes is past {MAX_STR_BYTES}"
        elif isinstance(value, list):
            if len(value) > MAX_ARRAY_ITEMS:
                return f"an array of {len(value)} items is past {MAX_ARRAY_ITEMS}"
            stack += value
        elif isinstance(value, dict):
            if len(value) > MAX_MAP_ITEMS:
                return f"a map of {len(value)} items is past {MAX_MAP_ITEMS}"
            for key in value:
                if not isinstance(key, (str, bytes)):
                    return f"a map key of type {type(key).__name__}"
            stack += value
            stack += value.values()
        elif isinstance(value, msgspec.msgpack.Ext) and value.data:
            return f"extension type {value.code}"
        elif not isinstance(value, (bytes, int, float, type(None), msgspec.msgpack.Ext)):
            return f"extension type {type(value).__name__}"  # a timestamp
    return None


def _as_tuples(value: object) -> object:
    """``value`` with its arrays as tuples, as messages have always shown them."""
    if isinstance(value, list):
        return tuple(map(_as_tuples, value))
    return value


def message_type(obj: Mapping[str, object]) -> str:
    kind = obj.get(TYPE_KEY)
    if not isinstance(kind, str):
        raise ProtocolError("missing or non-string message type 't'", reason="missing_field")
    return kind


class _Schema(NamedTuple):
    names: tuple[str, ...]  # wire names in declaration order, less "t"
    required: frozenset[str]
    enums: dict[str, type[enum.Enum]]  # the fields that hold an enum, and its type


@functools.cache
def _schema(cls: type) -> _Schema:
    fields = [f for f in msgspec.structs.fields(cast(Any, cls)) if f.encode_name != TYPE_KEY]
    enums = {}
    for f in fields:
        for tp in (f.type, *typing.get_args(f.type)):  # an enum, or an optional one
            if isinstance(tp, type) and issubclass(tp, enum.Enum):
                enums[f.encode_name] = tp
    return _Schema(
        tuple(f.encode_name for f in fields),
        frozenset(f.encode_name for f in fields if f.required),
        enums,
    )


def decode_as(
    cls: type[E],
    obj: dict[str, object],
    typed_decode: Callable[[bytes], E],
    encode: Callable[[object], bytes],
) -> E:
    """Validate an unpacked map against ``cls`` and build it, with ``cls``'s typed
    decoder and the encoder that writes the fields back in declaration order."""
    kind = message_type(obj)
    if kind != cls.MESSAGE_TYPE:
        raise ProtocolError(
            f"expected a {cls.MESSAGE_TYPE!r} message, got {kind!r}",
            reason="wrong_message_type",
            frame_id=_frame_id(obj),
        )
    schema = _schema(cls)
    keys = obj.keys() - {VERSION_KEY, TYPE_KEY}
    # Sorted str first: a binary key is legal MessagePack, and never a field.
    unknown = sorted(keys - set(schema.names), key=lambda key: (not isinstance(key, str), key))
    if unknown:
        raise ProtocolError(
            f"unknown field(s) {', '.join(map(repr, unknown))} in {kind!r} message",
            reason="unknown_field",
            frame_id=_frame_id(obj),
        )
    missing = sorted(schema.required - keys)
    if missing:
        raise ProtocolError(
            f"missing field(s) {', '.join(map(repr, missing))} in {kind!r} message",
            reason="missing_field",
            frame_id=_frame_id(obj),
        )
    ordered: dict[str, object] = {VERSION_KEY: SCHEMA_VERSION, TYPE_KEY: kind}
    ordered.update((name, obj[name]) for name in schema.names if name in obj)
    try:
        return typed_decode(encode(ordered))
    except msgspec.ValidationError as exc:
        raise _refusal(str(exc), obj, schema) from None


# msgspec's names for MessagePack types, as these messages have always named them.
_EXPECTED = {"str": "string", "bytes": "binary"}
_GOT = {"array": "tuple", "object": "dict", "None": "NoneType", "ext": "ExtType"}


def _refusal(error: str, obj: Mapping[str, object], schema: _Schema) -> ProtocolError:
    """The ProtocolError for msgspec's refusal (``error``) of one field of ``obj``."""
    frame_id = _frame_id(obj)
    at = _AT.search(error)
    if at is None:  # not about one field: an invariant that raised TypeError/ValueError
        return ProtocolError(f"invalid message: {error}", reason="bad_value", frame_id=frame_id)
    field, index = at[1], at[2]
    value: Any = obj.get(field)
    members = schema.enums.get(field)
    if index is not None:
        field, value = f"{field}[]", value[int(index)]
    detail = error[: at.start()]
    if ", got `" in detail:  # "Expected `int | null`, got `str`"
        expected, got = re.findall(r"`([^`]*)`", detail)[:2]
        expected = expected.removesuffix(" | null")
        return ProtocolError(
            f"field {field!r}: expected {_EXPECTED.get(expected, expected)}, "
            f"got {_GOT.get(got, got)}",
            reason="wrong_type",
            frame_id=frame_id,
        )
    if " of length " in detail:  # "Expected `str` of length <= 4096"
        what = (
            f"string of {len(value)} chars is too long"
            if isinstance(value, str)
            else (f"{len(value)} items is more than {MAX_ARRAY_ITEMS}")
        )
        return ProtocolError(f"field {field!r}: {what}", reason="oversize", frame_id=frame_id)
    if members is not None:  # "Invalid enum value 'png'"
        allowed = ", ".join(str(m.value) for m in members)
        detail = f"{value!r} is not one of {allowed}"
    elif isinstance(value, float) and not math.isfinite(value):
        detail = f"{value!r} is not a finite number"
    return ProtocolError(f"field {field!r}: {detail}", reason="bad_value", frame_id=frame_id)


def _frame_id(obj: Mapping[str, object]) -> str | None:
    # Errors carry the frame id so the sender can match them, but only an id that is
    # itself valid: an error reply must never fail to build.
    return safe_id(obj.get("frame_id"))
