"""The ledger keeps what was detected: the ``detections`` column (schema 2), its JSON,
and schema 1 files, which the writer migrates in place and readers read as they are."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from edge_node.ledger import Ledger, LedgerError, list_runs, summarize_ledger_file
from edge_node.ledger_rows import iter_frames
from pipeline.protocol import Decision

# The schema 1 file, as camoffload wrote it before the detections column.
_V1_SCHEMA = """
CREATE TABLE frames (
    run_id TEXT NOT NULL,
    frame_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    capture_ts REAL NOT NULL,
    true_label INTEGER,
    decision TEXT,
    decided_ts REAL,
    label INTEGER,
    confidence REAL,
    bytes_sent INTEGER,
    rtt_ms REAL,
    detail TEXT,
    model TEXT,
    local_label INTEGER,
    local_confidence REAL,
    payload TEXT,
    PRIMARY KEY (run_id, frame_id),
    CHECK ((decision IS NULL) = (decided_ts IS NULL))
) WITHOUT ROWID
"""


def _v1_ledger(path: Path) -> Path:
    """A schema 1 ledger with one old run: f0 decided, f1 left undecided (a crash)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(_V1_SCHEMA)
        conn.execute("PRAGMA application_id=1128353100")  # "CAML"
        conn.execute("PRAGMA user_version=1")
        conn.execute(
            "INSERT INTO frames (run_id, frame_id, seq, capture_ts, true_label, decision,"
            " decided_ts, label, bytes_sent) VALUES ('old', 'f0', 0, 10.0, 3, 'local', 11.0, 3, 0)"
        )
        conn.execute(
            "INSERT INTO frames (run_id, frame_id, seq, capture_ts, true_label)"
            " VALUES ('old', 'f1', 1, 12.0, 4)"
        )
    finally:
        conn.close()
    return path


def _schema(path: Path) -> tuple[int, list[str]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(frames)")]
    finally:
        conn.close()
    return version, columns


_PERSON = ("person", 0.91234, (0.1, 0.2, 0.523456789, 0.9))
_CAR = ("car", 0.5, (0.0, 0.0, 1.0, 1.0))


def test_detections_round_trip_as_compact_json(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r") as ledger:
        for seq in range(3):
            ledger.capture(f"f{seq}", seq=seq, capture_ts=1.0 + seq, true_label=None)
        ledger.decide("f0", Decision.LOCAL, decided_ts=5.0, detections=[_PERSON, _PERSON, _CAR])
        ledger.decide("f1", Decision.CLOUD, decided_ts=5.0, detections=[])
        ledger.decide("f2", Decision.LOCAL, decided_ts=5.0, label=7, confidence=0.8)
    with sqlite3.connect(path) as conn:
        raw = conn.execute("SELECT detections FROM frames ORDER BY seq").fetchall()
    conn.close()
    person = '{"label":"person","score":0.912,"box":[0.1,0.2,0.5235,0.9]}'
    car = '{"label":"car","score":0.5,"box":[0.0,0.0,1.0,1.0]}'
    assert raw == [(f"[{person},{person},{car}]",), ("[]",), (None,)]

    found, nothing, classified = iter_frames(path)
    assert found.detections == [json.loads(person), json.loads(person), json.loads(car)]
    assert found.people == 2
    assert (nothing.detections, nothing.people) == ([], 0)
    assert (classified.detections, classified.people, classified.label) == (None, None, 7)
    assert found.extra == nothing.extra == {}


def test_an_in_memory_ledger_takes_detections() -> None:
    with Ledger() as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[_CAR])
        assert ledger.summary().decided == 1


@pytest.mark.parametrize(
    "detection",
    [
        ("person", math.nan, (0.1, 0.1, 0.2, 0.2)),
        ("person", math.inf, (0.1, 0.1, 0.2, 0.2)),
        ("person", 0.9, (0.1, math.nan, 0.2, 0.2)),
        ("person", 0.9, (0.1, 0.1, -math.inf, 0.2)),
        ("person", 1.5, (0.1, 0.1, 0.2, 0.2)),  # a score outside 0..1
        ("person", 0.9, (0.1, 0.1, 1.2, 0.2)),  # a box not normalised
        ("person", 0.9, (0.5, 0.1, 0.2, 0.2)),  # x1 > x2
        ("person", 0.9, (0.1, 0.1, 0.2)),  # three corners
        ("", 0.9, (0.1, 0.1, 0.2, 0.2)),  # no label
        (None, 0.9, (0.1, 0.1, 0.2, 0.2)),
        ("person", "high", (0.1, 0.1, 0.2, 0.2)),
    ],
)
def test_a_bad_detection_is_refused_and_the_frame_stays_undecided(
    tmp_path: Path, detection: tuple[object, ...]
) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r") as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
        with pytest.raises(LedgerError) as refused:
            ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[_CAR, detection])  # type: ignore[list-item]
        assert (refused.value.reason, refused.value.frame_id) == ("bad_value", "a")
        assert "detection 1" in str(refused.value)
        assert ledger.undecided == ["a"]
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[_CAR])  # may try again
    assert [frame.people for frame in iter_frames(path)] == [0]


def test_rounding_keeps_edges_of_the_frame_in_range(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path) as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
        box = (-0.00001, 0.0, 1.00000001, 0.99999)
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[("dog", 0.9996, box)])
    (frame,) = iter_frames(path)
    assert frame.detections == [{"label": "dog", "score": 1.0, "box": [0.0, 0.0, 1.0, 1.0]}]


def test_a_corrupt_detections_value_is_an_error_not_a_guess(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger(path, run_id="r") as ledger:
        ledger.capture("a", seq=0, capture_ts=1.0, true_label=None)
        ledger.decide("a", Decision.LOCAL, decided_ts=2.0, detections=[])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE frames SET detections = '{\"label\": 1}'")
    conn.close()
    with pytest.raises(LedgerError) as reading:
        list(iter_frames(path))
    assert (reading.value.reason, reading.value.frame_id) == ("bad_value", "a")


# -- schema 1 files ------------------------------------------------------------------


def test_writing_migrates_a_v1_file_in_place_and_appends(tmp_path: Path) -> None:
    path = _v1_ledger(tmp_path / "v1.db")
    with Ledger(path, run_id="new") as ledger:
        assert _schema(path)[0] == 2  # migrated on opening, before any frame
        ledger.capture("g0", seq=0, capture_ts=20.0, true_label=None)
        ledger.decide("g0", Decision.CLOUD, decided_ts=21.0, detections=[_PERSON])
    version, columns = _schema(path)
    assert (version, columns[-1], len(columns)) == (2, "detections", 17)

    old_done, old_crashed = iter_frames(path, run_id="old")
    (new,) = iter_frames(path, run_id="new")
    assert (old_done.run_id, old_done.decision, old_done.label) == ("old", "local", 3)
    assert (old_done.detections, old_done.people) == (None, None)
    assert (old_crashed.decision, old_crashed.detections) == (None, None)
    assert (new.run_id, new.people) == ("new", 1)
    assert [(r.run_id, r.frames, r.undecided) for r in list_runs(path)] == [
        ("old", 2, 1),
        ("new", 1, 0),
    ]
    # A second writer finds the file migrated already.
    with Ledger(path, run_id="third"):
        pass
    assert _schema(path)[0] == 2


def test_reading_a_v1_file_does_not_change_it(tmp_path: Path) -> None:
    path = _v1_ledger(tmp_path / "v1.db")
    before = path.read_bytes()
    frames = list(iter_frames(path))
    assert [(f.frame_id, f.decision, f.detections, f.people) for f in frames] == [
        ("f0", "local", None, None),
        ("f1", None, None, None),
    ]
    assert frames[0].extra == {}
    summary = summarize_ledger_file(path, run_id="old")
    assert (summary.captured, summary.decided, summary.correct) == (2, 1, 1)
    assert [r.run_id for r in list_runs(path)] == ["old"]
    version, columns = _schema(path)
    assert (version, len(columns)) == (1, 16)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = _v1_ledger(tmp_path / "v3.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=3")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(LedgerError) as writing:
        Ledger(path)
    with pytest.raises(LedgerError) as reading:
        list(iter_frames(path))
    assert writing.value.reason == reading.value.reason == "schema_version"
    assert "schema 3" in str(writing.value)
    assert path.read_bytes() == before
    assert "detections" not in _schema(path)[1]
