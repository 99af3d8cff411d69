"""The named links of :meth:`LinkProfile.preset` and ``camoffload link --profile``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from camoffload.netem.profile import LinkProfile

__all__ = ["PRESETS"]


def _preset(name: str, spec: str) -> LinkProfile:
    return dataclasses.replace(LinkProfile.parse(spec), name=name)


PRESETS: Mapping[str, LinkProfile] = MappingProxyType(
    {
        # No shaping at all: the baseline cell of an experiment.
        "ideal": _preset("ideal", "rate=unlimited"),
        # Switched gigabit Ethernet in one building.
        "lan": _preset("lan", "rate=1gbit,rtt=500us"),
        # Fibre or a metro network to a nearby cloud region.
        "100mbit": _preset("100mbit", "rate=100mbit,rtt=10ms,jitter=1ms"),
        # Home Wi-Fi (802.11n/ac, a few rooms away, neighbours on the channel).
        "wifi": _preset("wifi", "up=30mbit,down=60mbit,rtt=20ms,jitter=5ms"),
        # LTE with decent signal: uplink well below downlink.
        "4g": _preset("4g", "up=5mbit,down=20mbit,rtt=60ms,jitter=10ms"),
        # A typical broadband uplink (cable/DSL) to a cloud region.
        "10mbit": _preset("10mbit", "rate=10mbit,rtt=40ms,jitter=2ms"),
        # HSPA 3G (close to Chrome DevTools' "Fast 3G" rates).
        "3g": _preset("3g", "up=768kbit,down=1600kbit,rtt=150ms,jitter=20ms"),
        # A constrained uplink: 1 Mbit/s each way, 100 ms RTT.
        "1mbit": _preset("1mbit", "rate=1mbit,rtt=100ms,jitter=5ms"),
        # Edge of coverage, 2G/EDGE, or a congested satellite hop.
        "slow": _preset("slow", "up=128kbit,down=384kbit,rtt=400ms,jitter=50ms"),
    }
)
"""Named links, fastest first. One-way delay is half the RTT; jitter is one-way.

========= ============ ============= ======== ================ ==================================
name      uplink       downlink      RTT      jitter (one-way) models
========= ============ ============= ======== ================ ==================================
ideal     unlimited    unlimited     0        0                no shaping (baseline)
lan       1 Gbit/s     1 Gbit/s      0.5 ms   0                switched gigabit Ethernet
100mbit   100 Mbit/s   100 Mbit/s    10 ms    1 ms             fibre / metro to a cloud region
wifi      30 Mbit/s    60 Mbit/s     20 ms    5 ms             home Wi-Fi
4g        5 Mbit/s     20 Mbit/s     60 ms    10 ms            LTE, decent signal
10mbit    10 Mbit/s    10 Mbit/s     40 ms    2 ms             broadband uplink to the cloud
3g        768 kbit/s   1.6 Mbit/s    150 ms   20 ms            HSPA
1mbit     1 Mbit/s     1 Mbit/s      100 ms   5 ms             a constrained uplink
slow      128 kbit/s   384 kbit/s    400 ms   50 ms            2G/EDGE, edge of coverage
========= ============ ============= ======== ================ ==================================
"""
