"""Reading and writing rates (bit/s) and durations (s) in the link-spec syntax."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pipeline.errors import ConfigError

__all__ = [
    "fmt_loss",
    "fmt_rate",
    "fmt_time",
    "human_rate",
    "parse_loss",
    "parse_rate",
    "parse_time",
]

RATE_UNITS = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_UNLIMITED = ("unlimited", "inf", "none")
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)


def _number(value: str, key: str, what: str) -> tuple[float, str]:
    match = _NUMBER.match(value)
    if match is None:
        raise ConfigError(f"link profile: {key}={value!r} is not a {what}", key=key)
    return float(match.group(1)), match.group(2).lower()


def parse_rate(value: str, key: str) -> float | None:
    if value.strip().lower() in _UNLIMITED:
        return None
    number, unit = _number(value, key, "rate like 2mbit, 768kbit or unlimited")
    if unit.endswith("bps"):
        raise ConfigError(
            f"link profile: {key}={value!r} is ambiguous (tc reads {unit} as bytes per "
            f"second): write bits, e.g. {value.lower().removesuffix('bps')}bit",
            key=key,
        )
    if unit not in RATE_UNITS:
        raise ConfigError(
            f"link profile: {key}={value!r} needs a unit: bit, kbit, mbit or gbit", key=key
        )
    return number * RATE_UNITS[unit]  # LinkDirection checks the range


def parse_time(value: str, key: str) -> float:
    number, unit = _number(value, key, "duration like 40ms, 1.5s or 500us")
    if not unit and number == 0:
        return 0.0
    if unit not in TIME_UNITS:
        raise ConfigError(f"link profile: {key}={value!r} needs a unit: us, ms or s", key=key)
    return number * TIME_UNITS[unit]


def _exact(value: float, units: Mapping[str, float]) -> tuple[float, str]:
    """``value`` in the largest unit that writes it exactly (so spec() round-trips)."""
    for unit, scale in sorted(units.items(), key=lambda kv: -kv[1]):
        scaled = round(value / scale, 6)
        if scaled >= 1 and scaled * scale == value:
            return scaled, unit
    base = next(unit for unit, scale in units.items() if scale == 1.0)
    return value, base  # repr() of a float reads back exactly


def _fmt_number(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "unlimited"
    number, unit = _exact(rate, RATE_UNITS)
    return f"{_fmt_number(number)}{unit}"


def fmt_time(seconds: float, *, space: bool = False) -> str:
    if seconds == 0:
        return "0 s" if space else "0"
    number, unit = _exact(seconds, TIME_UNITS)
    return f"{_fmt_number(number)}{' ' if space else ''}{unit}"


def human_rate(rate: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if rate >= scale:
            return f"{rate / scale:g} {unit}"
    return f"{rate:g} bit/s"


def parse_loss(value: str, key: str) -> float:
    """``2%`` or ``0.02``: a chance in [0, 1)."""
    text = value.strip()
    try:
        loss = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"link profile: {key}={value!r} is not 2% or 0.02", key=key) from None
    if not (math.isfinite(loss) and 0 <= loss < 1):
        raise ConfigError(f"link profile: {key} must be in [0, 1), got {value!r}", key=key)
    return loss


def fmt_loss(loss: float) -> str:
    """``0.02`` -> ``2%``, which :func:`parse_loss` reads back."""
    return f"{loss * 100:g}%"
