"""MessagePack framing and strict, type-driven validation shared by every envelope.

Each envelope is a frozen dataclass; its type hints are the schema. Decoding checks the
outer map (schema version, message type, no unknown keys) and then every field against
its declared type, so a bad message fails here with a :class:`ProtocolError` that says
which field is wrong, before any code acts on it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Self, TypeVar

import msgpack

from pipeline.errors import ProtocolError
from pipeline.protocol._checks import safe_id
from pipeline.protocol._fastpath import FastDecoder, build_fast_decoder

SCHEMA_VERSION = 1
"""Wire schema version; bumped on any incompatible change to any envelope."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Hard ceiling on an encoded message: anything bigger is refused before unpacking."""

MAX_STR_CHARS = 4096
MAX_ARRAY_ITEMS = 1024

_VERSION_KEY = "v"
_TYPE_KEY = "t"


class Envelope(Protocol):
    """What every wire type provides (used for typing the generic helpers)."""

    MESSAGE_TYPE: ClassVar[str]


E = TypeVar("E", bound=Envelope)


class WireMessage:
    """Base of every envelope: ``to_bytes()`` and a strict ``from_bytes()``.

    Subclasses are frozen dataclasses that set ``MESSAGE_TYPE`` and ``MAX_BYTES``.
    """

    __slots__ = ()
    MESSAGE_TYPE: ClassVar[str]
    MAX_BYTES: ClassVar[int]

    def to_bytes(self) -> bytes:
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Self:
        """Decode and validate; raises :class:`ProtocolError` on anything wrong."""
        return decode_as(cls, unpack_map(data, max_bytes=cls.MAX_BYTES))


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def _required_fields(cls: type) -> frozenset[str]:
    return frozenset(
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _bad_type(field: str, expected: str, value: object, frame_id: str | None) -> ProtocolError:
    return ProtocolError(
        f"field {field!r}: expected {expected}, got {type(value).__name__}",
        reason="wrong_type",
        frame_id=frame_id,
    )


Checker = typing.Callable[[object, str, "str | None"], object]


@functools.cache
def _checker(tp: Any) -> Checker:
    """A function that checks a value against the declared type ``tp`` and returns it in
    Python form. Built once per type: decoding is on every frame's hot path, and
    inspecting type hints per field per message cost more than MessagePack itself."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
        (inner_type,) = [m for m in members if m is not type(None)]
        inner = _checker(inner_type)
        optional = type(None) in members

        def union(value: object, field: str, frame_id: str | None) -> object:
            if value is None and optional:
                return None
            return inner(value, field, frame_id)

        return union
    if origin is tuple:
        item = _checker(typing.get_args(tp)[0])

        def array(value: object, field: str, frame_id: str | None) -> object:
            if not isinstance(value, (tuple, list)):
                raise _bad_type(field, "array", value, frame_id)
            if len(value) > MAX_ARRAY_ITEMS:
                raise ProtocolError(
                    f"field {field!r}: {len(value)} items is more than {MAX_ARRAY_ITEMS}",
                    reason="oversize",
                    frame_id=frame_id,
                )
            if item is _check_int and all(type(v) is int for v in value):
                return tuple(value)  # the common shape: skip a call per item
            name = f"{field}[]"
            return tuple(item(v, name, frame_id) for v in value)

        return array
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return functools.partial(_check_enum, {m.value: m for m in tp})
    simple = _SIMPLE.get(tp)
    if simple is None:
        raise TypeError(f"unsupported schema type {_type_name(tp)}")
    return simple


def _check_enum(
    members: dict[object, enum.Enum], value: object, field: str, frame_id: str | None
) -> object:
    if not isinstance(value, str):
        raise _bad_type(field, "string", value, frame_id)
    member = members.get(value)
    if member is None:
        allowed = ", ".join(map(str, members))
        raise ProtocolError(
            f"field {field!r}: {value!r} is not one of {allowed}",
            reason="bad_value",
            frame_id=frame_id,
        )
    return member


def _check_bool(value: object, field: str, frame_id: str | None) -> object:
    if not isinstance(value, bool):
        raise _bad_type(field, "bool", value, frame_id)
    return value


def _check_int(value: object, field: str, frame_id: str | None) -> object:
    if type(value) is int:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad_type(field, "int", value, frame_id)
    return value


def _check_float(value: object, field: str, frame_id: str | None) -> object:
    if type(value) is float and math.isfinite(value):
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad_type(field, "float", value, frame_id)
    if not math.isfinite(value):
        raise ProtocolError(
            f"field {field!r}: {value!r} is not a finite number",
            reason="bad_value",
            frame_id=frame_id,
        )
    return float(value)


def _check_str(value: object, field: str, frame_id: str | None) -> object:
    if type(value) is str and len(value) <= MAX_STR_CHARS:
        return value
    if not isinstance(value, str):
        raise _bad_type(field, "string", value, frame_id)
    if len(value) > MAX_STR_CHARS:
        raise ProtocolError(
            f"field {field!r}: string of {len(value)} chars is too long",
            reason="oversize",
            frame_id=frame_id,
        )
    return value


def _check_bytes(value: object, field: str, frame_id: str | None) -> object:
    if not isinstance(value, bytes):
        raise _bad_type(field, "binary", value, frame_id)
    return value


_SIMPLE: dict[Any, Checker] = {
    bool: _check_bool,
    int: _check_int,
    float: _check_float,
    str: _check_str,
    bytes: _check_bytes,
}


@functools.cache
def _allowed_keys(cls: type) -> frozenset[str]:
    return frozenset(_field_types(cls)) | {_VERSION_KEY, _TYPE_KEY}


@functools.cache
def _field_checkers(cls: type) -> tuple[tuple[str, Checker], ...]:
    return tuple((name, _checker(tp)) for name, tp in _field_types(cls).items())


def _check_encodable(tp: Any) -> None:
    """Every enum of the schema is a StrEnum: MessagePack packs it as its value, as it
    packs tuples as arrays, so encoding needs no per-field conversion (it is on every
    frame's and every reply's hot path). Decoding accepts enum values as strings only."""
    for arg in typing.get_args(tp):
        _check_encodable(arg)
    if isinstance(tp, type) and issubclass(tp, enum.Enum) and not issubclass(tp, str):
        raise TypeError(f"schema enum {tp.__name__} must be a StrEnum")


@functools.cache
def _field_names(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, left out when None) for each field of ``cls``."""
    for tp in _field_types(cls).values():
        _check_encodable(tp)
    return tuple((f.name, f.default is None) for f in dataclasses.fields(cls))


def encode(message: Envelope) -> bytes:
    """Encode a wire dataclass as a MessagePack map with version and type keys.

    An optional field at its default (None) is left out: the decoder reads a missing
    one as None, and a field added later to the schema reaches an older receiver only
    in the messages that use it (which it refuses by name), never in every message."""
    packed = msgpack.packb(message_body(message), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def message_body(message: Envelope) -> dict[str, object]:
    """The map :func:`encode` packs: version and type keys, then the fields."""
    body: dict[str, object] = {_VERSION_KEY: SCHEMA_VERSION, _TYPE_KEY: message.MESSAGE_TYPE}
    for name, optional in _field_names(type(message)):
        value = getattr(message, name)
        if value is not None or not optional:
            body[name] = value
    return body


def unpack_map(data: bytes | bytearray | memoryview, *, max_bytes: int) -> dict[str, object]:
    """Unpack ``data`` as one MessagePack map with string keys and a known version."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}", reason="not_msgpack")
    if len(data) > max_bytes:
        raise ProtocolError(
            f"message of {len(data)} bytes exceeds the limit of {max_bytes}", reason="oversize"
        )
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=False,
            strict_map_key=True,
            max_ext_len=0,
            max_str_len=MAX_STR_CHARS * 4,
            max_array_len=MAX_ARRAY_ITEMS,
            max_map_len=64,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # msgpack signals truncation, trailing bytes, bad UTF-8, ext types and limits
        # with these; all of them mean "not one of our messages".
        raise ProtocolError(f"not a MessagePack message: {exc}", reason="not_msgpack") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"expected a MessagePack map, got {type(obj).__name__}", reason="not_a_map"
        )
    version = obj.get(_VERSION_KEY)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"unsupported schema version {version!r} (this build speaks {SCHEMA_VERSION})",
            reason="bad_version",
        )
    return obj


def message_type(obj: Mapping[str, object]) -> str:
    kind = obj.get(_TYPE_KEY)
    if not isinstance(kind, str):
        raise ProtocolError("missing or non-string message type 't'", reason="missing_field")
    return kind


def decode_as(cls: type[E], obj: Mapping[str, object]) -> E:
    """Validate an unpacked map against ``cls`` and build it."""
    kind = message_type(obj)
    if kind != cls.MESSAGE_TYPE:
        raise ProtocolError(
            f"expected a {cls.MESSAGE_TYPE!r} message, got {kind!r}",
            reason="wrong_message_type",
            frame_id=_frame_id(obj),
        )
    fast = _fast_decoder(cls)
    if fast is not None and (message := fast(obj)) is not None:
        return typing.cast(E, message)
    return _decode_checked(cls, obj)


def _decode_checked(cls: type[E], obj: Mapping[str, object]) -> E:
    """:func:`decode_as` field by field: the precise error, or a value converted to its
    declared type (an int where a float is declared)."""
    kind = message_type(obj)
    keys = obj.keys()
    unknown = [] if keys <= _allowed_keys(cls) else sorted(keys - _allowed_keys(cls))
    if unknown:
        raise ProtocolError(
            f"unknown field(s) {', '.join(map(repr, unknown))} in {kind!r} message",
            reason="unknown_field",
            frame_id=_frame_id(obj),
        )
    missing = [] if _required_fields(cls) <= keys else sorted(_required_fields(cls) - keys)
    if missing:
        raise ProtocolError(
            f"missing field(s) {', '.join(map(repr, missing))} in {kind!r} message",
            reason="missing_field",
            frame_id=_frame_id(obj),
        )
    try:
        kwargs = {
            name: check(obj[name], name, None)
            for name, check in _field_checkers(cls)
            if name in obj
        }
    except ProtocolError as exc:
        # The frame id is looked up only when something is wrong: valid messages are
        # the hot path.
        exc.frame_id = _frame_id(obj)
        raise
    return cls(**kwargs)


@functools.cache
def _fast_decoder(cls: type) -> FastDecoder | None:
    return build_fast_decoder(
        cls,
        _field_types(cls),
        _required_fields(cls),
        envelope_keys=len((_VERSION_KEY, _TYPE_KEY)),
        max_str_chars=MAX_STR_CHARS,
        max_array_items=MAX_ARRAY_ITEMS,
    )


def _frame_id(obj: Mapping[str, object]) -> str | None:
    # Errors carry the frame id so the sender can match them, but only an id that is
    # itself valid: an error reply must never fail to build.
    return safe_id(obj.get("frame_id"))
