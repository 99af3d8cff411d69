"""The dashboard's state on real wire messages: topics, edges, workers, the feed, bounds,
and malformed messages that are counted and dropped, never raised."""

from __future__ import annotations

import json
import time
from typing import Any

import cv2
import numpy as np
import pytest

from camoffload.dashboard import state as state_module
from camoffload.dashboard.state import MAX_SNAPSHOT_BYTES, DashboardState, parse_topic
from pipeline.protocol import Decision, EdgeStatus, Event, WorkerStatus

P = "pfx"
JPEG: bytes = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def _edge_status(edge: str = "door", ts: float | None = None, **kw: Any) -> bytes:
    return EdgeStatus(
        edge_id=edge, online=True, ts=time.time() if ts is None else ts, **kw
    ).to_bytes()


def _worker_status(worker: str = "w1", online: bool = True, **kw: Any) -> bytes:
    return WorkerStatus(
        worker_id=worker, online=online, ts=time.time(), models=("nanodet_coco",), **kw
    ).to_bytes()


def _event(edge: str = "door", seq: int = 0) -> bytes:
    return Event(
        edge_id=edge, frame_id=f"{edge}-{seq}", seq=seq, ts=time.time(), decision=Decision.CLOUD
    ).to_bytes()


def _object(label: str = "person", kind: str = "new") -> bytes:
    after = {"id": "1.0-abc", "label": label, "score": 0.8, "top_score": 0.9,
             "current_zones": ["porch"]}  # fmt: skip
    return json.dumps({"type": kind, "before": None, "after": after}).encode()


def _without_now(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "now"}


def _state_with_door() -> DashboardState:
    state = DashboardState(P)
    assert state.apply(f"{P}/status/edges/door", _edge_status(captured=10))
    state.changes()
    return state


def test_parse_topic_maps_every_kind_and_ignores_the_rest() -> None:
    assert parse_topic(P, f"{P}/status/edges/door") == ("edge_status", "door", "")
    assert parse_topic(P, f"{P}/status/workers/w1") == ("worker_status", "w1", "")
    assert parse_topic(P, f"{P}/events/door") == ("event", "door", "")
    assert parse_topic(P, f"{P}/objects/door") == ("object", "door", "")
    assert parse_topic(P, f"{P}/snapshots/door/person") == ("snapshot", "door", "person")
    assert parse_topic(P, f"{P}/counts/door/car") == ("count", "door", "car")
    assert parse_topic(P, f"{P}/control/door/offload/state") == ("control", "door", "offload")
    for ignored in (
        "other/status/edges/door",
        f"{P}x/status/edges/door",
        f"{P}/status/edges",
        f"{P}/status/edges/door/extra",
        f"{P}/control/door/offload/set",
        f"{P}/requests/door",
        P,
    ):
        assert parse_topic(P, ignored) is None, ignored
    assert DashboardState(P).apply("other/status/edges/door", _edge_status()) is False


def test_an_edge_status_shows_its_figures_and_one_history_point_once() -> None:
    state = DashboardState(P)
    raw = _edge_status(ts=100.0, captured=50, offload_share=0.25, rtt_ms_p50=12.0,
                       rtt_ms_p95=30.0, capture_fps=10.0, bytes_per_s=4000.0)  # fmt: skip
    assert state.apply(f"{P}/status/edges/door", raw)
    edge = state.full()["edges"]["door"]
    assert edge["id"] == "door"
    assert edge["online"] is True
    assert edge["captured"] == 50
    assert edge["offload_share"] == 0.25
    assert edge["points"] == [[100.0, 0.25, 12.0, 30.0, 10.0, 4000.0]]
    patch = state.changes()
    assert patch is not None
    assert patch["type"] == "patch"
    assert patch["edges"]["door"]["points"] == [[100.0, 0.25, 12.0, 30.0, 10.0, 4000.0]]
    assert state.changes() is None  # nothing new since

    state.apply(f"{P}/status/edges/door", _edge_status(ts=101.0, offload_share=0.5))
    patch = state.changes()
    assert patch is not None
    assert patch["edges"]["door"]["points"] == [[101.0, 0.5, None, None, 0.0, None]]
    assert len(state.full()["edges"]["door"]["points"]) == 2


def test_an_emptied_retained_edge_status_removes_the_edge() -> None:
    state = _state_with_door()
    assert state.apply(f"{P}/status/edges/door", b"")
    assert "door" not in state.full()["edges"]
    patch = state.changes()
    assert patch is not None
    assert patch["edges"] == {"door": None}


def test_controls_and_counts_come_and_go_with_their_retained_messages() -> None:
    state = _state_with_door()
    assert state.apply(f"{P}/control/door/offload/state", b"off")
    assert state.apply(f"{P}/counts/door/person", b"3")
    edge = state.full()["edges"]["door"]
    assert edge["controls"] == {"offload": "off"}
    assert edge["counts"] == {"person": 3}
    patch = state.changes()
    assert patch is not None
    assert patch["edges"]["door"]["controls"] == {"offload": "off"}
    assert patch["edges"]["door"]["points"] == []  # no new status: no new point

    state.apply(f"{P}/control/door/offload/state", b"")
    state.apply(f"{P}/counts/door/person", b"")
    edge = state.full()["edges"]["door"]
    assert edge["controls"] == {}
    assert edge["counts"] == {}
    assert state.apply(f"{P}/counts/door/car", b"lots") is False
    assert state.rejected == {"count: ValueError": 1}


def test_a_real_jpeg_snapshot_is_served_and_an_emptied_one_is_gone() -> None:
    state = _state_with_door()
    assert state.snapshot("door", "person") is None
    assert state.apply(f"{P}/snapshots/door/person", JPEG)
    assert state.snapshot("door", "person") == JPEG
    first = state.full()["edges"]["door"]["snapshots"]["person"]
    state.apply(f"{P}/snapshots/door/person", JPEG)
    assert state.full()["edges"]["door"]["snapshots"]["person"] > first  # a new version
    assert state.snapshot("nowhere", "person") is None
    state.apply(f"{P}/snapshots/door/person", b"")
    assert state.snapshot("door", "person") is None
    assert state.full()["edges"]["door"]["snapshots"] == {}


def test_an_emptied_snapshot_or_count_reaches_open_pages_in_the_next_patch() -> None:
    state = _state_with_door()
    state.apply(f"{P}/snapshots/door/person", JPEG)
    state.apply(f"{P}/counts/door/person", b"2")
    state.changes()
    assert state.apply(f"{P}/snapshots/door/person", b"")  # news: the hub must push it
    assert state.apply(f"{P}/counts/door/person", b"")
    patch = state.changes()
    assert patch is not None
    assert patch["edges"]["door"]["snapshots"] == {}
    assert patch["edges"]["door"]["counts"] == {}


def test_a_non_jpeg_or_oversized_snapshot_is_counted_and_not_stored() -> None:
    state = _state_with_door()
    assert state.apply(f"{P}/snapshots/door/person", b"GIF89a not a jpeg") is False
    oversized = JPEG[:2] + bytes(MAX_SNAPSHOT_BYTES)
    assert state.apply(f"{P}/snapshots/door/car", oversized) is False
    assert state.rejected == {"snapshot: ValueError": 2}
    assert state.snapshot("door", "person") is None
    assert state.snapshot("door", "car") is None
    assert state.full()["edges"]["door"]["snapshots"] == {}


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (f"{P}/status/edges/door", b"\x93not msgpack", "edge_status: ProtocolError"),
        (f"{P}/status/workers/w1", b"\xc1", "worker_status: ProtocolError"),
        (f"{P}/events/door", b"\x91" * 10_000, "event: ProtocolError"),
        (f"{P}/objects/door", b"{not json", "object: JSONDecodeError"),
        (f"{P}/objects/door", b'{"type": "new"}', "object: TypeError"),
        (f"{P}/objects/door", b"\x80abc", "object: UnicodeDecodeError"),
        (f"{P}/control/door/offload/state", b"\xff", "control: UnicodeDecodeError"),
    ],
)
def test_a_malformed_message_is_counted_and_changes_nothing(
    topic: str, payload: bytes, reason: str
) -> None:
    state = _state_with_door()
    state.apply(f"{P}/status/workers/w1", _worker_status())
    state.changes()
    before = _without_now(state.full())
    assert state.apply(topic, payload) is False
    assert state.rejected == {reason: 1}
    assert _without_now(state.full()) == {**before, "rejected": {reason: 1}}
    patch = state.changes()  # the count rides on the next patch; nothing else changed
    assert patch is None or (patch["edges"], patch["workers"], patch["feed"]) == ({}, {}, [])


def test_a_malformed_message_from_an_unknown_edge_adds_no_edge() -> None:
    state = DashboardState(P)
    state.apply(f"{P}/status/edges/ghost", b"\x93not msgpack")
    state.apply(f"{P}/snapshots/ghost2/person", b"not a jpeg")
    state.apply(f"{P}/counts/ghost3/person", b"")  # an emptied retained count
    assert state.full()["edges"] == {}


def test_deeply_nested_object_json_is_counted_not_raised() -> None:
    state = DashboardState(P)
    assert state.apply(f"{P}/objects/door", b"[" * 100_000) is False
    assert state.rejected == {"object: RecursionError": 1}


def test_events_and_object_events_land_in_the_feed() -> None:
    state = DashboardState(P)
    assert state.apply(f"{P}/events/door", _event(seq=7))
    assert state.apply(f"{P}/objects/door", _object())
    decision, obj = state.full()["feed"]
    assert decision["kind"] == "decision"
    assert (decision["edge"], decision["seq"], decision["decision"]) == ("door", 7, "cloud")
    assert obj["kind"] == "object"
    assert (obj["edge"], obj["type"], obj["label"]) == ("door", "new", "person")
    assert obj["id"] == "1.0-abc"
    assert obj["score"] == 0.9  # the top score
    assert obj["zones"] == ["porch"]
    patch = state.changes()
    assert patch is not None
    assert patch["feed"] == [decision, obj]
    assert state.changes() is None


def test_a_worker_last_will_shows_offline_and_an_empty_status_removes_it() -> None:
    state = DashboardState(P)
    assert state.apply(f"{P}/status/workers/w1", _worker_status(queue_depth=2))
    worker = state.full()["workers"]["w1"]
    assert worker["online"] is True
    assert worker["models"] == ["nanodet_coco"]
    assert len(worker["points"]) == 1
    state.changes()
    assert state.apply(f"{P}/status/workers/w1", _worker_status(online=False))
    assert state.full()["workers"]["w1"]["online"] is False
    patch = state.changes()
    assert patch is not None
    assert patch["workers"]["w1"]["online"] is False
    assert len(patch["workers"]["w1"]["points"]) == 1
    assert state.apply(f"{P}/status/workers/w1", b"")
    assert state.full()["workers"] == {}
    patch = state.changes()
    assert patch is not None
    assert patch["workers"] == {"w1": None}


def test_the_broker_link_appears_in_the_changes_only_when_it_toggles() -> None:
    state = DashboardState(P)
    assert state.full()["broker"] is False
    assert state.set_broker(True)
    patch = state.changes()
    assert patch is not None
    assert patch["broker"] is True
    assert state.set_broker(True) is False
    assert state.changes() is None
    assert state.set_broker(False)
    patch = state.changes()
    assert patch is not None
    assert patch["broker"] is False


def test_edges_and_workers_beyond_max_nodes_are_refused_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_module, "MAX_NODES", 3)
    state = DashboardState(P)
    for i in range(4):
        state.apply(f"{P}/status/edges/e{i}", _edge_status(f"e{i}"))
        state.apply(f"{P}/status/workers/w{i}", _worker_status(f"w{i}"))
    assert sorted(state.full()["edges"]) == ["e0", "e1", "e2"]
    assert sorted(state.full()["workers"]) == ["w0", "w1", "w2"]
    assert state.rejected == {"too many edges": 1, "too many workers": 1}
    assert state.apply(f"{P}/status/edges/e0", _edge_status("e0"))  # known ones still update


def test_labels_beyond_max_labels_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "MAX_LABELS", 2)
    state = _state_with_door()
    for label in ("a", "b", "c"):
        state.apply(f"{P}/snapshots/door/{label}", JPEG)
        state.apply(f"{P}/counts/door/{label}", b"1")
    edge = state.full()["edges"]["door"]
    assert sorted(edge["snapshots"]) == ["a", "b"]
    assert edge["counts"] == {"a": 1, "b": 1}
    assert state.apply(f"{P}/counts/door/a", b"5")  # a known label still updates


def test_control_states_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "MAX_LABELS", 2)
    state = _state_with_door()
    for feature in ("offload", "policy", "detect", "made-up"):
        state.apply(f"{P}/control/door/{feature}/state", b"on")
    assert len(state.full()["edges"]["door"]["controls"]) <= 2


def test_history_keeps_the_newest_points_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "HISTORY_POINTS", 5)
    state = DashboardState(P)
    for i in range(8):
        state.apply(f"{P}/status/edges/door", _edge_status(ts=float(i)))
        state.apply(f"{P}/status/workers/w1", _worker_status())
    points = state.full()["edges"]["door"]["points"]
    assert [p[0] for p in points] == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert len(state.full()["workers"]["w1"]["points"]) == 5


def test_the_real_history_cap_holds_600_points() -> None:
    state = DashboardState(P)
    for i in range(605):
        state.apply(f"{P}/status/edges/door", _edge_status(ts=float(i)))
    points = state.full()["edges"]["door"]["points"]
    assert len(points) == state_module.HISTORY_POINTS == 600
    assert points[0][0] == 5.0


def test_the_feed_and_its_fresh_items_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "FEED_ITEMS", 10)
    state = DashboardState(P)
    for seq in range(25):
        state.apply(f"{P}/events/door", _event(seq=seq))
    assert [item["seq"] for item in state.full()["feed"]] == list(range(15, 25))
    patch = state.changes()  # nobody took the changes meanwhile
    assert patch is not None
    assert [item["seq"] for item in patch["feed"]] == list(range(15, 25))
