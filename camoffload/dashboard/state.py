"""What the dashboard knows: every edge and worker, a feed, the latest snapshots.

Pure and synchronous: :mod:`camoffload.dashboard.feed` hands it each MQTT message
(topic and payload), and :mod:`camoffload.dashboard.hub` asks it for the whole picture
(a browser that just connected) or for what changed since the last push. Everything is
bounded: edges and workers by count, each one's history by points, the feed by items,
snapshots by bytes. A malformed message is counted and dropped, never raised.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ProtocolError
from pipeline.protocol import EdgeStatus, Event, WorkerStatus

__all__ = ["MAX_SNAPSHOT_BYTES", "DashboardState", "TopicKind", "parse_topic"]

MAX_SNAPSHOT_BYTES = 1 << 20  # the edge's are ~30-80 kB; a bigger "JPEG" is not one of ours
HISTORY_POINTS = 600  # ten minutes of statuses at the default one a second
FEED_ITEMS = 200
MAX_NODES = 256  # edges, and workers, each: a flood of fake ids cannot grow it without limit
MAX_LABELS = 32  # snapshots and counts per edge

JSON = dict[str, Any]
TopicKind = tuple[str, str, str]  # (kind, node id, detail): ("snapshot", "door", "person")


def parse_topic(prefix: str, topic: str) -> TopicKind | None:
    """What a topic under ``prefix`` is, or None for anything the dashboard ignores."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    match parts:
        case ["status", "edges", edge]:
            return ("edge_status", edge, "")
        case ["status", "workers", worker]:
            return ("worker_status", worker, "")
        case ["events", edge]:
            return ("event", edge, "")
        case ["objects", edge]:
            return ("object", edge, "")
        case ["snapshots", edge, label]:
            return ("snapshot", edge, label)
        case ["counts", edge, label]:
            return ("count", edge, label)
        case ["control", edge, feature, "state"]:
            return ("control", edge, feature)
    return None


@dataclass(slots=True)
class _Edge:
    status: JSON = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # version, JPEG
    history: deque[list[float | None]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    fresh_points: list[list[float | None]] = field(default_factory=list)


@dataclass(slots=True)
class _Worker:
    status: JSON = field(default_factory=dict)
    history: deque[list[float]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    fresh_points: list[list[float]] = field(default_factory=list)


EDGE_SERIES = ("t", "offload_share", "rtt_ms_p50", "rtt_ms_p95", "capture_fps", "bytes_per_s")


class DashboardState:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.edges: dict[str, _Edge] = {}
        self.workers: dict[str, _Worker] = {}
        self.feed: deque[JSON] = deque(maxlen=FEED_ITEMS)
        self.rejected: dict[str, int] = {}  # reason -> messages dropped
        self._fresh_feed: list[JSON] = []
        self._dirty_edges: set[str] = set()
        self._dirty_workers: set[str] = set()
        self._snapshot_version = 0
        self.broker_connected = False
        self._broker_dirty = False

    # -- input ---------------------------------------------------------------------

    def set_broker(self, connected: bool) -> bool:
        """The dashboard's own link to the broker; whether that is news."""
        changed = connected != self.broker_connected
        self.broker_connected = connected
        self._broker_dirty |= changed
        return changed

    def apply(self, topic: str, payload: bytes) -> bool:
        """Take one message; whether it changed anything."""
        kind = parse_topic(self.prefix, topic)
        if kind is None:
            return False
        what, node, detail = kind
        try:
            return self._apply(what, node, detail, payload)
        # UnicodeDecodeError is a ValueError; RecursionError: JSON nested 100,000 deep.
        except (ProtocolError, ValueError, TypeError, RecursionError) as exc:
            reason = f"{what}: {type(exc).__name__}"
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
            return False

    def _apply(self, what: str, node: str, detail: str, payload: bytes) -> bool:
        if what == "worker_status":
            return self._worker_status(node, payload)
        if what == "event":
            return self._event(node, payload)
        if what == "object":
            return self._object(node, payload)
        if not payload:  # an emptied retained message: what it held is gone
            return self._forget(what, node, detail)
        value = _parsed(what, payload)  # before the edge exists: a bad message adds none
        edge = self._edge(node)
        if edge is None:
            return False
        if what == "edge_status":
            assert isinstance(value, dict)
            edge.status = value
            point = [value.get(k) for k in EDGE_SERIES[1:]]
            edge.history.append([value["ts"], *point])
            edge.fresh_points.append(edge.history[-1])
        else:
            per_label = _table(edge, what)
            if detail not in per_label and len(per_label) >= MAX_LABELS:
                self.rejected[f"{what}: too many"] = self.rejected.get(f"{what}: too many", 0) + 1
                return False
            if what == "snapshot":
                self._snapshot_version += 1
                value = (self._snapshot_version, value)
            per_label[detail] = value
        self._dirty_edges.add(node)
        return True

    def _forget(self, what: str, node: str, detail: str) -> bool:
        edge = self.edges.get(node)
        if edge is None:
            return False
        if what == "edge_status":  # the edge itself was removed
            del self.edges[node]
        else:
            if _table(edge, what).pop(detail, None) is None:
                return False
        self._dirty_edges.add(node)
        return True

    def _edge(self, edge_id: str) -> _Edge | None:
        if edge_id not in self.edges and len(self.edges) >= MAX_NODES:
            self.rejected["too many edges"] = self.rejected.get("too many edges", 0) + 1
            return None
        return self.edges.setdefault(edge_id, _Edge())

    def _worker_status(self, worker_id: str, payload: bytes) -> bool:
        if not payload:
            self.workers.pop(worker_id, None)
            self._dirty_workers.add(worker_id)
            return True
        if worker_id not in self.workers and len(self.workers) >= MAX_NODES:
            self.rejected["too many workers"] = self.rejected.get("too many workers", 0) + 1
            return False
        status = WorkerStatus.from_bytes(payload)
        worker = self.workers.setdefault(worker_id, _Worker())
        worker.status = {
            "id": status.worker_id, "online": status.online, "ts": status.ts,
            "received": time.time(), "device": status.device, "models": list(status.models),
            "queue_depth": status.queue_depth, "queue_capacity": status.queue_capacity,
            "mean_batch_size": status.mean_batch_size,
            "latency_ms_per_image": status.latency_ms_per_image,
            "throughput_fps": status.throughput_fps, "frames_done": status.frames_done,
            "frames_rejected": status.frames_rejected,
        }  # fmt: skip
        point = [
            status.ts,
            status.throughput_fps,
            float(status.queue_depth),
            status.mean_batch_size,
        ]
        worker.history.append(point)
        worker.fresh_points.append(point)
        self._dirty_workers.add(worker_id)
        return True

    def _event(self, edge_id: str, payload: bytes) -> bool:
        event = Event.from_bytes(payload)
        self._add_feed({
            "kind": "decision", "edge": edge_id, "ts": event.ts, "seq": event.seq,
            "decision": event.decision.value, "model": event.model,
            "latency_ms": event.latency_ms, "bytes": event.bytes_sent,
        })  # fmt: skip
        return True

    def _object(self, edge_id: str, payload: bytes) -> bool:
        message = json.loads(payload)
        after = message.get("after") if isinstance(message, dict) else None
        if not isinstance(after, dict):
            raise TypeError("an object event needs an 'after' object")
        score = after.get("top_score", after.get("score"))
        self._add_feed({
            "kind": "object", "edge": edge_id, "type": str(message.get("type", ""))[:16],
            "label": str(after.get("label", ""))[:64], "id": str(after.get("id", ""))[:64],
            "score": score if isinstance(score, int | float) else None,
            "ts": time.time(), "zones": [str(z)[:64] for z in after.get("current_zones", [])][:8],
        })  # fmt: skip
        return True

    def _add_feed(self, item: JSON) -> None:
        self.feed.append(item)
        self._fresh_feed.append(item)
        del self._fresh_feed[:-FEED_ITEMS]  # bounded even if nobody takes the changes

    # -- output --------------------------------------------------------------------

    def full(self) -> JSON:
        """Everything, for a browser that just connected."""
        return {
            "type": "full",
            "now": time.time(),
            "broker": self.broker_connected,
            "edges": {k: self._edge_view(k, e, list(e.history)) for k, e in self.edges.items()},
            "workers": {
                k: {**w.status, "points": list(w.history)} for k, w in self.workers.items()
            },
            "feed": list(self.feed),
            "rejected": dict(self.rejected),
        }

    def changes(self) -> JSON | None:
        """What changed since the last call (None: nothing); the points are new ones."""
        if not (self._dirty_edges or self._dirty_workers or self._fresh_feed or self._broker_dirty):
            return None
        edges: dict[str, JSON | None] = {}
        for edge_id in self._dirty_edges:
            edge = self.edges.get(edge_id)
            edges[edge_id] = (
                None if edge is None else self._edge_view(edge_id, edge, edge.fresh_points)
            )
            if edge is not None:
                edge.fresh_points = []
        workers: dict[str, JSON | None] = {}
        for worker_id in self._dirty_workers:
            worker = self.workers.get(worker_id)
            workers[worker_id] = (
                None if worker is None else {**worker.status, "points": worker.fresh_points}
            )
            if worker is not None:
                worker.fresh_points = []
        patch = {
            "type": "patch", "now": time.time(), "broker": self.broker_connected,
            "edges": edges, "workers": workers,
            "feed": self._fresh_feed, "rejected": dict(self.rejected),
        }  # fmt: skip
        self._dirty_edges, self._dirty_workers, self._fresh_feed = set(), set(), []
        self._broker_dirty = False
        return patch

    def snapshot(self, edge_id: str, label: str) -> bytes | None:
        edge = self.edges.get(edge_id)
        found = None if edge is None else edge.snapshots.get(label)
        return None if found is None else found[1]

    @staticmethod
    def _edge_view(edge_id: str, edge: _Edge, points: list[list[float | None]]) -> JSON:
        return {
            "id": edge_id, **edge.status, "controls": dict(edge.controls),
            "counts": dict(edge.counts),
            "snapshots": {label: v for label, (v, _) in edge.snapshots.items()},
            "points": points,
        }  # fmt: skip


def _table(edge: _Edge, what: str) -> dict[str, Any]:
    """Where an edge keeps one kind of per-label message."""
    if what == "snapshot":
        return edge.snapshots
    if what == "count":
        return edge.counts
    return edge.controls


def _parsed(what: str, payload: bytes) -> Any:
    """An edge message's value, checked; ValueError or ProtocolError when it is bad."""
    if what == "edge_status":
        return {**_edge_json(EdgeStatus.from_bytes(payload)), "received": time.time()}
    if what == "snapshot":
        if len(payload) > MAX_SNAPSHOT_BYTES or payload[:2] != b"\xff\xd8":
            raise ValueError("not a JPEG")
        return bytes(payload)
    if what == "count":
        count = int(payload.decode("ascii"))
        if count < 0:
            raise ValueError("a negative count")
        return count
    return payload.decode("utf-8")[:256]  # a control's state


def _edge_json(status: EdgeStatus) -> JSON:
    return {
        "online": status.online, "connected": status.connected, "ts": status.ts,
        "captured": status.captured, "decided": status.decided,
        "offloaded": status.offloaded, "skipped": status.skipped, "dropped": status.dropped,
        "in_flight": status.in_flight, "capture_fps": status.capture_fps,
        "skipped_fps": status.skipped_fps, "offload_share": status.offload_share,
        "rtt_ms_p50": status.rtt_ms_p50, "rtt_ms_p95": status.rtt_ms_p95,
        "bytes_per_s": status.bytes_per_s, "bytes_sent": status.bytes_sent,
    }  # fmt: skip
