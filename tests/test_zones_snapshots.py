"""Zones (parsing, membership by the box's bottom centre, entry events and counts) and
snapshots on disk (named by object id, bounded, failures logged and survived)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from edge_node.snapshots import SnapshotFolder
from edge_node.tracker import ObjectTracker, TrackedObject
from edge_node.zones import parse_zones, zones_of
from pipeline.detection import Detection
from pipeline.errors import ConfigError

DOOR = "door: 0.4,0.5;0.6,0.5;0.6,1;0.4,1"
YARD = "yard: 0,0.5;1,0.5;1,1;0,1"


def test_zones_parse_and_hold_what_stands_in_them() -> None:
    door, yard = parse_zones(f"{DOOR} | {YARD}")
    assert (door.name, yard.name) == ("door", "yard")
    standing_at_door = (0.45, 0.3, 0.55, 0.8)  # the head is above the zone, the feet in it
    assert zones_of(standing_at_door, (door, yard)) == ("door", "yard")
    far_away = (0.1, 0.1, 0.2, 0.4)
    assert zones_of(far_away, (door, yard)) == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0.1,0.1;0.9,0.1;0.9,0.9", "needs a name"),
        ("door: 0.1,0.1;0.9,0.1", "at least 3"),
        ("door: 0.1,0.1;0.5,0.5;0.9,0.9", "no area"),
        ("door: 0.1,0.1;1.5,0.1;0.9,0.9", "outside 0..1"),
        (f"{DOOR} | {DOOR}", "named twice"),
        ("a/b: 0.1,0.1;0.9,0.1;0.9,0.9", "must be 1-128 chars"),
    ],
)
def test_bad_zones_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_zones(spec)


def test_entering_a_zone_is_an_update_at_once_and_counts_follow() -> None:
    tracker = ObjectTracker(labels={"person"}, min_hits=1, update_s=60.0, zones=parse_zones(DOOR))
    types, zones_seen = [], []
    for seq in range(10):
        y = 0.1 + 0.05 * seq  # walking down the frame, into the door zone
        box = (0.45, y, 0.55, y + 0.3)
        person = Detection(0, "person", 0.9, box)
        for event in tracker.update(
            seq / 10, seq, [person], source="cloud", seen_labels={"person"}
        ):
            types.append(event.type)
            zones_seen.append(event.object.current_zones)
    # new outside, then one update the moment the feet cross y = 0.5 (update_s is a minute)
    assert types == ["new", "update"]
    assert zones_seen == [(), ("door",)]
    assert tracker.zone_counts() == {("door", "person"): 1}
    (obj,) = tracker.live.values()
    assert obj.entered_zones == ["door"]


def _object(i: int) -> TrackedObject:
    box = (0.1, 0.1, 0.2, 0.4)
    return TrackedObject(
        id=f"100.{i:06d}-abcdef", label="person", box=box, score=0.9, top_score=0.9,
        start_ts=100.0, last_ts=100.0, best_seq=0, best_box=box,
    )  # fmt: skip


def test_snapshots_on_disk_are_named_by_object_and_bounded(tmp_path: Path) -> None:
    folder = SnapshotFolder(tmp_path / "snaps", edge_id="door", keep=3)

    async def scenario() -> None:
        for i in range(5):
            await folder.write(_object(i), b"\xff\xd8jpeg" + bytes([i]))
        await folder.write(_object(4), b"\xff\xd8better")  # the same object, a better picture

    asyncio.run(scenario())
    files = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert files == [f"door-100.{i:06d}-abcdef-person.jpg" for i in (2, 3, 4)]
    assert (tmp_path / "snaps" / files[-1]).read_bytes() == b"\xff\xd8better"
    assert folder.written == 6


def _write_four(folder: SnapshotFolder, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        for i in range(4):
            await folder.write(_object(i), b"\xff\xd8")

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_is_logged_once_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    folder = SnapshotFolder(blocked, edge_id="door", keep=3)

    _write_four(folder, caplog)
    assert folder.failed == 4
    assert len([r for r in caplog.records if "snapshot not written" in r.message]) == 1


def test_a_path_that_is_a_file_is_logged_once_and_survived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs as root too: a file where the folder should be fails for everyone."""
    (tmp_path / "taken").write_bytes(b"not a folder")
    folder = SnapshotFolder(tmp_path / "taken", edge_id="door", keep=3)

    _write_four(folder, caplog)
    assert folder.failed == 4
    assert folder.written == 0
    assert len([r for r in caplog.records if "snapshot not written" in r.message]) == 1
