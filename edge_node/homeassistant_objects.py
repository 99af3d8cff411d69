"""Home Assistant discovery for a detecting edge: what it sees and what switches it.

Per watched label (people, vehicles, and whatever ``edge.detect_classes`` adds):

* ``binary_sensor`` occupancy: ON while at least one such object is in view, read
  from the retained count on ``{p}/counts/{edge_id}/{label}``;
* ``sensor``: that count;
* ``camera``: the retained snapshot JPEG on ``{p}/snapshots/{edge_id}/{label}``.

Per zone the user drew (``edge.zones``) and watched label, an occupancy ``binary_sensor``
and a count ``sensor`` read from ``{p}/zones/{edge_id}/{zone}/{label}``, as Frigate has
per zone.

Per edge, on the control topics (:mod:`edge_node.controls`):

* ``switch`` offloading: ``{p}/control/{edge_id}/offload/set`` ON/OFF, its ``/state``;
* ``select`` the policy: ``.../policy/set``, its ``/state``.

All belong to the edge's device of :mod:`edge_node.homeassistant` and share its
availability (the JSON state's ``online``). Configs are retained. When a control
changes the labels watched, the entities of the labels dropped are removed (an empty
retained config) and those of the labels added appear. This follows Frigate's
entities (occupancy, count and camera per object; switches per feature).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from edge_node.homeassistant import DEFAULT_DISCOVERY_PREFIX, ha_state_topic
from pipeline.topics import Topics, ha_node_id

__all__ = ["POLICIES", "object_discovery", "object_removal"]

POLICIES = ("cloud-only", "local-only", "threshold")
_UNSAFE = re.compile(r"[^a-z0-9]+")


def _object_id(label: str) -> str:
    return _UNSAFE.sub("_", label.lower()).strip("_") or "object"


def _label_entities(label: str, zones: Iterable[str]) -> list[tuple[str, str]]:
    """(component, object id) of one label's entities."""
    key = _object_id(label)
    entities = [("binary_sensor", f"{key}_occupancy"), ("sensor", f"{key}_count"), ("camera", key)]
    for zone in zones:
        zone_key = f"{_object_id(zone)}_{key}"
        entities += [("binary_sensor", f"{zone_key}_occupancy"), ("sensor", f"{zone_key}_count")]
    return entities


def _occupancy_and_count(
    key: str, name: str, state_topic: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """An occupancy binary sensor and a count sensor on one retained count."""
    return [
        ("binary_sensor", f"{key}_occupancy", {
            "name": f"{name} occupancy", "device_class": "occupancy",
            "state_topic": state_topic,
            "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
        }),
        ("sensor", f"{key}_count", {
            "name": f"{name} count", "state_topic": state_topic,
            "unit_of_measurement": "objects", "state_class": "measurement",
        }),
    ]  # fmt: skip


_EDGE_ENTITIES = [("switch", "offload"), ("select", "policy")]


def _topic(discovery_prefix: str, component: str, edge_id: str, object_id: str) -> str:
    return f"{discovery_prefix}/{component}/{ha_node_id(edge_id)}/{object_id}/config"


def object_discovery(
    prefix: str,
    edge_id: str,
    labels: Iterable[str],
    *,
    zones: Iterable[str] = (),
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
    version: str,
) -> list[tuple[str, bytes]]:
    """One ``(topic, payload)`` config per entity; publish them retained."""
    topics = Topics(prefix)
    node_id = ha_node_id(edge_id)
    availability = ha_state_topic(prefix, edge_id)
    common: dict[str, Any] = {
        "availability_topic": availability,
        "availability_template": "{{ 'online' if value_json.online else 'offline' }}",
        "device": {"identifiers": [node_id]},  # the device discovery_messages describes
        "origin": {"name": "camoffload", "sw_version": version},
    }
    configs: list[tuple[str, str, dict[str, Any]]] = []
    zones = tuple(zones)
    for label in sorted(set(labels)):
        key = _object_id(label)
        configs += _occupancy_and_count(key, label, topics.count(edge_id, label))
        configs.append(
            ("camera", key, {"name": f"{label} snapshot", "topic": topics.snapshot(edge_id, label)})
        )
        for zone in zones:
            configs += _occupancy_and_count(
                f"{_object_id(zone)}_{key}",
                f"{zone} {label}",
                topics.zone_count(edge_id, zone, label),
            )
    configs += [
        ("switch", "offload", {
            "name": "Offloading",
            "command_topic": topics.control(edge_id, "offload", "set"),
            "state_topic": topics.control(edge_id, "offload", "state"),
            "payload_on": "ON", "payload_off": "OFF",
        }),
        ("select", "policy", {
            "name": "Offload policy", "options": list(POLICIES),
            "command_topic": topics.control(edge_id, "policy", "set"),
            "state_topic": topics.control(edge_id, "policy", "state"),
        }),
    ]  # fmt: skip
    messages = []
    for component, object_id, fields in configs:
        config = {"unique_id": f"{node_id}_{object_id}", **fields, **common}
        payload = json.dumps(config, separators=(",", ":")).encode()
        messages.append((_topic(discovery_prefix, component, edge_id, object_id), payload))
    return messages


def object_removal(
    edge_id: str,
    labels: Iterable[str],
    *,
    zones: Iterable[str] = (),
    with_controls: bool = True,
    discovery_prefix: str = DEFAULT_DISCOVERY_PREFIX,
) -> list[tuple[str, bytes]]:
    """Empty retained configs: Home Assistant deletes these labels' entities (and, with
    ``with_controls``, the switch and select)."""
    zones = tuple(zones)
    entities = [e for label in sorted(set(labels)) for e in _label_entities(label, zones)]
    if with_controls:
        entities += _EDGE_ENTITIES
    return [(_topic(discovery_prefix, c, edge_id, o), b"") for c, o in entities]
