"""Ranges and choices, declared once in a setting's type, and how a bad value is told.

A setting's range lives in its annotation (``Annotated[float, msgspec.Meta(gt=0)]``)
and its choices in a ``Literal``. msgspec enforces both when the loader converts the
file, the environment and ``--set`` (:mod:`pipeline.config.loader`), and the JSON
Schema shows them to editors (:mod:`pipeline.config.schema`). msgspec reads a ``Meta``
only while it converts, so a section built in code or by ``dataclasses.replace`` calls
:func:`check_declared` from ``__post_init__``: the same declarations, the same words.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, TypeAlias

import msgspec
import msgspec.inspect as mi

from pipeline.errors import ConfigError

__all__ = [
    "Fraction",
    "NonNegative",
    "Port",
    "Positive",
    "PositiveInt",
    "Qos",
    "Slowdown",
    "check_declared",
    "setting_error",
]

Positive: TypeAlias = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt: TypeAlias = Annotated[int, msgspec.Meta(gt=0)]
NonNegative: TypeAlias = Annotated[float, msgspec.Meta(ge=0)]
Fraction: TypeAlias = Annotated[float, msgspec.Meta(ge=0, le=1)]
Qos: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2)]
Port: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=65535)]  # 0: any free port
# Emulating a slower device or server: each computation holds its thread this many
# times as long. Past 1000x a frame would outlive any deadline worth measuring.
Slowdown: TypeAlias = Annotated[float, msgspec.Meta(ge=1, le=1000)]

_NUMBERS = (mi.IntType, mi.FloatType)


def _bounds(t: mi.IntType | mi.FloatType) -> str:
    """``0-1``, ``> 0``, ``>= 1``, ``0, 1 or 2``: the range as messages and docs write it."""
    if isinstance(t, mi.IntType) and t.ge is not None and t.le is not None and t.le - t.ge < 4:
        *rest, last = range(t.ge, t.le + 1)  # a few integers read better as their values
        return f"{', '.join(map(str, rest))} or {last}" if rest else str(last)
    if t.ge is not None and t.le is not None:
        return f"{t.ge:g}-{t.le:g}"
    limits = [(">", t.gt), (">=", t.ge), ("<", t.lt), ("<=", t.le)]
    return " and ".join(f"{op} {limit:g}" for op, limit in limits if limit is not None)


def _wanted(t: mi.Type, *, type_error: bool) -> str | None:
    """What a value of type ``t`` must be; a range alone unless the kind was wrong."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return _wanted(members[0], type_error=type_error) if len(members) == 1 else None
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(str(v) for v in t.values)
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, _NUMBERS):
        kind = "an integer" if isinstance(t, mi.IntType) else "a number"
        bounds = _bounds(t)
        if not type_error and bounds:
            return bounds
        return f"{kind} {bounds}" if bounds else kind
    if isinstance(t, mi.StrType):
        return "a string"
    return None


def setting_error(key: str, value: object, hint: Any, detail: str) -> ConfigError:
    """The :class:`ConfigError` for one setting whose ``value`` msgspec refused.

    ``detail`` is msgspec's own text (``Expected `int`, got `str```), used to tell a
    wrong kind from a value out of range, and as the message where the declared type
    gives no better words.
    """
    want = _wanted(mi.type_info(hint), type_error=", got `" in detail)
    if want is None:
        return ConfigError(f"{key}: {detail}", key=key)
    return ConfigError(f"{key} must be {want}, got {value!r}", key=key)


def _admits(t: mi.Type, value: Any) -> bool:
    # Bounds and choices only: the kind of a value built in code is mypy's to check,
    # and numpy scalars, which msgspec refuses, compare like the numbers they are.
    if isinstance(t, mi.UnionType):
        return value is None or any(_admits(m, value) for m in t.types)
    if isinstance(t, mi.LiteralType):
        return value in t.values
    if isinstance(t, _NUMBERS):
        if value is None or isinstance(value, str):
            return False
        return (
            (t.gt is None or value > t.gt)
            and (t.ge is None or value >= t.ge)
            and (t.lt is None or value < t.lt)
            and (t.le is None or value <= t.le)
        )
    return True


def _declares(t: mi.Type) -> bool:
    return isinstance(t, mi.LiteralType) or (isinstance(t, _NUMBERS) and bool(_bounds(t)))


_Declared = tuple[tuple[str, Any, mi.Type], ...]
_DECLARED: dict[type, _Declared] = {}  # per section class, read on its first instance


def _declared(cls: type) -> _Declared:
    """The fields of ``cls`` that declare a range or a choice."""
    if cls not in _DECLARED:
        found = []
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            info = mi.type_info(hint)
            members = info.types if isinstance(info, mi.UnionType) else (info,)
            if any(_declares(m) for m in members):
                found.append((name, hint, info))
        _DECLARED[cls] = tuple(found)
    return _DECLARED[cls]


def check_declared(section: object, name: str) -> None:
    """Hold ``section`` (the dataclass of ``[name]``) to its declared ranges and choices."""
    for field, hint, info in _declared(type(section)):
        value = getattr(section, field)
        if not _admits(info, value):
            raise setting_error(f"{name}.{field}", value, hint, "out of range")
