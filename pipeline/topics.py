"""The topic scheme of camoffload and MQTT 5 request/response helpers.

    {p}/frames/{edge_id}              edge -> workers (via $share/{group}/{p}/frames/+)
    {p}/results/{edge_id}             worker -> that edge (default reply topic)
    {p}/status/workers/{worker_id}    worker, retained, with a last-will
    {p}/status/edges/{edge_id}        edge, retained, with a last-will
    {p}/events/{edge_id}              edge: final decision per frame
    {p}/objects/{edge_id}             edge: tracked objects' new/update/end (JSON)
    {p}/snapshots/{edge_id}/{label}   edge, retained: the best JPEG of the latest object
    {p}/counts/{edge_id}/{label}      edge, retained: objects of that label in view now
    {p}/zones/{edge_id}/{zone}/{label}  edge, retained: those objects in that zone now
    {p}/control/{edge_id}/{feature}/set    dashboard, Home Assistant -> edge
    {p}/control/{edge_id}/{feature}/state  edge, retained: the feature's value now

A request names where its answer goes with the MQTT 5 *response topic* and
*correlation data* properties; a broker or client without MQTT 5 falls back to
``{p}/results/{edge_id}`` and the frame id inside the envelope.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pipeline.errors import ConfigError
from pipeline.paho_properties import new_properties

__all__ = ["ReplyTarget", "Topics", "reply_target", "request_properties", "validate_level"]

_FORBIDDEN_LEVEL_CHARS = frozenset("/+#\x00")


def validate_level(value: str, what: str) -> str:
    """Check that ``value`` can be used as one topic level (an id or a group name)."""
    if not value or len(value) > 128 or _FORBIDDEN_LEVEL_CHARS & set(value):
        raise ConfigError(
            f"{what} {value!r} must be 1-128 chars without '/', '+', '#' or NUL", key=what
        )
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    """All topic names under one prefix (``camoffload`` by default)."""

    prefix: str = "camoffload"

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        if self.prefix.startswith("$") or not all(levels):
            raise ConfigError(
                f"topic prefix {self.prefix!r} must not start with '$' or have empty levels",
                key="prefix",
            )
        for level in levels:
            validate_level(level, "prefix")

    def frames(self, edge_id: str) -> str:
        return f"{self.prefix}/frames/{validate_level(edge_id, 'edge_id')}"

    @property
    def frames_filter(self) -> str:
        """Filter over every edge's frames (a single worker, or a broker without $share)."""
        return f"{self.prefix}/frames/+"

    def shared_frames(self, group: str) -> str:
        """Shared subscription: the broker gives each frame to one worker of ``group``."""
        return f"$share/{validate_level(group, 'group')}/{self.frames_filter}"

    def results(self, edge_id: str) -> str:
        return f"{self.prefix}/results/{validate_level(edge_id, 'edge_id')}"

    def worker_status(self, worker_id: str) -> str:
        return f"{self.prefix}/status/workers/{validate_level(worker_id, 'worker_id')}"

    @property
    def worker_status_filter(self) -> str:
        return f"{self.prefix}/status/workers/+"

    def edge_status(self, edge_id: str) -> str:
        return f"{self.prefix}/status/edges/{validate_level(edge_id, 'edge_id')}"

    def events(self, edge_id: str) -> str:
        return f"{self.prefix}/events/{validate_level(edge_id, 'edge_id')}"

    def objects(self, edge_id: str) -> str:
        return f"{self.prefix}/objects/{validate_level(edge_id, 'edge_id')}"

    def snapshot(self, edge_id: str, label: str) -> str:
        edge = validate_level(edge_id, "edge_id")
        return f"{self.prefix}/snapshots/{edge}/{validate_level(label, 'label')}"

    def count(self, edge_id: str, label: str) -> str:
        edge = validate_level(edge_id, "edge_id")
        return f"{self.prefix}/counts/{edge}/{validate_level(label, 'label')}"

    def zone_count(self, edge_id: str, zone: str, label: str) -> str:
        edge = validate_level(edge_id, "edge_id")
        where = validate_level(zone, "zone")
        return f"{self.prefix}/zones/{edge}/{where}/{validate_level(label, 'label')}"

    def control_set_filter(self, edge_id: str) -> str:
        return f"{self.prefix}/control/{validate_level(edge_id, 'edge_id')}/+/set"

    def control(self, edge_id: str, feature: str, action: str) -> str:
        """``{p}/control/{edge_id}/{feature}/{action}``; action is "set" or "state"."""
        edge = validate_level(edge_id, "edge_id")
        return f"{self.prefix}/control/{edge}/{validate_level(feature, 'feature')}/{action}"

    def ha_state(self, edge_id: str) -> str:
        """An edge's JSON state for Home Assistant (the MessagePack status is unreadable
        to it)."""
        return f"{self.prefix}/ha/{validate_level(edge_id, 'edge_id')}/state"

    @property
    def ha_state_filter(self) -> str:
        return f"{self.prefix}/ha/+/state"

    def edge_of_frames_topic(self, topic: str) -> str | None:
        """The edge id of a ``{p}/frames/{edge_id}`` topic, or ``None`` if it is not one."""
        head = f"{self.prefix}/frames/"
        if not topic.startswith(head):
            return None
        edge_id = topic[len(head) :]
        if not edge_id or _FORBIDDEN_LEVEL_CHARS & set(edge_id):
            return None
        return edge_id


def _publish_properties() -> Properties:
    return new_properties(PacketTypes.PUBLISH)


def request_properties(response_topic: str, correlation: bytes | None) -> Properties:
    """PUBLISH properties of an MQTT 5 request: where to answer and what to echo back
    (nothing for a bundle, whose members name their own frames)."""
    props = _publish_properties()
    props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a worker sends its answer: a topic and, for MQTT 5, the echoed properties."""

    topic: str
    properties: Properties | None


def reply_target(
    topics: Topics, request_topic: str, request_properties: Properties | None
) -> ReplyTarget | None:
    """Pick the reply topic for a request.

    Replies go to the results topic of the edge that the request topic names. An MQTT 5
    response topic is honoured only inside that edge's own results tree
    (``{p}/results/{edge_id}`` or below): workers may write every results topic, so a
    device that could name any response topic could make a worker publish onto another
    device's results or onto worker status, past the broker's ACLs. Correlation data is
    passed back either way. ``None`` means there is nowhere to answer (a message on a
    topic we do not know).
    """
    edge_id = topics.edge_of_frames_topic(request_topic)
    if edge_id is None:
        return None
    own_results = topics.results(edge_id)
    correlation = getattr(request_properties, "CorrelationData", None)
    props = None
    if isinstance(correlation, bytes):
        props = _publish_properties()
        props.CorrelationData = correlation
    response_topic = getattr(request_properties, "ResponseTopic", None)
    if isinstance(response_topic, str) and (
        response_topic == own_results or response_topic.startswith(own_results + "/")
    ):
        return ReplyTarget(response_topic, props)
    return ReplyTarget(own_results, props)


HA_DISCOVERY_PREFIX = "homeassistant"
_HA_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def ha_node_id(edge_id: str) -> str:
    """``camoffload_{edge_id}``, made safe for a Home Assistant discovery topic. An id
    that had to change gets a short hash, so ``cam.1`` and ``cam_1`` do not collide."""
    validate_level(edge_id, "edge_id")
    safe = _HA_UNSAFE.sub("_", edge_id)
    if safe != edge_id:
        safe += "_" + hashlib.sha256(edge_id.encode()).hexdigest()[:6]
    return f"camoffload_{safe}"


def ha_discovery_filter(edge_id: str, discovery_prefix: str = HA_DISCOVERY_PREFIX) -> str:
    """Every discovery config topic of one edge's entities, of any component (sensors,
    occupancy binary sensors, cameras, the offload switch, the policy select)."""
    return f"{discovery_prefix}/+/{ha_node_id(edge_id)}/+/config"
