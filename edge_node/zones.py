"""Zones: named regions of the frame an object can be in, as in Frigate.

``edge.zones`` names polygons in the motion mask's syntax, ``name:`` before each::

    door: 0.40,0.30;0.60,0.30;0.60,0.70;0.40,0.70 | yard: 0,0.6;1,0.6;1,1;0,1

An object is in a zone while the bottom centre of its box (where a person's feet or a
car's wheels touch the ground) is inside the polygon: the part of the object that says
where it stands, whatever the camera's angle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge_node.motion import parse_polygon
from pipeline.detection import Box
from pipeline.errors import ConfigError
from pipeline.topics import validate_level

__all__ = ["Zone", "parse_zones", "zones_of"]


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    polygon: npt.NDArray[np.float32]  # (n, 2) points in 0..1

    def contains(self, box: Box) -> bool:
        x1, _, x2, y2 = box
        foot = ((x1 + x2) / 2, y2)
        return cv2.pointPolygonTest(self.polygon, foot, measureDist=False) >= 0


def parse_zones(spec: str) -> tuple[Zone, ...]:
    """``edge.zones`` as zones; :class:`ConfigError` saying which part is wrong."""
    zones: dict[str, Zone] = {}
    for part in spec.split("|"):
        name, colon, points = part.partition(":")
        name = name.strip()
        if not colon or not name:
            raise ConfigError(
                f"zone {part.strip()[:40]!r} needs a name: 'door: x,y;x,y;x,y'", key="edge.zones"
            )
        validate_level(name, "edge.zones name")  # it becomes a topic level
        if name in zones:
            raise ConfigError(f"zone {name!r} is named twice", key="edge.zones")
        polygon = parse_polygon(points, f"zone {name!r}").astype(np.float32)
        zones[name] = Zone(name, polygon)
    return tuple(zones.values())


def zones_of(box: Box, zones: Iterable[Zone]) -> tuple[str, ...]:
    return tuple(zone.name for zone in zones if zone.contains(box))
