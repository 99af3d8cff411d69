"""What an emulated link does: rate, delay and jitter each way, and when it goes down.

A :class:`LinkProfile` is a frozen value: build one directly, from a preset
(:meth:`LinkProfile.preset`; the table is :mod:`camoffload.netem.presets`) or from the
short text form used on the command line and in TOML files (:meth:`LinkProfile.parse`)::

    3g                                   a preset
    rate=2mbit,delay=40ms,jitter=5ms     both directions alike
    up=1mbit,down=10mbit,rtt=80ms        asymmetric rates, delay split evenly
    4g,outage=10s+5s,outage_mode=reset   a preset, then keys that override it

Keys (comma separated, each at most once, ``outage`` repeatable):

======================== ===================================================================
``rate``                 both directions' rate: ``768kbit``, ``2mbit``, ``1gbit``,
                         ``unlimited``
``up`` / ``down``        one direction's rate (uplink: edge to broker)
``delay``                one-way delay, both directions: ``40ms``, ``0.2s``, ``500us``
``rtt``                  round-trip time, split evenly into the two one-way delays
``up_delay`` /           one direction's one-way delay
``down_delay``
``jitter``               one-way jitter, both directions; each chunk's delay is drawn
                         uniformly from ``[delay - jitter, delay + jitter]``
``up_jitter`` /          one direction's jitter
``down_jitter``
``loss``                 packet loss, both directions: ``2%`` or ``0.02``. TCP hides loss
                         as a retransmission stall: a lost chunk, and everything behind
                         it, arrives one retransmission timeout late (200 ms, doubling
                         while the retransmission is lost too, at most 3.2 s)
``up_loss`` /            one direction's loss
``down_loss``
``outage``               ``START+DURATION`` after the proxy starts: ``10s+5s``
``outage_mode``          ``stall`` (default): bytes are held until the outage ends, as when
                         a cable is pulled while TCP retransmits; ``reset``: every
                         connection is reset and new ones are refused until it ends
======================== ===================================================================

Rates are in bits per second with SI prefixes (``1mbit`` = 1,000,000 bit/s). ``kbps`` and
``mbps`` are refused: ``tc`` reads them as bytes per second, most people as bits.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal, get_args

from camoffload.netem._units import (
    fmt_loss,
    fmt_rate,
    fmt_time,
    human_rate,
    parse_loss,
    parse_rate,
    parse_time,
)
from pipeline.errors import ConfigError

__all__ = ["LinkDirection", "LinkProfile", "Outage", "OutageMode"]

OutageMode = Literal["stall", "reset"]

MIN_RATE_BPS = 1_000.0
"""Below 1 kbit/s a link is down, not slow: model that with an outage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkDirection:
    """One direction of a link: serialisation rate, one-way delay and its jitter.

    ``rate_bps`` is in bit/s (``None``: unlimited); ``delay_s`` and ``jitter_s`` in
    seconds. Each chunk's delay is drawn uniformly from ``[delay_s - jitter_s, delay_s +
    jitter_s]``, so ``jitter_s`` may not exceed ``delay_s`` (nothing arrives before it
    was sent, and clamping at zero would skew the distribution).
    """

    rate_bps: float | None = None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0  # the chance a chunk is lost and must be retransmitted

    def __post_init__(self) -> None:
        if not (math.isfinite(self.loss) and 0 <= self.loss < 1):
            raise ConfigError(f"loss must be in [0, 1), got {self.loss!r}", key="loss")
        if self.rate_bps is not None and not (
            math.isfinite(self.rate_bps) and self.rate_bps >= MIN_RATE_BPS
        ):
            raise ConfigError(
                f"rate must be at least 1kbit (use an outage for a dead link), got "
                f"{self.rate_bps!r} bit/s",
                key="rate",
            )
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ConfigError(f"delay must be >= 0 s, got {self.delay_s!r}", key="delay")
        if not (math.isfinite(self.jitter_s) and self.jitter_s >= 0):
            raise ConfigError(f"jitter must be >= 0 s, got {self.jitter_s!r}", key="jitter")
        if self.jitter_s > self.delay_s:
            raise ConfigError(
                f"jitter ({fmt_time(self.jitter_s)}) must not exceed the delay "
                f"({fmt_time(self.delay_s)}): each delay is drawn from "
                "[delay - jitter, delay + jitter] and nothing arrives before it is sent",
                key="jitter",
            )


@dataclass(frozen=True, slots=True)
class Outage:
    """The link is down from ``start_s`` for ``duration_s`` (seconds after proxy start)."""

    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ConfigError(f"outage start must be >= 0 s, got {self.start_s!r}", key="outage")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(
                f"outage duration must be > 0 s, got {self.duration_s!r}", key="outage"
            )

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkProfile:
    """An emulated link: ``uplink`` (edge to broker) and ``downlink`` (broker to edge),
    plus outages on a schedule relative to the proxy's start.

    ``outages`` is kept sorted by start; overlapping outages are refused. ``name`` is the
    preset's name for an unmodified preset, else ``None``.
    """

    uplink: LinkDirection = field(default_factory=LinkDirection)
    downlink: LinkDirection = field(default_factory=LinkDirection)
    outages: tuple[Outage, ...] = ()
    outage_mode: OutageMode = "stall"
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.outage_mode not in get_args(OutageMode):
            raise ConfigError(
                f"outage_mode must be stall or reset, got {self.outage_mode!r}",
                key="outage_mode",
            )
        ordered = tuple(sorted(self.outages, key=lambda o: o.start_s))
        for before, after in itertools.pairwise(ordered):
            if after.start_s < before.end_s:
                raise ConfigError(
                    f"outages {_fmt_outage(before)} and {_fmt_outage(after)} overlap",
                    key="outage",
                )
        object.__setattr__(self, "outages", ordered)  # frozen: normalise once, here

    @property
    def rtt_s(self) -> float:
        """The round-trip propagation time (both one-way delays, no jitter, no queueing)."""
        return self.uplink.delay_s + self.downlink.delay_s

    @classmethod
    def preset(cls, name: str) -> LinkProfile:
        """The preset called ``name`` (case-insensitive); see :data:`PRESETS`."""
        from camoffload.netem.presets import PRESETS  # built from this class: no cycle

        try:
            return PRESETS[name.strip().lower()]
        except KeyError:
            raise ConfigError(
                f"unknown link preset {name!r}; known: {', '.join(PRESETS)}", key="profile"
            ) from None

    @classmethod
    def parse(cls, text: str) -> LinkProfile:
        """A profile from its text form (see the module docstring), e.g.
        ``"rate=2mbit,delay=40ms,jitter=5ms"`` or ``"3g,outage=10s+5s"``."""
        items = [item.strip() for item in text.split(",")]
        if not any(items):
            raise ConfigError("empty link profile: give a preset name or key=value pairs")
        base = cls()
        if items and "=" not in items[0]:
            base = cls.preset(items.pop(0))
        if not items:
            return base
        return _apply(base, items)

    def spec(self) -> str:
        """The text form, which :meth:`parse` reads back to an equal profile."""
        parts: list[str] = []
        up, down = self.uplink, self.downlink
        if up.rate_bps == down.rate_bps:
            if up.rate_bps is not None:
                parts.append(f"rate={fmt_rate(up.rate_bps)}")
        else:
            parts.append(f"up={fmt_rate(up.rate_bps)}")
            parts.append(f"down={fmt_rate(down.rate_bps)}")
        for key, a, b in (
            ("delay", up.delay_s, down.delay_s),
            ("jitter", up.jitter_s, down.jitter_s),
            ("loss", up.loss, down.loss),
        ):
            if a == b:
                if a:
                    parts.append(f"{key}={_formatted(key, a)}")
            else:
                parts.append(f"up_{key}={_formatted(key, a)}")
                parts.append(f"down_{key}={_formatted(key, b)}")
        parts.extend(f"outage={_fmt_outage(o)}" for o in self.outages)
        if self.outage_mode != "stall":
            parts.append(f"outage_mode={self.outage_mode}")
        return ",".join(parts) or "rate=unlimited"

    def describe(self) -> str:
        """One line for reports, e.g. ``3g: up 768 kbit/s 75 ms±10 ms, down ...``."""

        def one(d: LinkDirection) -> str:
            rate = "unlimited" if d.rate_bps is None else human_rate(d.rate_bps)
            delay = fmt_time(d.delay_s, space=True)
            if d.jitter_s:
                delay += f" ±{fmt_time(d.jitter_s, space=True)}"
            loss = f", {d.loss:.1%} loss" if d.loss else ""
            return f"{rate}, {delay}{loss}"

        text = (
            f"up {one(self.uplink)}; down {one(self.downlink)}; "
            f"RTT {fmt_time(self.rtt_s, space=True)}"
        )
        if self.outages:
            spans = ", ".join(_fmt_outage(o) for o in self.outages)
            text += f"; outages ({self.outage_mode}) {spans}"
        return f"{self.name}: {text}" if self.name else text


def _apply(base: LinkProfile, items: list[str]) -> LinkProfile:
    seen: dict[str, str] = {}
    outages: list[Outage] = []
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        key = key.lower()
        if not sep or not key or not value:
            raise ConfigError(f"link profile: {item!r} is not KEY=VALUE", key=key or None)
        if key not in _KEYS:
            raise ConfigError(
                f"link profile: unknown key {key!r}; known: {', '.join(_KEYS)}", key=key
            )
        if key == "outage":
            outages.append(_parse_outage(value))
            continue
        if key in seen:
            raise ConfigError(f"link profile: {key} is given twice", key=key)
        seen[key] = value
    for wide, narrow in (
        ("rate", ("up", "down")),
        ("delay", ("up_delay", "down_delay", "rtt")),
        ("rtt", ("up_delay", "down_delay")),
        ("jitter", ("up_jitter", "down_jitter")),
        ("loss", ("up_loss", "down_loss")),
    ):
        both = [k for k in narrow if k in seen]
        if wide in seen and both:
            raise ConfigError(f"link profile: give {wide} or {both[0]}, not both", key=wide)

    up = dataclasses.asdict(base.uplink)
    down = dataclasses.asdict(base.downlink)
    for key, value in seen.items():
        if key in ("rate", "up", "down"):
            rate = parse_rate(value, key)
            for d in _sides(key, up, down):
                d["rate_bps"] = rate
        elif key == "rtt":
            up["delay_s"] = down["delay_s"] = parse_time(value, key) / 2
        elif key.endswith("delay"):
            for d in _sides(key, up, down):
                d["delay_s"] = parse_time(value, key)
        elif key.endswith("jitter"):
            for d in _sides(key, up, down):
                d["jitter_s"] = parse_time(value, key)
        elif key.endswith("loss"):
            for d in _sides(key, up, down):
                d["loss"] = parse_loss(value, key)
    mode = seen.get("outage_mode", base.outage_mode).lower()
    if mode not in get_args(OutageMode):
        raise ConfigError(f"outage_mode must be stall or reset, got {mode!r}", key="outage_mode")
    return LinkProfile(
        uplink=LinkDirection(**up),
        downlink=LinkDirection(**down),
        outages=(*base.outages, *outages),
        outage_mode=mode,  # type: ignore[arg-type]  # checked just above
    )


_KEYS = (
    "rate", "up", "down", "delay", "rtt", "up_delay", "down_delay",
    "jitter", "up_jitter", "down_jitter", "loss", "up_loss", "down_loss",
    "outage", "outage_mode",
)  # fmt: skip


def _formatted(key: str, value: float) -> str:
    return fmt_loss(value) if key == "loss" else fmt_time(value)


def _sides(key: str, up: dict[str, object], down: dict[str, object]) -> list[dict[str, object]]:
    if key.startswith("up"):
        return [up]
    if key.startswith("down"):
        return [down]
    return [up, down]


def _parse_outage(value: str) -> Outage:
    start, sep, duration = value.partition("+")
    if not sep:
        raise ConfigError(
            f"link profile: outage={value!r} is not START+DURATION, e.g. 10s+5s", key="outage"
        )
    return Outage(parse_time(start, "outage"), parse_time(duration, "outage"))


def _fmt_outage(outage: Outage) -> str:
    return f"{fmt_time(outage.start_s)}+{fmt_time(outage.duration_s)}"
