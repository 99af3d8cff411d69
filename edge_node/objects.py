"""What a security user subscribes to: objects with a life, their pictures and counts.

Decided frames arrive out of order (offloads finish when they finish); the watcher
puts them back in capture order, feeds their detections to the tracker
(:mod:`edge_node.tracker`) and publishes, Frigate-style:

    {p}/objects/{edge_id}              {"type": "new" | "update" | "end",
                                        "before": {...} | null, "after": {...}}  (JSON)
    {p}/snapshots/{edge_id}/{label}    retained JPEG: the newest object's best frame,
                                        its box drawn, at most SNAPSHOT_WIDTH wide
    {p}/counts/{edge_id}/{label}       retained: objects of that label in view now

A frame with no answer (skipped for no motion, dropped, no local model) says nothing
of absence: it moves no object towards its end. Memory is bounded: the reorder buffer
holds at most the frames in flight, the tracker its live objects, one snapshot each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import cast

import aiomqtt
import cv2

from edge_node.outcomes import Outcome
from edge_node.snapshots import SnapshotFolder
from edge_node.sources import CapturedFrame
from edge_node.tracker import (
    ObjectEvent,
    ObjectTracker,
    Source,
    TrackedObject,
    security_tracker,
)
from edge_node.zones import parse_zones
from pipeline.codecs import Image, encode_jpeg
from pipeline.config import Config
from pipeline.detection import DETECTORS, is_detector
from pipeline.errors import TransportError
from pipeline.protocol import Decision
from pipeline.service import publish
from pipeline.topics import Topics

__all__ = ["SNAPSHOT_WIDTH", "ObjectWatcher", "watcher_for"]

logger = logging.getLogger(__name__)

SNAPSHOT_WIDTH = 640  # px: a snapshot is a picture to look at, not evidence at full size
SNAPSHOT_QUALITY = 80
MAX_PENDING = 1024  # decided frames waiting for an earlier one: far more than in flight


def object_json(obj: TrackedObject, edge_id: str) -> dict[str, object]:
    """An object as its events carry it (Frigate's field names where they exist)."""
    return {
        "id": obj.id,
        "camera": edge_id,
        "label": obj.label,
        "score": round(obj.score, 3),
        "top_score": round(obj.top_score, 3),
        "box": [round(v, 4) for v in obj.box],
        "start_time": round(obj.start_ts, 3),
        "end_time": None if obj.end_ts is None else round(obj.end_ts, 3),
        "frames": obj.frames,
        "current_zones": list(obj.current_zones),
        "entered_zones": list(obj.entered_zones),
        "seen_by": sorted(obj.seen_by),
        "has_snapshot": True,
        # The frame the snapshot shows: the object's best so far.
        "snapshot": {
            "frame": obj.best_seq,
            "score": round(obj.top_score, 3),
            "box": [round(v, 4) for v in obj.best_box],
        },
    }


def snapshot_jpeg(image: Image, obj: TrackedObject) -> bytes:
    """The frame with the object's box drawn, scaled to at most SNAPSHOT_WIDTH wide."""
    height, width = image.shape[:2]
    scale = min(1.0, SNAPSHOT_WIDTH / width)
    size = (round(width * scale), round(height * scale))
    # A copy either way: the boxes must not be drawn on the frame the node still holds.
    small: Image = image.copy() if scale == 1.0 else cast(Image, cv2.resize(image, size))
    h, w = small.shape[:2]
    x1, y1, x2, y2 = obj.best_box
    cv2.rectangle(
        small, (round(x1 * w), round(y1 * h)), (round(x2 * w), round(y2 * h)), (0, 0, 255), 2
    )
    return encode_jpeg(small, SNAPSHOT_QUALITY)


class ObjectWatcher:
    def __init__(
        self,
        *,
        edge_id: str,
        topics: Topics,
        tracker: ObjectTracker,
        local_labels: Iterable[str],
        cloud_labels: Iterable[str],
        client: Callable[[], aiomqtt.Client | None],
    ) -> None:
        self._edge_id = edge_id
        self._topics = topics
        self.tracker = tracker
        self._seen: dict[Source, frozenset[str]] = {
            "edge": frozenset(local_labels),
            "cloud": frozenset(cloud_labels),
        }
        self._client = client
        self._pending: dict[int, tuple[float, Outcome, Image | None]] = {}
        self._next_seq = 0
        self._counts: dict[str, int] = {}
        self._zone_counts: dict[tuple[str, str], int] = {}
        self.snapshots_on_disk: SnapshotFolder | None = None
        self._published: dict[str, dict[str, object]] = {}  # live id -> its last "after"

    async def decided(self, seq: int, outcome: Outcome, frame: CapturedFrame | None) -> None:
        """One decided frame, in any order; frames are tracked in capture order. A
        frame that was never read (dropped) comes without its picture."""
        if len(self._pending) >= MAX_PENDING:
            # A frame never decided (cannot happen: every frame gets one) must not hold
            # the rest back for ever.
            self._next_seq = min(self._pending)
        ts = frame.capture_ts if frame is not None else 0.0
        self._pending[seq] = (ts, outcome, frame.image if frame is not None else None)
        while self._next_seq in self._pending:
            ready_ts, ready, image = self._pending.pop(self._next_seq)
            await self._track(self._next_seq, ready_ts, ready, image)
            self._next_seq += 1

    async def finish(self, ts: float) -> None:
        """End every live object (the run is over)."""
        for seq in sorted(self._pending):
            ts_seq, outcome, image = self._pending.pop(seq)
            await self._track(seq, ts_seq, outcome, image)
        await self._publish_events(self.tracker.finish(ts), {})

    async def _track(self, seq: int, ts: float, outcome: Outcome, image: Image | None) -> None:
        if outcome.detections is None:
            return  # no answer for this frame: no evidence either way
        source: Source = "cloud" if outcome.decision is Decision.CLOUD else "edge"
        seen = self._seen[source]
        if outcome.counted:
            # Counted, not located: the objects it counts are still there, wherever.
            seen = seen - {label for label, _ in outcome.counted}
        events = self.tracker.update(ts, seq, outcome.detections, source=source, seen_labels=seen)
        snapshots: dict[str, bytes] = {}
        if image is not None:
            for event in events:
                if event.type != "end" and event.object.best_seq == seq:
                    # Resize and encode off the loop (a few ms a snapshot). The object is
                    # not touched meanwhile: frames are tracked one at a time, in order.
                    jpeg = await asyncio.to_thread(snapshot_jpeg, image, event.object)
                    snapshots[event.object.label] = jpeg
                    if self.snapshots_on_disk is not None:
                        await self.snapshots_on_disk.write(event.object, jpeg)
        await self._publish_events(events, snapshots)

    async def _publish_events(self, events: list[ObjectEvent], snapshots: dict[str, bytes]) -> None:
        # Each event's before/after, kept whether or not the broker is there: an object
        # that ends during an outage must not stay in ``_published`` for ever.
        bodies = []
        for event in events:
            after = object_json(event.object, self._edge_id)
            before = self._published.pop(event.object.id, None)
            if event.type != "end":
                self._published[event.object.id] = after
            bodies.append({"type": event.type, "before": before, "after": after})
        client = self._client()
        if client is None or not (events or snapshots):
            return
        with contextlib.suppress(TransportError):  # informational; the ledger is the record
            for body in bodies:
                data = json.dumps(body, separators=(",", ":"))
                await publish(client, self._topics.objects(self._edge_id), data, qos=1)
            for label, jpeg in snapshots.items():
                topic = self._topics.snapshot(self._edge_id, label)
                await publish(client, topic, jpeg, qos=1, retain=True)
            counts = self.tracker.counts()
            for label, count in counts.items():
                if self._counts.get(label) != count:
                    topic = self._topics.count(self._edge_id, label)
                    await publish(client, topic, str(count), qos=1, retain=True)
            self._counts = counts
            zone_counts = self.tracker.zone_counts()
            for (zone, label), count in zone_counts.items():
                if self._zone_counts.get((zone, label)) != count:
                    topic = self._topics.zone_count(self._edge_id, zone, label)
                    await publish(client, topic, str(count), qos=1, retain=True)
            self._zone_counts = zone_counts


def watcher_for(
    config: Config,
    local_labels: Sequence[str],
    client: Callable[[], aiomqtt.Client | None],
) -> ObjectWatcher:
    """The watcher of an edge with ``cfg``: people and vehicles always, and whatever
    else ``edge.detect_classes`` asks for."""
    cfg = config.edge
    cloud = DETECTORS[cfg.model][1] if is_detector(cfg.model) else ()
    watcher = ObjectWatcher(
        edge_id=cfg.edge_id,
        topics=config.topics,
        tracker=security_tracker(
            cfg.detect_classes, zones=parse_zones(cfg.zones) if cfg.zones else ()
        ),
        local_labels=local_labels,
        cloud_labels=cloud,
        client=client,
    )
    if cfg.snapshot_dir is not None:
        watcher.snapshots_on_disk = SnapshotFolder(
            Path(cfg.snapshot_dir), edge_id=cfg.edge_id, keep=cfg.snapshot_keep
        )
    return watcher
