"""Home Assistant MQTT discovery for an edge node.

Our status messages are MessagePack, which Home Assistant cannot read, so an edge with
discovery on also publishes a small JSON state and one discovery config per sensor:

============================================================  ========  ======  =====
topic                                                         payload   retain  QoS
============================================================  ========  ======  =====
``{discovery_prefix}/sensor/camoffload_{edge}/{key}/config``  config    yes     1
``{prefix}/ha/{edge_id}/state``                               JSON      no      0
============================================================  ========  ======  =====

How the edge uses it:

* after each connect, publish :func:`discovery_messages` (retained, so Home Assistant
  finds them whenever it starts);
* every few seconds, well under ``expire_after_s``, publish :func:`state_payload`
  (``online=True``); on a graceful stop, once more with ``online=False``;
* with discovery turned off, publish :func:`removal_messages` once to delete the
  sensors.

Availability comes from the state itself: ``online: false`` marks every sensor
unavailable at once, and ``expire_after`` does the same when an edge dies without a
word (power loss), so no second last will is needed. The state is not retained: after a
Home Assistant restart the sensors read unknown until the next state, seconds later,
rather than show figures from a dead edge. A ``null`` figure (no round trip in the
window) renders as ``None``, which Home Assistant's MQTT sensor reads as unknown.

Field names follow Home Assistant's MQTT sensor schema. ``default_entity_id`` is the
2025.10 replacement for ``object_id``, which is deprecated there and stops working in
2026.4; older versions drop the unknown key and name the entity from the device and
sensor names. The hardened broker's generated ACL does not list these topics: a device
identity needs write access to ``{prefix}/ha/{edge_id}/state`` and
``{discovery_prefix}/sensor/camoffload_{edge}/+/config``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from edge_node.stats import EdgeStatsSnapshot
from pipeline.errors import ConfigError
from pipeline.topics import Topics, ha_node_id

__all__ = [
    "SENSOR_KEYS",
    "discovery_messages",
    "ha_state_topic",
    "removal_messages",
    "state_payload",
]

DEFAULT_DISCOVERY_PREFIX = "homeassistant"

# Discovery topics allow only these in a node id and object id; entity ids only
# lowercase letters, digits and underscores.
_ENTITY_UNSAFE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class _Sensor:
    key: str  # the JSON key in the state, and the discovery object id
    name: str
    unit: str | None = None
    state_class: str | None = None
    device_class: str | None = None


_SENSORS = (
    _Sensor("capture_fps", "Capture rate", "fps", "measurement"),
    _Sensor("skipped_fps", "Skipped rate", "fps", "measurement"),
    _Sensor("offload_pct", "Offload share", "%", "measurement"),
    _Sensor("rtt_ms_p50", "Round trip p50", "ms", "measurement", "duration"),
    _Sensor("bytes_per_s", "Upload rate", "B/s", "measurement", "data_rate"),
    # Resets to 0 when the edge restarts; total_increasing treats a drop as a reset.
    _Sensor("decided", "Decided frames", "frames", "total_increasing"),
    _Sensor("last_decision", "Last decision"),  # text: no unit, no state class
)

SENSOR_KEYS: tuple[str, ...] = tuple(s.key for s in _SENSORS)


def ha_state_topic(prefix: str, edge_id: str) -> str:
    """Where the edge publishes its JSON state for Home Assistant."""
    return Topics(prefix).ha_state(edge_id)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def state_payload(snapshot: EdgeStatsSnapshot, *, online: bool) -> bytes:
    """The snapshot as compact JSON: the keys in :data:`SENSOR_KEYS` and a few more."""
    s = snapshot
    share = None if s.offload_share is None else s.offload_share * 100
    state: dict[str, Any] = {
        "online": online,
        # Two decimals: a motion-gated camera may decide 0.25 frames/s.
        "capture_fps": round(s.capture_fps, 2),
        "skipped_fps": round(s.skipped_fps, 2),
        "dropped_fps": round(s.dropped_fps, 2),
        "decided_fps": round(s.decided_fps, 2),
        "offload_pct": _round(share, 1),
        "rtt_ms_p50": _round(s.rtt_ms_p50, 1),
        "rtt_ms_p95": _round(s.rtt_ms_p95, 1),
        "bytes_per_s": round(s.bytes_per_s),
        "captured": s.captured,
        "decided": s.decided,
        "skipped": s.skipped,
        "dropped": s.dropped,
        "offloaded": s.offloaded,
        "bytes_sent": s.bytes_sent,
        "last_decision": s.last_decision,
    }
    return json.dumps(state, separators=(",", ":"), allow_nan=False).encode()


def _check_discovery_prefix(discovery_prefix: str) -> None:
    if not discovery_prefix or any(c in discovery_prefix for c in "+#\x00"):
        raise ConfigError(
            f"Home Assistant discovery prefix {discovery_prefix!r} must be a topic "
            "without wildcards",
            key="discovery_prefix",
        )


def _config_topic(discovery_prefix: str, edge_id: str, key: str) -> str:
    return f"{discovery_prefix}/sensor/{ha_node_id(edge_id)}/{key}/config"


def discovery_messages(
    prefix: str,
    edge_id: str,
    *,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    expire_after_s: int = 30,
    version: str,
) -> list[tuple[str, bytes]]:
    """One ``(topic, payload)`` config per sensor; publish them retained."""
    _check_discovery_prefix(discovery_prefix)
    if expire_after_s < 1:
        raise ConfigError(
            f"expire_after_s must be >= 1, got {expire_after_s}", key="expire_after_s"
        )
    state_topic = ha_state_topic(prefix, edge_id)
    node_id = ha_node_id(edge_id)
    entity_base = "camoffload_" + _ENTITY_UNSAFE.sub("_", edge_id.lower()).strip("_")
    device = {
        "identifiers": [node_id],
        "name": f"camoffload {edge_id}",
        "manufacturer": "camoffload",
        "model": "edge node",
        "sw_version": version,
    }
    messages: list[tuple[str, bytes]] = []
    for sensor in _SENSORS:
        config: dict[str, Any] = {
            "name": sensor.name,
            "unique_id": f"{node_id}_{sensor.key}",
            "default_entity_id": f"sensor.{entity_base}_{sensor.key}",
            "state_topic": state_topic,
            "value_template": f"{{{{ value_json.{sensor.key} }}}}",
            "availability_topic": state_topic,
            "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
            "expire_after": expire_after_s,
            "device": device,
            "origin": {"name": "camoffload", "sw_version": version},
        }
        if sensor.unit is not None:
            config["unit_of_measurement"] = sensor.unit
        if sensor.state_class is not None:
            config["state_class"] = sensor.state_class
        if sensor.device_class is not None:
            config["device_class"] = sensor.device_class
        payload = json.dumps(config, separators=(",", ":")).encode()
        messages.append((_config_topic(discovery_prefix, edge_id, sensor.key), payload))
    return messages


def removal_messages(
    edge_id: str, *, discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX
) -> list[tuple[str, bytes]]:
    """Empty retained payloads on every config topic: Home Assistant deletes the
    sensors, and the broker forgets the retained configs."""
    _check_discovery_prefix(discovery_prefix)
    return [(_config_topic(discovery_prefix, edge_id, s.key), b"") for s in _SENSORS]
