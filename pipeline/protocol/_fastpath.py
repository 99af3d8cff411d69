"""A straight-line decoder per envelope type, for the messages that are exactly right.

``_wire.decode_as`` checks every field with a checker function built from the type
hints: one or two Python calls per field, ~3 us of a FrameRequest's ~12 us decode,
and it runs for every frame on the worker and every reply on the edge. This module
writes, once per type, a function that does the same checks inline (``type(v) is
int``, a length bound, an enum lookup) and builds the message. It accepts only what
the checkers would return unchanged; on anything else (a wrong or missing field, an
unknown key, an int where a float is declared) it returns ``None`` and the caller runs
the checkers, which raise the precise :class:`ProtocolError` or convert the value. So
every message decodes to what it decoded to before, only sooner
(``.venv/bin/python bench/wire.py``; tests/test_protocol_fastpath.py compares the two).

Generated source, as :mod:`dataclasses` does for ``__init__``: a loop over field
descriptors would pay the per-field calls this exists to avoid.
"""

from __future__ import annotations

import enum
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FastDecoder", "build_fast_decoder"]

FastDecoder = Callable[[Mapping[str, object]], Any]
"""Returns the built message, or ``None`` when the slow path must decide."""

_SCALAR_TESTS = {
    str: "type({v}) is str and len({v}) <= MAX_STR",
    int: "type({v}) is int",
    float: "type({v}) is float and isfinite({v})",
    bool: "type({v}) is bool",
    bytes: "type({v}) is bytes",
}
_ITEM_TESTS = {
    int: "type({v}) is tuple and len({v}) <= MAX_ITEMS and set(map(type, {v})) <= INT",
    float: (
        "type({v}) is tuple and len({v}) <= MAX_ITEMS and set(map(type, {v})) <= FLOAT"
        " and all(map(isfinite, {v}))"
    ),
    bytes: "type({v}) is tuple and len({v}) <= MAX_ITEMS and set(map(type, {v})) <= BYTES",
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
        inner = [m for m in members if m is not type(None)]
        if len(inner) == 1 and type(None) in members:
            return inner[0], True
    return tp, False


def _field_lines(
    index: int, name: str, tp: Any, required: bool, env: dict[str, object]
) -> list[str] | None:
    """Source lines that leave field ``name`` checked in ``f{index}``, or None when its
    type has no inline test (the type then always takes the slow path)."""
    v = f"f{index}"
    inner, optional = _unwrap_optional(tp)
    if isinstance(inner, type) and issubclass(inner, enum.Enum):
        members = f"MEMBERS{index}"
        env[members] = {m.value: m for m in inner}
        test = [
            f"if type({v}) is not str: return None",
            f"{v} = {members}.get({v})",
            f"if {v} is None: return None",
        ]
    elif inner in _SCALAR_TESTS:
        test = [f"if not ({_SCALAR_TESTS[inner].format(v=v)}): return None"]
    elif typing.get_origin(inner) is tuple and typing.get_args(inner)[1:] == (...,):
        item = typing.get_args(inner)[0]
        if item not in _ITEM_TESTS:
            return None
        test = [f"if not ({_ITEM_TESTS[item].format(v=v)}): return None"]
    else:
        return None
    if required:
        return [f"{v} = obj.get({name!r}, MISSING)", f"if {v} is MISSING: return None", *test]
    if not optional:
        return None  # a non-None default: not on a hot path, the checkers handle it
    return [
        f"{v} = obj.get({name!r}, MISSING)",
        f"if {v} is MISSING: {v} = None",
        "else:",
        "    present += 1",
        f"    if {v} is not None:",
        *(f"        {line}" for line in test),
    ]


def build_fast_decoder(
    cls: type,
    field_types: Mapping[str, Any],
    required: frozenset[str],
    *,
    envelope_keys: int,
    max_str_chars: int,
    max_array_items: int,
) -> FastDecoder | None:
    """A decoder for ``cls`` (see the module docstring), or ``None`` if one of its field
    types has no inline test. ``envelope_keys``: keys of the map beside the fields."""
    env: dict[str, object] = {
        "CLS": cls,
        "MISSING": object(),
        "MAX_STR": max_str_chars,
        "MAX_ITEMS": max_array_items,
        "INT": frozenset({int}),
        "FLOAT": frozenset({float}),
        "BYTES": frozenset({bytes}),
        "isfinite": math.isfinite,
    }
    body = [f"present = {envelope_keys + len(required)}"]
    for index, (name, tp) in enumerate(field_types.items()):
        lines = _field_lines(index, name, tp, name in required, env)
        if lines is None:
            return None
        body += lines
    body.append("if len(obj) != present: return None")  # an unknown key
    arguments = ", ".join(f"{name}=f{i}" for i, name in enumerate(field_types))
    body.append(f"return CLS({arguments})")
    source = "def decode(obj):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, f"<fast decoder of {cls.__name__}>", "exec"), env)  # noqa: S102 - our own source
    decoder = env["decode"]
    assert callable(decoder)
    return decoder
