"""User-space network emulation: a shaping TCP proxy between an edge and the broker.

``tc qdisc ... netem`` needs root and a kernel module; this needs neither. Put a
:class:`ShapingProxy` in front of the broker and point the edge at its ``url``: each
direction becomes a link with a rate, a one-way delay, jitter and scheduled outages,
described by a :class:`LinkProfile` (a preset such as ``"3g"`` or a spec such as
``"rate=2mbit,delay=40ms,jitter=5ms"``). See docs/network-emulation.md.
"""

from __future__ import annotations

from camoffload.netem.presets import PRESETS
from camoffload.netem.profile import LinkDirection, LinkProfile, Outage, OutageMode
from camoffload.netem.proxy import ProxyStats, ShapingProxy

__all__ = [
    "PRESETS",
    "LinkDirection",
    "LinkProfile",
    "Outage",
    "OutageMode",
    "ProxyStats",
    "ShapingProxy",
]
